"""Evaluation speed (`nox -s bench`): Inception feature extraction, and one network translator evaluated cold
(everything computed) and cached (the real sets' features and every array gathered from its outputs read from
the feature cache: nothing is translated or extracted)."""

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
    """100 test images per domain and a tiny CycleGAN (its initial weights: a network translator, whose outputs
    the cache can key by its tensors), scored with every default quality metric."""
    from bench.evaluate.evaluator import metric_extractors
    from bench.registry import DATASETS, METRICS
    from methods.cyclegan import CycleGAN

    data = DATASETS.get("toyfaces").open(tmp_path_factory.mktemp("data"), {"n_train": 20, "n_test": 100})
    torch.manual_seed(0)
    method = CycleGAN.from_preset("tiny", image_size=data.image_size).eval()
    metrics = [METRICS.get(m) for m in METRICS.names() if METRICS.get(m).default and m != "throughput"]
    extractors = metric_extractors(metrics, inception, {}, allow_standin=True, device="cpu")
    return data, metrics, extractors, method, tmp_path_factory.mktemp("features")


def _evaluate(setup, cold: bool) -> None:
    from bench.evaluate.cache import FeatureCache
    from bench.evaluate.evaluator import Evaluator
    from bench.evaluate.metrics import EvalOptions

    data, metrics, extractors, method, cache_dir = setup
    cache = FeatureCache(cache_dir)
    if cold:
        cache.clear()
    # A new Evaluator each round: its in-memory features would otherwise make every round after the first a
    # cached one. Throughput is left out: it is measured again on every evaluation, cached or not.
    Evaluator(data, metrics, EvalOptions(), extractors, cache=cache).evaluate(method, "bench", "tiny", 0)


@pytest.mark.parametrize("state", ["cold", "cached"])
def test_evaluate_100_images_per_direction(benchmark, setup, state: str) -> None:
    """Cold: translate, extract the translations and the real sets, compute every metric with its interval.
    Cached: the same evaluation of the unchanged network, with every array read from the feature cache."""
    _evaluate(setup, cold=False)  # fills the cache for the cached case, and builds the extractors for both
    benchmark.pedantic(_evaluate, args=(setup, state == "cold"), rounds=2, iterations=1)
