"""Hostile and awkward image files (issue 13): every fault gets a kind, a one-line reason and a count.

Truncated, non-image, zero-byte, unreadable, symlink loops and broken links are skipped; decompression
bombs beyond `max_pixels` are refused from the header; huge files below it are decoded reduced without
Pillow's bomb check stopping anything; 16-bit, CMYK, palette, LA/RGBA, 1x1 and EXIF-rotated images load.
"""

from __future__ import annotations

import builtins
import logging
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import images as images_module
from bench.data.folder import SPLITS, open_folder
from bench.data.images import (
    CORRUPT,
    DENIED,
    EMPTY,
    MISSING,
    NOT_AN_IMAGE,
    SYMLINK_LOOP,
    TOO_LARGE,
    ImageSet,
    ImageTooLarge,
    read_rgb,
    to_rgb,
)
from bench.data.loader import Augment, training_batches
from bench.errors import DataError
from bench.registry import DATASETS

XSS_NAME = "<img src=x onerror=alert(1)>.png"


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid-looking 8-bit RGB PNG whose header claims width x height; its pixel data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    return path


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _good_split(folder: Path, n: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _noise(12, 12, i).save(folder / f"good{i}.png")


def _dataset_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for split in SPLITS:
        _good_split(root / split)
    return root


# -- decompression bombs and huge files ------------------------------------------------------------------
def test_a_bomb_header_is_refused_per_file_with_a_message_and_no_warning(tmp_path: Path) -> None:
    path = _png_claiming(tmp_path / "bomb.png", 100_000, 100_000)  # 10 Gpx claimed, 80 bytes on disk
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither Pillow's DecompressionBombWarning nor anything else
        with pytest.raises(ImageTooLarge, match=r"100000x100000 = 10000 Mpx exceeds the limit of 268 Mpx.*max_pixels"):
            read_rgb(path)
        scanned = ImageSet.scan(tmp_path)
    assert Image.MAX_IMAGE_PIXELS == before  # Pillow's global limit is untouched outside the loading code
    (skipped,) = scanned.skipped
    assert skipped.kind == TOO_LARGE and "max_pixels" in skipped.reason and not scanned.paths


def test_the_limit_is_a_data_option(tmp_path: Path) -> None:
    root = _dataset_root(tmp_path)
    _noise(20, 10).save(root / "trainA" / "wide.png")  # 200 pixels
    folder = DATASETS.get("folder")
    refused = folder.open(root, {"image_size": 8, "max_pixels": 199})
    assert [(s.path.name, s.kind) for s in refused.skipped] == [("wide.png", TOO_LARGE)]
    assert "200 pixels" not in refused.skipped[0].reason and "max_pixels=199" in refused.skipped[0].reason
    assert not folder.open(root, {"image_size": 8, "max_pixels": 200}).skipped
    assert not folder.open(root, {"image_size": 8, "max_pixels": None}).skipped  # none: no limit
    with pytest.raises(DataError, match="max_pixels must be a whole number"):
        folder.open(root, {"max_pixels": "lots"})
    assert not DATASETS.get("selfie2anime").open(root, {"max_pixels": 2**28}).split("train", "A").skipped


def test_pillows_own_limit_neither_warns_nor_stops_below_ours(tmp_path: Path, monkeypatch) -> None:
    """The reported bug at small scale: Pillow's limit lowered under a file (warning zone and error zone)."""
    path = tmp_path / "photo.png"
    _noise(40, 30).save(path)
    expected = np.array(to_rgb(Image.open(path)))
    for limit in (1000, 500):  # 1200 px: above the warning limit; above twice the limit (Pillow's error)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.array_equal(np.array(read_rgb(path)), expected)
            assert ImageSet.scan(tmp_path).paths == [path]
        assert Image.MAX_IMAGE_PIXELS == limit  # restored afterwards


def test_a_100_megapixel_png_loads_reduced_without_a_warning(tmp_path: Path) -> None:
    """Above Pillow's default 89 Mpx warning limit: it used to stop the whole scan with a traceback."""
    image = Image.new("L", (10_000, 10_000), 40)  # 100 MB while written; a few hundred kB on disk
    image.paste(200, (0, 0, 5_000, 10_000))  # left half bright
    image.save(tmp_path / "huge.png", compress_level=1)
    del image
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        scanned = ImageSet.scan(tmp_path, size=32)
        tensor = scanned.load(0, 32)
    assert scanned.paths and not scanned.skipped
    assert tensor.shape == (3, 32, 32)
    assert tensor[:, :, :14].float().mean() == pytest.approx(200, abs=1)  # left half bright, right dark
    assert tensor[:, :, 18:].float().mean() == pytest.approx(40, abs=1)


def test_huge_png_is_reduced_band_by_band_to_the_same_pixels(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(images_module, "REDUCED_DECODE_PIXELS", 100)  # every file counts as huge
    monkeypatch.setattr(images_module, "BAND_PIXELS", 300)  # many bands
    for mode in ("RGB", "RGBA", "P", "LA", "I;16"):
        path = tmp_path / f"{mode.replace(';', '')}.png"
        source = _noise(103, 77).convert("RGBA" if mode == "LA" else mode if mode != "I;16" else "L")
        if mode == "LA":
            source = source.convert("LA")
        if mode == "I;16":
            source = Image.fromarray(np.asarray(source).astype(np.uint16) * 257)
        source.save(path)
        reduced = read_rgb(path, size=8)  # target 16 per side: factor 77 // 16 = 4
        assert reduced.size == (26, 20) and reduced.mode == "RGB"
        whole = to_rgb(Image.open(path)).reduce(4)
        assert np.array_equal(np.array(reduced), np.array(whole)), mode


def test_huge_jpeg_is_decoded_at_reduced_scale(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (640, 480), (200, 30, 60)).save(path, quality=95)
    monkeypatch.setattr(images_module, "REDUCED_DECODE_PIXELS", 1000)
    image = read_rgb(path, size=32)  # target 64 per side: libjpeg's 1/4 scale (1/8 would be 80x60 < 64)
    assert image.size == (160, 120)
    assert np.abs(np.array(image, dtype=float) - (200, 30, 60)).max() < 8
    assert read_rgb(path).size == (640, 480)  # no size given: full resolution


# -- broken files --------------------------------------------------------------------------------------------
def test_each_broken_file_gets_a_kind_and_a_reason(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "trainA"
    _good_split(folder)
    _noise(32, 32).save(folder / "whole.jpg")
    (folder / "truncated.jpg").write_bytes((folder / "whole.jpg").read_bytes()[:300])
    _noise(32, 32).save(folder / "whole.png")
    (folder / "truncated.png").write_bytes((folder / "whole.png").read_bytes()[:200])
    (folder / "letter.png").write_text("Dear user, this is not a picture.\n")
    (folder / "empty.webp").write_bytes(b"")
    _png_claiming(folder / "bomb.png", 30_000, 30_000)
    os.symlink("loop_b.png", folder / "loop_a.png")
    os.symlink("loop_a.png", folder / "loop_b.png")
    os.symlink("nowhere.png", folder / "dangling.png")
    _noise(8, 8).save(folder / "locked.png")
    os.chmod(folder / "locked.png", 0)
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):  # root reads mode-0 files anyway: deny it as a user's OS would
        if str(file).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    scanned = ImageSet.scan(folder)
    kinds = {s.path.name: s.kind for s in scanned.skipped}
    assert kinds == {
        "truncated.jpg": CORRUPT,
        "truncated.png": CORRUPT,
        "letter.png": NOT_AN_IMAGE,
        "empty.webp": EMPTY,
        "bomb.png": TOO_LARGE,
        "loop_a.png": SYMLINK_LOOP,
        "loop_b.png": SYMLINK_LOOP,
        "dangling.png": MISSING,
        "locked.png": DENIED,
    }
    assert sorted(p.name for p in scanned.paths) == ["good0.png", "good1.png", "whole.jpg", "whole.png"]
    for skipped in scanned.skipped:
        assert "\n" not in skipped.reason and skipped.reason.startswith(skipped.kind), skipped


def test_a_symlinked_folder_loop_is_reported_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "trainA"
    _good_split(folder / "sub")
    os.symlink("..", folder / "sub" / "back")  # sub/back -> trainA: would recurse for ever
    os.symlink(folder / "sub", tmp_path / "linked")
    (tmp_path / "trainA" / "other").symlink_to(tmp_path / "linked")  # a second way into sub
    scanned = ImageSet.scan(folder)
    assert [p.name for p in scanned.paths] == ["good0.png", "good1.png"]  # each file once
    assert {s.kind for s in scanned.skipped} == {SYMLINK_LOOP} and len(scanned.skipped) == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_file_without_read_permission_is_skipped(tmp_path: Path) -> None:
    _noise(8, 8).save(tmp_path / "locked.png")
    os.chmod(tmp_path / "locked.png", 0)
    (skipped,) = ImageSet.scan(tmp_path).skipped
    assert skipped.kind == DENIED


# -- modes, tiny and rotated images ----------------------------------------------------------------------------
def test_awkward_modes_load_from_files(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.new("CMYK", (2, 2), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "palette.png", transparency=0)
    Image.new("LA", (1, 1), (0, 128)).save(tmp_path / "la.png")
    Image.new("RGBA", (1, 1), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.new("RGB", (1, 1), (1, 2, 3)).save(tmp_path / "dot.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I") and Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    assert np.array(read_rgb(tmp_path / "deep.png"))[0, :, 0].tolist() == [0, 128, 255]  # scaled, not clipped
    assert np.abs(np.array(read_rgb(tmp_path / "cmyk.jpg"), dtype=int) - (255, 0, 0)).max() <= 3
    assert np.array(read_rgb(tmp_path / "palette.png")).tolist() == [[[255, 255, 255], [200, 100, 50]]]
    assert np.array(read_rgb(tmp_path / "la.png"))[0, 0].tolist() == [127, 127, 127]  # black half-alpha on white
    assert np.array(read_rgb(tmp_path / "clear.png"))[0, 0].tolist() == [255, 255, 255]  # alpha 0: white
    scanned = ImageSet.scan(tmp_path)
    assert len(scanned) == 6 and not scanned.skipped
    dot = scanned.load(scanned.paths.index(tmp_path / "dot.png"), 8)
    assert dot.shape == (3, 8, 8) and dot[:, 0, 0].tolist() == [1, 2, 3]  # 1x1 scales up


def test_exif_orientation_is_applied(tmp_path: Path, monkeypatch) -> None:
    upright = np.zeros((20, 40, 3), dtype=np.uint8)
    upright[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise to display
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # what a camera on its side writes
    stored.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    stored.save(tmp_path / "rotated.png", exif=exif)
    for name in ("rotated.jpg", "rotated.png"):
        image = np.array(read_rgb(tmp_path / name), dtype=float)
        assert image.shape == (20, 40, 3), name
        assert image[:, :18].mean() > 240 and image[:, 22:].mean() < 15, name
    monkeypatch.setattr(images_module, "REDUCED_DECODE_PIXELS", 100)  # the reduced path turns it too
    assert read_rgb(tmp_path / "rotated.png", size=4).size == (20, 10)  # reduced by 2, then turned


# -- the dataset: counts, one log message, too few images -----------------------------------------------------
def test_the_summary_counts_each_kind_and_the_log_names_a_few(tmp_path: Path, caplog) -> None:
    root = _dataset_root(tmp_path)
    _noise(32, 32).save(tmp_path / "whole.jpg")
    for i in range(10):
        (root / "trainB" / f"junk{i}.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:300])  # truncated
    (root / "testA" / "empty.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="bench.data.folder"):
        dataset = open_folder(root, "folder", 8)
    summary = dataset.summary()
    assert summary["skipped_by_kind"] == {CORRUPT: 10, EMPTY: 1}
    assert {s["kind"] for s in summary["skipped"]} == {CORRUPT, EMPTY}
    (record,) = [r for r in caplog.records if r.name == "bench.data.folder"]
    message = record.getMessage()
    assert (
        message.startswith("folder: skipped 11 of 19 image file(s)") and "10 truncated or corrupt, 1 empty" in message
    )
    assert message.count("junk") == 3 and "... and 7 more truncated or corrupt" in message
    assert "testA/empty.png: empty file" in message
    assert any("11 unreadable file(s) skipped (10 truncated or corrupt, 1 empty file)" in n for n in dataset.notes)


def test_a_domain_with_only_bad_files_stops_before_training(tmp_path: Path) -> None:
    root = _dataset_root(tmp_path)
    for f in (root / "testB").iterdir():
        f.unlink()
    (root / "testB" / "a.png").write_bytes(b"")
    _png_claiming(root / "testB" / "b.png", 40_000, 40_000)
    with pytest.raises(DataError, match=r"testB has no readable image; 2 file\(s\) could not be read \(1 .*, 1 .*\)"):
        open_folder(root, "folder", 8)


def test_training_batches_from_tiny_and_huge_images(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(images_module, "REDUCED_DECODE_PIXELS", 100)
    for split in ("a", "b"):
        (tmp_path / split).mkdir()
        Image.new("RGB", (1, 1), (9, 9, 9)).save(tmp_path / split / "dot.png")
        _noise(300, 200).save(tmp_path / split / "big.png")
    augment = Augment(load_size=10, crop_size=8, flip=True)
    sets = [ImageSet.scan(tmp_path / s, size=10) for s in ("a", "b")]
    batches = list(training_batches(*sets, augment, 2, 0, 0, 2))
    assert len(batches) == 2 and all(b.a.shape == (2, 3, 8, 8) and torch.isfinite(b.b).all() for b in batches)


# -- the report ---------------------------------------------------------------------------------------------
def test_a_hostile_file_name_is_escaped_in_the_report(tmp_path: Path) -> None:
    from bench.report import build_report
    from bench.results import ResultRow, RunResult

    root = _dataset_root(tmp_path)
    hostile = root / "trainA" / XSS_NAME
    hostile.write_bytes(b"not an image")
    os.chmod(hostile, 0)  # unreadable for a user; for root the bytes are not an image either
    dataset = open_folder(root, "folder", 8)
    assert [s.path.name for s in dataset.skipped] == [XSS_NAME]
    names = "run_id method preset dataset direction metric value n n_ref reference extractor weights_sha256"
    values = ("r", "cyclegan", "tiny", "folder", "a2b", "fid", 100.0, 8, 8, "testB", "inception-x", "ab")
    row = ResultRow(**dict(zip(names.split(), values)), preprocessing="p", protocol="harness", standard=True, seed=0)
    result = RunResult("r", "now", "python -m bench run", {"seed": 0}, {}, dataset.summary(), {}, [row])
    html = build_report(result, tmp_path / "report").read_text()
    assert "<img src=x onerror=alert(1)>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html
