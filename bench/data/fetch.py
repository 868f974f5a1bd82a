"""`python -m bench data fetch selfie2anime`: download or unpack selfie2anime into `{trainA,trainB,testA,testB}`.

Sources (`bench/data/selfie2anime.json` pins each one):

- `hf` (default): the Hugging Face dataset huggan/selfie2anime at a pinned revision, two parquet files whose
  `imageA` column is the selfies and `imageB` the anime faces; each file is checked against the sha256 the Hub
  declares for it. Rows pair images only by position.
- `ugatit`: the U-GAT-IT release zip on Google Drive, which a script cannot fetch reliably: download it by hand
  and pass `--from FILE`.
- `council`: Council GAN's Dropbox copy, sha256-pinned, whose A and B are swapped (A = anime); it is mapped back.

`--from FILE` takes a file downloaded by hand for any source (a zip; for hf a parquet file or the folder
holding both). Whatever the source, A is the selfie domain in the result.

The dataset is assembled in a temporary sibling folder and renamed into place only when it is complete, with a
`.complete.json` marker (source, counts, tree hash) written last. A folder with the marker is left alone unless
`--force`; a folder without it is never touched.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import logging
import os
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from bench.data.folder import _ANIME_NAME, SPLITS
from bench.data.images import IMAGE_EXTENSIONS, READ_ERRORS, read_rgb
from bench.download import download
from bench.errors import DataError
from bench.hashing import sha256_file

log = logging.getLogger(__name__)

DATASETS = ("selfie2anime",)
SOURCES = ("hf", "ugatit", "council")
MANIFEST_PATH = Path(__file__).with_name("selfie2anime.json")
MARKER = ".complete.json"
DEFAULT_ROOT = Path("datasets") / "selfie2anime"
# Orientation by image statistics: how many train images per domain are looked at, and by how much A's median
# flat-pixel fraction must exceed B's to call the domains swapped (anime is far flatter than photos).
ORIENTATION_SAMPLE = 32
ORIENTATION_MARGIN = 0.05


@dataclass
class FetchResult:
    """What `fetch_selfie2anime` did: `status` is "fetched" or "already complete"."""

    root: Path
    status: str
    marker: dict[str, Any]


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    """The shipped selfie2anime manifest (or the one at `path`)."""
    return json.loads(Path(path or MANIFEST_PATH).read_text())


def read_marker(root: Path) -> dict[str, Any] | None:
    """The `.complete.json` of a fetched folder, or None when there is none."""
    try:
        return json.loads((root / MARKER).read_text())
    except FileNotFoundError:
        return None


def tree_sha256(root: Path) -> str:
    """sha256 over the lines "relative/path<TAB>file-sha256" of every file but the marker, sorted by path."""

    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MARKER)
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}\t{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def fetch_selfie2anime(
    root: Path | None = None,
    source: str = "hf",
    from_path: Path | None = None,
    *,
    force: bool = False,
    allow_count_mismatch: bool = False,
    check_orientation: bool = True,
    manifest: dict[str, Any] | None = None,
) -> FetchResult:
    """Fetch selfie2anime from `source` (or unpack `from_path`) into `root`; see the module docstring."""
    manifest = manifest or load_manifest()
    if source not in manifest["sources"]:
        raise DataError(f"unknown selfie2anime source {source!r}; choose one of {', '.join(manifest['sources'])}")
    spec = manifest["sources"][source]
    root = Path(root) if root is not None else DEFAULT_ROOT
    marker = read_marker(root)
    if root.exists() and marker is None:
        raise DataError(
            f"{root} exists but has no {MARKER}, so it may be partial or hand-made, and fetch never overwrites it. "
            f"Keep it and use it as is, move it away (or delete it) and fetch again, or fetch elsewhere with "
            f"--data-root DIR."
        )
    if marker is not None and not force:
        return FetchResult(root, "already complete", marker)
    if from_path is not None and not Path(from_path).exists():
        raise DataError(f"--from {from_path}: no such file or folder")

    origin = _obtain(root, source, spec, from_path)  # before the temporary folder: this is the slow, flaky part
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier crash of a process with our pid
    try:
        for split in SPLITS:
            (tmp / split).mkdir(parents=True)
        if spec["kind"] == "huggingface":
            details = _write_parquets(tmp, spec, origin)
        else:
            details = _extract_zip(tmp, spec, origin)
        counts = {split: sum(1 for p in (tmp / split).iterdir() if p.is_file()) for split in SPLITS}
        mismatch = _check_counts(counts, manifest["splits"], allow_count_mismatch)
        orientation = _check_orientation(tmp) if check_orientation else "not checked (--no-orientation-check)"
        marker = {
            "dataset": manifest["dataset"],
            "source": source,
            **details,
            "counts": counts,
            "expected_counts": manifest["splits"],
            "count_mismatch": mismatch,
            "orientation": orientation,
            "tree_sha256": tree_sha256(tmp),
            "tree_sha256_format": 'sha256 of sorted lines "relative/path\\tfile-sha256\\n", marker excluded',
            "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_json_atomic(tmp / MARKER, marker)  # last: a folder with the marker is complete
        _move_into_place(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return FetchResult(root, "fetched", marker)


# -- getting the input ------------------------------------------------------------------------------------------
def _obtain(root: Path, source: str, spec: dict[str, Any], from_path: Path | None) -> dict[str, Any]:
    """The input, downloaded unless `from_path` is given: {"files": {split: parquet}} or {"archive": zip}, plus
    "from" (URL or path) and "verified" (how its hash was checked)."""
    if spec["kind"] == "huggingface":
        if from_path is not None:
            files = _find_parquets(Path(from_path), spec)
            return {"files": files, "from": str(from_path), "verified": "not checked (--from)"}
        return _hub_download(spec, root)
    if from_path is not None:
        archive, verified = Path(from_path), "not checked (no known sha256)"
        if spec.get("sha256"):
            from bench.download import ChecksumMismatch, check_sha256

            try:
                check_sha256(archive, spec["sha256"])
            except ChecksumMismatch as error:
                raise DataError(f"{error}: not the {source} archive this harness knows ({spec['url']}).") from None
            verified = "sha256 matches the manifest"
        return {"archive": archive, "from": str(from_path), "verified": verified}
    if not spec.get("auto_download"):
        raise DataError(_manual_help(source, spec, root, reason=spec.get("auto_download_note", "")))
    dest = root.parent / ".downloads" / f"{root.name}-{source}.zip"
    archive = download(spec["url"], dest, sha256=spec.get("sha256"), manual_help=_manual_help(source, spec, root))
    return {"archive": archive, "from": spec["url"], "verified": "sha256 matches the manifest"}


def _manual_help(source: str, spec: dict[str, Any], root: Path, reason: str = "") -> str:
    """What to download by hand for `source` and the `--from` command to run then."""
    data_root = "" if root == DEFAULT_ROOT else f" --data-root {root}"
    command = f"python -m bench data fetch selfie2anime --source {source}{data_root} --from"
    head = f"{reason}\n" if reason else ""
    if spec["kind"] == "huggingface":
        base = f"https://huggingface.co/datasets/{spec['repo_id']}/resolve/{spec['revision']}"
        urls = "\n".join(f"  {base}/{name}" for name in spec["files"].values())
        return (
            f"{head}Download these two files by hand into one folder, say ~/selfie2anime-hf/:\n{urls}\n"
            f"then run:\n  {command} ~/selfie2anime-hf"
        )
    sha = f" (sha256 {spec['sha256']})" if spec.get("sha256") else ""
    return f"{head}Download {spec['url']}{sha} by hand, then run:\n  {command} /path/to/selfie2anime.zip"


# Exceptions that mean "no network", by class name so that any huggingface_hub version (requests, httpx) matches.
_NETWORK_ERROR_NAMES = {
    "ConnectError",
    "ConnectTimeout",
    "ConnectionError",
    "HfHubHTTPError",
    "LocalEntryNotFoundError",
    "NetworkError",
    "OfflineModeIsEnabled",
    "ProxyError",
    "ReadTimeout",
    "Timeout",
    "TimeoutException",
}


def _is_network_error(error: BaseException) -> bool:
    """True when `error` or one of its causes is a connection, DNS, timeout or HTTP failure."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        if any(cls.__name__ in _NETWORK_ERROR_NAMES for cls in type(current).__mro__):
            return True
        current = current.__cause__ or current.__context__
    return False


