"""The configuration of one `bench run` or `bench eval`: one tree of frozen dataclasses.

Top-level run fields, then the sections `data`, `train`, `eval` and `weights`; every setting lives in
exactly one place. Values come from the defaults, the dataset's evaluation defaults, a YAML file of the
same shape (`--config`), then `--set section.key=value` overrides (the CLI's shorthand flags are
overrides too), in that order. `to_dict` gives the tree as plain values; `--print-config` prints it as
YAML, and that YAML read back with `--config` gives the same tree.

Importing this module imports nothing heavy: the eval section extends the metrics' EvalOptions, whose module
imports torch, so that one class is built on first use. `check_early` refuses what it can of a tree before
then, so the CLI answers a typo in well under a second.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import ConfigError, DataError
from bench.protocols import apply_protocol, protocol

MIXED_PRECISION = ("no", "bf16", "fp16")  # what Accelerate's mixed_precision takes (fp8 needs extra libraries)
DEVICES = ("auto", "cpu", "cuda")  # auto: Accelerate's choice (a GPU when one is visible, or the launcher's)


def _at_least(where: str, obj: Any, low: int, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and value < low:
            raise ConfigError(f"{where}.{name} must be at least {low}, got {value}")


def _one_of(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


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
    mixed_precision: str = "no"  # Accelerate's autocast of the trained networks: no, bf16 or fp16
    # torch.compile (inductor) of the trained networks. Off by default: only CycleGAN's training compiles, and on
    # 2 CPU cores its 42 s of compiling pay off after about 3,000 tiny steps (README, Configuration); checkpoints
    # are the same either way.
    compile: bool = False
    channels_last: bool = False  # NHWC weights and batches in training (bench.train.use_channels_last)

    def __post_init__(self) -> None:
        _at_least("train", self, 1, "steps", "batch_size", "checkpoint_every", "sample_every", "log_every")
        _one_of("train.mixed_precision", self.mixed_precision, MIXED_PRECISION)


@functools.cache
def _eval_config() -> type:
    """EvalConfig, built on first use: EvalOptions' module imports torch (see the module's docstring)."""
    from bench.evaluate.metrics import EvalOptions

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

    EvalConfig.__module__, EvalConfig.__qualname__ = __name__, "EvalConfig"  # pickles as bench.config.EvalConfig
    globals()["EvalConfig"] = EvalConfig  # where typing.get_type_hints(RunConfig) finds it
    return EvalConfig


def __getattr__(name: str) -> Any:
    if name == "EvalConfig":  # bench.config.EvalConfig before anything built it
        return _eval_config()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    # where training and evaluation run: auto (Accelerate's choice), cpu, or cuda (refused if none is visible)
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=lambda: _eval_config()())  # noqa: F821 (built by _eval_config)
    weights: WeightsConfig = field(default_factory=WeightsConfig)

    def __post_init__(self) -> None:
        _one_of("device", self.device, DEVICES)
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
    if cls is RunConfig:
        _eval_config()  # the eval section's class, so that its annotation resolves
    hints = typing.get_type_hints(cls)
    _check_keys(cls, values, where)
    converted = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**converted)  # each section checks its own values (ConfigError)


def _check_keys(cls: type, values: Any, where: str) -> None:
    """`values` is a mapping of `cls`'s tree keys, or ConfigError naming the valid ones."""
    fields = [f.name for f in tree_fields(cls)]
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
        # YAML 1.1 reads no/yes/off/on as booleans, so `mixed_precision: no` arrives as False
        quote = (
            " (YAML reads no, yes, off, on as booleans: quote the text)"
            if hint is str and isinstance(value, bool)
            else ""
        )
        raise ConfigError(f"{key} must be {hint.__name__}, got {value!r}{quote}")
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


def check_early(values: Any) -> None:
    """Refuse what can be refused without importing torch: the keys and values of every section but the eval
    section's metric options (EvalOptions, checked when the tree is built), the names of methods, dataset,
    metrics and protocol, and a folder dataset's missing root. The messages are those of the full checks.
    """
    from bench.registry import DATASETS, METHODS, METRICS  # names only: entries resolve on first lookup

    _check_keys(RunConfig, values, "")
    # the eval section is left to EvalOptions but for its names; its class is not built yet, so its
    # annotation stands for anything here
    hints = typing.get_type_hints(RunConfig, localns={"EvalConfig": Any})
    plain = {k: _convert(hints[k], v, k) for k, v in values.items() if k != "eval"}
    if "device" in plain:  # RunConfig's own check, which runs only once the eval section can be built
        _one_of("device", plain["device"], DEVICES)
    for name in plain.get("methods", ()) + tuple(plain.get("checkpoints", {})):
        METHODS.check(name)
    data = plain.get("data", DataConfig())
    DATASETS.check(data.dataset)
    # a folder dataset's root is looked at only when the data opens, after torch and the methods import
    if data.dataset == "folder" and data.root is not None and not Path(data.root).is_dir():
        raise DataError(f"folder: no dataset at {data.root} (expected trainA, trainB, testA, testB inside).")
    evaluation = values.get("eval") if isinstance(values.get("eval"), dict) else {}
    if isinstance(evaluation.get("protocol"), str):  # other types: EvalOptions names the key and type
        protocol(evaluation["protocol"])
    metrics = evaluation.get("metrics")
    if isinstance(metrics, (list, tuple)) and all(isinstance(name, str) for name in metrics):
        for name in metrics:
            METRICS.check(name)


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
    check_early(values)  # before anything heavy is imported
    cfg = RunConfig.from_dict(values)  # checks every key before the dataset is looked up
    # Beneath the user's values the dataset's (e.g. fewer styles on toyfaces); above them the protocol's.
    defaults = DATASETS.get(cfg.data.dataset).eval_defaults or {}
    evaluation = apply_protocol(values.get("eval", {}), defaults)
    return RunConfig.from_dict({**values, "eval": evaluation}) if evaluation != values.get("eval", {}) else cfg
