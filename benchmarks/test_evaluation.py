"""Evaluation speed (`nox -s bench`): Inception feature extraction, and one translator evaluated cold (real-set
features computed) and cached (read from the feature cache, which removes the real-set Inception pass)."""

from __future__ import annotations

import pytest
import torch
from conftest import fastest_seconds


@pytest.fixture(scope="module")
def inception():
    """The FID Inception converted from the fid-weights extra when installed (part of `[dev]`), else the
    labelled random stand-in: the same network, so the same speed; `standard` in extra_info says which."""
    from bench.weights import resolve_weights

    return resolve_weights("inception", None, allow_standin=True)


def test_inception_features_batch_50(benchmark, inception) -> None:
    from bench.evaluate.extract import InceptionFeatures

    features = InceptionFeatures(inception)
    images = (torch.rand(50, 3, 64, 64) * 255).to(torch.uint8)  # resized to 299 inside, as every image is
    benchmark.pedantic(features, args=(images,), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(
        images_per_s=round(len(images) / fastest_seconds(benchmark), 2),
        standard_weights=inception.standard,
        threads=torch.get_num_threads(),
    )


@pytest.fixture(scope="module")
def setup(inception, tmp_path_factory):
    from bench.evaluate.evaluator import metric_extractors
    from bench.evaluate.panel import reference_panel
    from bench.registry import DATASETS, METRICS

    data = DATASETS.get("toyfaces").open(tmp_path_factory.mktemp("data"), {"n_train": 20, "n_test": 100})
    metrics = [METRICS.get("fid"), METRICS.get("kid")]
    extractors = metric_extractors(metrics, inception, {}, allow_standin=True, device="cpu")
    identity = reference_panel(data)[0]  # translation costs nothing: the benchmark times evaluation only
    return data, metrics, extractors, identity, tmp_path_factory.mktemp("features")


def _evaluate(setup, cold: bool) -> None:
    from bench.evaluate.cache import FeatureCache
    from bench.evaluate.evaluator import Evaluator
    from bench.evaluate.metrics import EvalOptions

    data, metrics, extractors, identity, cache_dir = setup
    cache = FeatureCache(cache_dir)
    if cold:
        cache.clear()
    # A new Evaluator each round: its in-memory real features would otherwise make every round after the first
    # a cached one. bootstrap=0: the intervals' resampling would dominate what is compared here.
    Evaluator(data, metrics, EvalOptions(bootstrap=0), extractors, cache=cache).evaluate(identity, "bench", "", 0)


@pytest.mark.parametrize("state", ["cold", "cached"])
def test_evaluate_100_images_per_direction(benchmark, setup, state: str) -> None:
    _evaluate(setup, cold=False)  # fills the cache for the cached case, and builds the extractor for both
    benchmark.pedantic(_evaluate, args=(setup, state == "cold"), rounds=2, iterations=1)
