"""Registered metrics: pure functions over features (or distances), with the metadata reports and checks need.

Each metric names its gatherer (bench/evaluate/gather.py), what it reads: the evaluator calls it once per
(method, direction, seed) and calls `compute(*gathered, options)`. Every array here is numpy; nothing
here touches images, networks or files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.stats

from bench.errors import ConfigError
from bench.evaluate.fidkid import (
    KidKernels,
    block_kid,
    default_kid_subset_size,
    features_to_fid,
    features_to_kid,
    fid_from_arrays,
)
from bench.evaluate.gather import (
    AugmentedStyles,
    Equivariance,
    Gather,
    OutputsAndBothReal,
    OutputsAndReal,
    PerInputStyles,
    StylePairs,
    Timing,
)
from bench.evaluate.stats import Interval, bootstrap_interval, jackknife_interval, mean_interval


@dataclass(frozen=True)
class EvalOptions:
    """Every setting that changes a number; all of them are recorded with the run."""

    # A named evaluation protocol (bench/protocols.py) fixes some of the options below; rows carry its name.
    protocol: str = "harness"
    reference: str = "test"  # which split of the target domain set metrics compare against: test or train
    kid_estimator: str = "subsets"  # subsets: random subsets (torch-fidelity); blocks: TF-GAN's contiguous blocks
    kid_subset_size: int | None = None  # None: default_kid_subset_size
    kid_subsets: int = 100
    kid_block_size: int = 10  # blocks: at most this many images per block (GAN_Metrics-Tensorflow: 10)
    fid_styles: int = 1  # multimodal methods: outputs per input in the sets FID and KID compare (StarGAN v2: 10)
    # KID subsets, bootstrap resampling, styles and augmentations. Not a key of the configuration tree:
    # bench.config sets it to the run's seed, so a run has one seed.
    seed: int = field(default=0, metadata={"tree": False})
    bootstrap: int = 200  # bootstrap replicates per interval (0: no intervals at all)
    ci_level: float = 0.95
    styles: int = 10  # lpips_diversity: outputs per input (StarGAN v2: 10)
    dfid_inputs: int = 10  # dfid: inputs, each translated with dfid_styles styles
    dfid_styles: int = 50
    consistency_inputs: int = 25  # style_consistency: inputs ...
    consistency_copies: int = 8  # ... each augmented this many times
    equivariance_inputs: int = 25
    throughput_batch: int = 8  # the larger batch size of `throughput` (the other is 1)
    throughput_iterations: int = 10

    def __post_init__(self) -> None:
        if self.reference not in ("test", "train"):
            raise ConfigError(f"eval.reference must be 'test' or 'train', got {self.reference!r}")
        if self.kid_estimator not in ("subsets", "blocks"):
            raise ConfigError(f"eval.kid_estimator must be 'subsets' or 'blocks', got {self.kid_estimator!r}")
        if not 0 < self.ci_level < 1:
            raise ConfigError(f"eval.ci_level must be between 0 and 1, got {self.ci_level}")
        at_least = {"kid_subsets": 1, "styles": 2, "dfid_inputs": 1, "dfid_styles": 2, "consistency_inputs": 2}
        at_least |= {"consistency_copies": 2, "equivariance_inputs": 1, "throughput_batch": 1}
        at_least |= {"throughput_iterations": 1, "bootstrap": 0, "kid_block_size": 2, "fid_styles": 1}
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise ConfigError(f"eval.{name} must be at least {low}, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvalOptions:
        from bench.config import from_dict  # here, not at the top: bench.config imports this module

        return from_dict(cls, values, "eval")

    def interval(self, statistic: Callable[..., float], sizes: list[int]) -> Interval | None:
        if self.bootstrap == 0:
            return None
        return bootstrap_interval(statistic, sizes, self.bootstrap, self.ci_level, self.seed)

    def jackknife(
        self, statistic: Callable[[np.ndarray, np.ndarray], float], sizes: tuple[int, int]
    ) -> Interval | None:
        """For distances (FID, FD): an interval in log scale, so it stays above zero."""
        if self.bootstrap == 0:
            return None
        return jackknife_interval(statistic, sizes, self.ci_level, self.seed, positive=True)

    def mean_interval(self, per_input: np.ndarray) -> Interval | None:
        return None if self.bootstrap == 0 else mean_interval(per_input, self.bootstrap, self.ci_level, self.seed)


@dataclass(frozen=True)
class MetricValue:
    value: float
    protocol: str  # what besides the inputs determines the number (estimator settings)
    n: int  # translated images (or inputs) the value averages over
    n_ref: int = 0  # real reference images (set metrics)
    interval: Interval | None = None
    name: str = ""  # row name when a metric yields several numbers (throughput); default: the metric's


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool | None  # None: a descriptive number (throughput), no better or worse
    ideal: float | None  # the value of a perfect translator
    gather: Gather  # what it reads; the evaluator calls compute(*gather's result, options)
    compute: Callable[..., list[MetricValue]]
    scale_in_reports: float = 1.0  # reports print value * scale (KID x100, as most papers do)
    default: bool = True  # computed when the user names no metrics
    notes: str = ""  # shown in the report's metric glossary
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def extractor(self) -> str:  # inception | lpips | style | dinov2 | clip | none
        return self.gather.extractor

    @property
    def set_metric(self) -> bool:
        """Compares the outputs' distribution with the reference set: gets a real-vs-real noise-floor row."""
        return isinstance(self.gather, OutputsAndReal)


