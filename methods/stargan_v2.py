"""StarGAN v2: Diverse Image Synthesis for Multiple Domains.

Choi, Uh, Yoo, Ha, CVPR 2020, arXiv:1912.01865.

    @inproceedings{choi2020starganv2,
      title={StarGAN v2: Diverse Image Synthesis for Multiple Domains},
      author={Yunjey Choi and Youngjung Uh and Jaejun Yoo and Jung-Woo Ha},
      booktitle={CVPR}, year={2020}}

Official code: https://github.com/clovaai/stargan-v2 at commit 875b70a (CC BY-NC 4.0 licence), `main.py`
defaults with `num_domains 2` and `w_hpf 0` (the AFHQ recipe: no face-landmark network). Written from the
facts in shared/research/official/stargan_v2.md; attribute names and Sequential indices follow the official
classes so that state_dict keys (`encode.0.conv1.weight`, `decode.3.norm1.fc.weight`, `unshared.1.6.bias`,
`main.10.weight`, ...) equal the released ones.

Domains: the dataset's A is domain 0 and B is domain 1. Each training step uses every image of the batch
as a source: sources = cat(A, B) with labels (0..0, 1..1) and target labels the other domain; the two
references of a source (for the reference-guided step and its diversity term) are two different images
(when N > 1) of the target domain from the same batch, paired by a random permutation.

Deviations from the official code, each for a reason:
- Targets are always the other domain; the official reference loader draws the target domain at random,
  so half of its 2-domain pairs are same-domain translations. The benchmark evaluates only A->B and B->A.
- References come from the current batch (after augmentation) instead of a separate reference loader: the
  harness yields one unpaired batch per step. With batch size 1 both references are the same image, so the
  reference-guided diversity term is zero.
- `batch_size` counts images per domain; a step has 2 x batch_size sources, so paper = 4 gives the
  official batch of 8. Training length is in epochs of the harness: 117.647 epochs of selfie2anime's
  3,400 images per domain at batch 4 are the official 100,000 iterations.
- The random resized crop (p 0.5, scale 0.8-1.0, ratio 0.9-1.1) runs inside `training_step` on the already
  resized batch, per sample; the official crops the full-resolution file before resizing. Resize and
  horizontal flip are the harness's (load_size = image_size: no extra crop).
- Training randomness (crops, reference pairing, z) comes from the step's generator that the training loop
  passes, a function of (seed, step), so a resumed run continues exactly.
- The first conv width is the field `base_dim` (official: 2**14 // img_size, 64 at 256) so that small
  presets can narrow the networks; the paper preset gives the official value.
- The EMA copies start as copies of the He-initialised networks; in the official solver they are deep
  copies made before `he_init`, so they start from PyTorch's default init (irrelevant after 100k steps at
  beta 0.999, but it would bias short runs).
- R1 is taken on a detached copy of the real images, so the generator steps do not also backpropagate
  into the input batch (the official sets requires_grad on x_real itself; gradients are identical).
- The second output of the diversity term and its style are computed under no_grad instead of being
  detached afterwards: the same values and gradients, without building a graph that is thrown away.
- Before each backward pass the training loop clears the gradients of the optimisers that phase steps; the
  official `_reset_grad` clears all four. The same updates: a gradient a loss leaves on another network is
  cleared before that network's own step. No network's requires_grad is toggled (it breaks
  DistributedDataParallel).
- w_hpf = 0 only: the high-pass path (w_hpf > 0, released CelebA-HQ model) needs the FAN face-landmark
  network; `load_official` names that case instead of failing with a shape dump.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2.functional import resized_crop

from methods.base import (
    Average,
    Batch,
    Direction,
    Method,
    MethodConfig,
    Networks,
    Update,
    check_direction,
    newest_file,
    only_file,
)

NUM_DOMAINS = 2  # the dataset's A (0) and B (1)
RRC_SCALE = (0.8, 1.0)  # official RandomResizedCrop scale
RRC_RATIO = (0.9, 1.1)  # official RandomResizedCrop ratio
SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class StarGANv2Config(MethodConfig):
    image_size: int = 256  # img_size 256
    load_size: int = 256  # transforms.Resize([img_size, img_size]): no crop besides the random resized crop
    flip: bool = True  # RandomHorizontalFlip
    batch_size: int = 4  # per domain: 2 x 4 sources = the official batch_size 8
    epochs: float = 117.647  # total_iters 100,000 at 850 steps per epoch (selfie2anime, 3,400 per domain)
    base_dim: int = 64  # first conv width: 2**14 // img_size in the official model
    max_conv_dim: int = 512  # max_conv_dim 512
    latent_dim: int = 16  # latent_dim 16 (z)
    hidden_dim: int = 512  # mapping network width (hard-coded 512 officially)
    style_dim: int = 64  # style_dim 64
    lambda_reg: float = 1.0  # lambda_reg 1: R1 penalty on real images
    lambda_sty: float = 1.0  # lambda_sty 1: style reconstruction
    lambda_ds: float = 1.0  # lambda_ds 1 (CelebA-HQ; AFHQ uses 2): diversity sensitivity
    lambda_cyc: float = 1.0  # lambda_cyc 1: cycle consistency
    ds_iter: int = 100_000  # ds_iter 100,000: lambda_ds decays linearly to 0 over these steps
    lr: float = 1e-4  # lr 1e-4 for G, E and D
    f_lr: float = 1e-6  # f_lr 1e-6 for the mapping network
    beta1: float = 0.0  # beta1 0.0
    beta2: float = 0.99  # beta2 0.99
    weight_decay: float = 1e-4  # weight_decay 1e-4 (Adam's L2 term)
    ema_beta: float = 0.999  # moving_average beta 0.999
    rrc_prob: float = 0.5  # randcrop_prob 0.5

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # 64x64 toyfaces on 2 CPU cores in about a minute (demo: 1,000 images per domain -> 225 steps of
        # 4 sources). Narrow networks; a 10x learning rate with a 10x R1 weight to keep D smooth, and a short
        # EMA, so that a few hundred steps give a recognisable translation attempt.
        "tiny": {
            "image_size": 64,
            "load_size": 64,
            "batch_size": 2,
            "epochs": 0.45,
            "base_dim": 8,
            "max_conv_dim": 64,
            "hidden_dim": 64,
            "style_dim": 16,
            "ds_iter": 225,
            "lambda_reg": 10.0,
            "lr": 1e-3,
            "f_lr": 1e-5,
            "ema_beta": 0.9,
        },
    }


class ResBlk(nn.Module):
    """Pre-activation residual block of the encoder, style encoder and discriminator; output scaled by 1/sqrt(2)."""

    def __init__(self, dim_in: int, dim_out: int, normalize: bool = False, downsample: bool = False) -> None:
        super().__init__()
        self.normalize, self.downsample = normalize, downsample
        self.learned_sc = dim_in != dim_out
        # Attribute order matches the official state_dict order.
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.conv1x1(x) if self.learned_sc else x
        h = self.norm1(x) if self.normalize else x
        h = self.conv1(F.leaky_relu(h, 0.2))
        if self.downsample:
            shortcut, h = F.avg_pool2d(shortcut, 2), F.avg_pool2d(h, 2)
        h = self.norm2(h) if self.normalize else h
        h = self.conv2(F.leaky_relu(h, 0.2))
        return (shortcut + h) / SQRT2


class AdaIN(nn.Module):
    """Instance norm without affine, then (1 + gamma) * x + beta with gamma, beta predicted from the style."""

    def __init__(self, style_dim: int, num_features: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        gamma, beta = self.fc(s)[:, :, None, None].chunk(2, dim=1)  # (N, C, 1, 1) each
        return (1 + gamma) * self.norm(x) + beta


class AdainResBlk(nn.Module):
    """Decoder block: AdaIN -> LReLU -> [nearest x2] -> conv -> AdaIN -> LReLU -> conv, plus the skip (w_hpf 0)."""

    def __init__(self, dim_in: int, dim_out: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        h = F.leaky_relu(self.norm1(x, s), 0.2)
        if self.upsample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        shortcut = self.conv1x1(x) if self.learned_sc else x
        h = self.conv2(F.leaky_relu(self.norm2(self.conv1(h), s), 0.2))
        return (h + shortcut) / SQRT2


class Generator(nn.Module):
    """from_rgb -> downsampling ResBlks (instance norm) -> AdaIN ResBlks back up -> to_rgb; no tanh."""

    def __init__(self, image_size: int, base_dim: int, max_conv_dim: int, style_dim: int) -> None:
        super().__init__()
        dim_in = base_dim
        self.from_rgb = nn.Conv2d(3, dim_in, 3, 1, 1)
        self.encode = nn.ModuleList()
        self.decode = nn.ModuleList()  # decode[0] is the block nearest the bottleneck
        self.to_rgb = nn.Sequential(nn.InstanceNorm2d(dim_in, affine=True), nn.LeakyReLU(0.2), nn.Conv2d(dim_in, 3, 1))
        dim_out = dim_in
        for _ in range(int(math.log2(image_size)) - 4):  # 4 down/up blocks at 256 px: 16x16 bottleneck
            dim_out = min(dim_in * 2, max_conv_dim)
            self.encode.append(ResBlk(dim_in, dim_out, normalize=True, downsample=True))
            self.decode.insert(0, AdainResBlk(dim_out, dim_in, style_dim, upsample=True))
            dim_in = dim_out
        for _ in range(2):  # bottleneck blocks
            self.encode.append(ResBlk(dim_out, dim_out, normalize=True))
            self.decode.insert(0, AdainResBlk(dim_out, dim_out, style_dim))

    def forward(self, x: Tensor, s: Tensor) -> Tensor:  # (N, 3, H, W), (N, style_dim) -> (N, 3, H, W) unbounded
        x = self.from_rgb(x)
        for block in self.encode:
            x = block(x)
        for block in self.decode:
            x = block(x, s)
        return self.to_rgb(x)


def pick_domain(per_domain: Tensor, y: Tensor) -> Tensor:
    """(N, K, ...) outputs of every domain head -> (N, ...) the head of domain y[i] for sample i."""
    return per_domain[torch.arange(y.shape[0], device=y.device), y]


class MappingNetwork(nn.Module):
    """z -> style code: a shared 4-layer ReLU MLP, then a 4-layer head per domain."""

    def __init__(self, latent_dim: int, hidden_dim: int, style_dim: int, num_domains: int) -> None:
        super().__init__()

        def hidden_layers(n: int) -> list[nn.Module]:  # n x (Linear + ReLU) at the hidden width
            return [m for _ in range(n) for m in (nn.Linear(hidden_dim, hidden_dim), nn.ReLU())]

        self.shared = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(), *hidden_layers(3))
        self.unshared = nn.ModuleList(
            nn.Sequential(*hidden_layers(3), nn.Linear(hidden_dim, style_dim)) for _ in range(num_domains)
        )

    def forward(self, z: Tensor, y: Tensor) -> Tensor:  # (N, latent_dim), (N,) -> (N, style_dim)
        h = self.shared(z)
        return pick_domain(torch.stack([head(h) for head in self.unshared], dim=1), y)


def conv_trunk(image_size: int, base_dim: int, max_conv_dim: int) -> tuple[list[nn.Module], int]:
    """The trunk shared by the style encoder and the discriminator: down to 4x4, then a 4x4 valid conv to 1x1."""
    dim_in = base_dim
    blocks: list[nn.Module] = [nn.Conv2d(3, dim_in, 3, 1, 1)]
    dim_out = dim_in
    for _ in range(int(math.log2(image_size)) - 2):  # 6 blocks at 256 px
        dim_out = min(dim_in * 2, max_conv_dim)
        blocks.append(ResBlk(dim_in, dim_out, downsample=True))
        dim_in = dim_out
    blocks += [nn.LeakyReLU(0.2), nn.Conv2d(dim_out, dim_out, 4, 1, 0), nn.LeakyReLU(0.2)]
    return blocks, dim_out


class StyleEncoder(nn.Module):
    """Image -> style code: the conv trunk, then a linear head per domain."""

    def __init__(self, image_size: int, base_dim: int, max_conv_dim: int, style_dim: int, num_domains: int) -> None:
        super().__init__()
        blocks, dim_out = conv_trunk(image_size, base_dim, max_conv_dim)
        self.shared = nn.Sequential(*blocks)
        self.unshared = nn.ModuleList(nn.Linear(dim_out, style_dim) for _ in range(num_domains))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:  # (N, 3, S, S), (N,) -> (N, style_dim)
        h = self.shared(x).flatten(1)  # (N, dim_out)
        return pick_domain(torch.stack([head(h) for head in self.unshared], dim=1), y)


class Discriminator(nn.Module):
    """Multi-task discriminator: the conv trunk, then a 1x1 conv with one real/fake logit per domain."""

    def __init__(self, image_size: int, base_dim: int, max_conv_dim: int, num_domains: int) -> None:
        super().__init__()
        blocks, dim_out = conv_trunk(image_size, base_dim, max_conv_dim)
        self.main = nn.Sequential(*blocks, nn.Conv2d(dim_out, num_domains, 1, 1, 0))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:  # (N, 3, S, S), (N,) -> (N,) logits of domain y
        return pick_domain(self.main(x).flatten(1), y)


def he_init(module: nn.Module) -> None:
    """Official `he_init`: Kaiming normal (fan_in, ReLU gain) on conv and linear weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def adversarial_loss(logits: Tensor, real: bool) -> Tensor:
    """Non-saturating GAN loss: binary cross-entropy of the logits against 1 (real) or 0 (fake)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


def r1_penalty(d_out: Tensor, x_in: Tensor) -> Tensor:
    """Zero-centred gradient penalty on real images: 0.5 * ||dD/dx||^2 summed per image, averaged."""
    (grad,) = torch.autograd.grad(d_out.sum(), x_in, create_graph=True)
    return 0.5 * grad.pow(2).flatten(1).sum(1).mean()


def crop_box(height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params (10 tries, else the whole image) drawing from `generator`."""
    for _ in range(10):
        area = height * width * float(torch.empty(()).uniform_(*RRC_SCALE, generator=generator))
        ratio = math.exp(float(torch.empty(()).uniform_(*map(math.log, RRC_RATIO), generator=generator)))
        box_w, box_h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < box_w <= width and 0 < box_h <= height:
            top = int(torch.randint(0, height - box_h + 1, (), generator=generator))
            left = int(torch.randint(0, width - box_w + 1, (), generator=generator))
            return top, left, box_h, box_w
    return 0, 0, height, width  # torchvision's fallback for a square image and ratios around 1


