"""The configuration of one `bench run` or `bench eval`: one tree of frozen dataclasses.

Top-level run fields, then the sections `data`, `train`, `eval` and `weights`; every setting lives in
exactly one place. Values come from the defaults, the dataset's evaluation defaults, a YAML file of the
same shape (`--config`), then `--set section.key=value` overrides (the CLI's shorthand flags are
overrides too), in that order. `to_dict` gives the tree as plain values; `--print-config` prints it as
YAML, and that YAML read back with `--config` gives the same tree.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import ConfigError
from bench.evaluate.metrics import EvalOptions
from bench.protocols import apply_protocol


def _at_least(where: str, obj: Any, low: int, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and value < low:
            raise ConfigError(f"{where}.{name} must be at least {low}, got {value}")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "toyfaces"
    root: str | None = None  # default: datasets/<name> (toyfaces: generated under datasets/)
    # dataset-specific, checked by the dataset: toyfaces size, n_train, n_test, seed; folder image_size
    options: dict[str, Any] = field(default_factory=dict)
    workers: int = 0  # data-loading processes

    def __post_init__(self) -> None:
        _at_least("data", self, 0, "workers")


@dataclass(frozen=True)
class TrainConfig:
    steps: int | None = None  # default: the preset's epochs over the training set
    batch_size: int | None = None  # default: the preset's
    seeds: tuple[int, ...] = ()  # train every method once per seed instead of once at the run's seed
    resume: bool = False  # continue from the last checkpoint of the same configuration
    checkpoint_every: int = 1000  # steps between checkpoints (one is always written at the end)
    sample_every: int = 500  # steps between sample grids (one is always written at the end)
    log_every: int = 1  # the tracker gets each loss averaged over this many steps (raise for long runs)

    def __post_init__(self) -> None:
        _at_least("train", self, 1, "steps", "batch_size", "checkpoint_every", "sample_every", "log_every")


@dataclass(frozen=True)
class EvalConfig(EvalOptions):
    """The metrics' settings (EvalOptions: every setting that changes a number) and what the harness does."""

    metrics: tuple[str, ...] = ()  # empty: every registered metric marked default (all but fd_dinov2, fd_clip)
    batch_size: int = 50
    limit: int | None = None  # translate only the first N test images per direction (smoke runs)
    dump_images: bool = False  # write each method's translated test images under reports/<run id>/images/
    feature_cache: bool = True  # keep features of real image sets on disk (see `bench cache ls`)

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least("eval", self, 1, "batch_size", "limit")


@dataclass(frozen=True)
class WeightsConfig:
    """Pretrained files by catalogue name (None: the environment variable, then the torch hub cache)."""

    inception: str | None = None  # torch-fidelity InceptionV3 for FID/KID
    inception_torchvision: str | None = None  # torchvision's ImageNet Inception-v3 (the stargan_v2 protocol)
    vgg16: str | None = None
    alexnet: str | None = None
    clip: str | None = None  # fd_clip (DINOv2 loads only from the torch hub cache)
    # use a labelled non-standard extractor when no standard weights are found; None: synthetic data only
    allow_standin: bool | None = None

    def paths(self) -> dict[str, str]:
        """Name -> path of every file the user gave."""
        files = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "allow_standin"}
        return {name: path for name, path in files.items() if path is not None}

    def path(self, name: str) -> str | None:
        return self.paths().get(name)


@dataclass(frozen=True)
class RunConfig:
    methods: tuple[str, ...] = ()  # empty: every registered method (bench eval: those with a checkpoint)
    preset: str | None = None  # method preset; default: the dataset's (tiny for toyfaces, paper for real data)
    seed: int = 0  # weight initialisation, data order, and evaluation (styles, KID subsets, resampling)
    work_dir: str = "runs"  # checkpoints and sample grids
    reports_dir: str = "reports"
    track: bool = True  # log to MLflow
    experiment: str | None = None  # MLflow experiment (default: i2i-bench/<dataset>)
    # `bench eval`: method -> checkpoint to score instead of training (a harness checkpoint or the
    # authors' released file); empty for `bench run`
    checkpoints: dict[str, str] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)

    def __post_init__(self) -> None:
        # The metrics read their seed from their options; it is the run's seed, so the tree holds it once.
        if self.eval.seed != self.seed:
            object.__setattr__(self, "eval", dataclasses.replace(self.eval, seed=self.seed))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        return from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# -- strict construction from plain values (YAML, --set) -------------------------------------------------


def tree_fields(cls: type) -> list[dataclasses.Field]:
    """The fields that are keys of the tree; a field marked `metadata={"tree": False}` is set by the harness."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("tree", True)]


def from_dict(cls: type, values: Any, where: str = "") -> Any:
    """Dataclass `cls` from plain values: nested sections, lists to tuples, types checked, unknown keys refused.

    `where` is the dotted path of this section, for the messages.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in tree_fields(cls)}
    section = where or "the top level"
    if not isinstance(values, dict):
        raise ConfigError(f"{section} must be a mapping of {', '.join(fields)}, not {values!r}")
    unknown = [k for k in values if k not in fields]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), fields, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(
            f"{section} has no field(s) {', '.join(map(str, unknown))}{hint}; "
            f"valid {f'keys of {where}' if where else 'top-level keys'}: {', '.join(sorted(fields))}"
        )
    converted = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**converted)  # each section checks its own values (ConfigError)


def _convert(hint: Any, value: Any, key: str) -> Any:
    """`value` as type `hint`, or ConfigError naming `key`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]  # the tree has no other unions
        return _convert(inner, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_convert(args[0], v, key) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    # bool is an int in Python; `steps: true` is a mistake, not 1
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {hint.__name__}, got {value!r}")
    return value


def to_dict(obj: Any) -> Any:
    """The tree as plain values (tuples as lists, so YAML writes and reads it back unchanged)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in tree_fields(type(obj))}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# -- loading -----------------------------------------------------------------------------------------------


def set_key(values: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted `key` (e.g. eval.styles, data.options.size) in the nested plain `values`."""
    *sections, last = key.split(".")
    if not last or not all(sections):
        raise ConfigError(f"--set {key}: expected section.key=value, e.g. eval.styles=10")
    node = values
    for i, name in enumerate(sections):
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {'.'.join(sections[: i + 1])} is a value, not a section")
    node[last] = value


def load_config(path: str | Path | None = None, overrides: Iterable[tuple[str, Any]] = ()) -> RunConfig:
    """Defaults, the dataset's evaluation defaults, the YAML file at `path`, then `overrides` in order."""
    from bench.registry import DATASETS  # here: the registry imports every registered module's name

    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"--config {path}: {error}") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of configuration keys, not {type(loaded).__name__}")
        values = loaded or {}
    for key, value in overrides:
        set_key(values, key, value)
    cfg = RunConfig.from_dict(values)  # checks every key before the dataset is looked up
    # Beneath the user's values the dataset's (e.g. fewer styles on toyfaces); above them the protocol's.
    defaults = DATASETS.get(cfg.data.dataset).eval_defaults or {}
    evaluation = apply_protocol(values.get("eval", {}), defaults)
    return RunConfig.from_dict({**values, "eval": evaluation}) if evaluation != values.get("eval", {}) else cfg
