"""Speed of the synthetic data (`nox -s bench`): one toyfaces image, which the demo renders thousands of."""

from __future__ import annotations

import numpy as np

from bench.data.toyfaces import render_face, sample_factors


def test_render_toyface(benchmark) -> None:
    factors = sample_factors(np.random.default_rng(0))
    benchmark(render_face, factors, "A", 64)
