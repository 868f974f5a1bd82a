"""The frozen configuration of one `bench run`, from defaults, a YAML file and command-line overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from methods.base import ConfigError, strict_from_dict


@dataclass(frozen=True)
class RunConfig:
    methods: tuple[str, ...] = ()  # empty: every registered method
    dataset: str = "toyfaces"
    data_root: str | None = None  # default: datasets/<name> (toyfaces: generated under datasets/)
    data_options: dict[str, Any] = field(default_factory=dict)  # dataset-specific, e.g. toyfaces size
    preset: str | None = None  # method preset; default: the dataset's (tiny for toyfaces, paper for real data)
    steps: int | None = None  # training steps; default: the preset's epochs over the training set
    batch_size: int | None = None  # default: the preset's
    seed: int = 0
    seeds: tuple[int, ...] = ()  # several training seeds: each method trains once per seed (overrides seed)
    resume: bool = False  # continue from the last checkpoint of the same configuration
    work_dir: str = "runs"  # checkpoints and sample grids
    reports_dir: str = "reports"
    checkpoint_every: int = 1000  # steps between checkpoints (one is always written at the end)
    sample_every: int = 500  # steps between sample grids (one is always written at the end)
    log_every: int = 1  # the tracker gets each loss averaged over this many steps (raise for long runs)
    workers: int = 0  # data-loading processes
    metrics: tuple[str, ...] = ()  # empty: every registered metric marked default (all but fd_dinov2, fd_clip)
    inception_weights: str | None = None  # path to the torch-fidelity InceptionV3 weights
    weights: dict[str, str] = field(default_factory=dict)  # other pretrained files by name, e.g. vgg16
    allow_standin: bool | None = (
        None  # use a non-standard extractor if no standard weights; default: synthetic data only
    )
    eval_batch_size: int = 50
    eval_limit: int | None = None  # translate only the first N test images per direction (smoke runs)
    kid_subset_size: int | None = None  # default: min(1000, n // 2), so subsets differ at n = 100
    kid_subsets: int = 100
    eval_options: dict[str, Any] = field(default_factory=dict)  # bench.evaluate.metrics.EvalOptions fields
    dump_images: bool = False  # write each method's translated test images under reports/<run id>/images/
    feature_cache: bool = True  # keep features of real image sets on disk (see `bench cache ls`)
    track: bool = True  # log to MLflow
    # `bench eval`: method (or method-seedN key) -> checkpoint to score instead of training (a harness
    # checkpoint or the authors' released file); empty for `bench run`
    checkpoints: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = ("checkpoint_every", "sample_every", "log_every", "eval_batch_size", "kid_subsets")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("steps", "batch_size", "eval_limit", "kid_subset_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        return strict_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **overrides: Any) -> RunConfig:
        return RunConfig.from_dict({**self.to_dict(), **overrides})


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> RunConfig:
    """Defaults, then the YAML file at `path`, then `overrides` (None values are left out)."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of RunConfig fields, not {type(loaded).__name__}")
        values.update(loaded or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig.from_dict(values)