# -- set metrics ----------------------------------------------------------------------------------------
def fid(fake: np.ndarray, real: np.ndarray, options: EvalOptions) -> list[MetricValue]:
    """Frechet distance of Gaussian fits (exact; equal to torch-fidelity's to 1e-6 relative), with a jackknife interval over both sets.

    The interval is for the estimator at this sample size (what another draw of as many test images
    would give), not for the population FID, which FID's bias at small n keeps far below.
    """
    value = features_to_fid(fake, real)
    # leaving a group out must leave 2 samples per set for a covariance
    interval = (
        options.jackknife(lambda i, j: fid_from_arrays(fake[i], real[j]), (len(fake), len(real)))
        if min(len(fake), len(real)) >= 4
        else None
    )
    protocol = "Frechet distance of float64 Gaussian fits (exact singular-value form; torch-fidelity's value to 1e-6)"
    if interval is not None:
        protocol += f"; log-normal interval from a grouped two-sample jackknife ({interval.replicates} evaluations)"
    return [MetricValue(value, protocol, len(fake), len(real), interval)]


def kid(fake: np.ndarray, real: np.ndarray, options: EvalOptions) -> list[MetricValue]:
    """Unbiased MMD^2 with the cubic polynomial kernel (torch-fidelity), averaged over random subsets, or
    TF-GAN's block-wise estimate (`kid_estimator: blocks`, the GAN_Metrics-Tensorflow protocols)."""
    if options.kid_estimator == "blocks":
        return [_block_kid(fake, real, options)]
    size = options.kid_subset_size or default_kid_subset_size(len(fake), len(real))
    estimate = features_to_kid(fake, real, size, options.kid_subsets, options.seed)
    kernels = KidKernels.of(fake, real) if options.bootstrap else None
    interval = options.interval(lambda i, j: kernels.mmd2(i, j), [len(fake), len(real)]) if kernels else None
    protocol = (
        f"unbiased MMD^2, cubic polynomial kernel, {estimate.subsets} subsets of "
        f"{estimate.subset_size} drawn with seed {options.seed} (subset std {estimate.std:.4g}, not an "
        "uncertainty); raw scale"
    )
    if interval is not None:
        protocol += f"; interval: percentile bootstrap of the full-set estimator ({interval.replicates} replicates)"
    return [MetricValue(estimate.mean, protocol, len(fake), len(real), interval)]


def _block_kid(fake: np.ndarray, real: np.ndarray, options: EvalOptions) -> MetricValue:
    estimate = block_kid(fake, real, options.kid_block_size)
    z = float(scipy.stats.norm.ppf(0.5 + options.ci_level / 2))
    interval = (
        Interval(estimate.mean - z * estimate.std, estimate.mean + z * estimate.std, options.ci_level, estimate.subsets)
        if options.bootstrap and np.isfinite(estimate.std)
        else None
    )
    protocol = (
        f"TF-GAN block-wise KID, {estimate.subsets} contiguous blocks of at most "
        f"{estimate.subset_size} images in file order, cubic polynomial kernel; block standard error "
        f"{estimate.std:.4g} (the +- papers print); raw scale"
    )
    if interval is not None:
        protocol += "; interval: normal, from the block standard error"
    return MetricValue(estimate.mean, protocol, len(fake), len(real), interval)


