"""Goldens of every `paper` network: seeded weights, a fixed input, pinned outputs (see tests/golden.py).

The networks equal the official implementations today (forward passes compared with the same weights); these
goldens keep them so through refactors. The training goldens live in tests/test_training_goldens.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from methods.base import Method
from tests.golden import check

SIZE = 256  # the paper resolution of every method


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _flat(prefix: str, output) -> dict[str, torch.Tensor]:
    """Tensors of a network's output (a tensor, or nested tuples/lists of them) under numbered names."""
    if isinstance(output, torch.Tensor):
        return {prefix: output}
    found: dict[str, torch.Tensor] = {}
    for i, item in enumerate(output):
        found |= _flat(f"{prefix}.{i}", item)
    return found


def _translations(method: Method, x: torch.Tensor, reference: torch.Tensor, by_reference: bool) -> dict:
    outputs = {}
    for direction in method.directions:
        generator = torch.Generator().manual_seed(7)
        outputs[f"translate_{direction}"] = method.translate(x, direction, generator=generator)
        if by_reference:
            outputs[f"translate_{direction}_ref"] = method.translate(x, direction, reference=reference)
    return outputs


def _cyclegan(x: torch.Tensor, ref: torch.Tensor) -> dict:
    from methods.cyclegan import CycleGAN

    method = CycleGAN.from_preset("paper").eval()
    return _translations(method, x, ref, False) | _flat("D_A", method.D_A(x)) | _flat("D_B", method.D_B(x))


def _ugatit(x: torch.Tensor, ref: torch.Tensor) -> dict:
    # One full generator (279M parameters) and the two discriminator kinds, built alone to bound memory.
    from methods.ugatit import Discriminator, ResnetGenerator, UGATITConfig

    c = UGATITConfig.paper()
    generator = ResnetGenerator(c.ngf, c.n_res, c.image_size, c.light).eval()
    with torch.no_grad():
        outputs = _flat("genA2B", generator(x))
    del generator
    for name, layers in (("disG", c.n_layers_global), ("disL", c.n_layers_local)):
        with torch.no_grad():
            outputs |= _flat(name, Discriminator(c.ndf, layers)(x))
    return outputs


def _ugatit_light(x: torch.Tensor, ref: torch.Tensor) -> dict:
    from methods.ugatit import UGATIT

    method = UGATIT.from_preset("paper_light").eval()
    return _translations(method, x, ref, False)


def _stargan_v2(x: torch.Tensor, ref: torch.Tensor) -> dict:
    from methods.stargan_v2 import StarGANv2

    method = StarGANv2.from_preset("paper").eval()
    y = torch.tensor([1])
    with torch.no_grad():
        dis = method.discriminator(x, y)
    return _translations(method, x, ref, True) | {"discriminator": dis}


def _council(x: torch.Tensor, ref: torch.Tensor) -> dict:
    from methods.council_gan import CouncilGAN

    method = CouncilGAN.from_preset("paper").eval()
    outputs = _translations(method, x, ref, False)
    d = method.directions[0]
    with torch.no_grad():
        outputs |= _flat("dis", getattr(method, f"dis_{d}")[1](x))
        outputs |= _flat("dis_council", getattr(method, f"dis_council_{d}")[2](x, ref))
    return outputs


def _gnr(x: torch.Tensor, ref: torch.Tensor) -> dict:
    from methods.gnr import GNR

    method = GNR.from_preset("paper").eval()
    z = torch.randn(1, method.config.latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        dis = _flat("D_A", method.D_A(x)) | _flat("D_B", method.D_B(ref)) | _flat("D_L", method.D_L(z))
        live = _flat("G_A2B", method.G_A2B("decode", method.G_A2B("encode", x)[0], z))
    return _translations(method, x, ref, True) | dis | live


PROBES: dict[str, Callable[[torch.Tensor, torch.Tensor], dict]] = {
    "cyclegan": _cyclegan,
    "ugatit": _ugatit,
    "ugatit_light": _ugatit_light,
    "stargan_v2": _stargan_v2,
    "council": _council,
    "gnr": _gnr,
}


@pytest.mark.parametrize("name", PROBES)
def test_paper_networks_keep_their_outputs(name: str) -> None:
    torch.manual_seed(0)  # the networks' initialisation draws from the global RNG
    x, ref = _images(1, 1), _images(1, 2)
    check(f"paper_{name}", PROBES[name](x, ref))
