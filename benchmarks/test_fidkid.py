"""The cost curve of FID and KID (`nox -s bench`): compute time from two sets of n random 2048-d feature
vectors, at n = 100, 1,000, 10,000 and 50,000 (50,000 is the usual FID sample size).

FID grows with n through the two (2048, 2048) covariances (n * 2048^2 each) and then pays a fixed matrix
square root; KID with the harness's default subsets (100 of 1,000 images, fewer below 2,000) stops growing at
n = 2,000. The functions are the ones reported values come from (bench.evaluate.fidkid, torch-fidelity's).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.evaluate.fidkid import default_kid_subset_size, features_to_fid, features_to_kid
from bench.evaluate.metrics import EvalOptions

SIZES = [100, 1_000, 10_000, 50_000]


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    """Two sets of 50,000 float64 features (800 MB each), shifted apart; each n takes their first n rows."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((SIZES[-1], 2048)), rng.standard_normal((SIZES[-1], 2048)) + 0.1


def _rounds(n: int) -> int:
    return 3 if n <= 1_000 else 1  # a round at 50,000 takes tens of seconds


@pytest.mark.parametrize("n", SIZES)
def test_fid(benchmark, features, n: int) -> None:
    a, b = features
    benchmark.pedantic(features_to_fid, args=(a[:n], b[:n]), rounds=_rounds(n), iterations=1)
    benchmark.extra_info["n"] = n


@pytest.mark.parametrize("n", SIZES)
def test_kid(benchmark, features, n: int) -> None:
    a, b = features
    subset_size, subsets = default_kid_subset_size(n, n), EvalOptions().kid_subsets
    benchmark.pedantic(features_to_kid, args=(a[:n], b[:n], subset_size, subsets, 0), rounds=_rounds(n))
    benchmark.extra_info.update(n=n, subset_size=subset_size, subsets=subsets)
