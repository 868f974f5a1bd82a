"""CycleGAN: Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks.

Zhu, Park, Isola, Efros, ICCV 2017, arXiv:1703.10593.

    @inproceedings{CycleGAN2017,
      title={Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks},
      author={Zhu, Jun-Yan and Park, Taesung and Isola, Phillip and Efros, Alexei A},
      booktitle={ICCV}, year={2017}}

Official code: https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix (BSD licence), `--model cycle_gan`
defaults. Written from the facts in shared/research/official/cyclegan.md; module and Sequential indices
follow the official classes so that state_dict keys (`model.1.weight`, `model.10.conv_block.5.bias`, ...)
equal the released ones.

Deviations from the official code, each for a reason:
- The learning rate decays linearly per step, not once per epoch (the harness counts steps; the two
  schedules differ by at most 1/101 of the base rate).
- The discriminators keep `requires_grad` during the generator update and their gradients are cleared
  before their own update (by the training loop): the generator gradients are identical, and toggling
  `requires_grad` breaks DistributedDataParallel.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.base import (
    Batch,
    Direction,
    Method,
    MethodConfig,
    Networks,
    Update,
    check_direction,
)


@dataclass(frozen=True)
class CycleGANConfig(MethodConfig):
    image_size: int = 256  # random crop size (crop_size 256)
    load_size: int = 286  # resize before the crop (load_size 286)
    flip: bool = True  # random horizontal flip (no_flip False)
    batch_size: int = 1  # batch_size 1
    epochs: float = 200.0  # n_epochs 100 + n_epochs_decay 100
    decay_start_epoch: float = 100.0  # lr constant for n_epochs, then linear decay to 0
    ngf: int = 64  # generator filters in the first conv layer
    ndf: int = 64  # discriminator filters in the first conv layer
    n_blocks: int = 9  # resnet_9blocks at 256x256 (6 at 128x128)
    n_layers_d: int = 3  # basic PatchGAN: 70x70 receptive field
    lambda_cycle: float = 10.0  # lambda_A = lambda_B, Eq. 3 of the paper
    lambda_identity: float = 0.5  # identity loss weight, as a fraction of lambda_cycle
    lr: float = 2e-4  # Adam learning rate for G and D
    beta1: float = 0.5  # Adam beta1
    beta2: float = 0.999  # Adam beta2
    pool_size: int = 50  # history of generated images shown to D
    init_gain: float = 0.02  # std of the normal init of conv weights

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # resnet_6blocks, the official choice for 128x128 images (load size keeps the 286/256 ratio).
        "paper_128": {"image_size": 128, "load_size": 143, "n_blocks": 6},
        # Small enough to train on 2 CPU cores in about a minute on 64x64 toyfaces.
        "tiny": {
            "image_size": 64,
            "load_size": 72,
            "batch_size": 4,
            "epochs": 1.0,
            "decay_start_epoch": 0.5,
            "ngf": 16,
            "ndf": 16,
            "n_blocks": 3,
        },
    }


class ResnetBlock(nn.Module):
    """Residual block with reflection padding; `conv_block` indices match the official keys."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=True),
            nn.InstanceNorm2d(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=True),
            nn.InstanceNorm2d(dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)  # no activation after the sum


class ResnetGenerator(nn.Module):
    """c7s1-ngf, two stride-2 downsamplings, n_blocks residual blocks, two upsamplings, c7s1-3, tanh."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(3, ngf, kernel_size=7, bias=True),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=True),
                nn.InstanceNorm2d(ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=True
                ),
                nn.InstanceNorm2d(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:  # (N, 3, H, W) in [-1, 1], H and W multiples of 4
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: n_layers stride-2 convs (the first without norm), one stride-1 conv, a 1-channel map."""

    def __init__(self, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=2, padding=1, bias=True),
                nn.InstanceNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=1, padding=1, bias=True),
            nn.InstanceNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:  # (N, 3, H, W) -> (N, 1, h, w) patch scores
        return self.model(x)


class ImagePool:
    """History of generated images (Shrivastava et al. 2017): D sees old fakes half of the time.

    The pool contents are part of the training state, so a resumed run continues exactly.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[Tensor] = []

    def query(self, images: Tensor, generator: torch.Generator) -> Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=generator) > 0.5:
                i = int(torch.randint(0, self.size, (), generator=generator))
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state(self) -> dict[str, Tensor]:
        images = torch.stack(self.images) if self.images else torch.empty(0)
        return {"images": images.cpu()}

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.images = list(state["images"].unbind(0)) if state["images"].numel() else []


def init_weights(module: nn.Module, gain: float) -> None:
    """Official `init_type='normal'`: conv weights ~ N(0, gain), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def lsgan_loss(scores: Tensor, real: bool) -> Tensor:
    """Least-squares GAN loss: MSE of the patch scores to 1 (real) or 0 (fake)."""
    return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))


