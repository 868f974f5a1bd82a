"""Reference translators of known quality on toyfaces, for checking that metrics rank them as they claim.

The best of them, `renderer`, is the ground truth: it recovers the content factors of an input by
nearest-neighbour lookup among the dataset's own images (whose factors are stored beside them) and
renders them in the other domain with `render_face`. The others degrade it in one known way each
(blur, colour, collapsed or unstable style, content ignored); `identity` does not translate at all.
None of them has parameters, so they go through the same evaluation code path as trained methods.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from bench.data.folder import TwoDomainDataset
from bench.data.images import float_to_uint8, to_uint8_tensor, uint8_to_float
from bench.data.toyfaces import STYLE_FACTORS, read_factors, render_face
from bench.evaluate.translator import WorkingSize

PANEL_NAMES = (
    "identity",
    "renderer",
    "renderer_blur",
    "renderer_colour_shift",
    "style_collapsed",
    "style_resampled",
    "random_target",
)
DIRECTIONS = ("a2b", "b2a")
# (low, high) of each style factor, as `toyfaces.sample_factors` draws them (uniformly): styles drawn
# here then follow the dataset's style distribution, so the renderer's FID sits near the real-vs-real floor.
STYLE_RANGES = {
    "hair_tone": (0.0, 1.0),
    "skin_tone": (0.0, 1.0),
    "palette": (0.0, 1.0),
    "light_angle": (0.0, 2 * math.pi),
    "light_strength": (0.1, 0.9),
}
_LOW = torch.tensor([STYLE_RANGES[k][0] for k in STYLE_FACTORS])
_HIGH = torch.tensor([STYLE_RANGES[k][1] for k in STYLE_FACTORS])


def _domains(direction: str) -> tuple[str, str]:
    """(source, target) domain of `direction`."""
    if direction == "a2b":
        return "A", "B"
    if direction == "b2a":
        return "B", "A"
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def _hash(*parts: object) -> int:
    """A stable 32-bit hash (Python's hash() of bytes changes between processes)."""
    return zlib.crc32(b"|".join(p if isinstance(p, bytes) else str(p).encode() for p in parts))


class _DomainIndex:
    """Every image of one domain (train, then test) with its factors, flattened for L2 lookup."""

    def __init__(self, data: TwoDomainDataset, domain: str) -> None:
        images, self.factors = [], []
        for split in ("train", "test"):
            image_set = data.split(split, domain)
            folder = data.root / f"{split}{domain}"
            if not (folder / "factors.jsonl").is_file():
                raise ValueError(
                    f"the reference panel needs toyfaces data: {folder} has no factors.jsonl "
                    f"(dataset {data.name!r} is not a generated toyfaces dataset)"
                )
            known = read_factors(folder)
            for path in image_set.paths:
                name = path.relative_to(folder).as_posix()
                if name not in known:
                    raise ValueError(f"{folder}/factors.jsonl has no entry for {name}; regenerate the dataset")
                self.factors.append(known[name])
            images.append(image_set.load_all(data.image_size))
        self.n_train = len(data.split("train", domain))
        self.images = torch.cat(images)  # uint8 (M, 3, s, s)
        self.flat = self.images.flatten(1).float()

    def lookup(self, x: Tensor) -> tuple[list[int], list[bool]]:
        """Index of the nearest image to each of `x` ([-1, 1]), and whether it matched x mirrored."""
        query = float_to_uint8(x.cpu()).float()  # back on the uint8 grid, so a dataset image matches exactly
        straight, i_straight = torch.cdist(query.flatten(1), self.flat).min(1)
        mirrored, i_mirrored = torch.cdist(query.flip(-1).flatten(1), self.flat).min(1)
        flipped = mirrored < straight  # ties (symmetric faces) go to the unflipped match
        return torch.where(flipped, i_mirrored, i_straight).tolist(), flipped.tolist()


class ReferenceTranslator(ABC):
    """Common parts of the panel: no parameters, fixed working size, both directions."""

    name = "reference"
    multimodal = True

    def __init__(self, data: TwoDomainDataset) -> None:
        self.config = WorkingSize(data.image_size)

    @property
    def directions(self) -> tuple[str, ...]:
        return DIRECTIONS

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return iter(())

    def eval(self) -> ReferenceTranslator:
        return self

    def sample_style(self, n: int, direction: str, generator: torch.Generator | None = None) -> Tensor | None:
        """(n, len(STYLE_FACTORS)) style factors drawn uniformly over their dataset ranges; None if unimodal."""
        _domains(direction)
        if not self.multimodal:
            return None
        device = generator.device if generator is not None else None
        u = torch.rand(n, len(STYLE_FACTORS), generator=generator, device=device).cpu()
        return _LOW + (_HIGH - _LOW) * u

    def translate(
        self,
        x: Tensor,
        direction: str = "a2b",
        *,
        style: Tensor | None = None,
        reference: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """(N, 3, s, s) in [-1, 1] -> (N, 3, s, s) in [-1, 1], s = config.image_size."""
        source, target = _domains(direction)
        size = self.config.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, size, size):
            raise ValueError(f"{self.name}: expected (N, 3, {size}, {size}) images, got {tuple(x.shape)}")
        return self._translate(x, direction, source, target, style, reference, generator)

    @abstractmethod
    def _translate(
        self,
        x: Tensor,
        direction: str,
        source: str,
        target: str,
        style: Tensor | None,
        reference: Tensor | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        """The translation itself; arguments already checked."""


class Identity(ReferenceTranslator):
    """Returns the input: perfect content, no translation at all."""

    name = "identity"
    multimodal = False

    def _translate(self, x, direction, source, target, style, reference, generator) -> Tensor:
        return x.clone()


class Renderer(ReferenceTranslator):
    """Ground-truth translation: the input's content factors rendered in the target domain.

    `style_mode` "given" uses `style` (else the style of `reference`, else one drawn from `generator`),
    "collapsed" always uses the midpoint style, "resampled" ignores the style code and derives a style
    from the exact input pixels, so any change of the input (an augmented copy) gets an unrelated style
    while the style code and the random state stay fixed: the failure GNR's consistency loss prevents.
    `post` degrades the rendered batch ([-1, 1]) in a fixed way.
    """

    def __init__(
        self,
        name: str,
        data: TwoDomainDataset,
        index: dict[str, _DomainIndex],
        seed: int = 0,
        style_mode: str = "given",
        post: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(data)
        self.name, self.index, self.seed, self.style_mode, self.post = name, index, seed, style_mode, post

    def _styles(self, x, direction, target, style, reference, generator) -> Tensor:
        n = len(x)
        if self.style_mode == "collapsed":
            return ((_LOW + _HIGH) / 2).expand(n, -1)
        if self.style_mode == "resampled":
            return torch.stack([self._pixel_style(image, style, i) for i, image in enumerate(x)])
        if style is None and reference is None:
            return self.sample_style(n, direction, generator)
        if style is None:
            return self._style_of(reference, target)
        style = style.detach().cpu().float()
        if tuple(style.shape) != (n, len(STYLE_FACTORS)):
            raise ValueError(f"{self.name}: style must be ({n}, {len(STYLE_FACTORS)}), got {tuple(style.shape)}")
        return style

    def _pixel_style(self, image: Tensor, style: Tensor | None, i: int) -> Tensor:
        """A style drawn from a generator seeded by the image's uint8 pixels (and the style code, if any)."""
        code = b"" if style is None else style[i].detach().cpu().float().numpy().tobytes()
        generator = torch.Generator().manual_seed(_hash(self.seed, float_to_uint8(image).cpu().numpy().tobytes(), code))
        return _LOW + (_HIGH - _LOW) * torch.rand(len(STYLE_FACTORS), generator=generator)

    def _style_of(self, reference: Tensor, target: str) -> Tensor:
        """The style factors of the target-domain images nearest to `reference`."""
        found, flipped = self.index[target].lookup(reference)
        styles = []
        for i, flip in zip(found, flipped):
            f = self.index[target].factors[i]
            if flip:  # mirroring the image mirrors the light: x -> -x in face coordinates
                f = dataclasses.replace(f, light_angle=(math.pi - f.light_angle) % (2 * math.pi))
            styles.append([getattr(f, k) for k in STYLE_FACTORS])
        return torch.tensor(styles, dtype=torch.float32)

    def _translate(self, x, direction, source, target, style, reference, generator) -> Tensor:
        styles = self._styles(x, direction, target, style, reference, generator)
        found, flipped = self.index[source].lookup(x)
        size = self.config.image_size
        out = []
        for i, flip, row in zip(found, flipped, styles):
            content = self.index[source].factors[i]
            f = dataclasses.replace(content, **{k: float(v) for k, v in zip(STYLE_FACTORS, row.tolist())})
            # The sensor noise (domain A) is a function of content and style, not a draw: the same input
            # and style give the same output on every call, so style consistency is exact.
            noise_seed = _hash(self.seed, source, i, flip, row.numpy().tobytes())
            image = to_uint8_tensor(render_face(f, target, size, noise_seed))  # type: ignore[arg-type]
            out.append(image.flip(-1) if flip else image)
        y = uint8_to_float(torch.stack(out))
        if self.post is not None:
            y = self.post(y).clamp(-1, 1)
        return y.to(x.device)


class RandomTarget(ReferenceTranslator):
    """Real training images of the target domain, unrelated to the input: realistic, content lost."""

    name = "random_target"

    def __init__(self, data: TwoDomainDataset, index: dict[str, _DomainIndex], seed: int = 0) -> None:
        super().__init__(data)
        self.index, self.seed = index, seed

    def _translate(self, x, direction, source, target, style, reference, generator) -> Tensor:
        if style is None:
            style = self.sample_style(len(x), direction, generator)
        pool = self.index[target]
        # The style code picks the image, so a fixed style gives a fixed image and different styles differ.
        rows = style.detach().cpu().float().reshape(len(x), -1).numpy()
        picks = [_hash(self.seed, target, row.tobytes()) % pool.n_train for row in rows]
        return uint8_to_float(pool.images[picks]).to(x.device)


def _blur(size: int) -> Callable[[Tensor], Tensor]:
    sigma = 1.5 * size / 64  # 1.5 px at 64 px, the same relative blur at any size
    kernel = 2 * math.ceil(3 * sigma) + 1
    return lambda y: gaussian_blur(y, [kernel, kernel], [sigma, sigma])


def _colour_shift(y: Tensor) -> Tensor:
    shift = torch.tensor([0.3, 0.0, -0.3]).view(1, 3, 1, 1)  # redder, less blue: a global tint
    return y + shift


def reference_panel(data: TwoDomainDataset, seed: int = 0) -> list[ReferenceTranslator]:
    """The translators of PANEL_NAMES, in that order; `data` must be a generated toyfaces dataset."""
    index = {domain: _DomainIndex(data, domain) for domain in ("A", "B")}  # built once, shared by all

    def renderer(name: str, **kwargs) -> Renderer:
        return Renderer(name, data, index, seed, **kwargs)

    return [
        Identity(data),
        renderer("renderer"),
        renderer("renderer_blur", post=_blur(data.image_size)),
        renderer("renderer_colour_shift", post=_colour_shift),
        renderer("style_collapsed", style_mode="collapsed"),
        renderer("style_resampled", style_mode="resampled"),
        RandomTarget(data, index, seed),
    ]