def random_resized_crop(images: Tensor, prob: float, generator: torch.Generator) -> Tensor:
    """Official augmentation: with probability `prob` per image a random resized crop back to the same size."""
    height, width = images.shape[-2:]
    out = []
    for image in images:
        if float(torch.rand((), generator=generator)) < prob:
            image = resized_crop(image, *crop_box(height, width, generator), [height, width], antialias=True)
        out.append(image)
    return torch.stack(out)


class StarGANv2(Method):
    """One generator for both directions, steered by style codes from a mapping network or a style encoder."""

    name = "stargan_v2"
    multimodal = True
    Config = StarGANv2Config
    networks = (
        "generator",
        "mapping_network",
        "style_encoder",
        "discriminator",
        "generator_ema",
        "mapping_network_ema",
        "style_encoder_ema",
    )
    # R1 differentiates the discriminator's gradient (double backward), which compiled graphs do not support
    # (aot_autograd, torch 2.14.1: "does not currently support double backward").
    not_compilable = "its R1 penalty needs double backward, which torch.compile does not support"

    def __init__(self, config: StarGANv2Config) -> None:
        super().__init__(config)
        self.config: StarGANv2Config = config
        c = config
        self.generator = Generator(c.image_size, c.base_dim, c.max_conv_dim, c.style_dim)
        self.mapping_network = MappingNetwork(c.latent_dim, c.hidden_dim, c.style_dim, NUM_DOMAINS)
        self.style_encoder = StyleEncoder(c.image_size, c.base_dim, c.max_conv_dim, c.style_dim, NUM_DOMAINS)
        self.discriminator = Discriminator(c.image_size, c.base_dim, c.max_conv_dim, NUM_DOMAINS)
        for network in (self.generator, self.mapping_network, self.style_encoder, self.discriminator):
            he_init(network)
        # The EMA copies are what translate() uses and what the official *_nets_ema.ckpt holds.
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.mapping_network_ema = copy.deepcopy(self.mapping_network).requires_grad_(False)
        self.style_encoder_ema = copy.deepcopy(self.style_encoder).requires_grad_(False)

    # -- training ---------------------------------------------------------------------------------
    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config

        def adam(network: nn.Module, lr: float) -> torch.optim.Optimizer:
            return torch.optim.Adam(network.parameters(), lr, (c.beta1, c.beta2), weight_decay=c.weight_decay)

        return {
            "generator": adam(self.generator, c.lr),
            "mapping_network": adam(self.mapping_network, c.f_lr),
            "style_encoder": adam(self.style_encoder, c.lr),
            "discriminator": adam(self.discriminator, c.lr),
        }

    def lambda_ds_at(self, step: int) -> float:
        """Diversity-sensitivity weight at `step`: linear from lambda_ds to 0 over ds_iter steps, then 0."""
        return self.config.lambda_ds * max(0.0, 1.0 - step / self.config.ds_iter)

    def phases(self) -> dict[str, tuple[str, ...]]:
        """The official order: D against latent- then reference-guided fakes; the latent-guided generator
        step updates G, F and E, the reference-guided one only G."""
        mapped = ("generator", "mapping_network", "style_encoder")
        return {
            "D_latent": ("discriminator",),
            "D_ref": ("discriminator",),
            "G_latent": mapped,
            "G_ref": ("generator",),
        }

    def averages(self) -> tuple[Average, ...]:
        trained = ("generator", "mapping_network", "style_encoder")
        return tuple(Average(f"{name}_ema", name, self.config.ema_beta) for name in trained)

    def training_step(self, nets: Networks, batch: Batch, step: int, rng: torch.Generator) -> Iterator[Update]:
        c = self.config
        n = batch.a.shape[0]
        images_a = random_resized_crop(batch.a, c.rrc_prob, rng) if c.rrc_prob > 0 else batch.a
        images_b = random_resized_crop(batch.b, c.rrc_prob, rng) if c.rrc_prob > 0 else batch.b
        device = images_a.device
        x_real = torch.cat([images_a, images_b])  # (2N, 3, H, W): every image is a source
        y_org = torch.arange(NUM_DOMAINS, device=device).repeat_interleave(n)  # (2N,) 0..0 1..1
        y_trg = 1 - y_org  # the other domain
        # References of the target domain: a random permutation, and its roll for a different second one.
        perm_b, perm_a = torch.randperm(n, generator=rng).to(device), torch.randperm(n, generator=rng).to(device)
        x_ref = torch.cat([images_b[perm_b], images_a[perm_a]])
        x_ref2 = torch.cat([images_b[perm_b.roll(1)], images_a[perm_a.roll(1)]])
        z_trg = torch.randn(2 * n, c.latent_dim, generator=rng).to(device)
        z_trg2 = torch.randn(2 * n, c.latent_dim, generator=rng).to(device)
        lambda_ds = self.lambda_ds_at(step)

        def target_style(mode: str, z: Tensor, x_ref: Tensor) -> Tensor:
            """Latent-guided (mapping network on z) or reference-guided (style encoder on x_ref) styles."""
            return nets.mapping_network(z, y_trg) if mode == "latent" else nets.style_encoder(x_ref, y_trg)

        # Discriminator: once against latent-guided fakes, once against reference-guided fakes.
        for mode in ("latent", "ref"):
            with torch.no_grad():
                s_trg = target_style(mode, z_trg, x_ref)
            x_in = x_real.detach().requires_grad_(True)  # for the R1 gradient
            out = nets.discriminator(x_in, y_org)
            d_losses = {"real": adversarial_loss(out, True), "reg": r1_penalty(out, x_in)}
            with torch.no_grad():
                x_fake = nets.generator(x_in, s_trg)
            d_losses["fake"] = adversarial_loss(nets.discriminator(x_fake, y_trg), False)
            loss = d_losses["real"] + d_losses["fake"] + c.lambda_reg * d_losses["reg"]
            yield Update(f"D_{mode}", loss, {f"D_{mode}_{k}": v for k, v in d_losses.items()})

        # Generator: adversarial, style reconstruction, diversity sensitivity (subtracted), cycle.
        for mode in ("latent", "ref"):
            s_trg = target_style(mode, z_trg, x_ref)
            with torch.no_grad():  # the second style only feeds the detached second output
                s_trg2 = target_style(mode, z_trg2, x_ref2)
            x_fake = nets.generator(x_real, s_trg)
            g_losses = {"adv": adversarial_loss(nets.discriminator(x_fake, y_trg), True)}
            g_losses["sty"] = (nets.style_encoder(x_fake, y_trg) - s_trg).abs().mean()
            with torch.no_grad():  # the official detaches this output; building no graph gives the same gradients
                x_fake2 = nets.generator(x_real, s_trg2)
            g_losses["ds"] = (x_fake - x_fake2).abs().mean()
            x_rec = nets.generator(x_fake, nets.style_encoder(x_real, y_org))
            g_losses["cyc"] = (x_rec - x_real).abs().mean()
            loss = g_losses["adv"] + c.lambda_sty * g_losses["sty"] - lambda_ds * g_losses["ds"]
            logs: dict[str, Tensor | float] = {f"G_{mode}_{k}": v for k, v in g_losses.items()}
            if mode == "ref":
                logs["lambda_ds"] = lambda_ds
            yield Update(f"G_{mode}", loss + c.lambda_cyc * g_losses["cyc"], logs)

    # -- inference --------------------------------------------------------------------------------
    def sample_style(self, n: int, direction: Direction, generator: torch.Generator | None = None) -> Tensor:
        """Latent-guided styles: z ~ N(0, I) from `generator` through the EMA mapping network, (n, style_dim)."""
        target = int(check_direction(direction) == "a2b")  # a2b: domain B (1), b2a: domain A (0)
        device = next(self.mapping_network_ema.parameters()).device
        z_device = generator.device if generator is not None else device
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=z_device).to(device)
        with torch.no_grad():
            return self.mapping_network_ema(z, torch.full((n,), target, device=device))

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
        if check_direction(direction) not in self.directions:
            raise ValueError(f"{self.name} does not translate {direction}")
        n, size = x.shape[0], self.config.image_size
        if style is None and reference is not None:  # reference-guided: the EMA style encoder's target head
            if reference.shape[-2:] != (size, size):  # its last 4x4 conv needs the training size
                reference = F.interpolate(reference, size=(size, size), mode="bilinear", antialias=True)
            target = torch.full((reference.shape[0],), int(direction == "a2b"), device=x.device)
            style = self.style_encoder_ema(reference.to(x.device), target)
        elif style is None:  # latent-guided
            style = self.sample_style(n, direction, generator)
        style = style.to(x.device)
        if style.shape[0] == 1 and n > 1:
            style = style.expand(n, -1)  # one style or reference for the whole batch
        if style.shape[0] != n:
            raise ValueError(f"need 1 or {n} styles/references for {n} inputs, got {style.shape[0]}")
        return self.generator_ema(x, style).clamp(-1, 1)  # the generator ends without tanh

    # -- official checkpoints ---------------------------------------------------------------------
    def translation_networks(self, direction: Direction) -> tuple[str, ...]:
        return ("generator_ema", "mapping_network_ema", "style_encoder_ema")  # one generator, both directions

    official_files = ("*_nets_ema.ckpt",)

    def pick_official(self, names: list[str]) -> list[str]:
        """The newest `<iteration>_nets_ema.ckpt` of a checkpoint folder."""
        return newest_file(names, r"^(\d+)_nets_ema")

    def convert_official(
        self, files: dict[str, Any], direction: Direction | None = None
    ) -> dict[str, dict[str, Tensor]]:
        """An official `<step>_nets_ema.ckpt` (generator, mapping_network, style_encoder) or `_nets.ckpt`.

        The generator, mapping network and style encoder go into both the trained networks and their EMA
        copies (translation uses the EMA copies); the discriminator of a `_nets.ckpt` into `discriminator`.
        """
        path, checkpoint = only_file(files, "StarGAN v2")
        needed = ("generator", "mapping_network", "style_encoder")
        if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in needed):
            found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise ValueError(f"{path} is not a StarGAN v2 *_nets_ema.ckpt / *_nets.ckpt: needs {needed}, found {found}")
        if "param_groups" in checkpoint["generator"]:
            raise ValueError(f"{path} holds optimiser states (*_optims.ckpt); load *_nets_ema.ckpt instead")
        self._check_official_layout(checkpoint, path)
        states = {f"{name}{copy}": checkpoint[name] for name in needed for copy in ("", "_ema")}
        if "discriminator" in checkpoint:
            states["discriminator"] = checkpoint["discriminator"]
        return states

    def _check_official_layout(self, checkpoint: dict[str, dict[str, Tensor]], path: str) -> None:
        """Name the two official variants this config cannot hold (domain count, w_hpf) before any shape check."""
        domains = {name: len(_indices(checkpoint[name], "unshared")) for name in ("mapping_network", "style_encoder")}
        if "discriminator" in checkpoint:  # its last conv has one output channel per domain
            weights = [v for k, v in checkpoint["discriminator"].items() if k.endswith("weight")]
            domains["discriminator"] = weights[-1].shape[0]
        for name, count in domains.items():
            if count != NUM_DOMAINS:
                raise ValueError(
                    f"{path}: checkpoint has {count} domains, this config has {NUM_DOMAINS} (A and B): its {name} "
                    f"has {count} domain heads (the released AFHQ model has 3: cat, dog, wild)"
                )
        generator, own = checkpoint["generator"], self.generator_ema
        blocks = len(_indices(generator, "encode"))
        same_width = generator.get("from_rgb.weight", torch.empty(0)).shape == own.from_rgb.weight.shape
        if "hpf.filter" in generator or (blocks == len(own.encode) + 1 and same_width):
            kernel = generator.get("hpf.filter")  # the official kernel (8 in the centre) divided by w_hpf
            w_hpf = f"={8.0 / float(kernel[1, 1]):g}" if kernel is not None and float(kernel[1, 1]) else ">0"
            raise ValueError(
                f"{path}: checkpoint was trained with w_hpf{w_hpf} (has hpf.filter / extra blocks: {blocks} encoder "
                f"blocks, this config builds {len(own.encode)}), this config has w_hpf=0; the high-pass generator "
                "(released CelebA-HQ model) needs the FAN face-landmark network, which this implementation leaves out"
            )


def _indices(state: dict[str, Tensor], prefix: str) -> set[int]:
    """The module-list indices under `prefix` in a state_dict: {0, 1} for `unshared.0.*` and `unshared.1.*`."""
    return {int(m.group(1)) for k in state if (m := re.match(rf"{prefix}\.(\d+)\.", k))}
