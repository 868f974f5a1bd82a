"""FID and KID as pure functions of feature matrices, computed by torch-fidelity's own functions.

Numerics policy: features are promoted to float64 before statistics; the FID matrix square root is
torch-fidelity's (eigenvalues of sigma_1 @ sigma_2, real part of their square roots), so numbers agree
with `torch_fidelity.calculate_metrics` on the same features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

KID_MAX_SUBSET_SIZE = 1000  # torch-fidelity's default, used whenever both sets are large enough


@dataclass(frozen=True)
class GaussianStats:
    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64


def features_to_statistics(features: Tensor) -> GaussianStats:
    """Mean and covariance (float64) of (N, D) features."""
    stats = fid_features_to_statistics(features.detach().cpu().to(torch.float64))
    return GaussianStats(stats["mu"], stats["sigma"])


def statistics_to_fid(a: GaussianStats, b: GaussianStats) -> float:
    """Frechet distance between two Gaussians."""
    out = fid_statistics_to_metric({"mu": a.mu, "sigma": a.sigma}, {"mu": b.mu, "sigma": b.sigma}, verbose=False)
    return float(out["frechet_inception_distance"])


def features_to_fid(features_1: Tensor, features_2: Tensor) -> float:
    return statistics_to_fid(features_to_statistics(features_1), features_to_statistics(features_2))


def default_kid_subset_size(n_1: int, n_2: int) -> int:
    """torch-fidelity's 1000 where possible, else half the smaller set.

    With 100 test images a subset size of 100 would make every subset the whole set (all estimates
    identical, a std of 0); half the set keeps the subsets different and the estimator unbiased.
    """
    smaller = min(n_1, n_2)
    return KID_MAX_SUBSET_SIZE if smaller >= 2 * KID_MAX_SUBSET_SIZE else max(2, smaller // 2)


@dataclass(frozen=True)
class KidEstimate:
    mean: float  # unbiased MMD^2 estimate, raw scale (papers often print x100)
    std: float  # spread over subsets: a diagnostic, not a confidence interval
    subset_size: int
    subsets: int


def features_to_kid(features_1: Tensor, features_2: Tensor, subset_size: int, subsets: int, seed: int) -> KidEstimate:
    """KID with the cubic polynomial kernel over `subsets` random subsets drawn from `seed`."""
    n_1, n_2 = len(features_1), len(features_2)
    if subset_size > min(n_1, n_2) or subset_size < 2:
        raise ValueError(f"KID subset size {subset_size} must be between 2 and the smaller set size ({min(n_1, n_2)})")
    out = kid_features_to_metric(
        features_1.detach().cpu().to(torch.float64),
        features_2.detach().cpu().to(torch.float64),
        kid_subset_size=subset_size,
        kid_subsets=subsets,
        rng_seed=seed,
        verbose=False,
    )
    return KidEstimate(float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD]), subset_size, subsets)
