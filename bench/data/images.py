"""Reading image files: any mode to RGB, deterministically, and unreadable files reported, not raised.

What a file decodes to: the EXIF orientation is applied (ImageOps.exif_transpose); transparency (RGBA,
LA, PA, palette with a transparent index) is composited on white; 16-bit images are scaled to 8 bits;
CMYK, palette, grayscale and bilevel images are converted by Pillow. A file with more than `max_pixels`
pixels is refused before decoding; a huge one below it is decoded reduced to about twice the size it is
loaded at, never stopping on Pillow's own decompression-bomb check (see `_own_pixel_limit`). Files that
cannot be used are listed with a kind (SKIP_KINDS) and a one-line reason, not raised.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from torch import Tensor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
# Errors Pillow raises on unreadable, truncated or hostile files (ImageTooLarge is a ValueError).
READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError, EOFError, struct.error)

# Files with more pixels are refused, per file, before decoding (the `max_pixels` data option; 2**28 is
# about 268 Mpx: a 16384x16384 image, 1 GB decoded as RGBA). Below it nothing stops on Pillow's own check.
DEFAULT_MAX_PIXELS = 2**28
# Files with more pixels than this (4096x4096) are decoded reduced to about twice the load size; smaller
# ones decode exactly as before (no draft, no reduce), so ordinary datasets give bit-identical tensors.
REDUCED_DECODE_PIXELS = 2**24
BAND_PIXELS = 2**22  # pixels converted at once when reducing a huge decoded image


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


class ImageTooLarge(ValueError):
    """A file with more pixels than the configured per-file limit (`max_pixels`); refused before decoding."""


@contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """Lift Pillow's process-wide MAX_IMAGE_PIXELS while this module opens and decodes a file.

    Pillow warns above ~89 Mpx and refuses above ~179 Mpx, for every caller in the process; a folder of
    100+ Mpx desktop photos trips both. This module applies its own per-file limit (`max_pixels`, checked
    from the header before any pixel is decoded) and decodes huge files reduced, so Pillow's check is
    switched off here and only here: the previous value is restored when the last concurrent reader in
    this process leaves (a counter, so overlapping readers in threads cannot leave it switched off).
    """
    global _limit_users, _saved_limit
    with _limit_lock:
        if _limit_users == 0:
            _saved_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                Image.MAX_IMAGE_PIXELS = _saved_limit


_limit_lock = threading.Lock()
_limit_users = 0
_saved_limit: int | None = None


def read_rgb(path: Path, size: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open, fully decode, apply the EXIF orientation and convert to RGB; raises one of READ_ERRORS for a bad file.

    A file with more than `max_pixels` pixels (None: no limit) raises ImageTooLarge before decoding. `size`
    is the side the caller resizes to: a file above REDUCED_DECODE_PIXELS is then decoded reduced to no less
    than 2 * size per side (JPEG: libjpeg's DCT scaling via `draft`, so the full resolution never exists in
    memory; PNG and WebP cannot decode reduced: the decoded image is converted and reduced band by band, so
    no full-size RGB copy is made). Files at or below REDUCED_DECODE_PIXELS decode exactly as they always did.
    """
    with _own_pixel_limit(), Image.open(path) as image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageTooLarge(
                f"{width}x{height} = {width * height / 1e6:.0f} Mpx exceeds the limit of {max_pixels / 1e6:.0f} Mpx "
                f"per file (data option max_pixels={max_pixels}; raise it to read this file)"
            )
        target = 2 * size if size is not None else None
        reduced = target is not None and width * height > REDUCED_DECODE_PIXELS
        if reduced:
            image.draft(None, (target, target))  # JPEG: decode at 1/2, 1/4 or 1/8 scale; others ignore it
        image.load()  # decodes every byte, so truncation shows up here and not mid-run
        rgb = _reduced_rgb(image, target) if reduced and target is not None else to_rgb(image)
        return _apply_orientation(rgb, image)


