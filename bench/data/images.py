"""Reading image files: any mode to RGB, deterministically, and unreadable files reported, not raised."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
# Errors Pillow raises on unreadable, truncated or hostile files.
READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError, EOFError)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white.

    16- and 32-bit integer images are scaled from their full range (0..65535), not clipped at 255 as
    `Image.convert` would; float images are taken as [0, 1] when their maximum is at most 1, else as
    [0, 255]. The result depends only on the pixels, so the same file always gives the same tensor.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
        else:
            scale = 255.0 / 65535.0
        gray = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


def read_rgb(path: Path) -> Image.Image:
    """Open, fully decode and convert to RGB; raises one of READ_ERRORS for a bad file."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            image.load()  # decodes every byte, so truncation shows up here and not mid-run
            return to_rgb(image)


def to_uint8_tensor(image: Image.Image, size: int | None = None) -> Tensor:
    """(3, H, W) uint8; resized to (size, size) with Pillow's bicubic filter when size is given."""
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def uint8_to_float(images: Tensor) -> Tensor:
    """uint8 (N, 3, H, W) -> float (N, 3, H, W) in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    return images.float() / 127.5 - 1.0


def float_to_uint8(images: Tensor) -> Tensor:
    """float in [-1, 1] -> uint8, rounding to nearest; values outside the range are clamped."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def save_pngs(images: Tensor, folder: Path, names: list[str]) -> None:
    """Write (N, 3, H, W) uint8 images as `folder/<name>.png` (lossless, so the files hold what was scored)."""
    folder.mkdir(parents=True, exist_ok=True)
    for image, name in zip(images, names):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{name}.png")


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass
class ImageSet:
    """The readable images of one split of one domain (for example trainA), in sorted file order."""

    name: str
    paths: list[Path]
    skipped: list[SkippedFile] = field(default_factory=list)

    @classmethod
    def scan(cls, folder: Path) -> ImageSet:
        """List image files under `folder` and decode each once; bad files are set aside with a reason."""
        candidates = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        paths, skipped = [], []
        for path in candidates:
            try:
                read_rgb(path)
            except READ_ERRORS as error:
                skipped.append(SkippedFile(path, f"{type(error).__name__}: {error}"))
            else:
                paths.append(path)
        return cls(folder.name, paths, skipped)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int, size: int | None = None) -> Tensor:
        """Image `index` as (3, size, size) uint8."""
        return to_uint8_tensor(read_rgb(self.paths[index]), size)

    def load_all(self, size: int, limit: int | None = None) -> Tensor:
        """The first `limit` images (all by default) as (N, 3, size, size) uint8."""
        count = len(self) if limit is None else min(limit, len(self))
        return torch.stack([self.load(i, size) for i in range(count)])

    def content_hash(self, limit: int | None = None) -> str:
        """sha256 over the bytes of the (first `limit`) files, in order: changes when any image changes."""
        digest = hashlib.sha256()
        for path in self.paths[:limit]:
            digest.update(path.read_bytes())
        return digest.hexdigest()
