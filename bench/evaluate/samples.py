"""The images a report compares: the same test inputs translated by every method, and style consistency strips.

Made from the evaluation's own `Generation` (same inputs, same evaluation size), so a unimodal method's
row shows exactly the translations FID scored. Multimodal methods show several fixed styles, one per
row and shared across the inputs, drawn from their own stream so that no scored output changes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

from bench.data.images import float_to_uint8, uint8_to_float
from bench.evaluate.generate import KINDS, Generation, consistency_augmentation, resize_uint8
from bench.seeds import stream_seed

SIDE_INPUTS = 6  # test inputs per row: enough to compare, small enough for the report's first screen
SIDE_STYLES = 3  # rows of a multimodal method
STRIP_COPIES = 6  # augmented copies in a style consistency strip


SAMPLES = KINDS.index("samples")  # the seed stream of these images, apart from every scored kind


def _grid(tiles: Tensor, columns: int) -> Image.Image:
    """(R*C, 3, S, S) uint8 tiles without padding (rows of every method then line up in the report)."""
    return Image.fromarray(make_grid(tiles, nrow=columns, padding=0).permute(1, 2, 0).numpy())


def sample_grids(generation: Generation) -> dict[str, Image.Image]:
    """`<direction>_inputs.png`, `<direction>_side.png` and, for multimodal translators,
    `<direction>_consistency.png`: file name -> image.

    Apart from writing them, because translating is shared by every process and writing is the main one's."""
    d = generation.direction
    n = min(SIDE_INPUTS, len(generation.inputs))
    inputs = generation.inputs[:n]
    grids = {f"{d}_inputs.png": _grid(resize_uint8(inputs, generation.out_size), n)}
    if not generation.translator.multimodal:
        side = generation.first_outputs(n)  # the scored translations
    else:
        x = uint8_to_float(inputs).repeat(SIDE_STYLES, 1, 1, 1)  # style-major: row r is style r
        styles = generation.styles_for("samples", SIDE_STYLES, 0)
        side = generation.translate(x, styles.repeat_interleave(n, 0), stream_seed(generation.seed, SAMPLES, 0))
        grids[f"{d}_consistency.png"] = _grid(_consistency(generation), STRIP_COPIES)
    grids[f"{d}_side.png"] = _grid(side, n)
    return grids


def save_grids(grids: dict[str, Image.Image], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, image in grids.items():
        image.save(directory / name)


def write_samples(generation: Generation, directory: Path) -> None:
    """Write `sample_grids(generation)` to `directory`."""
    save_grids(sample_grids(generation), directory)


def _consistency(generation: Generation) -> Tensor:
    """Rows: augmented copies of the first test input, then their translations under one fixed style."""
    x = uint8_to_float(generation.inputs[:1]).repeat(STRIP_COPIES, 1, 1, 1)
    with torch.random.fork_rng(devices=[]):  # kornia draws from the global RNG; keep the caller's intact
        torch.manual_seed(stream_seed(generation.seed, SAMPLES, 1))
        augmented = consistency_augmentation(x.shape[-1])(x)
    style = generation.styles_for("samples", 1, 1).repeat_interleave(STRIP_COPIES, 0)
    outputs = generation.translate(augmented, style, stream_seed(generation.seed, SAMPLES, 1))
    return torch.cat([resize_uint8(float_to_uint8(augmented), generation.out_size), outputs])
