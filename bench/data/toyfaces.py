"""toyfaces: a procedural two-domain face dataset with known factors, deterministic from a seed.

Domain A is photo-like (shaded skin, small eyes, soft noisy texture, varied lighting and background);
domain B is anime-like (flat colours, black outlines, large eyes with highlights, vivid hair, blush).
Every image draws the same kinds of factors: content factors (face position, scale, roll, mouth
opening) and independent style factors (hair tone, skin tone, palette, lighting). They are stored beside
the images (`factors.jsonl` in each split folder), so metrics can be checked against ground truth, and
`render_face(factors, other_domain)` is a ground-truth translator: same content, other domain.
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bench.data.folder import DatasetSpec, TwoDomainDataset, check_options, open_folder
from bench.errors import DataError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # bump when rendering changes, so stale generated folders are not reused
Domain = Literal["A", "B"]
Point = tuple[float, float]


@dataclass(frozen=True)
class FaceFactors:
    # content: what a translation must keep
    cx: float  # face centre, fraction of image width
    cy: float  # face centre, fraction of image height
    scale: float  # face height, fraction of image height
    roll: float  # in-plane head rotation, degrees (positive = clockwise on screen)
    mouth_open: float  # 0 closed .. 1 wide open
    # style: free to change across domains and samples
    hair_tone: float  # 0..1 along the domain's hair colour ramp
    skin_tone: float  # 0 light .. 1 dark
    palette: float  # hue of background and clothes, 0..1
    light_angle: float  # direction the light comes from, radians (photo domain shading)
    light_strength: float  # 0 flat .. 1 harsh side light

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


CONTENT_FACTORS = ("cx", "cy", "scale", "roll", "mouth_open")
STYLE_FACTORS = ("hair_tone", "skin_tone", "palette", "light_angle", "light_strength")


def sample_factors(rng: np.random.Generator) -> FaceFactors:
    """Draw content and style factors independently."""
    return FaceFactors(
        cx=rng.uniform(0.42, 0.58),
        cy=rng.uniform(0.46, 0.56),
        scale=rng.uniform(0.5, 0.68),
        roll=rng.uniform(-20.0, 20.0),
        mouth_open=rng.uniform(0.0, 1.0),
        hair_tone=rng.uniform(0.0, 1.0),
        skin_tone=rng.uniform(0.0, 1.0),
        palette=rng.uniform(0.0, 1.0),
        light_angle=rng.uniform(0.0, 2 * math.pi),
        light_strength=rng.uniform(0.1, 0.9),
    )


# -- colours ----------------------------------------------------------------------------------------
Colour = tuple[int, int, int]
_NATURAL_HAIR = [(28, 24, 24), (62, 40, 28), (112, 74, 44), (196, 160, 104), (150, 62, 36), (168, 166, 162)]


def _lerp(a: Colour, b: Colour, t: float) -> Colour:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _ramp(colours: list[Colour], t: float) -> Colour:
    position = min(max(t, 0.0), 1.0) * (len(colours) - 1)
    i = min(int(position), len(colours) - 2)
    return _lerp(colours[i], colours[i + 1], position - i)


def _hsv(h: float, s: float, v: float) -> Colour:
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))  # type: ignore[return-value]


def _scaled(colour: Colour, k: float) -> Colour:
    return tuple(int(min(255, max(0, round(c * k)))) for c in colour)  # type: ignore[return-value]


@dataclass(frozen=True)
class _Palette:
    skin: Colour
    hair: Colour
    iris: Colour
    background: Colour
    background_2: Colour
    clothes: Colour
    lips: Colour


def _palette(f: FaceFactors, domain: Domain) -> _Palette:
    if domain == "A":  # natural, muted
        skin = _lerp((238, 206, 180), (112, 74, 52), f.skin_tone)
        hair = _ramp(_NATURAL_HAIR, f.hair_tone)
        return _Palette(
            skin=skin,
            hair=hair,
            iris=_lerp((70, 45, 30), (70, 100, 130), f.hair_tone),
            background=_hsv(f.palette, 0.22, 0.78),
            background_2=_hsv(f.palette + 0.08, 0.3, 0.45),
            clothes=_hsv(f.palette + 0.5, 0.35, 0.5),
            lips=_lerp(skin, (170, 70, 70), 0.45),
        )
    skin = _lerp((255, 232, 218), (226, 170, 138), f.skin_tone)  # pale, flat
    return _Palette(
        skin=skin,
        hair=_hsv(f.hair_tone, 0.75, 0.95),
        iris=_hsv(f.hair_tone + 0.08, 0.85, 0.75),
        background=_hsv(f.palette, 0.35, 0.98),
        background_2=_hsv(f.palette, 0.2, 1.0),
        clothes=_hsv(f.palette + 0.5, 0.65, 0.9),
        lips=(200, 60, 70),
    )


# -- geometry in face coordinates: origin at the face centre, unit = half the face height, y down --
def _ellipse(
    cx: float, cy: float, rx: float, ry: float, start: float = 0.0, end: float = 360.0, n: int = 40
) -> list[Point]:
    angles = np.radians(np.linspace(start, end, n))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


class _Canvas:
    """Draws polygons given in face coordinates onto a supersampled RGB image."""

    def __init__(self, f: FaceFactors, size: int) -> None:
        self.size = size
        self.unit = f.scale * size / 2
        self.centre = (f.cx * size, f.cy * size)
        theta = math.radians(f.roll)
        self.cos, self.sin = math.cos(theta), math.sin(theta)
        self.image = Image.new("RGB", (size, size))
        self.draw = ImageDraw.Draw(self.image)

    def to_pixels(self, points: list[Point]) -> list[Point]:
        u, (ox, oy) = self.unit, self.centre
        return [(ox + u * (x * self.cos - y * self.sin), oy + u * (x * self.sin + y * self.cos)) for x, y in points]

    def polygon(
        self, points: list[Point], fill: Colour | None, outline: Colour | None = None, width: float = 0.0
    ) -> None:
        pixels = self.to_pixels(points)
        if fill is not None:
            self.draw.polygon(pixels, fill=fill)
        if outline is not None and width > 0:
            self.draw.line(pixels + pixels[:1], fill=outline, width=max(1, round(width * self.unit)), joint="curve")

    def line(self, points: list[Point], colour: Colour, width: float) -> None:
        self.draw.line(self.to_pixels(points), fill=colour, width=max(1, round(width * self.unit)), joint="curve")

    def face_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Face coordinates (x, y) of every pixel centre."""
        ys, xs = np.mgrid[0 : self.size, 0 : self.size].astype(np.float64) + 0.5
        dx, dy = (xs - self.centre[0]) / self.unit, (ys - self.centre[1]) / self.unit
        return dx * self.cos + dy * self.sin, -dx * self.sin + dy * self.cos


