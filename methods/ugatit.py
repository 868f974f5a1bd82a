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
`model.16.weight_orig`, ...) equal the official ones.

The paper's numbers and the only released selfie2anime weights come from the TensorFlow release
(taki0112/UGATIT at d508e8f, `UGATIT.py` and `ops.py`), whose generator differs in parameter-bearing ways.
`tf_compat=True` builds that generator (the differences are listed at `ResnetGenerator`), and
`convert_tensorflow_generator` maps a TF checkpoint's variables onto it (`python -m bench convert ugatit-tf`
reads the file, with TensorFlow). The discriminators stay the PyTorch ones in every preset: the converter
fills the generators only, which is all that translating and scoring need. Trained from scratch, `tf_compat`
keeps PyTorch's initialisation and Adam weight decay (TF: normal(0, 0.02) kernels, an L2 loss term): it is
there to run the released weights.

Presets: `paper` is the full model (278,959,808 parameters per generator, 268M of them in the MLP that
reads the flattened 64x64x256 bottleneck, so it only works at 256x256); `paper_light` is the official
`--light True` model (10,589,888 per generator), which `DEFAULT_PRESETS` makes the baseline of runs on
real data that name no preset. `paper_tf` and `paper_tf_light` are the same models with the TensorFlow
generator (278,970,308 and 10,600,388 parameters per generator, as many as the TF variables), for the
converted TF release; `tiny_tf` is a small full-MLP one for tests.

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
    tf_compat: bool = False  # the TensorFlow release's generator (taki0112/UGATIT), to load its weights

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
        # The generator of the TensorFlow release, whose weights `python -m bench convert ugatit-tf` converts.
        "paper_tf": {"tf_compat": True},
        "paper_tf_light": {"tf_compat": True, "light": True},
    }
    # Small and full-MLP (the flatten order is the error-prone part of the conversion); 4 AdaLIN blocks because
    # the TF MLP is ch * n_res wide, which equals the bottleneck's 4 * ch only for n_res 4.
    PRESETS["tiny_tf"] = {**PRESETS["tiny"], "tf_compat": True, "light": False, "n_res": 4}
    # Runs on real data that name no preset compare against the light model (the usual U-GAT-IT baseline).
    DEFAULT_PRESETS: ClassVar[dict[str, str]] = {"paper": "paper_light"}


def instance_layer_mix(x: Tensor, rho: Tensor, eps: float, biased: bool = False) -> Tensor:
    """rho * instance-normalised x + (1 - rho) * layer-normalised x, with the unbiased variance as the
    PyTorch code (`torch.var`) or the biased one as TensorFlow's `tf.nn.moments` (`biased`)."""
    # One expression per norm, in the original order: the order of the ops fixes how autograd sums x's
    # gradients, so the default stays bit-identical to the goldens.
    unbiased = not biased
    x_in = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), keepdim=True, unbiased=unbiased) + eps)
    x_ln = (x - x.mean((1, 2, 3), keepdim=True)) / torch.sqrt(x.var((1, 2, 3), keepdim=True, unbiased=unbiased) + eps)
    return rho * x_in + (1 - rho) * x_ln


class AdaILN(nn.Module):
    """AdaLIN: the IN/LN mix with a learned per-channel rho (init 0.9), scaled by gamma/beta from the MLP.

    `tf_compat`: as TF's `adaptive_instance_layer_norm` with `smoothing` (the released model's setting), rho is
    stored from 1.0 and used as clip(rho - 0.1, 0, 1), and the variance is biased. The stored rho is the TF
    variable itself, so the converter copies it unchanged.
    """

    def __init__(self, channels: int, eps: float = 1e-5, tf_compat: bool = False) -> None:
        super().__init__()
        self.eps, self.tf_compat = eps, tf_compat
        self.rho = nn.Parameter(torch.full((1, channels, 1, 1), 1.0 if tf_compat else 0.9))

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:  # gamma, beta: (N, C)
        rho = (self.rho - 0.1).clamp(0.0, 1.0) if self.tf_compat else self.rho
        return instance_layer_mix(x, rho, self.eps, self.tf_compat) * gamma[:, :, None, None] + beta[:, :, None, None]


class ILN(nn.Module):
    """LIN of the up-sampling blocks: the IN/LN mix (rho init 0) with its own affine gamma (1) and beta (0).

    `tf_compat`: TF's `layer_instance_norm`, the same but with the biased variance (no rho offset there).
    """

    def __init__(self, channels: int, eps: float = 1e-5, tf_compat: bool = False) -> None:
        super().__init__()
        self.eps, self.tf_compat = eps, tf_compat
        self.rho = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return instance_layer_mix(x, self.rho, self.eps, self.tf_compat) * self.gamma + self.beta


