"""U-GAT-IT: Unsupervised Generative Attentional Networks with Adaptive Layer-Instance Normalization.

Kim, Kim, Kang, Lee, ICLR 2020, arXiv:1907.10830.

    @inproceedings{Kim2020U-GAT-IT,
      title={U-GAT-IT: Unsupervised Generative Attentional Networks with Adaptive Layer-Instance
             Normalization for Image-to-Image Translation},
      author={Junho Kim and Minjae Kim and Hyeonwoo Kang and Kwang Hee Lee},
      booktitle={ICLR}, year={2020}, url={https://openreview.net/forum?id=BJlZ5ySKPH}}

Official code: https://github.com/znxlwm/UGATIT-pytorch at commit b8c4251 (MIT licence as GitHub lists it;
the research notes do not record it), `main.py` defaults for selfie2anime. Written from the facts in
shared/research/official/ugatit.md; attribute names and Sequential indices follow the official classes so
that state_dict keys (`DownBlock.12.conv_block.1.weight`, `UpBlock1_3.norm2.rho`, `FC.0.weight`,
`model.16.weight_orig`, ...) equal the official ones. The paper's numbers come from the TensorFlow release
(taki0112/UGATIT), whose graph differs; it is out of scope here.

Presets: `paper` is the full model (278,959,808 parameters per generator, 268M of them in the MLP that
reads the flattened 64x64x256 bottleneck, so it only works at 256x256); `paper_light` is the official
`--light True` model (10,589,888 per generator), which `DEFAULT_PRESETS` makes the baseline of runs on
real data that name no preset.

Deviations from the official code, each for a reason:
- The learning rate decays as a function of the step (`lr_factor`) instead of being decremented in place;
  the values are the official ones (constant for the first half, then linear to 0 at the last step).
- The fakes shown to the discriminators are computed under `torch.no_grad`: the official D step builds a
  generator graph it never uses (its gradients are zeroed before the G step), so results are identical.
- Adam is PyTorch's fused implementation (same update up to float rounding): faster, and it avoids the
  temporary copies of all gradients that the default implementation makes (1 GB for the full model).
- Training length is in epochs of the harness: 294.12 epochs of selfie2anime's 3,400 images per domain at
  batch 1 are the official 1,000,000 iterations.
- The constructor rejects image sizes at which a discriminator's last reflection pad would be larger than
  its feature map (the official code fails there with a PyTorch padding error): 96 px at least for paper.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

from methods.base import (
    Batch,
    ConfigError,
    Direction,
    Method,
    MethodConfig,
    Networks,
    Update,
    check_direction,
    newest_file,
    only_file,
)


@dataclass(frozen=True)
class UGATITConfig(MethodConfig):
    image_size: int = 256  # img_size 256
    load_size: int = 286  # Resize(img_size + 30) before RandomCrop(img_size)
    flip: bool = True  # RandomHorizontalFlip in the training transform
    batch_size: int = 1  # batch_size 1
    epochs: float = 1_000_000 / 3_400  # iteration 1,000,000 over selfie2anime's 3,400 images per domain
    light: bool = False  # light False: the MLP reads the flattened bottleneck (True: its global average)
    ngf: int = 64  # ch 64, generator width
    n_res: int = 4  # n_res 4 encoder blocks and 4 AdaLIN decoder blocks
    ndf: int = 64  # ch 64, discriminator width
    n_layers_global: int = 7  # Discriminator(n_layers=7): 5 stride-2 convs
    n_layers_local: int = 5  # Discriminator(n_layers=5): 3 stride-2 convs
    adv_weight: float = 1.0  # adv_weight 1, LSGAN on patch and CAM logits
    cycle_weight: float = 10.0  # cycle_weight 10
    identity_weight: float = 10.0  # identity_weight 10
    cam_weight: float = 1000.0  # cam_weight 1000
    lr: float = 1e-4  # lr 1e-4 for G and D
    beta1: float = 0.5  # Adam betas (0.5, 0.999)
    beta2: float = 0.999
    weight_decay: float = 1e-4  # weight_decay 1e-4 (Adam's L2 term)
    decay_lr: bool = True  # decay_flag True: lr constant for half the run, then linear to 0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "paper_light": {"light": True},  # main.py --light True, the low-memory official model
        # Light model, narrow and shallow, for 64x64 toyfaces on 2 CPU cores (the demo's ~75 s budget: 250
        # steps at the official batch 1); one stride-2 layer less per discriminator, as 64 px has 4x fewer pixels
        # per side than 256; lr 1e-3 because 250 steps at 1e-4 leave colour noise in the sample grid.
        "tiny": {
            "image_size": 64,
            "load_size": 72,
            "batch_size": 1,
            "epochs": 0.25,
            "light": True,
            "ngf": 16,
            "n_res": 2,
            "ndf": 16,
            "n_layers_global": 6,
            "n_layers_local": 4,
            "lr": 1e-3,
        },
    }
    # Runs on real data that name no preset compare against the light model (the usual U-GAT-IT baseline).
    DEFAULT_PRESETS: ClassVar[dict[str, str]] = {"paper": "paper_light"}


def instance_layer_mix(x: Tensor, rho: Tensor, eps: float) -> Tensor:
    """rho * instance-normalised x + (1 - rho) * layer-normalised x, both with the unbiased variance."""
    x_in = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), keepdim=True) + eps)
    x_ln = (x - x.mean((1, 2, 3), keepdim=True)) / torch.sqrt(x.var((1, 2, 3), keepdim=True) + eps)
    return rho * x_in + (1 - rho) * x_ln


class AdaILN(nn.Module):
    """AdaLIN: the IN/LN mix with a learned per-channel rho (init 0.9), scaled by gamma/beta from the MLP."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.rho = nn.Parameter(torch.full((1, channels, 1, 1), 0.9))

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:  # gamma, beta: (N, C)
        return instance_layer_mix(x, self.rho, self.eps) * gamma[:, :, None, None] + beta[:, :, None, None]


