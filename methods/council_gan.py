"""Council GAN: Breaking the Cycle - Colleagues Are All You Need.

Nizan, Tal, CVPR 2020, arXiv:1911.10538.

    @inproceedings{nizan2020council,
      title={Breaking the Cycle - Colleagues are all you need},
      author={Ori Nizan and Ayellet Tal},
      booktitle={IEEE conference on computer vision and pattern recognition (CVPR)},
      year={2020}}

Official code: https://github.com/Onr/Council-GAN at commit 7fe8f8a, built on NVlabs MUNIT (no licence file;
the sources carry MUNIT's CC BY-NC-SA 4.0 header), selfie2anime config `configs/anime2face_council_folder.yaml`
(its crop is 128 "# 256"; the released selfie2anime model, `pretrain/anime/256`, was trained at 256).
Written from the facts in shared/research/official/council_gan.md; attribute names and Sequential indices
follow the official classes so that state_dict keys (`enc_content.model.3.model.0.model.0.conv.weight`,
`dec.model.2.norm.running_mean`, `mlp.model.2.fc.weight`, `cnns.1.4.weight`, ...) equal the released ones.

A council of `council_size` members per trained direction, each a generator, a discriminator and a council
discriminator with its own optimisers. Every step: discriminator update, council-discriminator update (from
`council_start_at_iter`), generator update, in the official order. The council discriminator of member i,
conditioned on the source image, learns to tell member i's translation ("fake") from the other members'
translations of the same source with the same style scaled by 0.7 ("real"); member i's generator is pushed
towards "real", so the members come to agree. No cycle, identity or reconstruction loss.

Directions: the official selfie2anime data copy has anime in A and selfies in B and trains only its b2a. Here
A is always the selfie domain, so the official trained direction is this module's "a2b": the paper preset
trains `directions=("a2b",)` and `load_official` puts the released `b2a_gen_<i>_01000000.pt` files there.

Deviations from the official code, each for a reason:
- The discriminator loss has weight `dis_w` (1) in every direction. The official code weights its a2b D loss
  by gan_w (26) and its b2a D loss by 1; the selfie2anime config trains only b2a (weight 1), which is what the
  paper preset reproduces. With both directions trained (tiny), the official would weight one of them by 26.
- The style encoder (`enc_style`) is built and loaded but frozen (requires_grad False) and never run in
  training: no loss of this config reaches it, so the official Adam never updates it either (its gradients
  stay None); freezing also keeps it out of DDP's unused-parameter check. Reference-guided translation is
  therefore not offered (the released style encoders are untrained).
- The losses of all members are summed into one backward pass per role, then every member's optimiser
  steps: the members' losses share no parameters, so the gradients equal the official per-member backward.
- Generator outputs for the two discriminator updates come from one no-grad forward pass with a content
  code shared by all styles (the generators do not change before the generator update, so the outputs are
  the official ones); each discriminator scores its fake and real images in one batched call (no batch-
  dependent layers, so scores are identical).
- Which other members a council discriminator compares against is drawn from the step's generator (a
  function of seed and step, passed by the training loop) instead of Python's `random` (same rule: every other member once in random order, then repeats, at most
  `council_size` comparisons, divided by `council_dis_comparisons`).
- RandomGrayscale (p 0.05) runs inside `training_step` on the [-1, 1] batch, drawn from the step's generator
  (the harness loader only resizes, crops and flips); ColorJitter is off in the official config.
- The learning rate is a pure function of the step (StepLR x0.5 every 100,000 iterations, as the official
  per-iteration scheduler); training length is given in harness epochs (see `epochs`).
- `mask_init` (tiny preset only; paper: None = official init) starts the attention masks closed. A
  175-step CPU run from the official kaiming-initialised masks, which saturate at 0 or 1 with vanishing
  gradients, repaints whole images from noise; with closed masks it edits the input faces instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.base import (
    DIRECTIONS,
    Batch,
    ConfigError,
    Direction,
    Method,
    MethodConfig,
    Networks,
    Update,
    check_direction,
)

# `<a2b|b2a>_<gen|dis|dis_council>_<member>_<8-digit iteration>.pt`, the official snapshot names.
OFFICIAL_FILE = re.compile(r"(a2b|b2a)_(gen|dis|dis_council)_(\d+)_(\d{8})\.pt$")
ROLES = ("gen", "dis", "dis_council")
SWAPPED = {"b2a": "a2b", "a2b": "b2a"}  # official direction -> this module's (module docstring)


@dataclass(frozen=True)
class CouncilGANConfig(MethodConfig):
    image_size: int = 256  # crop_image_height/width of the released model (pretrain/anime/256)
    load_size: int = 256  # new_size 256: shorter side resized to the crop size, so the crop only trims
    flip: bool = True  # do_HorizontalFlip True
    batch_size: int = 3  # batch_size 3
    epochs: float = 1_500_000 * 3 / 3400  # max_iter 1,500,000 at batch 3 over selfie2anime's 3,400 per domain
    directions: tuple[str, ...] = ("a2b",)  # do_b2a only, on a copy with the domains swapped (module docstring)
    council_size: int = 4  # council_size 4
    dim: int = 64  # gen.dim 64: first conv width of the encoders
    mlp_dim: int = 256  # gen.mlp_dim 256
    style_dim: int = 64  # gen.style_dim 64
    n_downsample: int = 2  # gen.n_downsample 2 (content encoder; the decoder upsamples as often)
    n_res: int = 5  # gen.n_res 5 residual blocks in the content encoder and in the decoder
    style_downsample: int = 4  # StyleEncoder(4, ...) hard-coded in AdaINGen
    n_masks: int = 3  # gen.num_of_mask_dim_to_add 3: RGB proposals blended by attention masks
    mask_init: float | None = None  # None = official kaiming init; a bias with zero weights closes the masks (tiny)
    dis_dim: int = 64  # dis.dim 64
    dis_layers: int = 4  # dis.n_layer 4
    dis_scales: int = 2  # dis.num_scales 2
    gan_w: float = 26.0  # gan_w 26: adversarial weight of the generator loss
    dis_w: float = 1.0  # D-loss weight of the official trained (b2a) direction (deviation list)
    council_w: float = 6.0  # council_w 6
    council_start_at_iter: int = 1_000  # council.council_start_at_iter 1,000
    council_dis_comparisons: int = 4  # council.numberOfCouncil_dis_relative_iteration 4
    less_style_by: float = 0.7  # council.discriminetro_less_style_by 0.7: style scale of the "real" samples
    loss_matching: bool = True  # do_w_loss_matching True
    loss_matching_hist_size: int = 100  # loss_matching_hist_size 100
    lr: float = 1e-4  # lr 1e-4 for every optimiser
    beta1: float = 0.5  # beta1 0.5
    beta2: float = 0.999  # beta2 0.999
    weight_decay: float = 1e-4  # weight_decay 1e-4 (Adam's L2 term)
    lr_step_size: int = 100_000  # lr_policy step, step_size 100,000 iterations
    lr_gamma: float = 0.5  # gamma 0.5
    grayscale_p: float = 0.05  # RandomGrayscale_P 0.05 on both training domains

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # 64x64 toyfaces on 2 CPU cores in about a minute (demo: 175 steps over 700 images per domain): both
        # directions, two members, narrow networks, the council on after 40 steps. Masks start closed
        # (output = input) so that such a short run edits faces instead of repainting them from noise.
        "tiny": {
            "image_size": 64,
            "load_size": 64,
            "batch_size": 4,
            "epochs": 0.7,
            "directions": ("a2b", "b2a"),
            "council_size": 2,
            "dim": 12,
            "mlp_dim": 48,
            "style_dim": 8,
            "n_res": 1,
            "mask_init": -0.3,
            "dis_dim": 12,
            "dis_layers": 3,
            "council_start_at_iter": 40,
            "loss_matching_hist_size": 20,
            "lr": 3e-4,
        },
    }

    def __post_init__(self) -> None:
        unique = set(self.directions)
        if not unique or len(unique) < len(self.directions) or unique - set(DIRECTIONS):
            raise ConfigError(f"directions must be a non-empty subset of {DIRECTIONS}, got {self.directions}")
        if self.council_size < 1:
            raise ConfigError(f"council_size must be at least 1, got {self.council_size}")


# -- building blocks (official MUNIT names: every conv sits in a block with `norm` and `conv`) -----------------
class AdaptiveInstanceNorm2d(nn.Module):
    """Instance norm whose per-sample scale and shift come from the style MLP (set by the decoder per call)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        # Unused dummies, saved in the official checkpoints: registered so that strict loading works.
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.style_weight: Tensor | None = None  # (N, C)
        self.style_bias: Tensor | None = None  # (N, C)

    def forward(self, x: Tensor) -> Tensor:
        assert self.style_weight is not None and self.style_bias is not None, "decoder must assign AdaIN params"
        normalized = F.instance_norm(x, eps=1e-5)
        return normalized * self.style_weight[:, :, None, None] + self.style_bias[:, :, None, None]


