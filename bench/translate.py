"""`python -m bench translate`: translate a folder of images with a released checkpoint, written as PNGs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from bench.data.images import ImageSet, float_to_uint8, save_pngs, uint8_to_float
from bench.errors import BenchError, ConfigError
from bench.official import load_official
from bench.registry import METHODS
from methods.base import Direction, Method

log = logging.getLogger(__name__)


def translate_folder(
    method: Method,
    direction: Direction,
    images: ImageSet,
    output: Path,
    seed: int = 0,
    batch_size: int = 8,
    device: str = "cpu",
) -> list[Path]:
    """Translate every image of `images` at the method's image size; returns the PNGs written.

    A multimodal method draws one style per image from a generator seeded with `seed`, in file order, so the
    same command writes the same files.
    """
    method.to(device).eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    names = [path.stem for path in images.paths]
    size = method.config.image_size
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = range(start, min(start + batch_size, len(images)))
            x = uint8_to_float(torch.stack([images.load(i, size) for i in chunk])).to(device)
            y = method.translate(x, direction, generator=generator)
            save_pngs(float_to_uint8(y).cpu(), output, [names[i] for i in chunk])
    return [output / f"{name}.png" for name in names]


def run_translate(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not args.input.is_dir():
        raise BenchError(f"--input {args.input} is not a folder of images")
    images = ImageSet.scan(args.input)
    for skipped in images.skipped:
        log.warning("skipped %s: %s", skipped.path, skipped.reason)
    if not images.paths:
        raise BenchError(f"--input {args.input} holds no readable image (.png, .jpg, ...)")
    stems = [p.stem for p in images.paths]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise BenchError(f"--input has several images named {', '.join(repeated[:3])}: their PNGs would collide")
    existing = [args.output / f"{s}.png" for s in stems if (args.output / f"{s}.png").exists()]
    if existing and not args.overwrite:
        raise BenchError(
            f"{len(existing)} PNGs already exist in {args.output} (e.g. {existing[0].name}); pass --overwrite"
        )
    cls = METHODS.get(args.method)
    try:
        method = cls.from_preset(args.preset)
    except ValueError as error:  # an unknown preset or bad value
        raise ConfigError(str(error)) from error
    if args.direction not in method.directions:
        raise ConfigError(f"{args.method} preset {args.preset} translates {', '.join(method.directions)} only")
    try:
        filled = load_official(method, args.official, direction=args.direction)
    except (ValueError, OSError) as error:
        raise BenchError(f"{args.method} could not load {args.official}: {error}") from error
    unfilled = [n for n in method.translation_networks(args.direction) if n not in filled]
    if unfilled:
        raise BenchError(
            f"{args.official} holds no weights for {', '.join(unfilled)}, which {args.method} translates "
            f"{args.direction} with; supply that file too (a folder of the released files works)"
        )
    log.info("%s: loaded %s from %s", args.method, ", ".join(filled), args.official)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    written = translate_folder(method, args.direction, images, args.output, args.seed, args.batch_size, device)
    print(f"wrote {len(written)} translations ({args.direction}) to {args.output}")
    return 0