def _hub_download(spec: dict[str, Any], root: Path) -> dict[str, Any]:
    """Download both parquet files through huggingface_hub and check each against the Hub's LFS sha256."""
    help_text = _manual_help("hf", spec, root)
    try:
        import huggingface_hub
    except ImportError:
        raise DataError(f"the hf source needs huggingface_hub (pip install huggingface_hub).\n{help_text}") from None
    repo, revision, names = spec["repo_id"], spec["revision"], list(spec["files"].values())
    try:
        # Asked first: it fails at once when offline, where hf_hub_download retries for half a minute.
        infos = huggingface_hub.HfApi().get_paths_info(repo, names, repo_type=spec["repo_type"], revision=revision)
        declared = {info.path: info.lfs.sha256 for info in infos if getattr(info, "lfs", None)}
        missing = [n for n in names if n not in declared]
        if missing:
            raise DataError(f"the Hub declares no LFS sha256 for {', '.join(missing)} in {repo}@{revision}")
        files = {}
        for split, name in spec["files"].items():
            files[split] = Path(
                huggingface_hub.hf_hub_download(repo, name, repo_type=spec["repo_type"], revision=revision)
            )
    except DataError:
        raise
    except Exception as error:
        if not _is_network_error(error):
            raise
        raise DataError(f"could not download {repo} from the Hugging Face Hub ({error}).\n{help_text}") from error
    for split, path in files.items():
        actual, expected = sha256_file(path), declared[spec["files"][split]]
        if actual != expected:
            raise DataError(
                f"{path}: sha256 {actual} differs from the {expected} the Hub declares; delete it and rerun"
            )
    return {
        "files": files,
        "from": f"hf://datasets/{repo}@{revision}",
        "verified": "sha256 matches the Hub's LFS sha256",
    }


