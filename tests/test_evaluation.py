"""The evaluation layer: estimators against references and closed forms, intervals, cache, evaluator, sanity."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from torch_fidelity.metric_kid import mmd2

from bench.errors import ConfigError
from bench.evaluate.cache import FeatureCache
from bench.evaluate.evaluator import Evaluator, metric_extractors
from bench.evaluate.extract import LpipsDistance, StyleStatistics
from bench.evaluate.fidkid import (
    KidKernels,
    features_to_fid,
    features_to_statistics,
    fid_from_arrays,
    statistics_to_fid,
)
from bench.evaluate.gather import OutputsAndReal, Scope
from bench.evaluate.metrics import EvalOptions, Metric, MetricValue, dfid, lpips_diversity, style_consistency
from bench.evaluate.panel import reference_panel
from bench.evaluate.stats import jackknife_interval, mean_interval
from bench.registry import METRICS
from bench.results import IDENTITY, NOISE_FLOOR, RunResult
from bench.weights import cache_dir, resolve_weights

# -- estimators -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [40, 300])  # fewer samples than dimensions, and more
def test_fast_fid_agrees_with_torch_fidelity(n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, 64))
    b = rng.standard_normal((n + 7, 64)) * 1.3 + 0.2
    # torch-fidelity's own computation from the Gaussian fits (its eigendecomposition of sigma_1 @ sigma_2)
    reference = statistics_to_fid(features_to_statistics(torch.from_numpy(a)), features_to_statistics(b))
    assert fid_from_arrays(a, b) == pytest.approx(reference, rel=1e-6)
    assert features_to_fid(torch.from_numpy(a), b) == fid_from_arrays(a, b)  # reported values use the exact form


def test_kid_kernels_reproduce_torch_fidelity_mmd2_and_leave_out_duplicate_pairs() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((30, 8)), rng.standard_normal((30, 8)) + 0.3
    kernels = KidKernels.of(a, b)
    i = np.arange(30)
    assert kernels.mmd2(i, i) == pytest.approx(float(mmd2(kernels.within_1, kernels.between, kernels.within_2)))
    # a set with every sample twice is the same sample to the unbiased estimator: copies of one sample
    # are not compared with each other (they would count as a perfect match)
    twice = np.repeat(i, 2)
    assert kernels.mmd2(twice, twice) == pytest.approx(kernels.mmd2(i, i), rel=1e-9)


def _fid_coverage(dims: int, expected_draws: int, trials: int, interval_of) -> float:
    """How often `interval_of(a, b, trial)` -> (low, high), on fresh draws of 60 + 60 Gaussian samples in `dims`
    dimensions, contains E[FID_60] (estimated from `expected_draws` draws)."""
    rng = np.random.default_rng(1)

    def draw() -> tuple[np.ndarray, np.ndarray]:
        return rng.standard_normal((60, dims)), rng.standard_normal((60, dims)) * 1.2 + 0.2

    expected = np.mean([fid_from_arrays(*draw()) for _ in range(expected_draws)])
    covered = 0
    for t in range(trials):
        low, high = interval_of(*draw(), t)
        covered += low <= expected <= high
    return covered / trials


@pytest.mark.parametrize("positive", [False, True], ids=["normal", "log-normal"])
def test_jackknife_fid_interval_covers_the_estimators_expected_value(positive: bool) -> None:
    """Nominal 90% intervals of FID at n = 60 contain E[FID_60] in about 90% of draws (a percentile
    bootstrap contains it in none: duplicated samples inflate FID), in linear and in log scale."""

    def jackknife(a: np.ndarray, b: np.ndarray, t: int) -> tuple[float, float]:
        statistic = lambda i, j: fid_from_arrays(a[i], b[j])  # noqa: E731
        interval = jackknife_interval(statistic, (60, 60), level=0.9, seed=t, positive=positive)
        return interval.low, interval.high

    assert 0.8 <= _fid_coverage(6, 400, 120, jackknife) <= 0.99


def test_log_scale_jackknife_interval_respects_a_distances_range() -> None:
    """Where the normal interval of a small FID reaches below zero, the log-scale one stays above zero,
    contains the estimate, and is wider above it; a zero estimate gets [0, z * se]."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(12, 4)), rng.normal(size=(12, 4))
    statistic = lambda i, j: fid_from_arrays(a[i], b[j])  # noqa: E731
    normal = jackknife_interval(statistic, (12, 12))
    log_scale = jackknife_interval(statistic, (12, 12), positive=True)
    estimate = statistic(np.arange(12), np.arange(12))
    assert normal.low < 0 < log_scale.low < estimate < log_scale.high
    assert log_scale.high - estimate > estimate - log_scale.low
    zero = jackknife_interval(lambda i, j: 0.0 * len(i), (12, 12), positive=True)
    assert zero.low == 0.0 and zero.high == 0.0  # no spread: nothing to widen