class ILN(nn.Module):
    """LIN of the up-sampling blocks: the IN/LN mix (rho init 0) with its own affine gamma (1) and beta (0)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.rho = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return instance_layer_mix(x, self.rho, self.eps) * self.gamma + self.beta


class ResnetBlock(nn.Module):
    """Encoder residual block with affine-free instance norm; `conv_block` indices match the official keys."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=False),
            nn.InstanceNorm2d(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=False),
            nn.InstanceNorm2d(dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResnetAdaILNBlock(nn.Module):
    """Decoder residual block whose two norms are AdaLIN driven by the same gamma/beta."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=3, bias=False)
        self.norm1 = AdaILN(dim)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, bias=False)
        self.norm2 = AdaILN(dim)

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(self.pad(x)), gamma, beta))
        return x + self.norm2(self.conv2(self.pad(out)), gamma, beta)


def cam_attention(
    x: Tensor, gap_fc: nn.Module, gmp_fc: nn.Module, gap_weight: Tensor, gmp_weight: Tensor
) -> tuple[Tensor, Tensor]:
    """Class activation map attention of G and D.

    Global average and max pooled features go through two bias-free 1-output linears (the CAM logits);
    the feature map is re-weighted channel-wise by each linear's weight row and the two maps concatenated.

    Returns:
        The (N, 2C, h, w) weighted features and the (N, 2) CAM logits [gap, gmp].
    """
    n = x.shape[0]
    gap_logit = gap_fc(F.adaptive_avg_pool2d(x, 1).view(n, -1))  # (N, 1)
    gmp_logit = gmp_fc(F.adaptive_max_pool2d(x, 1).view(n, -1))  # (N, 1)
    weighted = torch.cat([x * gap_weight[:, :, None, None], x * gmp_weight[:, :, None, None]], 1)
    return weighted, torch.cat([gap_logit, gmp_logit], 1)


class ResnetGenerator(nn.Module):
    """Encoder, CAM attention, gamma/beta MLP, AdaLIN residual decoder, LIN up-sampling; bias-free convs.

    Attributes are created in the official order so that state_dict keys come in the official order too.
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 4, img_size: int = 256, light: bool = False) -> None:
        super().__init__()
        self.n_blocks, self.light = n_blocks, light
        dim = ngf * 4  # bottleneck channels after two stride-2 convs
        self.gap_fc = nn.Linear(dim, 1, bias=False)
        self.gmp_fc = nn.Linear(dim, 1, bias=False)
        self.conv1x1 = nn.Conv2d(dim * 2, dim, kernel_size=1, bias=True)
        self.gamma = nn.Linear(dim, dim, bias=False)
        self.beta = nn.Linear(dim, dim, bias=False)
        for i in range(n_blocks):
            setattr(self, f"UpBlock1_{i + 1}", ResnetAdaILNBlock(dim))
        down: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(3, ngf, kernel_size=7, bias=False),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(True),
        ]
        for mult in (1, 2):
            down += [
                nn.ReflectionPad2d(1),
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, bias=False),
                nn.InstanceNorm2d(ngf * mult * 2),
                nn.ReLU(True),
            ]
        down += [ResnetBlock(dim) for _ in range(n_blocks)]
        # Full mode reads the whole (img_size/4)^2 x dim bottleneck: 1,048,576 inputs at 256 px.
        mlp_in = dim if light else (img_size // 4) ** 2 * dim
        fc = [nn.Linear(mlp_in, dim, bias=False), nn.ReLU(True), nn.Linear(dim, dim, bias=False), nn.ReLU(True)]
        up: list[nn.Module] = []
        for mult in (4, 2):
            up += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.ReflectionPad2d(1),
                nn.Conv2d(ngf * mult, ngf * mult // 2, kernel_size=3, bias=False),
                ILN(ngf * mult // 2),
                nn.ReLU(True),
            ]
        up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, kernel_size=7, bias=False), nn.Tanh()]
        self.DownBlock = nn.Sequential(*down)
        self.FC = nn.Sequential(*fc)
        self.UpBlock2 = nn.Sequential(*up)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, 3, H, W) in [-1, 1] -> image (N, 3, H, W), CAM logits (N, 2), heatmap (N, 1, H/4, W/4)."""
        x = self.DownBlock(x)  # (N, 256, 64, 64) at 256 px
        x, cam_logit = cam_attention(x, self.gap_fc, self.gmp_fc, self.gap_fc.weight, self.gmp_fc.weight)
        x = F.relu(self.conv1x1(x))  # (N, 256, 64, 64)
        heatmap = x.sum(1, keepdim=True)
        mlp_in = F.adaptive_avg_pool2d(x, 1) if self.light else x
        style = self.FC(mlp_in.flatten(1))  # (N, 256)
        gamma, beta = self.gamma(style), self.beta(style)
        for i in range(self.n_blocks):
            x = getattr(self, f"UpBlock1_{i + 1}")(x, gamma, beta)
        return self.UpBlock2(x), cam_logit, heatmap


class Discriminator(nn.Module):
    """Spectral-normalised PatchGAN with its own CAM head; returns patch logits, CAM logits and heatmap.

    n_layers 7 (global): 5 stride-2 convs, 2048 channels at the CAM; n_layers 5 (local): 3 stride-2, 512.
    """

    def __init__(self, ndf: int = 64, n_layers: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            spectral_norm(nn.Conv2d(3, ndf, kernel_size=4, stride=2, bias=True)),
            nn.LeakyReLU(0.2, True),
        ]
        for i in range(1, n_layers - 2):
            mult = 2 ** (i - 1)
            layers += [
                nn.ReflectionPad2d(1),
                spectral_norm(nn.Conv2d(ndf * mult, ndf * mult * 2, kernel_size=4, stride=2, bias=True)),
                nn.LeakyReLU(0.2, True),
            ]
        mult = 2 ** (n_layers - 3)
        layers += [
            nn.ReflectionPad2d(1),
            spectral_norm(nn.Conv2d(ndf * mult, ndf * mult * 2, kernel_size=4, stride=1, bias=True)),
            nn.LeakyReLU(0.2, True),
        ]
        dim = ndf * mult * 2
        self.gap_fc = spectral_norm(nn.Linear(dim, 1, bias=False))
        self.gmp_fc = spectral_norm(nn.Linear(dim, 1, bias=False))
        self.conv1x1 = nn.Conv2d(dim * 2, dim, kernel_size=1, bias=True)  # the one layer without spectral norm
        self.pad = nn.ReflectionPad2d(1)
        self.conv = spectral_norm(nn.Conv2d(dim, 1, kernel_size=4, bias=False))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, 3, 256, 256) -> patch logits (N, 1, 6, 6) global / (N, 1, 30, 30) local, CAM (N, 2), heatmap."""
        x = self.model(x)
        # The official code re-weights the map by `parameters()[0]`, the un-normalised `weight_orig`,
        # while the logits use the spectral-normalised weight.
        x, cam_logit = cam_attention(x, self.gap_fc, self.gmp_fc, self.gap_fc.weight_orig, self.gmp_fc.weight_orig)
        x = F.leaky_relu(self.conv1x1(x), 0.2)
        heatmap = x.sum(1, keepdim=True)
        return self.conv(self.pad(x)), cam_logit, heatmap


