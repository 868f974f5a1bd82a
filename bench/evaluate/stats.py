"""Uncertainty of metrics estimated from 100 test images: seeded bootstrap and jackknife intervals."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float  # e.g. 0.95
    replicates: int  # bootstrap replicates or jackknife evaluations behind the interval


def bootstrap_interval(
    statistic: Callable[..., float],
    sizes: Sequence[int],
    replicates: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of `statistic`.

    `statistic(*indices)` receives one index array per sample (of the given `sizes`), drawn with
    replacement; independent samples (translated images and real references) are resampled
    independently. The generator is built from `seed`, never global state.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(*(rng.integers(0, n, n) for n in sizes)) for _ in range(replicates)])
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return Interval(float("nan"), float("nan"), level, 0)
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return Interval(float(low), float(high), level, len(values))


def mean_interval(per_input: np.ndarray, replicates: int = 1000, level: float = 0.95, seed: int = 0) -> Interval:
    """Bootstrap interval of the mean of per-input values (diversity, consistency, equivariance)."""
    per_input = np.asarray(per_input, dtype=np.float64)
    return bootstrap_interval(lambda i: float(per_input[i].mean()), [len(per_input)], replicates, level, seed)


def jackknife_interval(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    sizes: tuple[int, int],
    level: float = 0.95,
    seed: int = 0,
    max_groups: int = 50,
) -> Interval:
    """Normal interval from a two-sample grouped (delete-a-group) jackknife standard error.

    For FID, where the percentile bootstrap fails: resampling with replacement duplicates images, which
    FID reads as lost diversity, so bootstrap replicates sit far above the estimate (0% coverage of the
    estimator's expected value in our simulation, against 95% for this interval). `statistic(keep_1,
    keep_2)` gets the indices kept of each sample; each sample is split into at most `max_groups` random
    groups (seeded), left out one at a time, and the two variances add (independent samples).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    full = [np.arange(n) for n in sizes]
    estimate = statistic(*full)
    variance, evaluations = 0.0, 0
    for which, n in enumerate(sizes):
        groups = np.array_split(rng.permutation(n), min(n, max_groups))
        values = []
        for group in groups:
            keep = [np.setdiff1d(full[k], group) if k == which else full[k] for k in range(2)]
            values.append(statistic(*keep))
        values_array = np.array(values)
        g = len(groups)
        variance += (g - 1) / g * float(((values_array - values_array.mean()) ** 2).sum())
        evaluations += g
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2)
    half = z * variance**0.5
    return Interval(estimate - half, estimate + half, level, evaluations)