class Conv2dBlock(nn.Module):
    """Zero-padded conv with bias, then optional norm ('in', 'adain') and activation ('relu', 'lrelu', 'tanh')."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, pad: int, norm: str = "", act: str = "relu"):
        super().__init__()
        # `norm` is registered before `conv`, as officially, so its buffers come first in the state_dict.
        self.norm = {"in": nn.InstanceNorm2d, "adain": AdaptiveInstanceNorm2d}[norm](c_out) if norm else None
        self.activation = {"relu": nn.ReLU(), "lrelu": nn.LeakyReLU(0.2), "tanh": nn.Tanh(), "": None}[act]
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, pad)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return x if self.activation is None else self.activation(x)


class Stack(nn.Module):
    """A Sequential kept under `model`, the official MUNIT layout (`enc_content.model.3.model.0.model.1...`)."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class ResBlock(Stack):
    def __init__(self, dim: int, norm: str) -> None:
        super().__init__(Conv2dBlock(dim, dim, 3, 1, 1, norm, "relu"), Conv2dBlock(dim, dim, 3, 1, 1, norm, ""))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.model(x)  # no activation after the sum


class LinearBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, relu: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(c_in, c_out)
        self.activation = nn.ReLU() if relu else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc(x)
        return x if self.activation is None else self.activation(x)