def lsgan_loss(logits: Tensor, real: bool) -> Tensor:
    """Least-squares GAN loss: MSE of the logits to 1 (real) or 0 (fake)."""
    return F.mse_loss(logits, torch.full_like(logits, 1.0 if real else 0.0))


def cam_loss(cam_logit: Tensor, from_source: bool) -> Tensor:
    """BCE on a generator's CAM logits: 1 for images of its source domain, 0 for its target domain."""
    return F.binary_cross_entropy_with_logits(cam_logit, torch.full_like(cam_logit, 1.0 if from_source else 0.0))


def discriminator_loss(global_d: nn.Module, local_d: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """LSGAN real/fake terms on the patch and CAM logits of the global and the local discriminator."""
    total = real.new_zeros(())
    for d in (global_d, local_d):
        real_logit, real_cam, _ = d(real)
        fake_logit, fake_cam, _ = d(fake)
        total = total + lsgan_loss(real_logit, True) + lsgan_loss(fake_logit, False)
        total = total + lsgan_loss(real_cam, True) + lsgan_loss(fake_cam, False)
    return total


def generator_adversarial_loss(global_d: nn.Module, local_d: nn.Module, fake: Tensor) -> Tensor:
    """LSGAN "real" terms of a fake on the patch and CAM logits of both discriminators."""
    total = fake.new_zeros(())
    for d in (global_d, local_d):
        logit, cam_logit, _ = d(fake)
        total = total + lsgan_loss(logit, True) + lsgan_loss(cam_logit, True)
    return total


def min_image_size(n_layers: int) -> int:
    """Smallest side a Discriminator(n_layers) accepts: its stride-1 conv must leave a map of at least 2 px."""
    return 3 * 2 ** (n_layers - 2)


class UGATIT(Method):
    """Generators genA2B, genB2A; discriminators disGA/disLA (judge domain A) and disGB/disLB (domain B)."""

    name = "ugatit"
    multimodal = False
    Config = UGATITConfig
    networks = ("genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB")

    def __init__(self, config: UGATITConfig) -> None:
        super().__init__(config)
        self.config: UGATITConfig = config
        if config.image_size % 4:
            raise ConfigError(f"ugatit image_size must be a multiple of 4, got {config.image_size}")
        n_layers = max(config.n_layers_global, config.n_layers_local)
        if min(config.n_layers_global, config.n_layers_local) < 3 or config.image_size < min_image_size(n_layers):
            raise ConfigError(
                f"ugatit discriminators need n_layers >= 3 and image_size >= {min_image_size(max(n_layers, 3))} "
                f"for n_layers {n_layers}, got image_size {config.image_size}"
            )
        args = (config.ngf, config.n_res, config.image_size, config.light)
        self.genA2B, self.genB2A = ResnetGenerator(*args), ResnetGenerator(*args)
        self.disGA = Discriminator(config.ndf, config.n_layers_global)
        self.disGB = Discriminator(config.ndf, config.n_layers_global)
        self.disLA = Discriminator(config.ndf, config.n_layers_local)
        self.disLB = Discriminator(config.ndf, config.n_layers_local)
        # PyTorch's default initialisation, as the official code.

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        kwargs = {"lr": c.lr, "betas": (c.beta1, c.beta2), "weight_decay": c.weight_decay, "fused": True}
        generators = itertools.chain(self.genA2B.parameters(), self.genB2A.parameters())
        discriminators = itertools.chain(*(getattr(self, n).parameters() for n in ("disGA", "disGB", "disLA", "disLB")))
        return {"G": torch.optim.Adam(generators, **kwargs), "D": torch.optim.Adam(discriminators, **kwargs)}

    def lr_factor(self, step: int, total_steps: int) -> float:
        """Official: from iteration `total // 2 + 1` on, lr drops by lr / (total // 2) per iteration (1-based)."""
        half = max(1, total_steps // 2)
        if not self.config.decay_lr or step + 1 <= half:
            return 1.0
        return max(0.0, 1.0 - (step + 1 - half) / half)

    def training_step(self, nets: Networks, batch: Batch, step: int, rng: torch.Generator) -> Iterator[Update]:
        c = self.config
        real_A, real_B = batch.a, batch.b  # no random draws: the step's randomness is the data's augmentation

        # Discriminators first, as the official loop.
        with torch.no_grad():
            fake_A2B = nets.genA2B(real_A)[0]
            fake_B2A = nets.genB2A(real_B)[0]
        d_losses = {
            "D_A": c.adv_weight * discriminator_loss(nets.disGA, nets.disLA, real_A, fake_B2A),
            "D_B": c.adv_weight * discriminator_loss(nets.disGB, nets.disLB, real_B, fake_A2B),
        }
        yield Update("D", d_losses["D_A"] + d_losses["D_B"], d_losses)

        # Generators: adversarial (patch + CAM, both discriminators), cycle, identity, CAM classification.
        # As in the official loop, D keeps requires_grad (toggling it breaks DDP): the gradients this loss
        # leaves on D are cleared before the next D update.
        fake_A2B, cam_A2B, _ = nets.genA2B(real_A)
        fake_B2A, cam_B2A, _ = nets.genB2A(real_B)
        fake_A2B2A = nets.genB2A(fake_A2B)[0]
        fake_B2A2B = nets.genA2B(fake_B2A)[0]
        fake_A2A, cam_A2A, _ = nets.genB2A(real_A)
        fake_B2B, cam_B2B, _ = nets.genA2B(real_B)
        g_losses = {
            "G_adv_A": c.adv_weight * generator_adversarial_loss(nets.disGA, nets.disLA, fake_B2A),
            "G_adv_B": c.adv_weight * generator_adversarial_loss(nets.disGB, nets.disLB, fake_A2B),
            "G_cycle_A": c.cycle_weight * F.l1_loss(fake_A2B2A, real_A),
            "G_cycle_B": c.cycle_weight * F.l1_loss(fake_B2A2B, real_B),
            "G_identity_A": c.identity_weight * F.l1_loss(fake_A2A, real_A),
            "G_identity_B": c.identity_weight * F.l1_loss(fake_B2B, real_B),
            # genB2A's source is B: its CAM says 1 on real B, 0 on real A (the identity pass); likewise genA2B.
            "G_cam_A": c.cam_weight * (cam_loss(cam_B2A, True) + cam_loss(cam_A2A, False)),
            "G_cam_B": c.cam_weight * (cam_loss(cam_A2B, True) + cam_loss(cam_B2B, False)),
        }
        yield Update("G", sum(g_losses.values()), g_losses)
        self.clip_rho()  # after the generator step

    @torch.no_grad()
    def clip_rho(self) -> None:
        """The official RhoClipper(0, 1), applied to every AdaLIN and LIN after each generator step."""
        for attr in ("genA2B", "genB2A"):
            for module in getattr(self, attr).modules():
                if isinstance(module, AdaILN | ILN):
                    module.rho.clamp_(0.0, 1.0)

    @torch.no_grad()
    def translate(
        self,
        x: Tensor,
        direction: Direction = "a2b",
        *,
        style: Tensor | None = None,
        reference: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        net = self.genA2B if check_direction(direction) == "a2b" else self.genB2A
        size = self.config.image_size
        if not self.config.light and tuple(x.shape[-2:]) != (size, size):
            raise ValueError(f"the full U-GAT-IT generator only takes {size}x{size} images, got {tuple(x.shape)}")
        return net(x)[0].clamp(-1, 1)  # deterministic: no style input

    def translation_networks(self, direction: Direction) -> tuple[str, ...]:
        return ("genA2B",) if check_direction(direction) == "a2b" else ("genB2A",)

    official_files = ("*_params_*.pt",)

    def pick_official(self, names: list[str]) -> list[str]:
        """The newest `<dataset>_params_<iteration>.pt` of a results folder."""
        return newest_file(names, r"_params_(\d+)\.pt$")

    def convert_official(
        self, files: dict[str, Any], direction: Direction | None = None
    ) -> dict[str, dict[str, Tensor]]:
        """A UGATIT-pytorch checkpoint (`<dataset>_params_<step>.pt`): one dict of the six state_dicts."""
        name, state = only_file(files, "U-GAT-IT")
        missing = [n for n in self.networks if not isinstance(state, dict) or n not in state]
        if missing:
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"{name} is not a UGATIT-pytorch checkpoint: it lacks {', '.join(missing)} "
                f"(expected a dict with keys {', '.join(self.networks)}; found {found})"
            )
        return {attr: state[attr] for attr in self.networks}