@pytest.mark.parametrize("method", ["percentile", "BCa"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::scipy.stats.DegenerateDataWarning")
def test_scipy_bootstrap_intervals_miss_the_expected_fid(method: str) -> None:
    """Why FID keeps its own jackknife: scipy's bootstrap intervals (60 images in 32 dimensions) almost never
    contain E[FID_60], because duplicated images in a resample inflate FID. (When every replicate lies above
    the estimate, BCa cannot be computed at all: its NaN interval warns and covers nothing.)"""
    import scipy.stats

    def bootstrap(a: np.ndarray, b: np.ndarray, t: int) -> tuple[float, float]:
        interval = scipy.stats.bootstrap(
            (np.arange(60), np.arange(60)),
            lambda i, j: fid_from_arrays(a[i], b[j]),
            n_resamples=100,
            vectorized=False,
            confidence_level=0.9,
            method=method,
            rng=np.random.default_rng(t),
        ).confidence_interval
        return interval.low, interval.high

    assert _fid_coverage(32, 200, 15, bootstrap) <= 0.2  # nominal 0.9; the jackknife test above gets 0.8-0.99


def test_mean_interval_covers_a_known_mean_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(2)
    trials = 300
    covered = sum(
        (lambda iv: iv.low <= 1.0 <= iv.high)(mean_interval(rng.normal(1.0, 2.0, 60), replicates=300, seed=t))
        for t in range(trials)
    )
    assert 0.9 <= covered / trials <= 0.98  # 95% nominal; percentile intervals run slightly short at n = 60


def test_intervals_depend_only_on_their_seed() -> None:
    values = np.random.default_rng(3).normal(size=50)
    assert mean_interval(values, seed=4) == mean_interval(values, seed=4)
    assert mean_interval(values, seed=4) != mean_interval(values, seed=5)


def test_lpips_diversity_is_the_mean_of_per_input_pair_means() -> None:
    pairwise = np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 0.3]])
    (value,) = lpips_diversity(pairwise, EvalOptions(styles=3, bootstrap=0))
    assert value.value == pytest.approx(0.1) and value.interval is None
    (zero,) = lpips_diversity(np.zeros((5, 45)), EvalOptions())
    assert zero.value == 0.0 and zero.interval.low == zero.interval.high == 0.0


def test_dfid_is_the_mean_over_inputs_of_each_inputs_fid() -> None:
    rng = np.random.default_rng(4)
    real = rng.standard_normal((50, 5))
    per_input = [rng.standard_normal((20, 5)) + k for k in range(3)]
    (value,) = dfid(per_input, real, EvalOptions(dfid_styles=20))
    assert value.value == pytest.approx(np.mean([fid_from_arrays(p, real) for p in per_input]))
    assert value.n == 60 and value.n_ref == 50