class ResnetBlock(nn.Module):
    """Encoder residual block with affine-free instance norm; `conv_block` indices match the official keys.

    `tf_compat`: TF's `resblock`, whose convs have biases and whose instance norms learn gamma and beta.
    """

    def __init__(self, dim: int, tf_compat: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=tf_compat),
            nn.InstanceNorm2d(dim, affine=tf_compat),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=tf_compat),
            nn.InstanceNorm2d(dim, affine=tf_compat),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResnetAdaILNBlock(nn.Module):
    """Decoder residual block whose two norms are AdaLIN driven by the same gamma/beta."""

    def __init__(self, dim: int, tf_compat: bool = False) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=3, bias=tf_compat)
        self.norm1 = AdaILN(dim, tf_compat=tf_compat)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, bias=tf_compat)
        self.norm2 = AdaILN(dim, tf_compat=tf_compat)

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

    `tf_compat` builds the generator of the TensorFlow release instead (taki0112/UGATIT at d508e8f,
    `UGATIT.generator` and `ops.py`; shared/research/official/ugatit.md lists the differences), with the
    same module paths where a layer exists in both:
    - every conv and dense layer has a bias (`use_bias=True` throughout `generator` and `MLP`);
    - the encoder's instance norms learn gamma and beta (`tf.contrib.layers.instance_norm`, center and scale);
    - one CAM dense layer (`cam_fc`, TF `CAM_logit`) serves both the GAP and the GMP branch, its bias is in
      both logits, and the channel weights multiplied into the map are kernel + bias (`fully_connected_with_w`
      with `get_variable("kernel")`, as at d508e8f; an older ops.py, 31fb7ed, computed the logits with a
      separate `tf.layers.dense`, whose `CAM_logit/dense/*` variables the converter would refuse by name);
    - the stride-2 3x3 convs pad reflectively 1 on top/left and 0 on bottom/right (`conv`: the pad is
      asymmetric when kernel - stride is odd). On even sides (all sizes here) this equals PyTorch's pad of 1
      all round, whose last row and column the stride never reaches; on odd sides the outputs would differ;
    - AdaLIN and LIN use the biased variance (`tf.nn.moments`), and AdaLIN uses clip(rho - 0.1, 0, 1);
    - the full MLP flattens the map channels-last (`tf.layers.flatten` of NHWC); this module flattens NCHW as
      the PyTorch code, and the converter permutes the columns of `FC.0.weight` to match.
    """

    def __init__(
        self, ngf: int = 64, n_blocks: int = 4, img_size: int = 256, light: bool = False, tf_compat: bool = False
    ) -> None:
        super().__init__()
        self.n_blocks, self.light, self.tf_compat = n_blocks, light, tf_compat
        dim = ngf * 4  # bottleneck channels after two stride-2 convs
        bias = tf_compat
        if tf_compat:
            self.cam_fc = nn.Linear(dim, 1, bias=True)
        else:
            self.gap_fc = nn.Linear(dim, 1, bias=False)
            self.gmp_fc = nn.Linear(dim, 1, bias=False)
        self.conv1x1 = nn.Conv2d(dim * 2, dim, kernel_size=1, bias=True)
        self.gamma = nn.Linear(dim, dim, bias=bias)
        self.beta = nn.Linear(dim, dim, bias=bias)
        for i in range(n_blocks):
            setattr(self, f"UpBlock1_{i + 1}", ResnetAdaILNBlock(dim, tf_compat))
        down: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(3, ngf, kernel_size=7, bias=bias),
            nn.InstanceNorm2d(ngf, affine=tf_compat),
            nn.ReLU(True),
        ]
        for mult in (1, 2):
            down += [
                nn.ReflectionPad2d((1, 0, 1, 0) if tf_compat else 1),  # (left, right, top, bottom)
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, bias=bias),
                nn.InstanceNorm2d(ngf * mult * 2, affine=tf_compat),
                nn.ReLU(True),
            ]
        down += [ResnetBlock(dim, tf_compat) for _ in range(n_blocks)]
        # Full mode reads the whole (img_size/4)^2 x dim bottleneck: 1,048,576 inputs at 256 px.
        mlp_in = dim if light else (img_size // 4) ** 2 * dim
        fc = [nn.Linear(mlp_in, dim, bias=bias), nn.ReLU(True), nn.Linear(dim, dim, bias=bias), nn.ReLU(True)]
        up: list[nn.Module] = []
        for mult in (4, 2):
            up += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.ReflectionPad2d(1),
                nn.Conv2d(ngf * mult, ngf * mult // 2, kernel_size=3, bias=bias),
                ILN(ngf * mult // 2, tf_compat=tf_compat),
                nn.ReLU(True),
            ]
        up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, kernel_size=7, bias=bias), nn.Tanh()]
        self.DownBlock = nn.Sequential(*down)
        self.FC = nn.Sequential(*fc)
        self.UpBlock2 = nn.Sequential(*up)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, 3, H, W) in [-1, 1] -> image (N, 3, H, W), CAM logits (N, 2), heatmap (N, 1, H/4, W/4)."""
        x = self.DownBlock(x)  # (N, 256, 64, 64) at 256 px
        if self.tf_compat:
            weight = self.cam_fc.weight + self.cam_fc.bias[:, None]  # (1, C): kernel + bias, as TF
            x, cam_logit = cam_attention(x, self.cam_fc, self.cam_fc, weight, weight)
        else:
            x, cam_logit = cam_attention(x, self.gap_fc, self.gmp_fc, self.gap_fc.weight, self.gmp_fc.weight)
        x = F.relu(self.conv1x1(x))  # (N, 256, 64, 64)
        heatmap = x.sum(1, keepdim=True)
        mlp_in = F.adaptive_avg_pool2d(x, 1) if self.light else x
        style = self.FC(mlp_in.flatten(1))  # (N, 256)
        gamma, beta = self.gamma(style), self.beta(style)
        for i in range(self.n_blocks):
            x = getattr(self, f"UpBlock1_{i + 1}")(x, gamma, beta)
        return self.UpBlock2(x), cam_logit, heatmap


