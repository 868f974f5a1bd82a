"""Datasets: image modes, unreadable files, folder layout errors, selfie2anime help, toyfaces, batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.folder import SPLITS, open_folder
from bench.data.images import ImageSet, read_rgb, to_rgb
from bench.data.loader import Augment, StepSampler, training_batches
from bench.data.toyfaces import CONTENT_FACTORS, FaceFactors, read_factors, render_face, sample_factors
from bench.errors import DataError
from bench.registry import DATASETS


# -- modes ------------------------------------------------------------------------------------------
def test_rgba_is_composited_on_white() -> None:
    image = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    image.putpixel((1, 0), (255, 0, 0, 255))
    rgb = np.array(to_rgb(image))
    assert rgb[0, 0].tolist() == [255, 255, 255]  # transparent -> white
    assert rgb[0, 1].tolist() == [255, 0, 0]  # opaque keeps its colour


def test_half_transparent_grey_alpha() -> None:
    image = Image.new("LA", (1, 1), (0, 128))
    assert np.array(to_rgb(image))[0, 0].tolist() == [127, 127, 127]


def test_palette_with_transparency_and_grayscale_and_bilevel() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    assert np.array(to_rgb(palette)).tolist() == [[[255, 255, 255], [200, 100, 50]]]
    assert np.array(to_rgb(Image.new("L", (1, 1), 77)))[0, 0].tolist() == [77, 77, 77]
    assert np.array(to_rgb(Image.new("1", (1, 1), 1)))[0, 0].tolist() == [255, 255, 255]


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    image = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    assert image.mode.startswith("I")
    assert np.array(to_rgb(image))[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_converts_deterministically() -> None:
    image = Image.new("CMYK", (1, 1), (0, 255, 255, 0))
    first = np.array(to_rgb(image))
    assert first[0, 0].tolist() == [255, 0, 0]
    assert np.array_equal(first, np.array(to_rgb(image)))


def _write_mixed_folder(root: Path, size: int = 24) -> Path:
    """Every split holds RGBA, palette, grayscale and 16-bit files; trainA also a truncated JPEG."""
    rng = np.random.default_rng(0)
    for split in SPLITS:
        folder = root / split
        folder.mkdir(parents=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert("RGBA").save(folder / "rgba.png")
        Image.fromarray(pixels).convert("P").save(folder / "palette.png")
        Image.fromarray(pixels).convert("L").save(folder / "gray.jpg")
        Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(folder / "deep.png")
        Image.fromarray(pixels).save(folder / "plain.webp")
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "trainA" / "whole.jpg")
    data = (root / "trainA" / "whole.jpg").read_bytes()
    (root / "trainA" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "trainA" / "notes.txt").write_text("not an image, not scanned")
    return root


def test_mixed_folder_reports_the_truncated_file(tmp_path: Path) -> None:
    dataset = open_folder(_write_mixed_folder(tmp_path), "folder", 24)
    assert len(dataset.split("train", "A")) == 6 and len(dataset.split("test", "B")) == 5
    assert [s.path.name for s in dataset.skipped] == ["truncated.jpg"]
    assert "truncated" in dataset.skipped[0].reason or "OSError" in dataset.skipped[0].reason
    images = dataset.split("train", "A").load_all(16)
    assert images.shape == (6, 3, 16, 16) and images.dtype == torch.uint8
    assert dataset.summary()["skipped"][0]["path"].endswith("truncated.jpg")


def test_a_domain_without_readable_images_fails_before_training(tmp_path: Path) -> None:
    root = _write_mixed_folder(tmp_path)
    for f in (root / "testB").iterdir():
        f.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"testB has no readable image; 5 file\(s\) could not be read"):
        open_folder(root, "folder", 24)


def test_missing_split_folder_is_named(tmp_path: Path) -> None:
    root = _write_mixed_folder(tmp_path)
    for f in (root / "testA").iterdir():
        f.unlink()
    (root / "testA").rmdir()
    with pytest.raises(DataError, match="lacks the folder"):
        open_folder(root, "folder", 24)


def test_selfie2anime_missing_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        DATASETS.get("selfie2anime").open(tmp_path / "nowhere", {})
    message = str(info.value)
    for needle in ("trainA", "UGATIT", "huggan/selfie2anime", "Council", "SWAPPED", "--data-root"):
        assert needle in message


def test_selfie2anime_warns_about_swapped_domains(tmp_path: Path) -> None:
    for split in SPLITS:
        (tmp_path / split).mkdir()
        for i in range(3):
            name = f"{i:04d}.png" if split.endswith("A") else f"female_{i}.jpg"
            Image.new("RGB", (8, 8), (i, i, i)).save(tmp_path / split / name)
    dataset = DATASETS.get("selfie2anime").open(tmp_path, {})
    assert any("swapped" in note for note in dataset.notes)
    assert any("differ from the published split" in note for note in dataset.notes)


def test_folder_dataset_needs_a_root() -> None:
    with pytest.raises(DataError, match="--data-root"):
        DATASETS.get("folder").open(None, {})


# -- toyfaces --------------------------------------------------------------------------------------
def test_toyfaces_layout_factors_and_reuse(toyfaces_small, tmp_path: Path) -> None:
    root = toyfaces_small.root
    assert {len(s) for name, s in toyfaces_small.sets.items() if name.startswith("train")} == {24}
    assert {len(s) for name, s in toyfaces_small.sets.items() if name.startswith("test")} == {8}
    factors = read_factors(root / "trainA")
    assert len(factors) == 24 and all(isinstance(f, FaceFactors) for f in factors.values())
    image = Image.open(root / "trainA" / "00000.png")
    assert image.size == (32, 32) and image.mode == "RGB"
    stamp = (root / "trainA" / "00000.png").stat().st_mtime_ns
    again = DATASETS.get("toyfaces").open(root.parent, {"size": 32, "n_train": 24, "n_test": 8, "seed": 0})
    assert again.root == root and (root / "trainA" / "00000.png").stat().st_mtime_ns == stamp  # reused
    assert json.loads((root / "toyfaces.json").read_text())["seed"] == 0


def test_toyfaces_is_deterministic_from_its_seed(tmp_path: Path) -> None:
    spec = DATASETS.get("toyfaces")
    one = spec.open(tmp_path / "one", {"size": 16, "n_train": 3, "n_test": 2, "seed": 5})
    two = spec.open(tmp_path / "two", {"size": 16, "n_train": 3, "n_test": 2, "seed": 5})
    other = spec.open(tmp_path / "three", {"size": 16, "n_train": 3, "n_test": 2, "seed": 6})
    for split in SPLITS:
        a, b, c = (d.split(split[:-1], split[-1]).load_all(16) for d in (one, two, other))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


def test_toyfaces_rejects_unknown_options(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no option"):
        DATASETS.get("toyfaces").open(tmp_path, {"sise": 32})
    with pytest.raises(DataError, match="no option"):
        DATASETS.get("folder").open(tmp_path, {"size": 32})
    with pytest.raises(DataError, match="size >= 16"):
        DATASETS.get("toyfaces").open(tmp_path, {"size": 4})


def test_render_face_is_a_ground_truth_translator() -> None:
    factors = sample_factors(np.random.default_rng(3))
    photo, anime = (np.array(render_face(factors, d, 64), dtype=float) for d in "AB")
    assert np.array_equal(photo, np.array(render_face(factors, "A", 64), dtype=float))  # pure function
    assert np.abs(photo - anime).mean() > 10  # the domains look different
    for name in CONTENT_FACTORS:  # every content factor changes the picture
        changed = FaceFactors(**{**factors.to_dict(), name: getattr(factors, name) * 0.5 + 0.1})
        difference = np.abs(np.array(render_face(changed, "B", 64), dtype=float) - anime).max(-1)
        assert (difference > 10).sum() >= 4, name  # at least a few pixels visibly change
    with pytest.raises(ValueError):
        render_face(factors, "C")  # type: ignore[arg-type]


def test_photo_domain_has_texture_and_anime_domain_has_flat_colour() -> None:
    factors = sample_factors(np.random.default_rng(1))
    photo = np.array(render_face(factors, "A", 64)).astype(float)
    anime = np.array(render_face(factors, "B", 64)).astype(float)
    # Flat fills: many pixels equal their right neighbour in the anime domain, few in the noisy photo.
    flat = lambda im: (np.abs(np.diff(im, axis=1)).sum(-1) == 0).mean()  # noqa: E731
    assert flat(anime) > 0.5 > flat(photo)


# -- training batches --------------------------------------------------------------------------------
def test_step_sampler_resumes_with_the_same_batches() -> None:
    full = list(StepSampler(10, 7, 3, seed=1, start_step=0, total_steps=8))
    resumed = list(StepSampler(10, 7, 3, seed=1, start_step=5, total_steps=8))
    assert full[5:] == resumed
    first_epoch_a = [key[0] for batch in full for key in batch][:10]
    assert sorted(first_epoch_a) == list(range(10))  # every A image once per epoch
    assert full != list(StepSampler(10, 7, 3, seed=2, start_step=0, total_steps=8))


def test_processes_see_different_samples() -> None:
    rank0 = list(StepSampler(50, 50, 2, seed=0, start_step=0, total_steps=3, rank=0, world=2))
    rank1 = list(StepSampler(50, 50, 2, seed=0, start_step=0, total_steps=3, rank=1, world=2))
    assert rank0 != rank1


def test_training_batches_are_float_in_range(toyfaces_small) -> None:
    augment = Augment(load_size=36, crop_size=32, flip=True)
    batches = list(
        training_batches(toyfaces_small.split("train", "A"), toyfaces_small.split("train", "B"), augment, 4, 0, 0, 2)
    )
    assert len(batches) == 2
    for batch in batches:
        assert batch.a.shape == (4, 3, 32, 32) and batch.b.shape == (4, 3, 32, 32)
        assert batch.a.min() >= -1 and batch.a.max() <= 1


def test_read_rgb_rejects_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(OSError):
        read_rgb(path)
    assert ImageSet.scan(tmp_path).skipped[0].path == path