def test_style_consistency_closed_forms() -> None:
    rng = np.random.default_rng(5)
    options = EvalOptions(bootstrap=50)
    styles = rng.standard_normal((40, 8, 6))
    outputs = rng.standard_normal((40, 6))
    fixed = np.repeat(rng.standard_normal((40, 1, 6)), 8, axis=1)  # augmentation changes no statistic
    assert style_consistency(fixed, styles, outputs, options)[0].value == pytest.approx(0.0, abs=1e-12)
    # statistics of augmented copies spread like those of different styles: the ratio is about 1
    unstable = rng.standard_normal((40, 8, 6))
    (ratio,) = style_consistency(unstable, styles, outputs, options)
    assert 0.8 < ratio.value < 1.25 and ratio.interval.low < 1.0 < ratio.interval.high
    # twice the spread (std x sqrt 2) across copies: ratio 2
    assert style_consistency(unstable * math.sqrt(2), styles, outputs, options)[0].value == pytest.approx(
        2 * ratio.value
    )
    # unimodal: the denominator is the spread across the outputs of different inputs
    (unimodal,) = style_consistency(unstable, None, outputs * 2, options)
    assert unimodal.value == pytest.approx(unstable.var(1, ddof=1).sum() / 40 / (outputs * 2).var(0, ddof=1).sum())
    (undefined,) = style_consistency(unstable, np.zeros((40, 8, 6)), outputs, options)
    assert math.isnan(undefined.value) and "undefined" in undefined.protocol


def test_eval_options_reject_bad_values_with_the_option_name() -> None:
    with pytest.raises(ConfigError, match="reference"):
        EvalOptions(reference="val")
    with pytest.raises(ConfigError, match="styles"):
        EvalOptions(styles=1)
    with pytest.raises(ConfigError, match="no field.*stlyes"):
        EvalOptions.from_dict({"stlyes": 10})


# -- extractors -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lpips_standin(private_cache) -> LpipsDistance:
    return LpipsDistance(resolve_weights("alexnet", None, allow_standin=True))


def test_lpips_of_identical_images_is_zero_and_of_different_ones_positive(lpips_standin, toyfaces_small) -> None:
    images = toyfaces_small.split("test", "A").load_all(32)
    assert torch.all(lpips_standin(images, images) == 0)
    d = lpips_standin(images, images.flip(0))
    assert torch.all(d[images.flip(0).flatten(1).ne(images.flatten(1)).any(1)] > 0)
    assert torch.allclose(d, lpips_standin(images.flip(0), images))  # symmetric


def test_alexnet_file_fills_the_lpips_trunk(tmp_path: Path, private_cache) -> None:
    from torchvision.models import alexnet

    path = tmp_path / "alexnet.pth"
    torch.manual_seed(7)
    torch.save(alexnet().state_dict(), path)
    weights = resolve_weights("alexnet", str(path), allow_standin=True)  # not the published hash: a user file
    distance = LpipsDistance(weights)
    assert torch.equal(
        distance.model.net.slice3._modules["6"].weight, torch.load(path, weights_only=True)["features.6.weight"]
    )
    assert not distance.standard and "non-standard" in distance.label


def test_style_statistics_are_channel_means_and_stds(private_cache, toyfaces_small) -> None:
    stats = StyleStatistics(resolve_weights("vgg16", None, allow_standin=True))
    images = toyfaces_small.split("test", "B").load_all(32)
    features = stats(images)
    assert features.shape == (len(images), 1920) and features.dtype == torch.float64
    x = (images[:1].float() / 255 - stats.mean) / stats.std
    first = stats.trunk[:4](x)  # up to relu1_2
    assert torch.allclose(features[0, :64].float(), first.mean((2, 3))[0], atol=1e-5)
    assert torch.allclose(features[0, 64:128].float(), first.flatten(2).std(-1)[0], atol=1e-5)


def test_optional_backbones_stop_with_instructions_without_their_files(private_cache) -> None:
    from bench.errors import WeightsError

    inception = resolve_weights("inception", None, allow_standin=True)
    for name in ("fd_dinov2", "fd_clip"):
        with pytest.raises(WeightsError, match="torch hub cache"):
            metric_extractors([METRICS.get(name)], inception, {}, allow_standin=True, device="cpu")


# -- the evaluator --------------------------------------------------------------------------------------


class _RealFeaturesOnly(FeatureCache):
    """Keeps the features of the test sets, whose extraction is the same in every test, and nothing of the
    translations: what a test without a cache of its own gets, so each test still translates and extracts."""

    def __init__(self) -> None:
        super().__init__(cache_dir() / "test-real-features")

    def load(self, key: dict) -> None:
        return None

    def store(self, key: dict, label: str, values) -> None:
        pass