def _find_parquets(given: Path, spec: dict[str, Any]) -> dict[str, Path]:
    """The train and test parquet files: `given` is one of them or a folder holding both (or a data/ folder)."""
    folder = given if given.is_dir() else given.parent
    found = {}
    for split, name in spec["files"].items():
        basename = PurePosixPath(name).name
        candidates = [folder / name, folder / basename, *sorted(folder.glob(f"**/{split}-*.parquet"))]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            raise DataError(f"--from {given}: no {basename} (or {split}-*.parquet) in {folder}; put both files there")
        found[split] = hit
    return found


# -- writing the images -----------------------------------------------------------------------------------------
_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"))
_SAME_FORMAT = {".jpg": (".jpg", ".jpeg"), ".png": (".png",), ".webp": (".webp",)}  # suffixes kept as they are


def _image_extension(data: bytes) -> str | None:
    """The file extension for JPEG, PNG or WebP bytes (by magic number), else None."""
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return None


def _file_names(basenames: list[str | None], extensions: list[str], column: str) -> list[str]:
    """The `path` fields' basenames (extension fixed to the format) when all are present and unique, else row-index
    names. Row names are "row00012.png", never bare digits, which the selfie2anime loader reads as anime names."""
    names = []
    for basename, ext in zip(basenames, extensions):
        stem = PurePosixPath((basename or "").replace("\\", "/")).name
        if not stem or stem.startswith("."):
            break
        names.append(stem if Path(stem).suffix.lower() in _SAME_FORMAT[ext] else Path(stem).stem + ext)
    rows = [f"row{i:05d}{ext}" for i, ext in enumerate(extensions)]
    # Files are first written under their row names and then renamed: a name equal to another row's would clash.
    clash = {n.lower() for n, r in zip(names, rows) if n != r} & {r.lower() for r in rows}
    if len(names) == len(basenames) and len({n.lower() for n in names}) == len(names) and not clash:
        return names
    if any(basenames):
        log.info("%s: path names missing or not unique; using row numbers", column)
    return rows


