"""Translations of one translator in one direction, generated once and shared by every metric.

Each kind of output is produced on first use and kept in memory as uint8 at the evaluation size (no
PNG round trip). Every kind draws from its own generator seeded from (seed, kind), so adding a metric
never changes the outputs another metric sees.

Fixed style: a style code from `sample_style` and the same random state. Translations that must share
a style (augmented copies of one input, x and T(x)) are made in calls that get the same style tensor
and a generator re-seeded to the same value, so per-call randomness (Council GAN's choice of member)
is fixed too.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_affine_matrix2d, warp_affine
from torch import Tensor

from bench.data.images import float_to_uint8, uint8_to_float
from bench.evaluate.shards import ALONE, Shards
from bench.evaluate.translator import Translator, device_of
from bench.seeds import stream_seed

KINDS = ("outputs", "styles", "dfid", "augmented", "equivariance", "samples")  # append only: indices seed streams


def resize_uint8(images: Tensor, size: int) -> Tensor:
    """Antialiased bicubic resize of uint8 images (when a method works at another size than the evaluation)."""
    if images.shape[-2:] == (size, size):
        return images
    x = F.interpolate(images.float(), size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def affine(x: Tensor, angle: float, scale: float, shift: float) -> Tensor:
    """Rotate (degrees), scale and shift (fraction of the side) about the centre, reflection padding."""
    n, _, h, w = x.shape
    centre = torch.tensor([[w / 2, h / 2]], dtype=x.dtype, device=x.device).expand(n, 2)
    matrix = get_affine_matrix2d(
        torch.tensor([[shift * w, shift * h]], dtype=x.dtype, device=x.device).expand(n, 2),
        centre,
        torch.full((n, 2), scale, dtype=x.dtype, device=x.device),
        torch.full((n,), angle, dtype=x.dtype, device=x.device),
    )
    return warp_affine(x, matrix[:, :2], (h, w), padding_mode="reflection", align_corners=False)


# Geometric transforms of content_equivariance: fixed, so every method is tested on the same ones.
EQUIVARIANCE_TRANSFORMS = {
    "hflip": lambda x: x.flip(-1),
    "affine": lambda x: affine(x, angle=10.0, scale=1.1, shift=0.05),
}


def consistency_augmentation(size: int) -> K.AugmentationSequential:
    """The augmentations style must survive (GNR's definition of style): flip, small affine, crop."""
    return K.AugmentationSequential(
        K.RandomHorizontalFlip(p=0.5),
        K.RandomAffine(degrees=10.0, translate=(0.05, 0.05), scale=(0.9, 1.1), padding_mode="reflection", p=1.0),
        K.RandomResizedCrop((size, size), scale=(0.8, 1.0), ratio=(0.9, 1.1), p=1.0),
    )


class Generation:
    def __init__(
        self,
        translator: Translator,
        inputs: Tensor,
        direction: str,
        out_size: int,
        seed: int,
        batch_size: int = 50,
        shards: Shards = ALONE,
    ) -> None:
        """`inputs`: (N, 3, s, s) uint8 test images of the source domain at the translator's working size.

        `shards`: the processes that share the translation batches; every process gets every output."""
        self.translator = translator
        self.shards = shards
        self.inputs = inputs
        self.direction = direction
        self.out_size = out_size
        self.seed = seed
        self.batch_size = batch_size
        self.device = device_of(translator)
        self._styles: dict[tuple[str, int], Tensor] = {}
        self._style_sets: dict[int, Tensor] = {}
        self._outputs: Tensor | None = None

    def _generator(self, kind: str, *extra: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(stream_seed(self.seed, KINDS.index(kind), *extra))

    @torch.inference_mode()
    def translate(self, x: Tensor, style: Tensor | None, seed: int) -> Tensor:
        """Float [-1, 1] inputs at working size -> uint8 outputs at evaluation size, in batches.

        `seed` re-seeds the per-call generator of every batch so that equal (input, style) pairs give equal
        outputs wherever they sit; outputs are clamped (some generators end without tanh) and rounded once.
        Batches depend on their start only, which is what lets processes share them (`Shards.batches`).
        """

        def batch(rows: slice) -> Tensor:
            chunk = x[rows].to(self.device)
            chunk_style = None if style is None else style[rows].to(self.device)
            generator = torch.Generator(device=self.device).manual_seed(stream_seed(seed, rows.start))
            y = self.translator.translate(chunk, self.direction, style=chunk_style, generator=generator)
            return resize_uint8(float_to_uint8(y.float().clamp(-1, 1)).cpu(), self.out_size)

        return self.shards.batches(len(x), self.batch_size, batch)

    def styles_for(self, kind: str, n: int, draw: int = 0) -> Tensor | None:
        """`n` style codes (None for unimodal translators), a pure function of (seed, kind, draw)."""
        key = (kind, draw)
        if key not in self._styles:
            style = self.translator.sample_style(n, self.direction, self._generator(kind, draw))
            self._styles[key] = style.cpu() if style is not None else None
        return self._styles[key]

    def _float_inputs(self, n: int | None = None) -> Tensor:
        return uint8_to_float(self.inputs[:n])

    @property
    def outputs(self) -> Tensor:
        """(N, 3, S, S): one translation per test input, each with its own random style, made once.

        (Not a functools.cached_property: before Python 3.12 its lock is one per class, so two generations
        made at once, as ranks simulated in threads are, would wait for each other inside a collective.)"""
        if self._outputs is None:
            x = self._float_inputs()
            self._outputs = self.translate(x, self.styles_for("outputs", len(x)), stream_seed(self.seed, 0))
        return self._outputs

    def first_outputs(self, n: int) -> Tensor:
        """`outputs[:n]`, translating only the first batch when the outputs are not made (their features can
        come from the cache): that batch is made exactly as inside `outputs`, same rows, styles and seed."""
        if self._outputs is not None or n > self.batch_size:
            return self.outputs[:n]
        count = min(self.batch_size, len(self.inputs))
        styles = self.styles_for("outputs", len(self.inputs))
        first = None if styles is None else styles[:count]
        return self.translate(self._float_inputs(count), first, stream_seed(self.seed, 0))[:n]

    def style_sets(self, styles: int) -> Tensor:
        """(N, M, 3, S, S): every test input under M random styles (lpips_diversity; FID under StarGAN v2's
        protocol), made once per M."""
        if styles not in self._style_sets:
            x = self._float_inputs()
            sets = [
                self.translate(x, self.styles_for("styles", len(x), m), stream_seed(self.seed, 1, m))
                for m in range(styles)
            ]
            self._style_sets[styles] = torch.stack(sets, 1)
        return self._style_sets[styles]

    def dfid_sets(self, inputs: int, styles: int) -> Tensor:
        """(n, S, 3, s, s): each of the first n test inputs under S random styles."""
        x = self._float_inputs(inputs)
        repeated = x.repeat_interleave(styles, 0)
        style = self.styles_for("dfid", len(repeated))
        y = self.translate(repeated, style, stream_seed(self.seed, 2))
        return y.view(len(x), styles, *y.shape[1:])

    def augmented(self, inputs: int, copies: int) -> tuple[Tensor, Tensor | None]:
        """Style consistency outputs for the first n inputs.

        Returns (n, K, 3, S, S) translations of K augmented copies with one style per input, and, for
        multimodal translators, (n, M, 3, S, S) translations of the unaugmented input under M = K styles.
        """
        x = self._float_inputs(inputs)
        style = self.styles_for("augmented", len(x))
        augment = consistency_augmentation(x.shape[-1])
        with torch.random.fork_rng(devices=[]):  # kornia draws from the global RNG; keep the caller's intact
            torch.manual_seed(stream_seed(self.seed, 3))
            copies_out = [self.translate(augment(x), style, stream_seed(self.seed, 3)) for _ in range(copies)]
        by_style = None
        if self.translator.multimodal:
            by_style = torch.stack(
                [
                    self.translate(x, self.styles_for("augmented", len(x), 1 + m), stream_seed(self.seed, 3))
                    for m in range(copies)
                ],
                1,
            )
        return torch.stack(copies_out, 1), by_style

    def equivariance(self, inputs: int) -> dict[str, tuple[Tensor, Tensor]]:
        """Per transform T: (G(T(x), s), T(G(x, s))) as uint8 at the evaluation size, same style and state."""
        x = self._float_inputs(inputs)
        style = self.styles_for("equivariance", len(x))
        seed = stream_seed(self.seed, 4)
        plain = uint8_to_float(self.translate(x, style, seed))
        pairs = {}
        for name, transform in EQUIVARIANCE_TRANSFORMS.items():
            transformed_first = self.translate(transform(x), style, seed)
            pairs[name] = (transformed_first, float_to_uint8(transform(plain)))
        return pairs


def pairs_of(m: int) -> list[tuple[int, int]]:
    """All unordered pairs (i < j) of m items: m*(m-1)/2 of them."""
    return [(i, j) for i in range(m) for j in range(i + 1, m)]