# TF scope of each direction's generator in the release (`generate_a2b` builds scope generator_B).
TF_GENERATOR_SCOPES = {"genA2B": "generator_B", "genB2A": "generator_A"}


def _tf_generator_names(n_res: int) -> dict[str, str]:
    """TF variable prefix (within a generator scope) -> module path of the `tf_compat` ResnetGenerator."""
    names = {"conv/conv2d": "DownBlock.1", "ins_norm": "DownBlock.2"}
    for i in range(2):
        names |= {f"conv_{i}/conv2d": f"DownBlock.{5 + 4 * i}", f"ins_norm_{i}": f"DownBlock.{6 + 4 * i}"}
    for i in range(n_res):
        block = f"DownBlock.{12 + i}.conv_block"
        for j, (conv, norm) in enumerate(((1, 2), (5, 6))):
            names[f"resblock_{i}/res{j + 1}/conv_0/conv2d"] = f"{block}.{conv}"
            names[f"resblock_{i}/res{j + 1}/instance_norm"] = f"{block}.{norm}"
        for j in range(2):
            names[f"adaptive_resblock{i}/res{j + 1}/conv_0/conv2d"] = f"UpBlock1_{i + 1}.conv{j + 1}"
            names[f"adaptive_resblock{i}/res{j + 1}/instance_layer_norm"] = f"UpBlock1_{i + 1}.norm{j + 1}"
    names |= {"CAM_logit": "cam_fc", "conv_1x1/conv2d": "conv1x1"}
    names |= {"MLP/linear_0/dense": "FC.0", "MLP/linear_1/dense": "FC.2"}
    names |= {"MLP/gamma/dense": "gamma", "MLP/beta/dense": "beta"}
    for i in range(2):
        names |= {f"up_conv_{i}/conv2d": f"UpBlock2.{2 + 5 * i}", f"layer_ins_norm_{i}": f"UpBlock2.{3 + 5 * i}"}
    names["G_logit/conv2d"] = "UpBlock2.11"
    return names