def _write_parquets(tmp: Path, spec: dict[str, Any], origin: dict[str, Any]) -> dict[str, Any]:
    """Write each row's A and B image bytes, unchanged, to {split}A/ and {split}B/."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading the hf parquet files needs pyarrow (pip install pyarrow)") from None
    hashes = {}
    for split, path in origin["files"].items():
        for domain, column in spec["columns"].items():
            folder = tmp / f"{split}{domain}"
            basenames, extensions = [], []
            try:
                table = pq.ParquetFile(path)
                if column not in table.schema_arrow.names:
                    raise DataError(f"{path}: no column {column!r} (columns: {', '.join(table.schema_arrow.names)})")
                # Streamed in batches: the train file is hundreds of MB.
                for batch in table.iter_batches(columns=[column], batch_size=256):
                    for row in batch.column(0).to_pylist():
                        i = len(extensions)
                        ext = _image_extension(row["bytes"]) if row and row.get("bytes") else None
                        if ext is None:
                            raise DataError(f"{path}: row {i} of {column} holds no JPEG, PNG or WebP image")
                        (folder / f"row{i:05d}{ext}").write_bytes(row["bytes"])  # the original bytes, not re-encoded
                        basenames.append(row.get("path"))
                        extensions.append(ext)
            except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
                raise DataError(f"{path}: not a readable parquet file ({error}); download it again") from error
            for i, name in enumerate(_file_names(basenames, extensions, f"{path.name}:{column}")):
                if name != f"row{i:05d}{extensions[i]}":
                    (folder / f"row{i:05d}{extensions[i]}").rename(folder / name)
        hashes[split] = sha256_file(path)
    return {"from": origin["from"], "verified": origin["verified"], "parquet_sha256": hashes}


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why extracting this zip entry could write outside the target folder, or None if it is safe."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")):
        return "an absolute path"
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return "a drive letter"
    if ".." in parts:
        return "a '..' component"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return None


def _zip_prefix(names: list[str], expected: str | None) -> str:
    """The folder inside the zip that holds trainA/ trainB/ testA/ testB/ (the manifest's, when present)."""
    found: dict[str, set[str]] = {}
    for name in names:
        parts = name.split("/")
        for i, part in enumerate(parts[:-1]):
            if part in SPLITS:
                found.setdefault("".join(p + "/" for p in parts[:i]), set()).add(part)
    complete = sorted(p for p, splits in found.items() if len(splits) == len(SPLITS) and "__MACOSX" not in p)
    if expected is not None and expected in complete:
        return expected
    if len(complete) == 1:
        return complete[0]
    listed = ", ".join(repr(p) for p in complete) or "none"
    raise DataError(f"the zip needs one folder holding {', '.join(SPLITS)}; folders found: {listed}")


def _extract_zip(tmp: Path, spec: dict[str, Any], origin: dict[str, Any]) -> dict[str, Any]:
    """Copy the zip's split folders' images into tmp, swapping A and B when the manifest says so."""
    archive = Path(origin["archive"])
    swap = {"trainA": "trainB", "trainB": "trainA", "testA": "testB", "testB": "testA"}
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:  # all entries are vetted before any byte is written
                reason = _unsafe_reason(info)
                if reason:
                    raise DataError(f"{archive}: refusing entry {info.filename!r}: {reason}")
            prefix = _zip_prefix([i.filename for i in infos], spec.get("zip_prefix"))
            skipped = 0
            for info in infos:
                rest = info.filename[len(prefix) :].split("/") if info.filename.startswith(prefix) else []
                if info.is_dir() or len(rest) != 2 or rest[0] not in SPLITS:
                    continue
                if Path(rest[1]).suffix.lower() not in IMAGE_EXTENSIONS or rest[1].startswith("."):
                    skipped += 1
                    continue
                split = swap[rest[0]] if spec.get("swap_ab") else rest[0]
                with zf.open(info) as src, open(tmp / split / rest[1], "wb") as dst:
                    shutil.copyfileobj(src, dst)  # reading to the end checks the entry's CRC-32
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        raise DataError(f"{archive}: corrupt or truncated zip ({error}); download it again") from error
    return {
        "from": origin["from"],
        "verified": origin["verified"],
        "archive_sha256": sha256_file(archive),
        "zip_prefix": prefix,
        "swapped_ab": bool(spec.get("swap_ab")),
        "skipped_entries": skipped,
    }


# -- checks -----------------------------------------------------------------------------------------------------
def _check_counts(counts: dict[str, int], expected: dict[str, int], allow_mismatch: bool) -> bool:
    """True when the counts differ from the manifest; raises unless `allow_mismatch`."""
    if counts == expected:
        return False
    text = ", ".join(f"{s} {counts[s]} (expected {expected[s]})" for s in SPLITS if counts[s] != expected[s])
    if not allow_mismatch:
        raise DataError(
            f"selfie2anime split sizes differ from the published ones: {text}. Nothing was written; "
            f"pass --allow-count-mismatch to keep such a copy anyway."
        )
    log.warning("selfie2anime split sizes differ from the published ones: %s (kept: --allow-count-mismatch)", text)
    return True


def _flat_fraction(path: Path) -> float | None:
    """Fraction of horizontally or vertically adjacent pixel pairs with exactly the same RGB value."""
    try:
        pixels = np.asarray(read_rgb(path), dtype=np.int16)
    except READ_ERRORS:
        return None
    across = (np.diff(pixels, axis=1) == 0).all(axis=-1)
    down = (np.diff(pixels, axis=0) == 0).all(axis=-1)
    return float((across.sum() + down.sum()) / max(1, across.size + down.size))


def _check_orientation(root: Path) -> str:
    """Fail if trainA looks like anime and trainB like selfies; returns how that was decided.

    1. File names, when they are the U-GAT-IT ones: anime files are digits.png (`_ANIME_NAME`), selfies are not
       (female_1234.jpg). More than 90% anime names in trainA and under 10% in trainB means swapped; the reverse
       means the right way round.
    2. Otherwise image statistics: anime faces are drawn in flat colour, photos have noise and gradients, so the
       fraction of neighbouring pixels with identical RGB is much higher for anime. Over up to 32 train images per
       domain, trainA's median exceeding trainB's by more than 0.05 means swapped; a smaller gap is inconclusive
       and passes with a warning.
    """
    names = {d: sorted(p.name for p in (root / f"train{d}").iterdir()) for d in "AB"}
    anime = {d: sum(bool(_ANIME_NAME.match(n)) for n in names[d]) / max(1, len(names[d])) for d in "AB"}
    if anime["A"] > 0.9 and anime["B"] < 0.1:
        raise DataError(
            "trainA file names look like anime (digits.png) and trainB's like selfies: A and B appear swapped. "
            "Nothing was written; if this copy is known to be the right way round, rerun with --no-orientation-check."
        )
    if anime["B"] > 0.9 and anime["A"] < 0.1:
        return "file names: trainB holds the anime names (digits.png)"
    flat = {}
    for d in "AB":
        paths = sorted((root / f"train{d}").iterdir())
        step = max(1, len(paths) // ORIENTATION_SAMPLE)
        values = [v for v in map(_flat_fraction, paths[::step][:ORIENTATION_SAMPLE]) if v is not None]
        flat[d] = float(np.median(values)) if values else 0.0
    text = f"median flat-pixel fraction trainA {flat['A']:.3f}, trainB {flat['B']:.3f}"
    if flat["A"] > flat["B"] + ORIENTATION_MARGIN:
        raise DataError(
            f"trainA looks like anime and trainB like photos ({text}): A and B appear swapped. Nothing was written; "
            f"if this copy is known to be the right way round, rerun with --no-orientation-check."
        )
    if flat["B"] > flat["A"] + ORIENTATION_MARGIN:
        return f"image statistics: {text}"
    log.warning("selfie2anime: could not confirm that A is selfies (%s)", text)
    return f"inconclusive: {text}"


# -- writing the folder -----------------------------------------------------------------------------------------
def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and os.replace, so a reader sees all of it or nothing."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _move_into_place(tmp: Path, root: Path) -> None:
    """Rename the finished tmp folder to root; a complete root (--force) is replaced only after that succeeds."""
    root.parent.mkdir(parents=True, exist_ok=True)
    if not root.exists():
        try:
            tmp.rename(root)
            return
        except OSError:
            if read_marker(root) is None:
                raise
            log.info("%s was completed by another process meanwhile; keeping that one", root)
            return
    if read_marker(root) is None:  # it lost its marker since we looked: never replace such a folder
        raise DataError(f"{root} has no {MARKER} any more; leaving it alone")
    old = root.with_name(f".{root.name}.old-{os.getpid()}")
    root.rename(old)
    try:
        tmp.rename(root)
    except OSError:
        old.rename(root)
        raise
    shutil.rmtree(old)


# -- CLI --------------------------------------------------------------------------------------------------------
def _dataset_name(text: str) -> str:
    """argparse type for the dataset positional, with a "did you mean" hint."""
    if text in DATASETS:
        return text
    close = difflib.get_close_matches(text, DATASETS, n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise argparse.ArgumentTypeError(f"unknown dataset {text!r}{hint} (fetch knows: {', '.join(DATASETS)})")


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `bench data fetch`."""
    parser.add_argument("dataset", type=_dataset_name, help=f"dataset to fetch: {', '.join(DATASETS)}")
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="hf",
        help="hf: Hugging Face huggan/selfie2anime (default); ugatit: the U-GAT-IT zip (needs --from); "
        "council: Council GAN's Dropbox zip (A/B swapped, mapped back)",
    )
    parser.add_argument(
        "--from",
        dest="from_path",
        type=Path,
        metavar="FILE",
        help="use a file downloaded by hand: the zip, or for hf a parquet file or the folder holding both",
    )
    parser.add_argument("--data-root", type=Path, help=f"where to write the dataset (default {DEFAULT_ROOT})")
    parser.add_argument("--force", action="store_true", help="refetch even if a complete copy is there")
    parser.add_argument(
        "--allow-count-mismatch", action="store_true", help="keep a copy whose split sizes differ from 3400/100"
    )
    parser.add_argument(
        "--no-orientation-check",
        dest="check_orientation",
        action="store_false",
        help="skip the check that A looks like selfies and B like anime",
    )


def run_fetch(args: argparse.Namespace) -> int:
    """Run `bench data fetch` with parsed arguments; problems raise DataError (the CLI exits 2)."""
    result = fetch_selfie2anime(
        args.data_root,
        args.source,
        args.from_path,
        force=args.force,
        allow_count_mismatch=args.allow_count_mismatch,
        check_orientation=args.check_orientation,
    )
    marker = result.marker
    counts = ", ".join(f"{s} {n}" for s, n in marker.get("counts", {}).items())
    if result.status == "already complete":
        print(f"{result.root} is already complete ({marker.get('source')}: {counts}); --force refetches it.")
    else:
        print(f"wrote {result.root} from {marker['from']} ({counts}); orientation: {marker['orientation']}")
    return 0