FACE = (0.0, 0.05, 0.68, 0.9)  # centre x, centre y, radius x, radius y
EYE_X, EYE_Y, MOUTH_Y = 0.3, -0.05, 0.47


def render_face(
    f: FaceFactors, domain: Domain, size: int = 64, noise_seed: int = 0, supersample: int = 4
) -> Image.Image:
    """Render `f` in `domain` as a (size x size) RGB image; a pure function of its arguments."""
    if domain not in ("A", "B"):
        raise ValueError(f"domain must be 'A' or 'B', got {domain!r}")
    big = size * supersample
    c = _Canvas(f, big)
    p = _palette(f, domain)
    anime = domain == "B"
    ink, line_w = (20, 16, 24), 0.035  # anime outline colour and width (face units)
    outline = ink if anime else None

    # Background: a flat colour with a halo (anime) or a vertical gradient (photo).
    if anime:
        c.draw.rectangle([0, 0, big, big], fill=p.background)
        c.draw.ellipse(
            [
                c.centre[0] - 1.4 * c.unit,
                c.centre[1] - 1.4 * c.unit,
                c.centre[0] + 1.4 * c.unit,
                c.centre[1] + 1.4 * c.unit,
            ],
            fill=p.background_2,
        )
    else:
        t = np.linspace(0, 1, big)[:, None, None]
        gradient = (1 - t) * np.array(p.background) + t * np.array(p.background_2)
        c.image = Image.fromarray(np.broadcast_to(gradient, (big, big, 3)).astype(np.uint8))
        c.draw = ImageDraw.Draw(c.image)

    c.polygon([(-0.32, 0.8), (0.32, 0.8), (1.5, 2.6), (-1.5, 2.6)], p.clothes, outline, line_w)  # shoulders
    c.polygon([(-0.24, 0.5), (0.24, 0.5), (0.24, 1.0), (-0.24, 1.0)], _scaled(p.skin, 0.85), outline, line_w)  # neck
    c.polygon(_ellipse(0.0, -0.05, 0.95, 1.08, 180, 360) + [(0.95, 0.75), (-0.95, 0.75)], p.hair, outline, line_w)
    c.polygon(_ellipse(*FACE), p.skin, outline, line_w)

    # Fringe: a soft curve (photo) or spikes (anime) across the forehead.
    top = _ellipse(0.0, -0.05, 0.9, 1.02, 180, 360, n=24)
    if anime:
        spikes = [(0.72 - 1.44 * i / 8, -0.2 if i % 2 else -0.5) for i in range(9)]
        c.polygon(top + spikes, p.hair, outline, line_w)
    else:
        wave = [(0.72 - 1.44 * i / 10, -0.42 + 0.05 * math.sin(i * 1.3)) for i in range(11)]
        c.polygon(top + wave, p.hair)

    for side in (-1, 1):
        ex = side * EYE_X
        if anime:  # large eyes: lashes, coloured iris, two highlights, blush below
            c.polygon(_ellipse(ex, EYE_Y, 0.16, 0.2), (255, 255, 255), ink, 0.03)
            c.polygon(_ellipse(ex, EYE_Y + 0.02, 0.11, 0.16), p.iris)
            c.polygon(_ellipse(ex, EYE_Y + 0.04, 0.055, 0.09), _scaled(p.iris, 0.45))
            c.polygon(_ellipse(ex - 0.04, EYE_Y - 0.05, 0.04, 0.04), (255, 255, 255))
            c.polygon(_ellipse(ex + 0.04, EYE_Y + 0.08, 0.018, 0.018), (255, 255, 255))
            c.line(_ellipse(ex, EYE_Y + 0.02, 0.18, 0.2, 200, 340, n=12), ink, 0.06)
            c.line([(ex - 0.1, -0.33), (ex + 0.1, -0.35)], ink, 0.025)
            c.polygon(_ellipse(side * 0.4, 0.25, 0.1, 0.045), _lerp(p.skin, (255, 120, 140), 0.45))
        else:  # small eyes: sclera, iris, pupil, lid, brow, a nose shadow
            c.polygon(_ellipse(ex, EYE_Y, 0.12, 0.055), (235, 230, 225))
            c.polygon(_ellipse(ex, EYE_Y, 0.05, 0.05), p.iris)
            c.polygon(_ellipse(ex, EYE_Y, 0.022, 0.022), (15, 10, 10))
            c.line(_ellipse(ex, EYE_Y + 0.01, 0.13, 0.07, 200, 340, n=10), _scaled(p.skin, 0.55), 0.025)
            c.line([(ex - 0.12, -0.22), (ex + 0.12, -0.24)], _scaled(p.hair, 0.8), 0.04)
    if anime:
        c.line([(0.0, 0.2), (0.03, 0.24)], ink, 0.025)
    else:
        c.polygon(_ellipse(0.02, 0.22, 0.07, 0.035), _scaled(p.skin, 0.82))

    m = f.mouth_open
    if anime:
        # A D-shaped mouth whose depth follows the opening continuously (a line when nearly closed).
        c.polygon(
            _ellipse(0.0, MOUTH_Y - 0.04, 0.08 + 0.06 * m, 0.01 + 0.17 * m, 0, 180, n=16), (120, 20, 40), ink, 0.03
        )
    else:
        c.polygon(_ellipse(0.0, MOUTH_Y, 0.17, 0.035 + 0.09 * m), p.lips)
        if m > 0.15:
            c.polygon(_ellipse(0.0, MOUTH_Y, 0.12, 0.07 * m), (60, 20, 25))

    if not anime:
        c.image = _photo_finish(c, f, noise_seed)
    return c.image.resize((size, size), Image.Resampling.LANCZOS)