def kid_mean_with_source(
    fake: np.ndarray, target: np.ndarray, source: np.ndarray, options: EvalOptions
) -> list[MetricValue]:
    """The "mean KID" of taki0112/GAN_Metrics-Tensorflow (`mean_kernel_inception_distance`, main.py at
    5e358b7): the mean of the KID against the target domain and the KID against the *source* domain.
    Not a target-domain KID: taki0112/UGATIT#64 found 2.72 (x100) target-only vs 11.15 mean for one model."""
    (to_target,), (to_source,) = kid(fake, target, options), kid(fake, source, options)
    value = (to_target.value + to_source.value) / 2
    protocol = f"mean of KID to the target ({to_target.value:.4g}) and to the source ({to_source.value:.4g}); "
    return [MetricValue(value, protocol + to_target.protocol, len(fake), len(target) + len(source))]


# -- diversity ------------------------------------------------------------------------------------------
def lpips_diversity(pairwise: np.ndarray, options: EvalOptions) -> list[MetricValue]:
    """StarGAN v2 protocol: per input, the mean LPIPS over all pairs of its M outputs; mean over inputs.

    `pairwise` is (inputs, M*(M-1)/2). A deterministic map gives exactly 0.
    """
    per_input = pairwise.mean(1)
    pairs = pairwise.shape[1]
    protocol = (
        f"mean LPIPS over all {pairs} pairs of {options.styles} outputs per input (random styles), mean over inputs"
    )
    return [MetricValue(float(per_input.mean()), protocol, len(per_input), 0, options.mean_interval(per_input))]


def dfid(per_input: list[np.ndarray], real: np.ndarray, options: EvalOptions) -> list[MetricValue]:
    """Diversity FID: for each input, FID between its outputs under many styles and the real target set.

    GNR's paper defines it, but its table and evaluation code could not be found (bench/paper/tables.yaml
    lists it among the facts not found), so the inputs, the styles per input and the reference split
    (options dfid_inputs, dfid_styles, reference; each row's protocol states the values used) are this
    harness's choice. Low when the outputs of a
    single input already cover the target distribution; a deterministic map scores as badly as possible
    (all outputs identical: zero covariance).
    """
    values = np.array([fid_from_arrays(outputs, real) for outputs in per_input])
    protocol = (
        f"mean over {len(values)} inputs of FID(outputs of one input under {options.dfid_styles} random styles, "
        f"{len(real)} real {options.reference} images); harness defaults, GNR's protocol is unpublished"
    )
    styles = len(per_input[0]) if per_input else 0
    return [MetricValue(float(values.mean()), protocol, len(values) * styles, len(real), options.mean_interval(values))]


def _spread(stats: np.ndarray) -> np.ndarray:
    """Total variance of style statistics across the second-to-last axis: (..., K, C) -> (...)."""
    return stats.var(axis=-2, ddof=1).sum(-1)


def style_consistency(
    augmented: np.ndarray, styles: np.ndarray | None, outputs: np.ndarray | None, options: EvalOptions
) -> list[MetricValue]:
    """Spread of style statistics across augmented copies of an input translated with one fixed style,
    divided by their spread across different styles for the same input. Lower is more consistent; 1.0
    means the style does not survive augmentation.

    augmented: (inputs, K, C) statistics of G(T_k(x), s); styles: (inputs, M, C) statistics of G(x, s_m)
    for multimodal translators, None for unimodal ones, whose denominator is the spread across the
    outputs of different inputs (`outputs`, (N, C)): a unimodal method's only source of style variation.
    """
    numerator = _spread(augmented)
    if styles is not None:
        denominator = _spread(styles)
        basis = f"across {styles.shape[1]} random styles of the same input"
    else:
        if outputs is None:
            raise ValueError("style_consistency of a unimodal translator needs the statistics of its outputs")
        denominator = np.full(len(numerator), _spread(outputs[None])[0])
        basis = f"across the outputs of {len(outputs)} different inputs (unimodal)"
    if denominator.sum() <= 0:
        value, interval = float("nan"), None
        basis += ": no style variation at all, so the ratio is undefined"
    else:
        value = float(numerator.sum() / denominator.sum())
        interval = options.interval(lambda i: numerator[i].sum() / max(denominator[i].sum(), 1e-300), [len(numerator)])
    protocol = (
        f"ratio of summed variances of VGG16 channel mean/std statistics: across {augmented.shape[1]} augmented "
        f"copies (flip, scale, rotation, translation, crop) with one style and one random state, over {basis}"
    )
    return [MetricValue(value, protocol, len(numerator), 0, interval)]