class CycleGAN(Method):
    """Two ResNet generators (G_A: A->B, G_B: B->A) and two PatchGAN discriminators (D_A judges B)."""

    name = "cyclegan"
    multimodal = False
    Config = CycleGANConfig
    networks = ("G_A", "G_B", "D_A", "D_B")

    def __init__(self, config: CycleGANConfig) -> None:
        super().__init__(config)
        self.config: CycleGANConfig = config
        self.G_A = ResnetGenerator(config.ngf, config.n_blocks)
        self.G_B = ResnetGenerator(config.ngf, config.n_blocks)
        self.D_A = NLayerDiscriminator(config.ndf, config.n_layers_d)
        self.D_B = NLayerDiscriminator(config.ndf, config.n_layers_d)
        for network in (self.G_A, self.G_B, self.D_A, self.D_B):
            init_weights(network, config.init_gain)
        self.fake_A_pool = ImagePool(config.pool_size)
        self.fake_B_pool = ImagePool(config.pool_size)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        betas = (c.beta1, c.beta2)
        return {
            "G": torch.optim.Adam(itertools.chain(self.G_A.parameters(), self.G_B.parameters()), c.lr, betas),
            "D": torch.optim.Adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()), c.lr, betas),
        }

    def lr_factor(self, step: int, total_steps: int) -> float:
        decay_start = total_steps * self.config.decay_start_epoch / self.config.epochs
        if step < decay_start:
            return 1.0
        return max(0.0, 1.0 - (step - decay_start) / max(1.0, total_steps - decay_start))

    def training_step(self, nets: Networks, batch: Batch, step: int, rng: torch.Generator) -> Iterator[Update]:
        c = self.config
        real_A, real_B = batch.a, batch.b

        # Generators: adversarial + cycle + identity (official `backward_G`).
        fake_B = nets.G_A(real_A)
        rec_A = nets.G_B(fake_B)
        fake_A = nets.G_B(real_B)
        rec_B = nets.G_A(fake_A)
        losses = {
            "G_A": lsgan_loss(nets.D_A(fake_B), True),
            "G_B": lsgan_loss(nets.D_B(fake_A), True),
            "cycle_A": F.l1_loss(rec_A, real_A) * c.lambda_cycle,
            "cycle_B": F.l1_loss(rec_B, real_B) * c.lambda_cycle,
        }
        if c.lambda_identity > 0:
            losses["idt_A"] = F.l1_loss(nets.G_A(real_B), real_B) * c.lambda_cycle * c.lambda_identity
            losses["idt_B"] = F.l1_loss(nets.G_B(real_A), real_A) * c.lambda_cycle * c.lambda_identity
        yield Update("G", sum(losses.values()), losses)

        # Discriminators: halved LSGAN real/fake terms, fakes drawn from the history pools.
        pooled_B = self.fake_B_pool.query(fake_B, rng)
        pooled_A = self.fake_A_pool.query(fake_A, rng)
        d_losses = {
            "D_A": 0.5 * (lsgan_loss(nets.D_A(real_B), True) + lsgan_loss(nets.D_A(pooled_B), False)),
            "D_B": 0.5 * (lsgan_loss(nets.D_B(real_A), True) + lsgan_loss(nets.D_B(pooled_A), False)),
        }
        yield Update("D", d_losses["D_A"] + d_losses["D_B"], d_losses)

    def train_state(self) -> dict[str, Any]:
        return {"fake_A_pool": self.fake_A_pool.state(), "fake_B_pool": self.fake_B_pool.state()}

    def load_train_state(self, state: dict[str, Any]) -> None:
        self.fake_A_pool.load_state(state["fake_A_pool"])
        self.fake_B_pool.load_state(state["fake_B_pool"])

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
        generator_net = self.G_A if check_direction(direction) == "a2b" else self.G_B
        return generator_net(x)  # deterministic: no style input

    def translation_networks(self, direction: Direction) -> tuple[str, ...]:
        return ("G_A",) if check_direction(direction) == "a2b" else ("G_B",)

    official_files = tuple(f"latest_net_{n}.pth" for n in ("G_A", "G_B", "D_A", "D_B"))

    def convert_official(
        self, files: dict[str, Any], direction: Direction | None = None
    ) -> dict[str, dict[str, Tensor]]:
        """Official `latest_net_G_A.pth`, `<epoch>_net_D_B.pth` or a released generator `<name>.pth`.

        A file named `*net_<G_A|G_B|D_A|D_B>*` goes to that network; a released generator of another name
        (`horse2zebra.pth`) to the generator of `direction`, G_A (A->B) by default. Pre-0.4 files' instance-norm running statistics
        (the official code drops them too) are left out.
        """
        states = {}
        for name, state in files.items():
            named = re.search(r"net_(G_A|G_B|D_A|D_B)", name)
            if named:
                attr = named.group(1)
            else:
                attr = "G_A" if check_direction(direction or "a2b") == "a2b" else "G_B"
            if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
                raise ValueError(f"{name} is not a CycleGAN network state_dict (found {type(state).__name__})")
            legacy = ("running_mean", "running_var", "num_batches_tracked")
            states[attr] = {k: v for k, v in state.items() if not k.endswith(legacy)}
        return states
