"""Registered metrics: pure functions over feature sets, with the metadata reports and checks need."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from bench.evaluate.fidkid import default_kid_subset_size, features_to_fid, features_to_kid


@dataclass(frozen=True)
class MetricOptions:
    kid_subset_size: int | None = None  # None: default_kid_subset_size
    kid_subsets: int = 100
    seed: int = 0  # draws KID subsets


@dataclass(frozen=True)
class MetricValue:
    value: float
    protocol: str  # what besides the features determines the number (estimator settings)


@dataclass(frozen=True)
class SetMetric:
    """Compares the features of translated images (first argument) with those of real target images."""

    name: str
    higher_is_better: bool
    ideal: float  # the value of a perfect translator
    features: str  # extractor output the metric reads
    scale_in_reports: float  # reports print value * scale (KID x100, as most papers do)
    compute: Callable[[Tensor, Tensor, MetricOptions], MetricValue]


def _fid(fake: Tensor, real: Tensor, options: MetricOptions) -> MetricValue:
    return MetricValue(features_to_fid(fake, real), "Frechet distance of float64 Gaussian fits")


def _kid(fake: Tensor, real: Tensor, options: MetricOptions) -> MetricValue:
    size = options.kid_subset_size or default_kid_subset_size(len(fake), len(real))
    estimate = features_to_kid(fake, real, size, options.kid_subsets, options.seed)
    protocol = (
        f"unbiased MMD^2, cubic polynomial kernel, {estimate.subsets} subsets of {estimate.subset_size} "
        f"(seed {options.seed}), subset std {estimate.std:.4g}; raw scale"
    )
    return MetricValue(estimate.mean, protocol)


FID = SetMetric("fid", higher_is_better=False, ideal=0.0, features="inception-2048", scale_in_reports=1.0, compute=_fid)
KID = SetMetric(
    "kid", higher_is_better=False, ideal=0.0, features="inception-2048", scale_in_reports=100.0, compute=_kid
)