def _evaluator(data, cache: FeatureCache | None, metrics: list[str], **options) -> Evaluator:
    cache = cache if cache is not None else _RealFeaturesOnly()
    inception = resolve_weights("inception", None, allow_standin=True)
    chosen = [METRICS.get(m) for m in metrics]
    extractors = metric_extractors(chosen, inception, {}, allow_standin=True, device="cpu")
    small = {"styles": 3, "dfid_inputs": 2, "dfid_styles": 4, "consistency_inputs": 4, "consistency_copies": 3}
    small |= {"equivariance_inputs": 4, "throughput_batch": 2, "throughput_iterations": 2, "bootstrap": 20}
    return Evaluator(data, chosen, EvalOptions.from_dict({**small, **options}), extractors, cache=cache)


def test_every_metric_scores_unimodal_and_multimodal_translators(toyfaces_small, private_cache) -> None:
    panel = {t.name: t for t in reference_panel(toyfaces_small)}
    names = [m for m in METRICS.names() if METRICS.get(m).default]
    evaluator = _evaluator(toyfaces_small, None, names)
    rows = {}
    for name in ("identity", "renderer"):
        for row in evaluator.evaluate(panel[name], "run", "reference", seed=0):
            rows[name, row.direction, row.metric] = row
    for name in ("identity", "renderer"):
        for direction in ("a2b", "b2a"):
            for metric in names:
                if metric == "throughput":
                    assert rows[name, direction, "images_per_s_b2"].value > 0
                    continue
                row = rows[name, direction, metric]
                assert row.n > 0 and row.extractor and row.preprocessing and row.protocol
                if not math.isnan(row.value):
                    assert row.ci_level == 0.95 and row.ci_low <= row.ci_high
    assert rows["identity", "a2b", "lpips_diversity"].value == 0.0  # deterministic map
    assert rows["renderer", "a2b", "lpips_diversity"].value > 0
    assert rows["identity", "a2b", "content_equivariance"].value == pytest.approx(0.0, abs=1e-6)
    assert rows["renderer", "a2b", "fid"].reference == "testB" and rows["renderer", "b2a", "kid"].n_ref == 8
    inception = resolve_weights("inception", None, allow_standin=True)  # standard when fid-weights is installed
    fid_row = rows["renderer", "a2b", "fid"]
    assert fid_row.standard == inception.standard and fid_row.extractor == inception.label
    floor = evaluator.noise_floor("run", ["a2b", "b2a"])
    assert {(r.method, r.direction, r.metric) for r in floor} == {
        (NOISE_FLOOR, d, m) for d in ("a2b", "b2a") for m in ("fid", "kid")
    }
    assert all(r.n == 4 and r.n_ref == 4 for r in floor)  # two disjoint halves of 8 test images
    as_is = {(r.direction, r.metric): r for r in evaluator.identity_rows("run", ["a2b", "b2a"])}
    assert set(as_is) == {(d, m) for d in ("a2b", "b2a") for m in ("fid", "kid")}
    for (direction, metric), row in as_is.items():  # the real source set is what the identity map outputs
        assert row.method == IDENTITY and row.n == row.n_ref == 8
        assert row.value == pytest.approx(rows["identity", direction, metric].value, rel=1e-6), (direction, metric)


def test_outputs_are_generated_once_for_all_metrics_that_read_them(toyfaces_small, private_cache) -> None:
    renderer = {t.name: t for t in reference_panel(toyfaces_small)}["renderer"]
    calls = []
    original = renderer.translate

    def counting(x, direction="a2b", **kwargs):
        calls.append(len(x))
        return original(x, direction, **kwargs)

    renderer.translate = counting
    _evaluator(toyfaces_small, None, ["fid", "kid"]).evaluate(renderer, "run", "", seed=0)
    assert calls == [8, 8]  # one batch of the 8 test images per direction, shared by FID and KID


