"""Speed of the hot paths on this machine (pytest-benchmark): `nox -s bench`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.toyfaces import render_face, sample_factors
from bench.registry import METHODS
from bench.train import train_step
from methods.base import Batch


@pytest.mark.parametrize("name", METHODS.names())
def test_tiny_train_step(benchmark, name: str) -> None:
    torch.manual_seed(0)
    method = METHODS.get(name).from_preset("tiny")
    size, batch = method.config.image_size, method.config.batch_size
    x = torch.rand(batch, 3, size, size) * 2 - 1
    step = iter(range(10**9))
    benchmark(lambda: train_step(method, Batch(x, x.flip(0)), next(step)))


@pytest.mark.parametrize("name", METHODS.names())
def test_tiny_translate_batch_50(benchmark, name: str) -> None:
    method = METHODS.get(name).from_preset("tiny").eval()
    size = method.config.image_size
    x = torch.rand(50, 3, size, size) * 2 - 1
    benchmark(lambda: method.translate(x, "a2b", generator=torch.Generator().manual_seed(0)))


def test_inception_features_batch_50(benchmark, tmp_path_factory) -> None:
    import os

    os.environ.setdefault("BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    from bench.evaluate.extract import InceptionFeatures
    from bench.weights import resolve_weights

    features = InceptionFeatures(resolve_weights("inception", None, allow_standin=True))
    images = (torch.rand(50, 3, 64, 64) * 255).to(torch.uint8)
    benchmark.pedantic(features, args=(images,), rounds=3, iterations=1)


def test_render_toyface(benchmark) -> None:
    factors = sample_factors(np.random.default_rng(0))
    benchmark(render_face, factors, "A", 64)