def content_equivariance(distances: np.ndarray, options: EvalOptions) -> list[MetricValue]:
    """LPIPS between G(T(x), s) and T(G(x, s)) for geometric transforms T; 0 when translation commutes with T.

    `distances` is (inputs, transforms).
    """
    per_input = distances.mean(1)
    protocol = (
        f"mean LPIPS between G(T(x), s) and T(G(x, s)) over {distances.shape[1]} transforms "
        "(horizontal flip; rotation 10 deg + scale 1.1 + shift 5%, reflection padding), same style and random state"
    )
    return [MetricValue(float(per_input.mean()), protocol, len(per_input), 0, options.mean_interval(per_input))]


# -- throughput -----------------------------------------------------------------------------------------
def throughput(measured: list[Any], parameters: int, options: EvalOptions) -> list[MetricValue]:
    """Speed and size of translation (not a quality metric): one row per quantity and batch size."""
    rows = [MetricValue(float(parameters), "parameters of the networks translation uses", 0, name="parameters")]
    for m in measured:
        b = f"b{m.batch_size}"
        how = f"batch {m.batch_size}, {options.throughput_iterations} timed calls after warm-up, synchronised"
        rows += [
            MetricValue(m.images_per_s, how, m.batch_size, name=f"images_per_s_{b}"),
            MetricValue(m.ms_per_image_p50, how + ", median", m.batch_size, name=f"ms_per_image_p50_{b}"),
            MetricValue(m.ms_per_image_p95, how + ", 95th percentile", m.batch_size, name=f"ms_per_image_p95_{b}"),
            MetricValue(
                m.flops_per_image / 1e9, "torch.utils.flop_counter", m.batch_size, name=f"gflops_per_image_{b}"
            ),
        ]
        if m.peak_fraction is not None:
            rows.append(
                MetricValue(
                    m.peak_fraction, "achieved FLOP/s / measured matmul peak", m.batch_size, name=f"peak_fraction_{b}"
                )
            )
        if m.peak_memory_mb is not None:
            rows.append(MetricValue(m.peak_memory_mb, "CUDA max allocated", m.batch_size, name=f"peak_memory_mb_{b}"))
    return rows


FID = Metric("fid", False, 0.0, OutputsAndReal("inception"), fid)
KID = Metric("kid", False, 0.0, OutputsAndReal("inception"), kid, scale_in_reports=100.0)
KID_MEAN_WITH_SOURCE = Metric(
    "kid_mean_with_source",
    False,
    0.0,
    OutputsAndBothReal("inception"),
    kid_mean_with_source,
    scale_in_reports=100.0,
    default=False,
    notes=kid_mean_with_source.__doc__ or "",
)
FD_DINOV2 = Metric("fd_dinov2", False, 0.0, OutputsAndReal("dinov2"), fid, default=False)
FD_CLIP = Metric("fd_clip", False, 0.0, OutputsAndReal("clip"), fid, default=False)
LPIPS_DIVERSITY = Metric("lpips_diversity", True, None, StylePairs(), lpips_diversity)
DFID = Metric("dfid", False, 0.0, PerInputStyles("inception"), dfid, notes=dfid.__doc__ or "")
STYLE_CONSISTENCY = Metric("style_consistency", False, 0.0, AugmentedStyles(), style_consistency)
CONTENT_EQUIVARIANCE = Metric("content_equivariance", False, 0.0, Equivariance(), content_equivariance)
THROUGHPUT = Metric("throughput", None, None, Timing(), throughput)
