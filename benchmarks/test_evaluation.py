"""Cold vs cached evaluation (`nox -s bench`): the feature cache removes the real-set Inception pass."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import os

    os.environ.setdefault("BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    from bench.evaluate.evaluator import metric_extractors
    from bench.evaluate.panel import reference_panel
    from bench.registry import DATASETS, METRICS
    from bench.weights import resolve_weights

    data = DATASETS.get("toyfaces").open(tmp_path_factory.mktemp("data"), {"n_train": 20, "n_test": 100})
    metrics = [METRICS.get("fid"), METRICS.get("kid")]
    inception = resolve_weights("inception", None, allow_standin=True)
    extractors = metric_extractors(metrics, inception, {}, allow_standin=True, device="cpu")
    identity = reference_panel(data)[0]  # translation costs nothing: the benchmark times evaluation only
    return data, metrics, extractors, identity, tmp_path_factory.mktemp("features")


def _evaluate(setup, cache_dir, cold: bool) -> None:
    from bench.evaluate.cache import FeatureCache
    from bench.evaluate.evaluator import Evaluator
    from bench.evaluate.metrics import EvalOptions

    data, metrics, extractors, identity, _ = setup
    cache = FeatureCache(cache_dir)
    if cold:
        cache.clear()
    Evaluator(data, metrics, EvalOptions(bootstrap=0), extractors, cache=cache).evaluate(identity, "bench", "", 0)


@pytest.mark.parametrize("state", ["cold", "cached"])
def test_evaluate_100_images_per_direction(benchmark, setup, state: str) -> None:
    cache_dir = setup[-1]
    _evaluate(setup, cache_dir, cold=False)  # fills the cache for the cached case
    benchmark.pedantic(_evaluate, args=(setup, cache_dir, state == "cold"), rounds=2, iterations=1)