def _photo_finish(c: _Canvas, f: FaceFactors, noise_seed: int) -> Image.Image:
    """Directional light, a darker rim on the face, sensor noise and a slight blur."""
    x, y = c.face_coordinates()
    light = 1.0 + 0.28 * f.light_strength * (x * math.cos(f.light_angle) + y * math.sin(f.light_angle))
    fx, fy, rx, ry = FACE
    radius2 = ((x - fx) / rx) ** 2 + ((y - fy) / ry) ** 2
    rim = np.where(radius2 < 1.0, 1.0 - 0.22 * radius2**2, 1.0)
    pixels = np.asarray(c.image, dtype=np.float64) * np.clip(light * rim, 0.35, 1.6)[..., None]
    pixels += np.random.default_rng(noise_seed).normal(0.0, 7.0, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(radius=c.size / 160))


# -- the dataset on disk ----------------------------------------------------------------------------
def generate(root: Path, size: int = 64, n_train: int = 1000, n_test: int = 100, seed: int = 0) -> None:
    """Write `root/{trainA,trainB,testA,testB}/NNNNN.png` and a `factors.jsonl` per folder, atomically."""
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for split_index, (split, count) in enumerate((("train", n_train), ("test", n_test))):
        for domain_index, domain in enumerate(("A", "B")):
            folder = tmp / f"{split}{domain}"
            folder.mkdir(parents=True)
            rng = np.random.default_rng([seed, split_index, domain_index])
            with open(folder / "factors.jsonl", "w") as index:
                for i in range(count):
                    factors = sample_factors(rng)
                    name = f"{i:05d}.png"
                    noise_seed = seed * 1_000_003 + split_index * 10_007 + domain_index * 1_000 + i
                    render_face(factors, domain, size, noise_seed).save(folder / name)  # type: ignore[arg-type]
                    index.write(json.dumps({"file": name, **factors.to_dict()}) + "\n")
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "size": size,
        "n_train": n_train,
        "n_test": n_test,
        "seed": seed,
    }
    (tmp / "toyfaces.json").write_text(json.dumps(manifest, indent=1))
    try:
        tmp.rename(root)  # atomic: a half-written dataset is never seen under its final name
    except OSError:
        if not (root / "toyfaces.json").exists():
            raise
        shutil.rmtree(tmp)  # another process finished the same dataset first


