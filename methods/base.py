"""The method interface every translation model implements.

Images cross every boundary of this interface as float tensors of shape (N, 3, H, W), RGB, in [-1, 1].
Every source of randomness is an explicit `torch.Generator`, so a seed reproduces a run.

This module imports only torch and the standard library, because every layer of the harness imports it
(bench.data included); the import rules of the whole package are in `methods/__init__.py`.
"""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar, Literal, Self, TypeVar

import torch
from torch import Tensor, nn

Direction = Literal["a2b", "b2a"]
DIRECTIONS: tuple[Direction, ...] = ("a2b", "b2a")


class ConfigError(ValueError):
    """A configuration names an unknown key, preset or an invalid value."""


T = TypeVar("T")


def strict_from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Instantiate dataclass `cls` from plain values (JSON, YAML, CLI); unknown keys raise."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(fields))}")
    # JSON and YAML give lists where the dataclass holds tuples.
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**converted)


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's frozen config. Field defaults are the paper's settings.

    Subclasses list their presets in `PRESETS` as overrides of the defaults; `paper` is always the
    defaults themselves.
    """

    image_size: int = 256  # side of the square training crop and of translated outputs
    load_size: int = 256  # images are resized to this before the random crop
    flip: bool = True  # random horizontal flip during training
    batch_size: int = 1
    epochs: float = 200.0  # training length; one epoch = max(len(trainA), len(trainB)) / batch_size steps

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}}
    # When a run names no preset it asks for the dataset's default ("paper" for real data, "tiny" for
    # synthetic); a method may map that to another of its presets (U-GAT-IT's baseline is the light model).
    DEFAULT_PRESETS: ClassVar[dict[str, str]] = {}

    @classmethod
    def default_preset(cls, dataset_default: str) -> str:
        return cls.DEFAULT_PRESETS.get(dataset_default, dataset_default)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        if name not in cls.PRESETS:
            raise ConfigError(f"{cls.__name__} has no preset {name!r}; presets: {', '.join(cls.PRESETS)}")
        return cls.from_dict({**cls.PRESETS[name], **overrides})

    @classmethod
    def paper(cls) -> Self:
        return cls.preset("paper")

    @classmethod
    def tiny(cls) -> Self:
        return cls.preset("tiny")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Build from plain values; unknown keys raise instead of being ignored."""
        return strict_from_dict(cls, values)

    def replace(self, **overrides: Any) -> Self:
        return type(self).from_dict({**self.to_dict(), **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Batch:
    """One unpaired training batch: images of domain A and of domain B, each (N, 3, H, W) in [-1, 1]."""

    a: Tensor
    b: Tensor


@dataclass(frozen=True)
class Update:
    """One phase of a training step: the loss whose gradients the training loop applies with that phase's
    optimisers, and values to log (tensors are read after the update)."""

    phase: str
    loss: Tensor
    logs: dict[str, Tensor | float] = field(default_factory=dict)


@dataclass(frozen=True)
class Average:
    """An exponential moving average of a trained network: after each step `average = decay * average + (1 -
    decay) * live`, parameter by parameter (what StarGAN v2's and GNR's official `moving_average` do)."""

    average: str  # attribute name of the averaged copy
    live: str  # attribute name of the trained network
    decay: float


# The sub-networks as the training loop runs them: `nets.G_A` is `method.G_A`, wrapped for data parallelism
# when several processes train. Losses call these so that gradients are synchronised.
Networks = SimpleNamespace


class Method(nn.Module, ABC):
    """A two-domain image-to-image translation model.

    Subclasses set the class attributes, build their networks in `__init__(config)` and implement the
    abstract methods. A subclass is registered by one line in `methods/__init__.py`.
    """

    name: ClassVar[str]
    multimodal: ClassVar[bool] = False  # True when translate() draws a style per output
    Config: ClassVar[type[MethodConfig]]
    networks: ClassVar[tuple[str, ...]]  # attribute names of the sub-networks; trainable ones get wrapped
    not_compilable: ClassVar[str] = ""  # why torch.compile cannot train this method ("": it can; `--compile`)

    def __init__(self, config: MethodConfig) -> None:
        super().__init__()
        if not isinstance(config, self.Config):
            raise ConfigError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self._optimizers: dict[str, torch.optim.Optimizer] | None = None

    @classmethod
    def from_preset(cls, preset: str = "paper", **overrides: Any) -> Self:
        return cls(cls.Config.preset(preset, **overrides))

    # -- training ---------------------------------------------------------------------------------
    @abstractmethod
    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Create this method's optimisers with the paper's learning rates (called once)."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self._optimizers is None:
            self._optimizers = self.build_optimizers()
            for optimizer in self._optimizers.values():
                for group in optimizer.param_groups:
                    group.setdefault("initial_lr", group["lr"])
        return self._optimizers

    def lr_factor(self, step: int, total_steps: int) -> float:
        """Learning-rate multiplier at `step` of `total_steps`: a pure function of the step."""
        return 1.0

    def phases(self) -> dict[str, tuple[str, ...]]:
        """The optimisers each phase of a step updates, by phase name; by default one phase per optimiser."""
        return {name: (name,) for name in self.optimizers()}

    def averages(self) -> tuple[Average, ...]:
        """The moving averages the training loop updates after every step."""
        return ()

    @abstractmethod
    def training_step(self, nets: Networks, batch: Batch, step: int, rng: torch.Generator) -> Iterator[Update]:
        """One training step on `batch`, as a generator of the updates of its phases, in order.

        Every random number comes from `rng` (a CPU generator; draw there and move to the batch's device).
        Library code that reads only torch's global RNG runs under `seeded_global_rng(rng)`.

        For each yielded `Update` the training loop clears the gradients of the phase's optimisers,
        backpropagates the loss and steps them, then resumes the generator; code after the last `yield` runs
        after the last update. Forward passes of trained networks go through `nets`.
        """

    def train_state(self) -> dict[str, Tensor]:
        """Tensors besides network weights and optimiser states that a resumed run needs."""
        return {}

    def load_train_state(self, state: dict[str, Tensor]) -> None:
        """Restore what `train_state` returned."""

    def network_state(self) -> dict[str, dict[str, Tensor]]:
        """The state_dict of every sub-network."""
        return {attr: getattr(self, attr).state_dict() for attr in self.networks}

    def load_network_state(self, state: dict[str, dict[str, Tensor]]) -> None:
        for attr in self.networks:
            getattr(self, attr).load_state_dict(state[attr])

    @classmethod
    def pretrained_networks(cls, config: MethodConfig) -> dict[str, bool]:
        """Pretrained networks this config's losses need, by harness catalogue name ("vgg16", ...).

        Each maps to whether a random stand-in is acceptable (tiny presets) or not (paper presets). The
        harness finds, checks and reads the files and passes their states to `attach_pretrained` before training.
        """
        return {}

    def attach_pretrained(self, name: str, state: dict[str, Tensor] | None) -> None:
        """Load pretrained network `name` from its published state_dict; None means a random stand-in."""
        raise ConfigError(f"{self.name} uses no pretrained network {name!r}")

    # -- inference --------------------------------------------------------------------------------
    @property
    def directions(self) -> tuple[Direction, ...]:
        """The directions this configuration trains and translates; the harness evaluates only these."""
        return DIRECTIONS

    @abstractmethod
    def translate(
        self,
        x: Tensor,
        direction: Direction = "a2b",
        *,
        style: Tensor | None = None,
        reference: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Translate `x` (N, 3, H, W) in [-1, 1] to the other domain; returns (N, 3, H, W) in [-1, 1].

        Multimodal methods use `style` (from `sample_style`), else the style of `reference` images of
        the target domain, else a style drawn from `generator`. Unimodal methods ignore all three.
        """

    def sample_style(self, n: int, direction: Direction, generator: torch.Generator | None = None) -> Tensor | None:
        """Draw `n` style codes for `direction`; None for unimodal methods."""
        return None

    # -- released checkpoints (the harness reads the files: bench/official.py) ------------------------
    official_files: ClassVar[tuple[str, ...]] = ()  # glob patterns of the authors' released files in a folder

    def translation_networks(self, direction: Direction) -> tuple[str, ...]:
        """Sub-module paths `translate(..., direction)` runs: a released checkpoint must fill them all."""
        return ()

    def pick_official(self, names: list[str]) -> list[str]:
        """Which of a folder's file names matching `official_files` to read (sorted); all by default.
        FileNotFoundError when a needed file is missing."""
        return names

    @abstractmethod
    def convert_official(
        self, files: dict[str, Any], direction: Direction | None = None
    ) -> dict[str, dict[str, Tensor]]:
        """The authors' released states as this method's, without touching any file.

        `files` maps file names to what `torch.load` read from them; the result maps sub-module paths
        (`"G_A"`, `"gen_a2b.3"`) to their state_dicts. `direction` says which direction a single-direction
        file translates where its name does not. ValueError when the files are not this method's.
        """

    def parameter_counts(self) -> dict[str, int]:
        return {attr: sum(p.numel() for p in getattr(self, attr).parameters()) for attr in self.networks}


@contextmanager
def seeded_global_rng(rng: torch.Generator, device: torch.device) -> Iterator[None]:
    """Run library code that draws only from torch's global RNG (kornia's augmentations) on a stream seeded
    from `rng`; the global RNG of the CPU and of `device` is as before afterwards."""
    seed = int(torch.randint(0, 2**63 - 1, (), generator=rng))
    cuda = device.type == "cuda"
    index = device.index if device.index is not None else (torch.cuda.current_device() if cuda else 0)
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def check_direction(direction: str) -> Direction:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return direction  # type: ignore[return-value]


def newest_file(names: list[str], iteration: str) -> list[str]:
    """The name whose iteration number (group 1 of regex `iteration`) is largest: a folder's latest snapshot."""
    return [max(names, key=lambda n: int(m.group(1)) if (m := re.search(iteration, n)) else -1)]


def only_file(files: dict[str, Any], method: str) -> tuple[str, Any]:
    """The (name, state) of a method whose authors release one file; ValueError for several."""
    if len(files) != 1:
        raise ValueError(f"{method} releases one checkpoint file, got {len(files)}: {', '.join(sorted(files))}")
    return next(iter(files.items()))


def state_mismatch(module: nn.Module, state: dict[str, Tensor]) -> str | None:
    """What keeps `state` from loading strictly into `module` (missing, unexpected, mis-shaped keys), or None."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    not_tensors = [f"{k}: a {type(state[k]).__name__}" for k in own if k in state and not isinstance(state[k], Tensor)]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and isinstance(state[k], Tensor) and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("not a tensor", not_tensors),
        ("shape mismatch", mismatched),
    ):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label}: {'; '.join(items[:3])}{more}")
    return " | ".join(parts) or None


def load_state_dict_checked(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """`load_state_dict(strict=True)` with an error that names what differs instead of a shape dump."""
    if not isinstance(state, Mapping):
        raise ValueError(f"{source} holds a {type(state).__name__}, not a state dict of {type(module).__name__}")
    mismatch = state_mismatch(module, state)
    if mismatch:
        raise ValueError(
            f"{source} does not fit {type(module).__name__} as configured ({mismatch}). "
            "Check that the preset matches the checkpoint (image size, channels, blocks)."
        )
    module.load_state_dict(state, strict=True)
