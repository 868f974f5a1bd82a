"""Two-domain image folders: `root/{trainA,trainB,testA,testB}/` (the U-GAT-IT / Council GAN layout)."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data.images import DEFAULT_MAX_PIXELS, SKIP_KINDS, ImageSet, SkippedFile
from bench.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("trainA", "trainB", "testA", "testB")


@dataclass
class TwoDomainDataset:
    """Train and test images of domains A and B, with what could not be read."""

    name: str
    root: Path
    image_size: int  # resolution at which real and translated images are compared
    sets: dict[str, ImageSet]
    notes: list[str] = field(default_factory=list)  # warnings worth showing in the report

    def split(self, split: str, domain: str) -> ImageSet:
        return self.sets[f"{split}{domain}"]

    @property
    def skipped(self) -> list[SkippedFile]:
        return [s for image_set in self.sets.values() for s in image_set.skipped]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": str(self.root),
            "image_size": self.image_size,
            "counts": {name: len(s) for name, s in self.sets.items()},
            "skipped": [{"path": str(s.path), "reason": s.reason, "kind": s.kind} for s in self.skipped],
            "skipped_by_kind": skip_counts(self.skipped),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: how to open it and which defaults suit it."""

    name: str
    open: Callable[[Path | None, dict[str, Any]], TwoDomainDataset]
    default_preset: str  # the method preset a run uses unless told otherwise
    synthetic: bool  # synthetic data may use a stand-in feature extractor by default
    eval_defaults: dict[str, Any] = field(default_factory=dict)  # EvalOptions this dataset changes (user's win)


SHOWN_PER_KIND = 3  # files named per kind of fault in the log; the rest are counted


def skip_counts(skipped: list[SkippedFile]) -> dict[str, int]:
    """{kind: number of files}, most frequent first (ties in SKIP_KINDS order)."""
    counts = Counter(s.kind for s in skipped)
    order = {kind: i for i, kind in enumerate(SKIP_KINDS)}
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], order.get(kv[0], len(order)), kv[0])))


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())