def style_encoder(n_downsample: int, dim: int, style_dim: int) -> Stack:
    """7x7 conv, `n_downsample` stride-2 convs (width doubling twice), global pool, 1x1 conv: (N, style_dim, 1, 1)."""
    layers: list[nn.Module] = [Conv2dBlock(3, dim, 7, 1, 3)]
    for i in range(n_downsample):
        layers.append(Conv2dBlock(dim, dim * 2 if i < 2 else dim, 4, 2, 1))
        dim = dim * 2 if i < 2 else dim
    return Stack(*layers, nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, style_dim, 1))


def content_encoder(n_downsample: int, n_res: int, dim: int) -> Stack:
    """7x7 conv, `n_downsample` stride-2 convs, `n_res` residual blocks, instance norm: (N, dim * 2**n, H/2**n, W/2**n)."""
    layers: list[nn.Module] = [Conv2dBlock(3, dim, 7, 1, 3, "in")]
    for i in range(n_downsample):
        layers.append(Conv2dBlock(dim * 2**i, dim * 2 ** (i + 1), 4, 2, 1, "in"))
    return Stack(*layers, Stack(*[ResBlock(dim * 2**n_downsample, "in") for _ in range(n_res)]))


class AttentionDecoder(nn.Module):
    """AdaIN residual blocks, (nearest x2, two AdaIN 3x3 convs) per upsampling, two 1x1 convs, a 1x1 tanh head.

    The head gives `n_masks` RGB proposals and `n_masks` mask logits; starting from the input image, each
    proposal is blended in through its mask, so untouched regions keep the input pixels.
    """

    def __init__(self, n_upsample: int, n_res: int, dim: int, n_masks: int) -> None:
        super().__init__()
        self.n_masks = n_masks
        layers: list[nn.Module] = [Stack(*[ResBlock(dim, "adain") for _ in range(n_res)])]
        for _ in range(n_upsample):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                Conv2dBlock(dim, dim // 2, 3, 1, 1, "adain"),
                Conv2dBlock(dim // 2, dim // 2, 3, 1, 1, "adain"),
            ]
            dim //= 2
        layers += [
            Conv2dBlock(dim, dim, 1, 1, 0),
            Conv2dBlock(dim, dim, 1, 1, 0),
            Conv2dBlock(dim, 3 * n_masks + n_masks, 1, 1, 0, act="tanh"),
        ]
        self.model = nn.Sequential(*layers)
        self.adain_layers = [m for m in self.modules() if isinstance(m, AdaptiveInstanceNorm2d)]
        self.num_adain_params = sum(2 * m.num_features for m in self.adain_layers)

    def forward(self, content: Tensor, adain_params: Tensor, image: Tensor) -> Tensor:
        # Consumed in module order: per layer the first C values are the shift (mean), the next C the scale.
        start = 0
        for layer in self.adain_layers:
            c = layer.num_features
            layer.style_bias = adain_params[:, start : start + c]
            layer.style_weight = adain_params[:, start + c : start + 2 * c]
            start += 2 * c
        try:
            head = self.model(content)  # (N, 4 * n_masks, H, W), all through tanh
        finally:
            for layer in self.adain_layers:  # drop the references so no graph outlives the call
                layer.style_bias = layer.style_weight = None
        masks = (torch.tanh(10 * head[:, -self.n_masks :]) + 1) / 2  # (N, n_masks, H, W) in [0, 1]
        out = image
        for k in range(self.n_masks):
            mask = masks[:, k : k + 1]
            out = (1 - mask) * out + mask * head[:, 3 * k : 3 * k + 3]
        return out


class AdaINGen(nn.Module):
    """One council member's generator: content encoder + style MLP -> attention decoder over the input image."""

    def __init__(self, c: CouncilGANConfig) -> None:
        super().__init__()
        self.enc_style = style_encoder(c.style_downsample, c.dim, c.style_dim)
        self.enc_content = content_encoder(c.n_downsample, c.n_res, c.dim)
        self.dec = AttentionDecoder(c.n_downsample, c.n_res, c.dim * 2**c.n_downsample, c.n_masks)
        hidden = [LinearBlock(c.style_dim, c.mlp_dim, relu=True), LinearBlock(c.mlp_dim, c.mlp_dim, relu=True)]
        self.mlp = Stack(*hidden, LinearBlock(c.mlp_dim, self.dec.num_adain_params, relu=False))  # no output act.
        self.enc_style.requires_grad_(False)  # no loss of this config reaches it (module docstring)

    def forward(self, images: Tensor, styles: list[Tensor]) -> list[Tensor]:
        """Translate `images` (N, 3, H, W) once per style (N, style_dim, 1, 1), sharing the content code."""
        content = self.enc_content(images)
        return [self.dec(content, self.mlp(style.flatten(1)), images) for style in styles]


class MsImageDis(nn.Module):
    """Multi-scale LSGAN discriminator: per scale 4x4 stride-2 convs doubling from `dim`, a 1x1 score conv.

    With `council`, the council discriminator: the image is concatenated with its source image (6 channels)
    at every scale, the first conv is 3x3 stride 1, and a 1x1 conv (no activation after it) precedes the score.
    """

    def __init__(self, dim: int, n_layers: int, n_scales: int, council: bool = False) -> None:
        super().__init__()
        self.cnns = nn.ModuleList()
        for _ in range(n_scales):
            first = Conv2dBlock(6, dim, 3, 1, 1, act="lrelu") if council else Conv2dBlock(3, dim, 4, 2, 1, act="lrelu")
            layers: list[nn.Module] = [first]
            for i in range(n_layers - 1):
                layers.append(Conv2dBlock(dim * 2**i, dim * 2 ** (i + 1), 4, 2, 1, act="lrelu"))
            width = dim * 2 ** (n_layers - 1)
            layers += [nn.Conv2d(width, width, 1)] if council else []
            layers.append(nn.Conv2d(width, 1, 1))
            self.cnns.append(nn.Sequential(*layers))

    def forward(self, x: Tensor, source: Tensor | None = None) -> list[Tensor]:  # one (N, 1, h, w) map per scale
        outputs = []
        for model in self.cnns:
            outputs.append(model(x if source is None else torch.cat([x, source], 1)))
            x, source = _downsample(x), (None if source is None else _downsample(source))
        return outputs


def _downsample(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


class Council(nn.ModuleList):
    """The members of one role for one direction. One call runs every member on its own arguments, so a DDP
    wrapper around the council sees every parameter used in one forward pass."""

    def forward(self, args_per_member: list[tuple[Any, ...]]) -> list[Any]:
        return [member(*args) for member, args in zip(self, args_per_member, strict=True)]


def init_weights(module: nn.Module, kind: str) -> None:
    """Official `weights_init`: conv and linear weights kaiming-normal (fan_in) or N(0, 0.02); biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)


# -- losses ------------------------------------------------------------------------------------------------
def lsgan_dis_loss(fake_scores: list[Tensor], real_scores: list[Tensor]) -> Tensor:
    """Official LSGAN D loss, summed over scales: mean(D(fake)^2) + mean((D(real) - 1)^2)."""
    return sum(f.pow(2).mean() + (r - 1).pow(2).mean() for f, r in zip(fake_scores, real_scores, strict=True))


def lsgan_gen_loss(scores: list[Tensor]) -> Tensor:
    """Official LSGAN G loss, summed over scales: mean((D(fake) - 1)^2)."""
    return sum((s - 1).pow(2).mean() for s in scores)


def split_scores(scores: list[Tensor], parts: int) -> list[list[Tensor]]:
    """Per-scale maps of a batched call (parts x N samples) -> `parts` lists of per-scale maps."""
    chunks = [s.chunk(parts) for s in scores]
    return [[c[p] for c in chunks] for p in range(parts)]


def council_comparisons(member: int, council_size: int, comparisons: int, generator: torch.Generator) -> list[int]:
    """Whom member `member`'s council discriminator compares against: every other member once in random
    order, then again while comparisons remain, at most `council_size` in total (the official loop breaks
    there)."""
    others = [j for j in range(council_size) if j != member]
    picks: list[int] = []
    pool: list[int] = []
    for _ in range(min(comparisons, council_size)):
        if not pool:
            pool = list(others)
        picks.append(pool.pop(int(torch.randint(len(pool), (), generator=generator))))
    return picks


def random_grayscale(x: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """torchvision RandomGrayscale on a [-1, 1] batch: each image becomes grey (3 channels) with probability p."""
    if p <= 0:
        return x
    grey = (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1).expand_as(x)
    chosen = (torch.rand(len(x), generator=generator) < p).view(-1, 1, 1, 1).to(x.device)
    return torch.where(chosen, grey, x)


class CouncilGAN(Method):
    """Council GAN: per trained direction a council of generators, discriminators and council discriminators.

    Attributes `gen_<dir>`, `dis_<dir>`, `dis_council_<dir>` are `Council` lists indexed by member; those of an
    untrained direction are empty.
    """

    name = "council"
    multimodal = True
    Config = CouncilGANConfig
    networks = ("gen_a2b", "gen_b2a", "dis_a2b", "dis_b2a", "dis_council_a2b", "dis_council_b2a")
    # Each network is a ModuleList of council members, indexed per member; a compiled wrapper is called, not indexed.
    not_compilable = "its networks are lists of council members, which torch.compile does not wrap"

    def __init__(self, config: CouncilGANConfig) -> None:
        super().__init__(config)
        self.config: CouncilGANConfig = config
        c = config
        for d in DIRECTIONS:
            count = c.council_size if d in c.directions else 0  # an untrained direction has empty councils
            generators = Council([AdaINGen(c) for _ in range(count)])
            init_weights(generators, "kaiming")
            for generator in generators if c.mask_init is not None else ():
                head = generator.dec.model[-1].conv  # (3 + 1) * n_masks outputs: proposals, then mask logits
                nn.init.zeros_(head.weight[3 * c.n_masks :])
                nn.init.constant_(head.bias[3 * c.n_masks :], c.mask_init)
            setattr(self, f"gen_{d}", generators)
            for role, council in (("dis", False), ("dis_council", True)):
                discriminators = Council(
                    [MsImageDis(c.dis_dim, c.dis_layers, c.dis_scales, council) for _ in range(count)]
                )
                init_weights(discriminators, "gaussian")
                setattr(self, f"{role}_{d}", discriminators)
        # Loss-matching histories per (trained direction, member), filled with ones as officially.
        shape = (len(c.directions), c.council_size, c.loss_matching_hist_size)
        self.gan_history = torch.ones(shape, dtype=torch.float64)
        self.council_history = torch.ones(shape, dtype=torch.float64)

    # -- training ---------------------------------------------------------------------------------------
    def _council(self, role: str, direction: str) -> nn.Module:
        return getattr(self, f"{role}_{direction}")

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam per member and role (official `optimizer_<i>.pt` keys gen, dis, dis_council); a member's
        optimiser holds its networks of every trained direction."""
        c = self.config
        optimizers = {}
        for role in ROLES:
            for i in range(c.council_size):
                params = [p for d in c.directions for p in self._council(role, d)[i].parameters() if p.requires_grad]
                optimizers[f"{role}_{i}"] = torch.optim.Adam(
                    params, lr=c.lr, betas=(c.beta1, c.beta2), weight_decay=c.weight_decay
                )
        return optimizers

    def lr_factor(self, step: int, total_steps: int) -> float:
        return self.config.lr_gamma ** (step // self.config.lr_step_size)

    def council_active(self, step: int) -> bool:
        c = self.config
        return c.council_w != 0 and c.council_size > 1 and step >= c.council_start_at_iter

    def phases(self) -> dict[str, tuple[str, ...]]:
        """Each role's update steps the optimisers of every member after one backward pass of the summed losses."""
        return {role: tuple(f"{role}_{i}" for i in range(self.config.council_size)) for role in ROLES}

    def training_step(self, nets: Networks, batch: Batch, step: int, rng: torch.Generator) -> Iterator[Update]:
        c = self.config
        council_on = self.council_active(step)
        x_a, x_b = random_grayscale(batch.a, c.grayscale_p, rng), random_grayscale(batch.b, c.grayscale_p, rng)
        sources = {"a2b": x_a, "b2a": x_b}
        targets = {"a2b": x_b, "b2a": x_a}
        members = range(c.council_size)

        def council(role: str, direction: str) -> nn.Module:
            return getattr(nets, f"{role}_{direction}")

        def styles_for(x: Tensor) -> Tensor:  # z ~ N(0, I) drawn on the CPU from rng
            return torch.randn(len(x), c.style_dim, 1, 1, generator=rng).to(x.device)

        # Fakes for both discriminator updates. The generators change only in the generator update, so one
        # no-grad pass gives the official outputs: style s for D, s' and 0.7 s' for the council D.
        fakes: dict[str, list[list[Tensor]]] = {}
        with torch.no_grad():
            for d in c.directions:
                x = sources[d]
                styles = [styles_for(x)]
                if council_on:
                    s = styles_for(x)
                    styles += [s, s * c.less_style_by]
                fakes[d] = council("gen", d)([(x, styles)] * c.council_size)

        # Discriminators: LSGAN, member i's translation (fake) against real target-domain images.
        logs: dict[str, Tensor | float] = {}
        total = torch.zeros((), device=x_a.device)
        for d in c.directions:
            real = targets[d]
            scores = council("dis", d)([(torch.cat([fakes[d][i][0], real]),) for i in members])
            per_member = [lsgan_dis_loss(*split_scores(s, 2)) for s in scores]
            logs[f"D_{d}"] = sum(per_member) / c.council_size
            total = total + c.dis_w * sum(per_member)
        yield Update("dis", total, logs)

        # Council discriminators: member i's translation (fake) against the others' 0.7-style ones (real).
        if council_on:
            logs = {}
            total = torch.zeros((), device=x_a.device)
            for d in c.directions:
                x = sources[d]
                args = []
                for i in members:
                    picks = council_comparisons(i, c.council_size, c.council_dis_comparisons, rng)
                    images = torch.cat([fakes[d][i][1]] + [fakes[d][j][2] for j in picks])  # ((1 + K) N, 3, H, W)
                    args.append((images, x.repeat(1 + len(picks), 1, 1, 1)))
                scores = council("dis_council", d)(args)
                per_member = []
                for s in scores:
                    fake, *reals = split_scores(s, len(s[0]) // len(x))
                    per_member.append(sum(lsgan_dis_loss(fake, r) for r in reals) / c.council_dis_comparisons)
                logs[f"council_D_{d}"] = sum(per_member) / c.council_size
                total = total + c.council_w * sum(per_member)
            yield Update("dis_council", total, logs)

        # Generators: gan_w x LSGAN against their own D, plus (council on) council_w x the council loss
        # rescaled by loss matching: mean of the last GAN losses / mean of the last council losses.
        logs = {}
        total = torch.zeros((), device=x_a.device)
        for k, d in enumerate(c.directions):
            x = sources[d]
            style = styles_for(x)
            outputs = [out[0] for out in council("gen", d)([(x, [style])] * c.council_size)]
            adv = [lsgan_gen_loss(s) for s in council("dis", d)([(y,) for y in outputs])]
            council_losses = (
                [lsgan_gen_loss(s) for s in council("dis_council", d)([(y, x) for y in outputs])] if council_on else []
            )
            matches = []
            for i in members:
                self.gan_history[k, i] = _push(self.gan_history[k, i], float(adv[i].detach()))
                total = total + c.gan_w * adv[i]
                if council_on:
                    self.council_history[k, i] = _push(self.council_history[k, i], float(council_losses[i].detach()))
                    match = float(self.gan_history[k, i].mean() / self.council_history[k, i].mean())
                    match = match if c.loss_matching else 1.0
                    matches.append(match)
                    total = total + c.council_w * match * council_losses[i]
            logs[f"G_adv_{d}"] = sum(adv) / c.council_size
            if council_on:
                logs[f"G_council_{d}"] = sum(council_losses) / c.council_size
                logs[f"loss_match_{d}"] = torch.tensor(sum(matches) / len(matches))
        yield Update("gen", total, logs)

    def train_state(self) -> dict[str, Tensor]:
        return {"gan_history": self.gan_history.clone(), "council_history": self.council_history.clone()}

    def load_train_state(self, state: dict[str, Tensor]) -> None:
        for key in ("gan_history", "council_history"):
            if state[key].shape != self.gan_history.shape:
                raise ValueError(f"{key} has shape {tuple(state[key].shape)}, expected {tuple(self.gan_history.shape)}")
        self.gan_history = state["gan_history"].to(torch.float64).cpu().clone()
        self.council_history = state["council_history"].to(torch.float64).cpu().clone()

    # -- inference --------------------------------------------------------------------------------------
    @property
    def directions(self) -> tuple[Direction, ...]:
        return tuple(d for d in DIRECTIONS if d in self.config.directions)

    def members(self, direction: str) -> nn.ModuleList:
        """The generators of a trained `direction`; ValueError for an unknown or untrained direction."""
        check_direction(direction)
        if direction not in self.config.directions:
            raise ValueError(
                f"this Council GAN configuration trains only direction(s) {self.config.directions}, so it "
                f"cannot translate direction {direction!r} (the official selfie2anime model is one-way)"
            )
        return self._council("gen", direction)

    def sample_style(self, n: int, direction: Direction, generator: torch.Generator | None = None) -> Tensor:
        """Draw `n` styles z ~ N(0, I), (n, style_dim, 1, 1), on the generator's device."""
        self.members(direction)
        device = generator.device if generator is not None else None
        return torch.randn(n, self.config.style_dim, 1, 1, generator=generator, device=device)

    def _draw_members(self, n: int, member: int | None, generator: torch.Generator | None) -> Tensor:
        if member is not None:
            if not 0 <= member < self.config.council_size:
                raise ValueError(f"member must be in [0, {self.config.council_size}), got {member}")
            return torch.full((n,), member, dtype=torch.long)
        device = generator.device if generator is not None else None
        return torch.randint(self.config.council_size, (n,), generator=generator, device=device).cpu()

    def _run(self, x: Tensor, direction: str, style: Tensor, chosen: Tensor) -> Tensor:
        """Image k through member chosen[k] with style[k]; clamped to [-1, 1]."""
        generators = self.members(direction)
        style = style.to(x).reshape(len(x), self.config.style_dim, 1, 1)
        out = torch.empty_like(x)
        for i in chosen.unique().tolist():
            rows = (chosen == i).to(x.device)
            out[rows] = generators[i](x[rows], [style[rows]])[0]
        return out.clamp(-1, 1)

    @torch.no_grad()
    def translate(
        self,
        x: Tensor,
        direction: Direction = "a2b",
        *,
        style: Tensor | None = None,
        reference: Tensor | None = None,
        generator: torch.Generator | None = None,
        member: int | None = None,
    ) -> Tensor:
        """Each image through one council member (drawn from `generator` per image unless `member` is given)
        with a style z (drawn from `generator` after the members unless `style` is given)."""
        self.members(direction)
        if reference is not None:
            raise ValueError("Council GAN has no trained style encoder: pass style= or generator=, not reference=")
        chosen = self._draw_members(len(x), member, generator)
        if style is None:
            style = self.sample_style(len(x), direction, generator)
        return self._run(x, direction, style, chosen)

    @torch.no_grad()
    def translate_many(
        self,
        x: Tensor,
        direction: Direction,
        num_styles: int,
        *,
        members: list[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Several outputs per input for diversity metrics: (N, K, 3, H, W).

        With `members` None, as the official test script: one random member per input and `num_styles`
        styles (K = num_styles). With a list of members, as the official training `sample`: each listed
        member with the same `num_styles` styles per input (K = len(members) * num_styles, member-major).
        """
        n = len(x)
        chosen = [self._draw_members(n, m, generator) for m in (members or [None])]  # members drawn first
        styles = self.sample_style(n * num_styles, direction, generator).view(n, num_styles, -1)
        outputs = [self._run(x, direction, styles[:, j], picks) for picks in chosen for j in range(num_styles)]
        return torch.stack(outputs, 1)

    def translation_networks(self, direction: Direction) -> tuple[str, ...]:
        return tuple(f"gen_{check_direction(direction)}.{i}" for i in range(len(self._council("gen", direction))))

    official_files = ("*_gen_*.pt", "*_dis_*.pt")  # `dis_council` files match the second pattern too

    def pick_official(self, names: list[str]) -> list[str]:
        """The newest iteration of each (direction, role, member) of a snapshot folder; every member's
        generator of a direction must be there."""
        newest: dict[tuple[str, str, int], str] = {}
        for name in names:  # sorted, so a later iteration replaces an earlier one
            if match := OFFICIAL_FILE.search(name):
                newest[(match.group(1), match.group(2), int(match.group(3)))] = name
        for official in sorted({d for d, _, _ in newest}):
            missing = [i for i in range(self.config.council_size) if (official, "gen", i) not in newest]
            if missing:
                raise FileNotFoundError(f"no generator file for members {missing} of official direction {official}")
        return sorted(newest.values())

    def convert_official(
        self, files: dict[str, Any], direction: Direction | None = None
    ) -> dict[str, dict[str, Tensor]]:
        """Official snapshot files, each a dict {'b2a' or 'a2b': state_dict} named
        `<a2b|b2a>_<gen|dis|dis_council>_<member>_<iteration>.pt`; a file of another name is member 0's
        generator. Official b2a files go to "a2b" and a2b files to "b2a" (the Council copy of selfie2anime
        has the domains swapped) unless `direction` names the target."""
        states = {}
        for name, state in files.items():
            match = OFFICIAL_FILE.search(name)
            target = direction or (SWAPPED[match.group(1)] if match else self.directions[0])
            role, index = (match.group(2), int(match.group(3))) if match else ("gen", 0)
            self.members(target)  # a clear error for an untrained direction
            if not 0 <= index < self.config.council_size:
                raise ValueError(
                    f"{name}: member {index} is outside this preset's council of {self.config.council_size}"
                )
            if isinstance(state, dict) and len(state) == 1 and next(iter(state)) in ("a2b", "b2a"):
                state = next(iter(state.values()))  # official layout: {'b2a': state_dict}
            states[f"{role}_{target}.{index}"] = state
        return states


def _push(history: Tensor, value: float) -> Tensor:
    """Official deque append + popleft: drop the oldest value, append the newest."""
    return torch.cat([history[1:], history.new_tensor([value])])