def test_results_are_reproducible_from_the_seed(toyfaces_small, private_cache) -> None:
    renderer = {t.name: t for t in reference_panel(toyfaces_small)}["renderer"]
    metrics, a2b = ["fid", "lpips_diversity", "style_consistency"], ("a2b",)  # b2a takes the same code path
    first = _evaluator(toyfaces_small, None, metrics).evaluate(renderer, "run", "", seed=3, directions=a2b)
    second = _evaluator(toyfaces_small, None, metrics).evaluate(renderer, "run", "", seed=3, directions=a2b)
    other = _evaluator(toyfaces_small, None, metrics).evaluate(renderer, "run", "", seed=4, directions=a2b)
    assert len(first) == len(metrics)
    assert [r.value for r in first] == [r.value for r in second]
    assert [r.value for r in first] != [r.value for r in other]


# -- adding a metric touches one file: this one -------------------------------------------------------
@dataclass(frozen=True)
class _Brightness:
    """A gatherer defined outside bench: (mean pixel value of each output, in [0, 1],)."""

    extractor: ClassVar[str] = "none"
    reference: ClassVar[bool] = False
    calls: ClassVar[list[str]] = []

    def __call__(self, scope: Scope) -> tuple[np.ndarray]:
        self.calls.append(scope.generation.direction)
        return (scope.generation.outputs.double().mean((1, 2, 3)).numpy() / 255,)


def _brightness(per_image: np.ndarray, options: EvalOptions) -> list[MetricValue]:
    return [
        MetricValue(float(per_image.mean()), "mean pixel value", len(per_image), 0, options.mean_interval(per_image))
    ]


def _mean_shift(fake: np.ndarray, real: np.ndarray, options: EvalOptions) -> list[MetricValue]:
    """A set metric on a built-in gatherer: squared distance between the feature means."""
    return [MetricValue(float(((fake.mean(0) - real.mean(0)) ** 2).sum()), "mean shift", len(fake), len(real))]


def test_a_metric_defined_in_a_test_file_runs_through_the_evaluator(toyfaces_small, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))  # these registrations end with the test
    METRICS.register("brightness", Metric("brightness", None, None, _Brightness(), _brightness))
    METRICS.register("brightness_again", Metric("brightness_again", None, None, _Brightness(), _brightness))
    METRICS.register("mean_shift", Metric("mean_shift", False, 0.0, OutputsAndReal("inception"), _mean_shift))
    identity = reference_panel(toyfaces_small)[0]  # its outputs are its inputs, exactly
    # an empty cache of its own: the reals are extracted here, and counted below
    metrics = ["fid", "mean_shift", "brightness", "brightness_again"]
    evaluator = _evaluator(toyfaces_small, FeatureCache(tmp_path / "features"), metrics)
    _Brightness.calls.clear()
    rows = {(r.direction, r.metric): r for r in evaluator.evaluate(identity, "run", "", seed=0)}

    for direction, source, target in (("a2b", "A", "B"), ("b2a", "B", "A")):
        inputs = toyfaces_small.split("test", source).load_all(32)
        brightness = rows[direction, "brightness"]
        assert brightness.value == pytest.approx(inputs.double().mean().item() / 255, rel=1e-12)
        assert brightness.ci_low <= brightness.value <= brightness.ci_high and brightness.reference == ""
        assert rows[direction, "brightness_again"].value == brightness.value
        inception = evaluator.extractor("inception")
        fake, real = inception(inputs).numpy(), inception(toyfaces_small.split("test", target).load_all(32)).numpy()
        shift = rows[direction, "mean_shift"]
        assert shift.value == pytest.approx(float(((fake.mean(0) - real.mean(0)) ** 2).sum()), rel=1e-9)
        assert shift.reference == f"test{target}" and shift.n_ref == 8
    # equal gatherers are gathered once per direction: the two brightness metrics share one call, and FID and
    # mean_shift one Inception pass over the outputs (8 fakes and 8 reals per direction, and the 4 x 8 above)
    assert _Brightness.calls == ["a2b", "b2a"]
    assert evaluator.extractor("inception").calls == 2 * 16 + 4 * 8
    # a gatherer of outputs and the reference set makes a set metric, which gets a noise-floor row
    assert {r.metric for r in evaluator.noise_floor("run", ["a2b"])} == {"fid", "mean_shift"}