def _reduced_rgb(image: Image.Image, target: int) -> Image.Image:
    """`image` as RGB, box-reduced by one whole factor to no less than `target` pixels per side.

    Converted in bands of about BAND_PIXELS, so the only full-size buffer is the decoded file itself.
    """
    width, height = image.size
    fx = fy = max(1, min(width, height) // target)  # one factor: the aspect ratio is kept
    if fx == 1:
        return to_rgb(image)
    if image.mode == "RGB":  # nothing to convert: reduce reads the decoded image and writes only the result
        return image.reduce((fx, fy))
    if image.mode == "F":  # its scale depends on the whole image's maximum
        return to_rgb(image).reduce((fx, fy))
    out = Image.new("RGB", (-(-width // fx), -(-height // fy)))
    band = fy * max(1, BAND_PIXELS // (width * fy))  # rows per band, a multiple of fy
    for top in range(0, height, band):
        piece = to_rgb(image.crop((0, top, width, min(height, top + band))))
        out.paste(piece.reduce((fx, fy)), (0, top // fy))
    return out


def _apply_orientation(rgb: Image.Image, source: Image.Image) -> Image.Image:
    """`rgb` turned upright by the EXIF (or XMP) orientation of `source`, with ImageOps.exif_transpose."""
    try:
        orientation = source.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - malformed metadata: keep the pixels as stored rather than drop the file
        return rgb
    if orientation not in range(2, 9):
        return rgb  # upright (or an invalid tag): the image as decoded, the very same object
    if rgb is not source:
        rgb.getexif()[ExifTags.Base.Orientation] = orientation  # the converted copy carries no metadata
    return ImageOps.exif_transpose(rgb)


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


# Why a file was skipped: one of these kinds, counted per kind in the run summary.
EMPTY = "empty file"
NOT_AN_IMAGE = "not an image"
CORRUPT = "truncated or corrupt"
TOO_LARGE = "too large"
SYMLINK_LOOP = "symlink loop"
MISSING = "broken link or vanished"
DENIED = "permission denied"
UNREADABLE = "unreadable"
SKIP_KINDS = (CORRUPT, NOT_AN_IMAGE, EMPTY, TOO_LARGE, DENIED, SYMLINK_LOOP, MISSING, UNREADABLE)


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str  # one line for a person: what is wrong with this file
    kind: str = UNREADABLE  # one of SKIP_KINDS


def classify(path: Path, error: BaseException) -> SkippedFile:
    """The SkippedFile for `path`, which failed to read with `error`."""
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, (ImageTooLarge, Image.DecompressionBombError)):
        return SkippedFile(path, f"too large: {error}", TOO_LARGE)
    if isinstance(error, MemoryError):
        return SkippedFile(path, "too large: out of memory while decoding it", TOO_LARGE)
    if isinstance(error, PermissionError):
        return SkippedFile(path, "permission denied: the file cannot be opened for reading", DENIED)
    if isinstance(error, OSError) and error.errno == errno.ELOOP:
        return SkippedFile(path, "symlink loop: too many levels of symbolic links", SYMLINK_LOOP)
    if isinstance(error, FileNotFoundError):
        what = "a symlink to a missing file" if path.is_symlink() else "the file vanished while scanning"
        return SkippedFile(path, f"broken link or vanished: {what}", MISSING)
    if isinstance(error, UnidentifiedImageError):
        return SkippedFile(path, "not an image: Pillow recognises no image format in it", NOT_AN_IMAGE)
    if isinstance(error, OSError) and error.errno is not None:
        return SkippedFile(path, f"unreadable: {detail}", UNREADABLE)  # EIO and the like: the disk, not the image
    return SkippedFile(path, f"truncated or corrupt: {detail}", CORRUPT)


def list_image_files(folder: Path) -> tuple[list[Path], list[SkippedFile]]:
    """Files under `folder` with an image extension, sorted; symlinked folders are followed once.

    A symlinked folder that leads back to a folder already walked (a loop, or a second link to one folder)
    is reported as a symlink loop and not entered; a folder that cannot be listed is reported too. Hidden
    files (a leading dot) are left out, as are folders whose name has an image extension.
    """
    found, loops = [], []
    seen = {os.path.realpath(folder)}

    def unlisted(error: OSError) -> None:
        if error.filename is not None and Path(error.filename) != folder:
            loops.append(classify(Path(error.filename), error))

    for parent, dirs, files in os.walk(folder, followlinks=True, onerror=unlisted):
        kept = []
        for name in sorted(dirs):
            path = Path(parent) / name
            real = os.path.realpath(path)
            if real in seen:
                loops.append(SkippedFile(path, f"symlink loop: {real} is already scanned, not followed", SYMLINK_LOOP))
            else:
                seen.add(real)
                kept.append(name)
        dirs[:] = kept
        found += [
            Path(parent) / f for f in files if Path(f).suffix.lower() in IMAGE_EXTENSIONS and not f.startswith(".")
        ]
    return sorted(found), loops


@dataclass
class ImageSet:
    """The readable images of one split of one domain (for example trainA), in sorted file order."""

    name: str
    paths: list[Path]
    skipped: list[SkippedFile] = field(default_factory=list)
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # files above it are refused (see read_rgb)

    @classmethod
    def scan(cls, folder: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, size: int | None = 256) -> ImageSet:
        """List image files under `folder` and decode each once; bad files are set aside with a reason.

        `size` is only a hint for decoding huge files reduced while checking them (see read_rgb).
        """
        candidates, skipped = list_image_files(folder)
        paths = []
        for path in candidates:
            try:
                if path.stat().st_size == 0:
                    skipped.append(SkippedFile(path, "empty file: 0 bytes", EMPTY))
                    continue
                read_rgb(path, size, max_pixels)
            except (*READ_ERRORS, MemoryError) as error:
                skipped.append(classify(path, error))
            else:
                paths.append(path)
        return cls(folder.name, paths, sorted(skipped, key=lambda s: s.path), max_pixels)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int, size: int | None = None) -> Tensor:
        """Image `index` as (3, size, size) uint8 (a huge file is decoded reduced, see read_rgb)."""
        return to_uint8_tensor(read_rgb(self.paths[index], size, self.max_pixels), size)

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