def convert_tensorflow_generator(variables: dict[str, Tensor], scope: str) -> dict[str, Tensor]:
    """The state_dict of a `tf_compat` ResnetGenerator from the TF release's variables of one generator scope.

    `variables` maps TF variable names (`generator_B/conv/conv2d/kernel`, ...) to their values; names outside
    `scope` and Adam slots are ignored. Layouts: conv kernels HWIO -> OIHW, dense kernels [in, out] ->
    [out, in]; rho, gamma and beta of the LIN/AdaLIN layers (1, C, 1, 1); AdaLIN rho is copied unchanged (the
    module applies TF's clip(rho - 0.1, 0, 1)). The full MLP's first kernel has a row per element of the
    NHWC-flattened map (order h, w, c): its columns are put in the NCHW order (c, h, w) of `flatten(1)`.
    Pure: no file access. ValueError when a variable of the scope has no place in the generator.
    """
    prefix = f"{scope}/"
    own = {
        name[len(prefix) :]: value
        for name, value in variables.items()
        if name.startswith(prefix) and not name.endswith(("/Adam", "/Adam_1"))
    }
    if not own:
        raise ValueError(f"no TensorFlow variable under scope {scope!r} (found {sorted(variables)[:3]} ...)")
    n_res = len({name.split("/")[0] for name in own if name.startswith("resblock_")})
    names = _tf_generator_names(n_res)
    state: dict[str, Tensor] = {}
    unknown = []
    for name, value in own.items():
        layer, _, leaf = name.rpartition("/")
        if layer not in names:
            unknown.append(name)
            continue
        module = names[layer]
        if leaf == "kernel" and value.dim() == 4:  # conv, HWIO
            state[f"{module}.weight"] = value.permute(3, 2, 0, 1)
        elif leaf == "kernel":  # dense, [in, out]
            if module == "FC.0" and value.shape[0] != value.shape[1]:  # the full MLP reads the whole map
                dim = own["conv_1x1/conv2d/bias"].shape[0]
                side = round((value.shape[0] // dim) ** 0.5)
                value = value.reshape(side, side, dim, -1).permute(2, 0, 1, 3).reshape(side * side * dim, -1)
            state[f"{module}.weight"] = value.t()
        elif module.startswith(("UpBlock1_", "UpBlock2")) and leaf in ("rho", "gamma", "beta"):
            state[f"{module}.{leaf}"] = value.reshape(1, -1, 1, 1)
        elif leaf in ("bias", "beta"):  # a conv's or dense's bias, an instance norm's beta
            state[f"{module}.bias"] = value
        elif leaf == "gamma":
            state[f"{module}.weight"] = value
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"{len(unknown)} TensorFlow variables of {scope} have no place in the U-GAT-IT generator: "
            f"{', '.join(sorted(unknown)[:3])}"
        )
    return {key: value.contiguous() for key, value in state.items()}


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
    # Each discriminator runs twice before one backward (real, fake) and spectral norm updates its power-iteration
    # vector in place on each run; eager PyTorch clones it for autograd, the compiled graph does not, and backward
    # fails ("modified by an inplace operation", torch 2.14.1).
    not_compilable = "its spectral-norm discriminators fail in backward under torch.compile (in-place power iteration)"

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
        args = (config.ngf, config.n_res, config.image_size, config.light, config.tf_compat)
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

    # UGATIT-pytorch's files, and the TF release converted by `python -m bench convert ugatit-tf`.
    official_files = ("*_params_*.pt", "*.safetensors")

    def pick_official(self, names: list[str]) -> list[str]:
        """The newest `<dataset>_params_<iteration>.pt` of a results folder, else its converted TF files."""
        pytorch = [n for n in names if n.endswith(".pt")]
        return newest_file(pytorch, r"_params_(\d+)\.pt$") if pytorch else names

    @staticmethod
    def from_tensorflow(variables: dict[str, Tensor]) -> dict[str, Tensor]:
        """Both generators of the TF release (taki0112/UGATIT) as one flat state, `genA2B.<key>` and
        `genB2A.<key>`, for the `tf_compat` presets: what `bench convert ugatit-tf` writes. Pure."""
        return {
            f"{attr}.{key}": value
            for attr, scope in TF_GENERATOR_SCOPES.items()
            for key, value in convert_tensorflow_generator(variables, scope).items()
        }

    def convert_official(
        self, files: dict[str, Any], direction: Direction | None = None
    ) -> dict[str, dict[str, Tensor]]:
        """A UGATIT-pytorch checkpoint (`<dataset>_params_<step>.pt`): one dict of the six state_dicts; or
        the converted TF release (`from_tensorflow`'s flat state, read from its .safetensors): the generators."""
        name, state = only_file(files, "U-GAT-IT")
        generators = tuple(TF_GENERATOR_SCOPES)
        if (
            isinstance(state, dict)
            and state
            and all(str(k).startswith(tuple(f"{g}." for g in generators)) for k in state)
        ):
            if not self.config.tf_compat:
                raise ValueError(
                    f"{name} holds the generators of the TensorFlow release, which need a TF preset "
                    "(--preset paper_tf or paper_tf_light)"
                )
            split = {g: {k[len(g) + 1 :]: v for k, v in state.items() if k.startswith(f"{g}.")} for g in generators}
            return {g: net for g, net in split.items() if net}
        missing = [n for n in self.networks if not isinstance(state, dict) or n not in state]
        if missing:
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"{name} is not a UGATIT-pytorch checkpoint: it lacks {', '.join(missing)} "
                f"(expected a dict with keys {', '.join(self.networks)}; found {found})"
            )
        return {attr: state[attr] for attr in self.networks}
