"""GANs N' Roses: Stable, Controllable, Diverse Image to Image Translation (works for videos too!).

Chong, Forsyth, 2021, arXiv:2106.06561.

    @misc{chong2021gans,
      title={GANs N' Roses: Stable, Controllable, Diverse Image to Image Translation (works for videos too!)},
      author={Min Jin Chong and David Forsyth}, year={2021}, eprint={2106.06561}, archivePrefix={arXiv}}

Official code: https://github.com/mchong6/GANsNRoses, branch main at 59bf468 (model.py as of b399138), built on
rosinality/stylegan2-pytorch (MIT); the repository itself ships no licence file. Written from the facts in
shared/research/official/gans_n_roses.md. Module names and indices follow the official classes, so the state_dict
keys (`encoder.stem.1.conv2.0.kernel`, `convs.6.conv.modulation.weight`, `fc.4.fc.bias`, ...) equal the released
`GNR_checkpoint.pt` entry `G_A2B_ema` and the main-branch `Discriminator` / `LatDiscriminator`.

Style is what survives augmentation: each step encodes a batch of augmentations of ONE image and penalises the
batch variance of its style codes; the decoder (StyleGAN2, modulated convolutions) renders a content code with a
style drawn from N(0, I) or encoded from a target-domain image, and a latent discriminator keeps encoded styles
distributed like N(0, I).

Deviations from the official code, each for a reason:
- The learning-rate step decay (x0.5 every 100k of 300k iterations) is expressed in epochs and computed from the
  step, so it scales with the harness's training length (tiny runs).
- The discriminators keep `requires_grad` during the generator update (as in the official code); their stale
  gradients are cleared before their own update (by the training loop). The random picks (which image to augment, style mixing
  permutations, random styles) come from the step's generator instead of numpy's and torch's global RNGs, and
  kornia's augmentation draws from a global RNG seeded from it, so each step's randomness is a function of
  (seed, step) and a resumed run continues exactly.
- Each generator has one `forward(mode, ...)` entry point ("encode" / "decode") instead of calling `encode` and
  `decode` directly, so a DistributedDataParallel wrapper sees every call.
- The harness's loader only normalises (load_size = image_size, no flip); resize-crop-flip happen in the kornia
  augmentation as officially. Kornia's current `RandomAffine` is used with the official arguments (p = 0.5 default).
- The LPIPS VGG trunk is built without a download and filled from the harness's torchvision VGG16 file (the
  official `lpips.LPIPS(net='vgg')` downloads the same ImageNet weights). The `lpips_size` option (paper: off)
  lets the CPU preset compute LPIPS on downscaled images.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.geometry.transform import Resize
from torch import Tensor, nn

from methods.base import (
    Average,
    Batch,
    ConfigError,
    Direction,
    Method,
    MethodConfig,
    Networks,
    Update,
    check_direction,
    only_file,
    seeded_global_rng,
    state_mismatch,
)


@dataclass(frozen=True)
class GNRConfig(MethodConfig):
    image_size: int = 256  # --size 256
    load_size: int = 256  # the official loader only normalises (selfie2anime is 256 px); kornia crops in training_step
    flip: bool = False  # the flip is part of the kornia augmentation (K.RandomHorizontalFlip)
    batch_size: int = 4  # --batch 4
    epochs: float = 300_000 * 4 / 3400  # --iter 300000 at batch 4 over selfie2anime's 3,400 trainA images
    lr_decay_every_epochs: float = 100_000 * 4 / 3400  # StepLR(step_size=100000, gamma=0.5) on G and D
    lr_decay: float = 0.5  # StepLR gamma
    num_down: int = 4  # released generator (inference notebook): 256 px -> content [B, 512, 16, 16]
    n_res: int = 1  # --n_res 1: residual blocks after the encoder stem and styled blocks before the decoder
    latent_dim: int = 8  # --latent_dim 8: style code z
    style_dim: int = 512  # w width, hard-coded style_dim = 512 in Generator
    n_mlp: int = 5  # args.n_mlp = 5 mapping layers
    lr_mlp: float = 0.01  # --lr_mlp 0.01, equalised-lr multiplier of the mapping layers
    channel_base: int = 16384  # channels[res] = min(max_channels, channel_base // res): the official table
    max_channels: int = 512  # table value for 4..32 px
    d_local_size: int = 32  # Discriminator l_branch = make_net_(32): patch logits at 32x32
    d_std_features: int = 128  # Discriminator g_std EqualLinear(8192, 128)
    latent_d_width: int = 256  # LatDiscriminator EqualLinear widths
    lambda_consistency: float = 50.0  # G_con_loss = 50 * (batch variance of A styles + of B styles)
    lambda_cycle_mse: float = 20.0  # G_cycle_loss = 20 * MSE
    lambda_cycle_lpips: float = 10.0  # lpips_loss = 10 * LPIPS(VGG)  ("10 for anime")
    lambda_style_recon: float = 5.0  # G_style_loss = 5 * MSE
    lambda_latent_adv: float = 2.0  # 2 * g_nonsaturating_loss(D_L(...))
    r1_gamma: float = 10.0  # --r1 10
    r1_every: int = 16  # --d_reg_every 16 (lazy R1, scaled by 16)
    lr: float = 2e-3  # --lr 0.002 for G and D
    beta2: float = 0.99  # Adam betas (0, 0.99); D uses 0.99 ** (16 / 17)
    ema_decay: float = 0.999  # accumulate(G_ema, G, decay=0.999)
    aug_degrees: float = 20.0  # K.RandomAffine(degrees=(-20, 20), ...)
    aug_scale: tuple[float, float] = (0.8, 1.2)  # scale=(0.8, 1.2)
    aug_translate: float = 0.1  # translate=(0.1, 0.1)
    aug_shear: float = 0.15  # shear=0.15
    aug_resize: int = 286  # kornia Resize(256 + 30), then K.RandomCrop((256, 256)) and K.RandomHorizontalFlip()
    lpips_size: int = 0  # 0: LPIPS at full resolution (official); else images are resized to this side first
    vgg_standin_ok: bool = False  # whether the LPIPS loss may use a randomly initialised VGG16 trunk

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # 64x64 toyfaces on 2 CPU cores in about a minute: 8 px content, narrow layers, faster EMA.
        "tiny": {
            "image_size": 64,
            "load_size": 64,
            "batch_size": 4,
            "epochs": 0.7,
            "lr_decay_every_epochs": 0.7 / 3,
            "num_down": 3,
            "style_dim": 64,
            "n_mlp": 3,
            "channel_base": 512,
            "max_channels": 64,
            "d_local_size": 32,
            "d_std_features": 32,
            "latent_d_width": 64,
            "ema_decay": 0.9,
            "aug_resize": 72,
            "lpips_size": 32,
            "vgg_standin_ok": True,
        },
    }

    def __post_init__(self) -> None:
        content = self.image_size >> self.num_down
        if self.image_size & (self.image_size - 1) or content < 4 or content << self.num_down != self.image_size:
            raise ConfigError(f"GNR needs a power-of-two image_size with a content map >= 4 px, got {self}")
        if not 8 <= self.d_local_size <= self.image_size or self.image_size < 8:
            raise ConfigError(f"GNR's discriminator needs 8 <= d_local_size <= image_size, got {self.d_local_size}")

    def channels(self, resolution: int) -> int:
        return min(self.max_channels, self.channel_base // resolution)


# -- StyleGAN2 building blocks (pure PyTorch) ------------------------------------------------------------------
def blur_kernel(gain: float = 1.0) -> Tensor:
    """The [1, 3, 3, 1] outer product, normalised to sum 1, times `gain` (4 when it interpolates a 2x upsample)."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = taps[:, None] * taps[None, :]
    return kernel / kernel.sum() * gain


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Insert up-1 zeros after every pixel, pad both axes by `pad`, filter every channel with `kernel`."""
    n, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(n, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = kernel.flip(0, 1).to(x.dtype).expand(c, 1, *kernel.shape).contiguous()  # official convolves
    return F.conv2d(x, weight, groups=c)


class Blur(nn.Module):
    """upfirdn2d with a constant `kernel` buffer (kept under the official name so the checkpoints load)."""

    def __init__(self, pad: tuple[int, int], gain: float = 1.0, up: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", blur_kernel(gain))
        self.pad, self.up = pad, up

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, self.up, self.pad)


def fused_leaky_relu(x: Tensor, bias: Tensor) -> Tensor:
    """Add a per-channel bias, leaky ReLU 0.2, multiply by sqrt(2) (keeps the activation variance)."""
    return F.leaky_relu(x + bias.view(1, -1, *[1] * (x.ndim - 2)), 0.2) * math.sqrt(2)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate: N(0, 1) weights scaled by 1/sqrt(fan_in) at run time."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale, self.stride, self.padding = 1 / math.sqrt(cin * kernel**2), stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class EqualLinear(nn.Module):
    """Linear with equalised lr: weight stored N(0, 1)/lr_mul, used times lr_mul/sqrt(in); bias times lr_mul."""

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(cin), lr_mul, activate

    def forward(self, x: Tensor) -> Tensor:
        if self.activate:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


def conv_layer(cin: int, cout: int, kernel: int, down: bool = False, bias: bool = True, act: bool = True):
    """Official ConvLayer: [Blur (pad so that the stride-2 conv halves the size)], EqualConv2d, [FusedLeakyReLU]."""
    layers: list[nn.Module] = []
    if down:
        p = 2 + (kernel - 1)  # (taps - factor) + (kernel - 1): pads (2, 2) for 3x3, (1, 1) for 1x1
        layers.append(Blur(((p + 1) // 2, p // 2)))
    padding = 0 if down else kernel // 2
    layers.append(EqualConv2d(cin, cout, kernel, 2 if down else 1, padding, bias=bias and not act))
    if act:
        layers.append(FusedLeakyReLU(cout))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Two convs (the second halves the size when `down`), skip conv only when shapes change, sum / sqrt(2)."""

    def __init__(self, cin: int, cout: int, down: bool = True) -> None:
        super().__init__()
        self.conv1 = conv_layer(cin, cin, 3)
        self.conv2 = conv_layer(cin, cout, 3, down=down)
        self.skip = conv_layer(cin, cout, 1, down, bias=False, act=False) if down or cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.skip is None else self.skip(x)
        return (self.conv2(self.conv1(x)) + skip) / math.sqrt(2)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 conv: weight [1, out, in, k, k] scaled per input channel by the style, then demodulated."""

    def __init__(self, cin: int, cout: int, kernel: int, style_dim: int, demodulate: bool = True, up: bool = False):
        super().__init__()
        if up:  # transposed stride-2 conv, then blur: p = (taps - factor) - (kernel - 1)
            p = 2 - (kernel - 1)
            self.blur = Blur(((p + 1) // 2 + 1, p // 2 + 1), gain=4)
        self.weight = nn.Parameter(torch.randn(1, cout, cin, kernel, kernel))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1)
        self.scale, self.demodulate, self.up = 1 / math.sqrt(cin * kernel**2), demodulate, up

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        n, cin, h, wd = x.shape
        k = self.weight.shape[-1]
        weight = self.scale * self.weight * self.modulation(w).view(n, 1, cin, 1, 1)  # (N, out, in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
        x = x.reshape(1, n * cin, h, wd)  # one grouped conv runs every sample with its own weights
        if self.up:
            weight = weight.transpose(1, 2).reshape(n * cin, -1, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=n)
            return self.blur(out.view(n, -1, *out.shape[2:]))
        out = F.conv2d(x, weight.reshape(-1, cin, k, k), padding=k // 2, groups=n)
        return out.view(n, -1, *out.shape[2:])


class StyledConv(nn.Module):
    def __init__(self, cin: int, cout: int, style_dim: int, up: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, style_dim, up=up)
        self.activate = FusedLeakyReLU(cout)  # no noise injection in GNR

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.activate(self.conv(x, w))


class StyledResBlock(nn.Module):
    def __init__(self, channels: int, style_dim: int) -> None:
        super().__init__()
        self.conv1 = StyledConv(channels, channels, style_dim)
        self.conv2 = StyledConv(channels, channels, style_dim)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x, w), w) + x) / math.sqrt(2)


class ToRGB(nn.Module):
    def __init__(self, cin: int, style_dim: int, up: bool = True) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if up:
            self.upsample = Blur((2, 1), gain=4, up=2)
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)

    def forward(self, x: Tensor, w: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, w) + self.bias
        return out if skip is None else out + self.upsample(skip)


# -- GNR networks --------------------------------------------------------------------------------------------------
class Encoder(nn.Module):
    """Stem of downsampling ResBlocks to the content size; 1x1 content head; strided style head to an 8-d code."""

    def __init__(self, c: GNRConfig) -> None:
        super().__init__()
        res, ch = c.image_size, c.channels
        stem: list[nn.Module] = [conv_layer(3, ch(res), 1)]
        for _ in range(c.num_down):
            stem.append(ResBlock(ch(res), ch(res // 2)))
            res //= 2
        stem += [ResBlock(ch(res), ch(res), down=False) for _ in range(c.n_res)]
        self.stem = nn.Sequential(*stem)
        self.content = nn.Sequential(conv_layer(ch(res), ch(res), 1), conv_layer(ch(res), ch(res), 1))
        style: list[nn.Module] = []
        while res > 4:
            style.append(conv_layer(ch(res), ch(res // 2), 3, down=True))
            res //= 2
        style += [nn.Flatten(), EqualLinear(ch(4) * 16, ch(4), activate=True), EqualLinear(ch(4), c.latent_dim)]
        self.style = nn.Sequential(*style)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.stem(x)  # (N, 512, 16, 16) for paper
        return self.content(features), self.style(features)  # content (N, 512, 16, 16), style (N, 8)


class Generator(nn.Module):
    """Encoder plus StyleGAN2 decoder; one w (mapped from the 8-d style) modulates every layer. No tanh."""

    def __init__(self, c: GNRConfig) -> None:
        super().__init__()
        ch, mlp = c.channels, dict(lr_mul=c.lr_mlp, activate=True)
        self.mapping = nn.Sequential(
            EqualLinear(c.latent_dim, c.style_dim, **mlp),
            *[EqualLinear(c.style_dim, c.style_dim, **mlp) for _ in range(c.n_mlp - 1)],
        )
        self.encoder = Encoder(c)
        res = c.image_size >> c.num_down
        self.adain_bottleneck = nn.ModuleList(StyledResBlock(ch(res), c.style_dim) for _ in range(c.n_res))
        self.conv1 = StyledConv(ch(res), ch(res), c.style_dim)
        self.to_rgb1 = ToRGB(ch(res), c.style_dim, up=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        while res < c.image_size:
            self.convs.append(StyledConv(ch(res), ch(res * 2), c.style_dim, up=True))
            self.convs.append(StyledConv(ch(res * 2), ch(res * 2), c.style_dim))
            self.to_rgbs.append(ToRGB(ch(res * 2), c.style_dim))
            res *= 2

    def forward(self, mode: str, x: Tensor, style: Tensor | None = None) -> Any:
        """mode "encode": images -> (content, style); "decode": (content, style z) -> image (unbounded)."""
        if mode == "encode":
            return self.encoder(x)
        w = self.mapping(style)  # (N, style_dim)
        for block in self.adain_bottleneck:
            x = block(x, w)
        x = self.conv1(x, w)
        skip = self.to_rgb1(x, w)
        for up_conv, conv, to_rgb in zip(self.convs[::2], self.convs[1::2], self.to_rgbs):
            x = conv(up_conv(x, w), w)
            skip = to_rgb(x, w, skip)
        return skip  # (N, 3, H, W)


class Discriminator(nn.Module):
    """Three heads: local patch logits, global 8x8 logits, and a logit of the batch's feature spread."""

    def __init__(self, c: GNRConfig) -> None:
        super().__init__()
        ch = c.channels
        self.l_branch = nn.Sequential(*self._trunk(c, c.d_local_size), conv_layer(ch(c.d_local_size), 1, 1, act=False))
        self.g_branch = nn.Sequential(*self._trunk(c, 8))
        self.g_adv = conv_layer(ch(8), 1, 1, act=False)
        self.g_std = nn.Sequential(
            conv_layer(ch(8), ch(4), 3, down=True),
            nn.Flatten(),
            EqualLinear(ch(4) * 16, c.d_std_features, activate=True),
        )
        self.g_final = EqualLinear(c.d_std_features, 1)

    @staticmethod
    def _trunk(c: GNRConfig, out_size: int) -> list[nn.Module]:
        res, layers = c.image_size, [conv_layer(3, c.channels(c.image_size), 1)]
        while res > out_size:
            layers.append(ResBlock(c.channels(res), c.channels(res // 2)))
            res //= 2
        return layers

    def forward(self, x: Tensor) -> list[Tensor]:
        features = self.g_branch(x)  # (N, 512, 8, 8)
        spread = self.g_std(features)  # (N, 128)
        spread = torch.sqrt(spread.var(0, keepdim=True, unbiased=False) + 1e-8).expand(x.shape[0], -1)
        return [self.l_branch(x), self.g_adv(features), self.g_final(spread)]  # (N,1,32,32), (N,1,8,8), (N,1)


class MinibatchStdLinear(nn.Module):
    """Appends the batch-mean feature standard deviation as one feature, then a fused-lReLU linear layer."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.fc = EqualLinear(cin + 1, cout, activate=True)

    def forward(self, x: Tensor) -> Tensor:
        spread = torch.sqrt(x.var(0, unbiased=False) + 1e-8).mean().expand(x.shape[0], 1)
        return self.fc(torch.cat([x, spread], 1))


class LatentDiscriminator(nn.Module):
    """Judges style codes: N(0, I) samples are real, codes encoded from images are fake."""

    def __init__(self, latent_dim: int, width: int = 256) -> None:
        super().__init__()
        hidden = [EqualLinear(width, width, activate=True) for _ in range(3)]
        self.fc = nn.Sequential(
            EqualLinear(latent_dim, width, activate=True),
            *hidden,
            MinibatchStdLinear(width, width),
            EqualLinear(width, 1),
        )

    def forward(self, z: Tensor) -> list[Tensor]:
        return [self.fc(z)]  # one head, (N, 1)


# -- losses ----------------------------------------------------------------------------------------------------------
def d_logistic_loss(real_heads: list[Tensor], fake_heads: list[Tensor]) -> Tensor:
    """Logistic loss summed over the discriminator's heads."""
    return sum(F.softplus(-r).mean() + F.softplus(f).mean() for r, f in zip(real_heads, fake_heads))  # type: ignore


def g_nonsaturating_loss(fake_heads: list[Tensor]) -> Tensor:
    """Non-saturating loss averaged over the heads (official weights (1, 1, 1))."""
    return sum(F.softplus(-f).mean() for f in fake_heads) / len(fake_heads)  # type: ignore[return-value]


def r1_penalty(real_heads: list[Tensor], inputs: Tensor) -> Tensor:
    """Squared gradient norm of each head's mean logit w.r.t. the real inputs, summed over heads."""
    total = inputs.new_zeros(())
    for head in real_heads:
        (grad,) = torch.autograd.grad(head.mean(), inputs, create_graph=True)
        total = total + grad.pow(2).flatten(1).sum(1).mean()
    return total


@functools.cache
def _random_lpips_vgg() -> nn.Module:
    """LPIPS(VGG) with its packaged linear heads and a random trunk, built once (VGG16's classifier init is slow)."""
    import lpips

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(0)  # the stand-in trunk is the same in every run and leaves the global RNG alone
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation notice inside lpips
        return lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)


class GNR(Method):
    """Two encoder-decoder generators (G_A2B, G_B2A) with EMA copies, image discriminators D_A, D_B and D_L."""

    name = "gnr"
    multimodal = True
    Config = GNRConfig
    networks = ("G_A2B", "G_B2A", "D_A", "D_B", "D_L", "G_A2B_ema", "G_B2A_ema")
    # R1 differentiates the discriminator's gradient (double backward), which compiled graphs do not support
    # (aot_autograd, torch 2.14.1: "does not currently support double backward").
    not_compilable = "its R1 penalty needs double backward, which torch.compile does not support"

    def __init__(self, config: GNRConfig) -> None:
        super().__init__(config)
        self.config: GNRConfig = config
        self.G_A2B, self.G_B2A = Generator(config), Generator(config)
        self.D_A, self.D_B = Discriminator(config), Discriminator(config)  # D_A judges domain A images
        self.D_L = LatentDiscriminator(config.latent_dim, config.latent_d_width)
        self.G_A2B_ema = copy.deepcopy(self.G_A2B).requires_grad_(False)
        self.G_B2A_ema = copy.deepcopy(self.G_B2A).requires_grad_(False)
        self.augment = nn.Sequential(  # parameter-free; random parameters per sample from torch's global RNG
            K.RandomAffine(config.aug_degrees, (config.aug_translate,) * 2, config.aug_scale, config.aug_shear),
            Resize(config.aug_resize),
            K.RandomCrop((config.image_size, config.image_size)),
            K.RandomHorizontalFlip(),
        )
        self._frozen: dict[str, nn.Module] = {}  # the LPIPS network: not a sub-network, never trained or saved

    @classmethod
    def pretrained_networks(cls, config: MethodConfig) -> dict[str, bool]:
        return {"vgg16": bool(getattr(config, "vgg_standin_ok", False))}

    def attach_pretrained(self, name: str, state: dict[str, Tensor] | None) -> None:
        """Build LPIPS(VGG) without downloads; copy torchvision VGG16 `features.N.*` weights into its trunk."""
        if name != "vgg16":
            super().attach_pretrained(name, state)
        perceptual = copy.deepcopy(_random_lpips_vgg())
        if state is not None:
            if not isinstance(state, dict):
                raise ValueError(f"the vgg16 weights are a {type(state).__name__}, not a torchvision VGG16 state_dict")
            features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
            trunk = perceptual.net  # slice1..slice5 keep torchvision's child indices: slice2.5.weight = features.5
            missing = [k for k in trunk.state_dict() if k.split(".", 1)[1] not in features]
            if missing:
                raise ValueError(
                    f"the vgg16 weights are not a torchvision VGG16 state_dict: no features.* for {missing[:3]}"
                )
            trunk.load_state_dict({k: features[k.split(".", 1)[1]] for k in trunk.state_dict()})
        self._frozen["lpips"] = perceptual.eval().requires_grad_(False)

    def _lpips(self, x: Tensor, y: Tensor) -> Tensor:
        if "lpips" not in self._frozen:
            if not self.config.vgg_standin_ok:
                raise ConfigError(
                    "GNR's cycle LPIPS loss needs ImageNet VGG16 weights: call attach_pretrained('vgg16', state) "
                    "first (bench run does, from --weights vgg16=...)"
                )
            self.attach_pretrained("vgg16", None)
        perceptual = self._frozen["lpips"].to(x.device)
        if self.config.lpips_size and self.config.lpips_size < x.shape[-1]:
            size = (self.config.lpips_size,) * 2
            x, y = (F.interpolate(t, size, mode="bilinear", align_corners=False, antialias=True) for t in (x, y))
        return perceptual(x, y).mean()

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, d_ratio = self.config, self.config.r1_every / (self.config.r1_every + 1)
        g_params = [*self.G_A2B.parameters(), *self.G_B2A.parameters()]
        d_params = [*self.D_L.parameters(), *self.D_A.parameters(), *self.D_B.parameters()]
        return {
            "G": torch.optim.Adam(g_params, c.lr, betas=(0.0, c.beta2)),
            "D": torch.optim.Adam(d_params, c.lr, betas=(0.0, c.beta2**d_ratio)),  # lazy-R1 adjusted beta2
        }

    def lr_factor(self, step: int, total_steps: int) -> float:
        every = max(1.0, total_steps * self.config.lr_decay_every_epochs / self.config.epochs)
        return self.config.lr_decay ** math.floor(step / every)

    def averages(self) -> tuple[Average, ...]:
        return tuple(Average(f"{live}_ema", live, self.config.ema_decay) for live in ("G_A2B", "G_B2A"))

    def training_step(self, nets: Networks, batch: Batch, step: int, rng: torch.Generator) -> Iterator[Update]:
        c, n, device = self.config, batch.a.shape[0], batch.a.device

        def on_device(drawn: Tensor) -> Tensor:  # drawn on the CPU from rng, used on the batch's device
            return drawn.to(device)

        pick_a = on_device(torch.randint(n, (1,), generator=rng))
        pick_b = on_device(torch.randint(n, (1,), generator=rng))
        with seeded_global_rng(rng, device):  # kornia draws its augmentation parameters from the global RNG
            aug_a, aug_b = self.augment(batch.a), self.augment(batch.b)  # the real images the discriminators see
            # A and B: augmentations of ONE image each, so their style codes should agree (consistency loss).
            one_a = self.augment(batch.a[pick_a].expand_as(batch.a))
            one_b = self.augment(batch.b[pick_b].expand_as(batch.b))
        regularise = step % c.r1_every == 0
        aug_a.requires_grad_(regularise)
        aug_b.requires_grad_(regularise)

        content_a, style_a = nets.G_A2B("encode", one_a)  # (N, C, h, w), (N, latent)
        content_b, style_b = nets.G_B2A("encode", one_b)
        encoded_style_b = nets.G_B2A("encode", aug_b)[1]  # B styles come from the encoder of G_B2A
        encoded_style_a = nets.G_A2B("encode", aug_a)[1]
        random_style_b = on_device(torch.randn(n, c.latent_dim, generator=rng)).requires_grad_(regularise)
        random_style_a = on_device(torch.randn(n, c.latent_dim, generator=rng)).requires_grad_(regularise)
        # Decoder styles: N picked at random from the N random and N encoded target-domain styles.
        mix_b, mix_a = (on_device(torch.randperm(2 * n, generator=rng)[:n]) for _ in range(2))
        input_style_b = torch.cat([random_style_b, encoded_style_b])[mix_b]
        input_style_a = torch.cat([random_style_a, encoded_style_a])[mix_a]
        fake_b = nets.G_A2B("decode", content_a, input_style_b)
        fake_a = nets.G_B2A("decode", content_b, input_style_a)

        # Discriminators: logistic loss on every head, latent D on N(0, I) (real) vs encoded styles (fake).
        # The lazy R1 term joins the same backward pass every r1_every steps, as in the official code.
        real_a, real_b = nets.D_A(aug_a), nets.D_B(aug_b)
        real_lb, real_la = nets.D_L(random_style_b), nets.D_L(random_style_a)
        d_adv = (
            d_logistic_loss(real_a, nets.D_A(fake_a.detach()))
            + d_logistic_loss(real_b, nets.D_B(fake_b.detach()))
            + d_logistic_loss(real_lb, nets.D_L(encoded_style_b.detach()))
            + d_logistic_loss(real_la, nets.D_L(encoded_style_a.detach()))
        )
        d_r1 = torch.zeros((), device=d_adv.device)  # reported as 0 between lazy R1 steps
        if regularise:
            penalty = (
                r1_penalty(real_a, aug_a)
                + r1_penalty(real_b, aug_b)
                + r1_penalty(real_lb, random_style_b)
                + r1_penalty(real_la, random_style_a)
            )
            d_r1 = c.r1_gamma / 2 * penalty * c.r1_every
        yield Update("D", d_adv + d_r1, {"D_adv": d_adv, "D_r1": d_r1})

        # Generators.
        losses = {}
        losses["G_adv"] = (
            g_nonsaturating_loss(nets.D_A(fake_a))
            + g_nonsaturating_loss(nets.D_B(fake_b))
            + c.lambda_latent_adv * g_nonsaturating_loss(nets.D_L(encoded_style_b))
            + c.lambda_latent_adv * g_nonsaturating_loss(nets.D_L(encoded_style_a))
        )
        losses["G_consistency"] = c.lambda_consistency * (
            style_a.var(0, unbiased=False).sum() + style_b.var(0, unbiased=False).sum()
        )
        content_aba, style_aba = nets.G_B2A("encode", fake_b)  # style_aba: the B style of fake_b
        content_bab, style_bab = nets.G_A2B("encode", fake_a)
        shuffle_a, shuffle_b = (on_device(torch.randperm(n, generator=rng)) for _ in range(2))
        cycle_a = nets.G_B2A("decode", content_aba, style_a[shuffle_a])  # shuffled source styles
        cycle_b = nets.G_A2B("decode", content_bab, style_b[shuffle_b])
        losses["G_cycle"] = c.lambda_cycle_mse * (F.mse_loss(cycle_a, one_a) + F.mse_loss(cycle_b, one_b))
        if c.lambda_cycle_lpips:
            losses["G_lpips"] = c.lambda_cycle_lpips * (self._lpips(cycle_a, one_a) + self._lpips(cycle_b, one_b))
        losses["G_style"] = c.lambda_style_recon * (
            F.mse_loss(style_aba, input_style_b) + F.mse_loss(style_bab, input_style_a)
        )
        yield Update("G", sum(losses.values()), losses)

    # -- inference -----------------------------------------------------------------------------------------------
    def sample_style(self, n: int, direction: Direction, generator: torch.Generator | None = None) -> Tensor:
        check_direction(direction)
        device = generator.device if generator is not None else self.G_A2B_ema.to_rgb1.bias.device
        return torch.randn(n, self.config.latent_dim, generator=generator, device=device)

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
        """Latent-guided (z ~ N(0, I) from `generator`), reference-guided or explicit-style translation (EMA nets)."""
        source, target = (self.G_A2B_ema, self.G_B2A_ema)
        if check_direction(direction) == "b2a":
            source, target = target, source
        content = source("encode", x)[0]
        if style is None and reference is not None:
            if reference.shape[0] not in (1, x.shape[0]):
                raise ValueError(f"reference needs 1 or {x.shape[0]} images, got {reference.shape[0]}")
            style = target("encode", reference)[1].expand(x.shape[0], -1)  # target-domain styles
        if style is None:
            style = self.sample_style(x.shape[0], direction, generator)
        return source("decode", content, style.to(x)).clamp(-1, 1)  # the decoder ends without tanh

    def translation_networks(self, direction: Direction) -> tuple[str, ...]:
        return ("G_A2B_ema",) if check_direction(direction) == "a2b" else ("G_B2A_ema",)

    official_files = ("GNR_checkpoint.pt",)

    def convert_official(
        self, files: dict[str, Any], direction: Direction | None = None
    ) -> dict[str, dict[str, Tensor]]:
        """`GNR_checkpoint.pt` (entry `G_A2B_ema`, selfie -> anime) or a full training `ck.pt`.

        Entries G_A2B, G_B2A, G_A2B_ema, G_B2A_ema are taken as they are (and must fit); D_A, D_B, D_L only
        when they fit the main-branch definition, else they are skipped with a warning (a later train-branch D
        differs). A bare generator state_dict is read as G_A2B_ema.
        """
        path, checkpoint = only_file(files, "GANs N' Roses")
        if isinstance(checkpoint, dict) and "mapping.0.weight" in checkpoint:
            checkpoint = {"G_A2B_ema": checkpoint}
        if not isinstance(checkpoint, dict) or "G_A2B_ema" not in checkpoint:
            keys = list(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise ValueError(f"{path} is not a GANs N' Roses checkpoint: no 'G_A2B_ema' entry (found {keys})")
        states = {a: checkpoint[a] for a in ("G_A2B_ema", "G_A2B", "G_B2A", "G_B2A_ema") if a in checkpoint}
        for attr in ("D_A", "D_B", "D_L"):
            if attr in checkpoint:
                mismatch = state_mismatch(getattr(self, attr), checkpoint[attr])
                if mismatch:
                    warnings.warn(f"skipped {attr} of {path}: {mismatch}", stacklevel=2)
                else:
                    states[attr] = checkpoint[attr]
        return states