def test_feature_cache_skips_extraction_and_notices_an_edited_image(tmp_path: Path, private_cache) -> None:
    from bench.registry import DATASETS

    data = DATASETS.get("toyfaces").open(tmp_path / "data", {"size": 32, "n_train": 4, "n_test": 6, "seed": 1})
    identity = reference_panel(data)[0]
    cache = FeatureCache(tmp_path / "cache")
    first = _evaluator(data, cache, ["fid"])
    rows = first.evaluate(identity, "run", "", seed=0)
    assert cache.misses == 2 and cache.hits == 0  # testB and testA
    assert first.extractor("inception").calls == 4 * 6  # fakes and reals of two directions

    second = _evaluator(data, cache, ["fid"])
    assert [r.value for r in second.evaluate(identity, "run", "", seed=0)] == [r.value for r in rows]
    assert cache.hits == 2 and second.extractor("inception").calls == 2 * 6  # only the translations

    edited = data.split("test", "B").paths[0]
    pixels = np.asarray(Image.open(edited)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(edited)
    reopened = DATASETS.get("toyfaces").open(tmp_path / "data", {"size": 32, "n_train": 4, "n_test": 6, "seed": 1})
    third = _evaluator(reopened, cache, ["fid"])
    third.evaluate(identity, "run", "", seed=0)
    assert cache.misses == 3 and cache.hits == 3  # testB recomputed, testA reused
    assert len(cache.entries()) == 3
    assert cache.clear() == 3 and cache.entries() == []


# unimodal; multimodal (styles, pairs, per-input style sets) in the slow tier
@pytest.mark.parametrize("name", ["cyclegan", pytest.param("stargan_v2", marks=pytest.mark.slow)])
def test_rescoring_an_unchanged_network_translates_and_extracts_nothing(toyfaces_small, tmp_path: Path, name) -> None:
    """Features (and LPIPS distances) of a network's outputs are cached under its tensors, the settings and the
    extractor: a second evaluation gives the same values without a translation; a changed weight or setting
    recomputes what it changes, and the sample grid still shows the scored translations."""
    from bench.registry import METHODS

    cache = FeatureCache(tmp_path / "cache")
    metrics = ["fid", "kid", "lpips_diversity", "dfid", "style_consistency", "content_equivariance"]
    method = METHODS.get(name).from_preset("tiny", image_size=toyfaces_small.image_size)
    calls = []
    original = method.translate
    method.translate = lambda x, *args, **kwargs: calls.append(len(x)) or original(x, *args, **kwargs)

    def evaluate(samples: Path | None = None, **options):
        evaluator = _evaluator(toyfaces_small, cache, metrics, **options)
        calls.clear()
        rows = evaluator.evaluate(method, "run", "tiny", seed=0, directions=("a2b",), samples_dir=samples)
        return {r.metric: r.value for r in rows}, evaluator

    cold, first = evaluate(tmp_path / "cold")
    assert calls and first.extractor("inception").calls > 0
    cached, second = evaluate(tmp_path / "cached")
    assert cached == cold  # bit for bit: the stored arrays are the computed ones
    assert second.extractor("inception").calls == 0
    if not method.multimodal:  # the grid's row is the scored outputs, here from their first batch alone
        assert calls == [8]  # the sample grid's first batch, nothing for any metric
        for grid in ("a2b_side.png", "a2b_inputs.png"):
            assert (tmp_path / "cached" / grid).read_bytes() == (tmp_path / "cold" / grid).read_bytes()

    more_styles, _ = evaluate(styles=4)  # one setting: only what reads it is recomputed
    assert {m for m in metrics if more_styles[m] != cold[m]} == ({"lpips_diversity"} if method.multimodal else set())

    with torch.no_grad():  # a translating network's first weight
        next(getattr(method, method.translation_networks("a2b")[0]).parameters()).mul_(1.5)
    changed, third = evaluate()
    assert third.extractor("inception").calls > 0 and changed["fid"] != cold["fid"]
    assert {e.key.get("kind") for e in cache.entries()} == {"translations", None}  # None: the real sets


def test_a_damaged_cache_entry_is_recomputed(tmp_path: Path) -> None:
    from bench.evaluate.cache import CacheKey

    cache = FeatureCache(tmp_path)
    key = CacheKey("x", "sha", "pre", 32, "content")
    assert torch.equal(cache.features(key, "set", lambda: torch.ones(2, 3)), torch.ones(2, 3))
    (entry,) = cache.entries()
    entry.path.write_bytes(b"not a tensor")
    assert torch.equal(cache.features(key, "set", lambda: torch.zeros(2, 3)), torch.zeros(2, 3))
    assert cache.misses == 2


def test_results_of_schema_1_load_without_intervals(tmp_path: Path) -> None:
    row = {
        "run_id": "r", "method": "m", "preset": "p", "dataset": "d", "direction": "a2b", "metric": "fid",
        "value": 1.0, "n": 1, "n_ref": 1, "reference": "testB", "extractor": "e", "weights_sha256": "",
        "preprocessing": "", "protocol": "", "standard": True, "seed": 0,
    }  # fmt: skip
    document = {"run_id": "r", "created": "", "command": "", "config": {}, "environment": {}, "dataset": {}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**document, "methods": {}, "rows": [row], "schema_version": 1}))
    (loaded,) = RunResult.load(path).rows
    assert loaded.value == 1.0 and math.isnan(loaded.ci_low)
    path.write_text(json.dumps({**document, "methods": {}, "rows": [], "schema_version": 99}))
    with pytest.raises(ValueError, match="schema 99"):
        RunResult.load(path)