def log_skipped(name: str, root: Path, skipped: list[SkippedFile], total: int) -> None:
    """One warning for all skipped files: counts per kind, then the first few files of each kind."""
    if not skipped:
        return
    lines = [f"{name}: skipped {len(skipped)} of {total} image file(s) under {root}: {_counted(skip_counts(skipped))}"]
    for kind in skip_counts(skipped):
        files = [s for s in skipped if s.kind == kind]
        for s in files[:SHOWN_PER_KIND]:
            lines.append(f"  {_relative(s.path, root)}: {s.reason}")
        if len(files) > SHOWN_PER_KIND:
            lines.append(f"  ... and {len(files) - SHOWN_PER_KIND} more {kind}")
    log.warning("%s", "\n".join(lines))


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def open_folder(
    root: Path,
    name: str,
    image_size: int,
    missing_help: str = "",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> TwoDomainDataset:
    """Scan the four split folders; fail before training if any is missing or has no readable image.

    `max_pixels` is the per-file limit above which a file is refused (None: no limit).
    """
    if not root.is_dir():
        raise DataError(f"{name}: no dataset at {root} (expected {', '.join(SPLITS)} inside).\n{missing_help}".rstrip())
    absent = [s for s in SPLITS if not (root / s).is_dir()]
    if absent:
        raise DataError(
            f"{name}: {root} lacks the folder(s) {', '.join(absent)}; the layout is "
            f"{root}/{{{','.join(SPLITS)}}}/ holding .jpg, .jpeg, .png or .webp files.\n{missing_help}".rstrip()
        )
    sets = {split: ImageSet.scan(root / split, max_pixels, image_size) for split in SPLITS}
    dataset = TwoDomainDataset(name, root, image_size, sets)
    total = sum(len(s) + len(s.skipped) for s in sets.values())
    log_skipped(name, root, dataset.skipped, total)  # before any error below, so the files are named
    for split, image_set in sets.items():
        if not image_set.paths:
            detail = (
                f"; {len(image_set.skipped)} file(s) could not be read ({_counted(skip_counts(image_set.skipped))})"
                if image_set.skipped
                else ""
            )
            raise DataError(f"{name}: {root / split} has no readable image{detail}.")
    if dataset.skipped:
        dataset.notes.append(
            f"{len(dataset.skipped)} unreadable file(s) skipped ({_counted(skip_counts(dataset.skipped))}); "
            "see the data section of the report."
        )
    return dataset


def check_options(dataset: str, options: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
    """`known` (option -> default) updated with `options`; an unknown option raises."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        listed = ", ".join(known) or "none"
        raise DataError(f"{dataset} has no option(s) {', '.join(unknown)}; its options: {listed}")
    return {**known, **options}


def _open_folder(data_root: Path | None, options: dict[str, Any]) -> TwoDomainDataset:
    options = check_options("folder", options, {"image_size": 256, "max_pixels": DEFAULT_MAX_PIXELS})
    if data_root is None:
        raise DataError("the 'folder' dataset needs --data-root DIR, a folder holding trainA/ trainB/ testA/ testB/.")
    return open_folder(
        Path(data_root), "folder", int(options["image_size"]), max_pixels=_max_pixels("folder", options["max_pixels"])
    )


def _max_pixels(dataset: str, value: Any) -> int | None:
    """The max_pixels option: a positive whole number of pixels per file, or null/none/0 for no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        return None
    try:
        number = int(float(value)) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or number < 0 or (not isinstance(value, str) and number != value):
        raise DataError(f"{dataset}: max_pixels must be a whole number of pixels per file (or none), not {value!r}")
    return number or None


SELFIE2ANIME_HELP = """\
Get selfie2anime (3,400 train and 100 test images per domain, 256x256) one of these ways, and unpack it so
that {root}/trainA exists, or pass --data-root DIR:
  1. The U-GAT-IT release (A = selfie, B = anime, the orientation this harness uses): the Google Drive
     file 1xOWj1UVgp6NKMT3HbPhBbtq2A4EDkghF linked from the README of github.com/taki0112/UGATIT.
  2. The Hugging Face dataset huggan/selfie2anime: write its imageA column (selfies) to trainA/ and testA/
     and its imageB column (anime) to trainB/ and testB/ as PNG files.
  3. The Council GAN copy (scripts/download.sh of github.com/Onr/Council-GAN): its A and B are SWAPPED
     (A = anime). After unpacking rename trainA <-> trainB and testA <-> testB."""

_ANIME_NAME = re.compile(r"^\d+\.png$", re.IGNORECASE)


def _open_selfie2anime(data_root: Path | None, options: dict[str, Any]) -> TwoDomainDataset:
    options = check_options("selfie2anime", options, {"max_pixels": DEFAULT_MAX_PIXELS})
    root = Path(data_root) if data_root is not None else Path("datasets") / "selfie2anime"
    dataset = open_folder(
        root,
        "selfie2anime",
        256,
        SELFIE2ANIME_HELP.format(root=root),
        max_pixels=_max_pixels("selfie2anime", options["max_pixels"]),
    )
    expected = {"trainA": 3400, "trainB": 3400, "testA": 100, "testB": 100}
    counts = {name: len(s) + len(s.skipped) for name, s in dataset.sets.items()}
    if counts != expected:
        dataset.notes.append(f"file counts {counts} differ from the published split {expected}.")
    # The U-GAT-IT release names anime images 0006.png and selfies female_222.jpg; anime-style names in
    # trainA mean A and B are swapped (the Council GAN copy).
    names_a = [p.name for p in dataset.sets["trainA"].paths]
    if names_a and sum(bool(_ANIME_NAME.match(n)) for n in names_a) > 0.9 * len(names_a):
        dataset.notes.append(
            "trainA file names look like the anime domain (digits.png): A and B may be swapped, as in the "
            "Council GAN copy. A must be selfies; rename trainA <-> trainB and testA <-> testB."
        )
    for note in dataset.notes:
        log.warning("selfie2anime: %s", note)
    return dataset


FOLDER = DatasetSpec("folder", _open_folder, default_preset="paper", synthetic=False)
SELFIE2ANIME = DatasetSpec("selfie2anime", _open_selfie2anime, default_preset="paper", synthetic=False)
