"""FID/KID numerics, weights resolution and provenance, and the image -> features -> metric path."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from bench import weights as weights_module
from bench.data.toyfaces import render_face, sample_factors
from bench.errors import WeightsError
from bench.evaluate.extract import InceptionFeatures
from bench.evaluate.fidkid import default_kid_subset_size, features_to_fid, features_to_kid, features_to_statistics
from bench.hashing import sha1_file
from bench.weights import NON_STANDARD, resolve_weights, sha256_file


# -- pure math --------------------------------------------------------------------------------------
def test_fid_of_a_set_with_itself_is_zero() -> None:
    features = torch.randn(300, 32, generator=torch.Generator().manual_seed(0))
    assert abs(features_to_fid(features, features)) < 1e-8


def test_fid_with_equal_covariances_is_the_squared_mean_distance() -> None:
    # Closed form: equal covariances give FID = |mu_1 - mu_2|^2; shifting a set keeps its covariance.
    features = torch.randn(400, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    shift = torch.linspace(-1, 1, 16, dtype=torch.float64)
    assert features_to_fid(features, features + shift) == pytest.approx(float(shift @ shift), rel=1e-6)


def test_fid_matches_an_independent_sqrtm_implementation() -> None:
    generator = torch.Generator().manual_seed(2)
    a = torch.randn(500, 12, generator=generator, dtype=torch.float64)
    b = (
        torch.randn(500, 12, generator=generator, dtype=torch.float64)
        @ torch.randn(12, 12, generator=generator, dtype=torch.float64)
        * 0.5
    )
    sa, sb = features_to_statistics(a), features_to_statistics(b)
    covmean = scipy.linalg.sqrtm(sa.sigma @ sb.sigma).real
    reference = float(((sa.mu - sb.mu) ** 2).sum() + np.trace(sa.sigma + sb.sigma - 2 * covmean))
    assert features_to_fid(a, b) == pytest.approx(reference, rel=1e-6)


def test_kid_is_unbiased_between_samples_of_one_distribution() -> None:
    generator = torch.Generator().manual_seed(3)
    estimates = []
    for seed in range(60):
        a = torch.randn(100, 8, generator=generator, dtype=torch.float64)
        b = torch.randn(100, 8, generator=generator, dtype=torch.float64)
        estimates.append(features_to_kid(a, b, 50, 20, seed).mean)
    spread = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates)) < 4 * spread  # mean of the unbiased estimator ~ 0
    shifted = features_to_kid(a + 1.0, b, 50, 20, 0).mean
    assert shifted > 20 * np.std(estimates)


def test_kid_subsets_come_from_the_seed() -> None:
    generator = torch.Generator().manual_seed(4)
    a, b = torch.randn(100, 8, generator=generator), torch.randn(100, 8, generator=generator) + 0.3
    assert features_to_kid(a, b, 50, 10, seed=1) == features_to_kid(a, b, 50, 10, seed=1)
    assert features_to_kid(a, b, 50, 10, seed=1).mean != features_to_kid(a, b, 50, 10, seed=2).mean


def test_kid_subset_size_works_with_100_test_images() -> None:
    assert default_kid_subset_size(100, 100) == 50  # subsets differ, so their std is not 0
    assert default_kid_subset_size(5000, 3400) == 1000
    features = torch.randn(100, 8)
    estimate = features_to_kid(features + 0.5, features, default_kid_subset_size(100, 100), 10, 0)
    assert estimate.std > 0
    with pytest.raises(ValueError, match="subset size"):
        features_to_kid(features, features[:40], 50, 10, 0)


# -- file digests -----------------------------------------------------------------------------------
def test_file_digests_are_the_published_test_vectors(tmp_path: Path) -> None:
    path = tmp_path / "abc"
    path.write_bytes(b"abc")  # FIPS 180-2 example: the digests weights are checked against must match them
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha1_file(path) == "a9993e364706816aba3e25717850c26c9cd0d89d"


# -- weights: lookup order, hashes, refusal -----------------------------------------------------------
@pytest.fixture
def inception_file(standin, tmp_path: Path) -> Path:
    """A valid InceptionV3 state_dict that is not the published file."""
    path = tmp_path / "inception.pth"
    path.write_bytes(standin.path.read_bytes())
    return path


def test_missing_weights_stop_the_run_with_instructions(monkeypatch, no_fid_weights) -> None:
    monkeypatch.delenv("BENCH_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(WeightsError) as info:
        resolve_weights("inception", None, allow_standin=False)
    message = str(info.value)
    needles = ("--inception-weights", "BENCH_INCEPTION_WEIGHTS", "hub", "6726825d", "--allow-standin", "fid-weights")
    for needle in needles:
        assert needle in message


def test_standin_is_labelled_non_standard(standin) -> None:
    assert not standin.standard and NON_STANDARD in standin.label
    assert standin.sha256 == sha256_file(standin.path)


def test_lookup_order_flag_then_environment_then_hub(inception_file: Path, tmp_path: Path, monkeypatch) -> None:
    other = tmp_path / "other.pth"
    other.write_bytes(inception_file.read_bytes())
    hub = weights_module.hub_cache_path(weights_module.CATALOGUE["inception"])
    hub.parent.mkdir(parents=True, exist_ok=True)
    hub.write_bytes(inception_file.read_bytes())
    try:
        monkeypatch.setenv("BENCH_INCEPTION_WEIGHTS", str(other))
        assert resolve_weights("inception", str(inception_file), allow_standin=True).source == "--inception-weights"
        assert resolve_weights("inception", None, allow_standin=True).source == "$BENCH_INCEPTION_WEIGHTS"
        monkeypatch.delenv("BENCH_INCEPTION_WEIGHTS")
        assert resolve_weights("inception", None, allow_standin=True).source == "torch hub cache"
    finally:
        hub.unlink()


def test_published_hash_prefix_makes_a_file_standard(inception_file: Path, monkeypatch) -> None:
    with pytest.raises(WeightsError, match="not the standard inception weights"):
        resolve_weights("inception", str(inception_file), allow_standin=False)
    user = resolve_weights("inception", str(inception_file), allow_standin=True)
    assert not user.standard and NON_STANDARD in user.label
    published = weights_module.CATALOGUE["inception"]
    renamed = f"https://example.invalid/weights-inception-{sha256_file(inception_file)[:8]}.pth"
    monkeypatch.setitem(weights_module.CATALOGUE, "inception", dataclasses.replace(published, url=renamed))
    official = resolve_weights("inception", str(inception_file), allow_standin=False)
    assert official.standard and official.extractor == "inception-v3-compat"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_with_code_is_rejected_before_torch_fidelity_sees_it(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(WeightsError, match="not a plain PyTorch state_dict"):
        resolve_weights("inception", str(path), allow_standin=True)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match="keys or shapes differ"):
        resolve_weights("inception", str(tmp_path / "wrong.pth"), allow_standin=True)
    with pytest.raises(WeightsError, match="not a file"):
        resolve_weights("inception", str(tmp_path / "absent.pth"), allow_standin=True)


# -- images through the real extractor ------------------------------------------------------------------
@pytest.fixture(scope="module")
def extractor(standin) -> InceptionFeatures:
    return InceptionFeatures(standin)


def test_standin_features_vary_between_images(extractor: InceptionFeatures, toyfaces_small) -> None:
    features = extractor(toyfaces_small.split("test", "A").load_all(32))
    assert features.shape == (8, 2048) and features.dtype == torch.float64
    assert float(features.std(0).mean()) > 1e-2  # not the ~1e-8 of an uninitialised network


def test_features_match_torch_fidelity_default_layout(extractor: InceptionFeatures, toyfaces_small) -> None:
    images = toyfaces_small.split("test", "B").load_all(32)[:3]
    with torch.no_grad():
        (reference,) = extractor.model.to(memory_format=torch.contiguous_format)(images)
    extractor.model.to(memory_format=torch.channels_last)
    assert torch.allclose(extractor(images).float(), reference, rtol=1e-4, atol=1e-4)
    assert torch.allclose(extractor(images, batch_size=1), extractor(images, batch_size=3), rtol=1e-5, atol=1e-5)


def test_fid_and_kid_rank_degraded_images_worse(extractor: InceptionFeatures) -> None:
    rng = np.random.default_rng(0)
    faces = [np.asarray(render_face(sample_factors(rng), "B", 32, noise_seed=i)) for i in range(32)]
    real = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).contiguous()
    half, other = real[:16], real[16:]  # two disjoint samples of one distribution
    blurred = F.avg_pool2d(half.float(), 5, stride=1, padding=2).round().to(torch.uint8)
    shifted = (half.float() * 0.6 + 60).round().to(torch.uint8)
    f_half, f_other, f_blur, f_shift = (extractor(x) for x in (half, other, blurred, shifted))
    # a set against itself: 0 up to round-off, even with 16 samples in 2048 dimensions (singular covariances)
    assert abs(features_to_fid(f_half, f_half)) < 1e-5 * features_to_fid(f_blur, f_other)
    floor_fid = features_to_fid(f_half, f_other)  # the noise floor at this sample size
    floor_kid = features_to_kid(f_half, f_other, 8, 100, 0)
    for degraded in (f_blur, f_shift):
        assert features_to_fid(degraded, f_other) > 1.5 * floor_fid
        assert features_to_kid(degraded, f_other, 8, 100, 0).mean > 2 * max(floor_kid.mean, 0.0)


def test_lpips_backbones_resolve_like_every_other_weight(tmp_path: Path, monkeypatch) -> None:
    from torchvision.models.vgg import cfgs, make_layers

    monkeypatch.delenv("BENCH_VGG16_WEIGHTS", raising=False)
    with pytest.raises(WeightsError) as info:
        resolve_weights("vgg16", None, allow_standin=False)
    for needle in ("--weights vgg16=PATH", "BENCH_VGG16_WEIGHTS", "vgg16-397923af.pth", "397923af"):
        assert needle in str(info.value)
    standin = resolve_weights("vgg16", None, allow_standin=True)
    assert standin.path is None and not standin.standard and NON_STANDARD in standin.label

    path = tmp_path / "vgg16.pth"  # the features part of torchvision's file is all LPIPS needs
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}, path)
    monkeypatch.setenv("BENCH_VGG16_WEIGHTS", str(path))
    user = resolve_weights("vgg16", None, allow_standin=True)
    assert user.path == path and user.source == "$BENCH_VGG16_WEIGHTS" and not user.standard
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="keys or shapes differ"):
        resolve_weights("vgg16", None, allow_standin=True)