# -- the sanity suite -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_sanity_suite_passes_on_toyfaces_with_the_available_extractors(tmp_path: Path, capsys, private_cache) -> None:
    """With the fid-weights extra, FID/KID use the standard Inception; LPIPS and VGG trunks are stand-ins here."""
    from bench.__main__ import main

    options = ["styles=4", "dfid_inputs=3", "dfid_styles=12", "consistency_inputs=10", "consistency_copies=5"]
    args = ["sanity", "--data-root", str(tmp_path), "--data-option", "n_train=200", "--data-option", "n_test=40"]
    for option in [*options, "equivariance_inputs=10", "bootstrap=50"]:
        args += ["--eval-option", option]
    code = main(args)
    printed = capsys.readouterr().out
    assert "FAIL" not in printed, printed
    assert code == 0 and printed.count("PASS") == 15


def test_cache_command_lists_and_clears_entries(private_cache, capsys) -> None:
    from bench.__main__ import main
    from bench.evaluate.cache import CacheKey

    FeatureCache().features(
        CacheKey("ext", "sha", "pre", 64, "c0ffee"), "toyfaces testB (3 images)", lambda: torch.ones(3, 4)
    )
    assert main(["cache", "ls"]) == 0
    listed = capsys.readouterr().out
    assert "toyfaces testB (3 images)" in listed and "ext @ 64px" in listed and "c0ffee" in listed
    assert main(["cache", "clear"]) == 0
    assert "removed" in capsys.readouterr().out and FeatureCache().entries() == []


def test_image_dumps_hold_exactly_the_scored_translations(toyfaces_small, tmp_path: Path, private_cache) -> None:
    from bench.data.images import ImageSet

    identity = reference_panel(toyfaces_small)[0]
    evaluator = _evaluator(toyfaces_small, None, ["kid"])
    evaluator.dump_dir = tmp_path / "images"
    evaluator.evaluate(identity, "run", "", seed=0)
    dumped = ImageSet.scan(tmp_path / "images" / "identity" / "a2b")
    inputs = toyfaces_small.split("test", "A")
    assert [p.stem for p in dumped.paths] == [p.stem for p in inputs.paths]
    assert torch.equal(dumped.load_all(32), inputs.load_all(32))  # lossless: the identity map's outputs