def read_factors(folder: Path) -> dict[str, FaceFactors]:
    """File name -> factors, from the `factors.jsonl` beside the images."""
    out = {}
    for line in (folder / "factors.jsonl").read_text().splitlines():
        record = json.loads(line)
        name = record.pop("file")
        out[name] = FaceFactors(**record)
    return out


TOYFACES_OPTIONS = {"size": 64, "n_train": 1000, "n_test": 100, "seed": 0}


def _open_toyfaces(data_root: Path | None, options: dict[str, Any]) -> TwoDomainDataset:
    try:
        params = {k: int(v) for k, v in check_options("toyfaces", options, TOYFACES_OPTIONS).items()}
    except (TypeError, ValueError) as error:
        raise DataError(f"toyfaces options must be integers: {error}") from error
    if params["size"] < 16 or min(params["n_train"], params["n_test"]) < 1:
        raise DataError(f"toyfaces needs size >= 16 and at least one train and test image, got {params}")
    parent = Path(data_root) if data_root is not None else Path("datasets")
    root = parent / "toyfaces-v{v}-{size}px-{n_train}-{n_test}-seed{seed}".format(v=GENERATOR_VERSION, **params)
    if not root.exists():
        log.info("generating toyfaces into %s", root)
        parent.mkdir(parents=True, exist_ok=True)
        generate(root, **params)
    return open_folder(root, "toyfaces", params["size"])


# The demo runs every method on two CPU cores in under 15 minutes, so its multi-output metrics use fewer
# outputs than the defaults for real data (diversity FID costs one Inception pass per output); every results
# row's protocol states the numbers used.
TOYFACES = DatasetSpec(
    "toyfaces",
    _open_toyfaces,
    default_preset="tiny",
    synthetic=True,
    eval_defaults={"styles": 5, "dfid_inputs": 2, "dfid_styles": 25, "consistency_inputs": 16, "consistency_copies": 6},
)
