"""The registry type, and contract tests that every registered method, dataset and metric must pass."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from bench.registry import DATASETS, METHODS, METRICS, Registry, UnknownNameError
from bench.train import train_step
from methods.base import DIRECTIONS, Batch, ConfigError, Method


# -- the Registry type ------------------------------------------------------------------------------
def test_lazy_entry_is_imported_on_first_lookup() -> None:
    registry: Registry[object] = Registry("thing")
    registry.register("join", "os.path:join", "joins paths")
    assert registry.description("join") == "joins paths"
    import os.path

    assert registry.get("join") is os.path.join


def test_duplicate_name_raises() -> None:
    registry: Registry[int] = Registry("thing")
    registry.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", 2)


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean: cyclegan"):
        METHODS.get("cyclegn")


def test_lazy_target_must_name_an_attribute() -> None:
    with pytest.raises(ValueError, match="module:attribute"):
        Registry("thing").register("x", "os.path")


def test_description_falls_back_to_docstring() -> None:
    registry: Registry[object] = Registry("thing")

    class Thing:
        """First line.

        More."""

    registry.register("t", Thing)
    assert registry.description("t") == "First line."


def test_bench_never_imports_a_method_module_by_name() -> None:
    from pathlib import Path

    bench_dir = Path(__file__).resolve().parent.parent / "bench"
    for path in bench_dir.rglob("*.py"):
        text = path.read_text()
        for name in METHODS.names():
            assert f"methods.{name}" not in text, f"{path} names the method module methods.{name}"
            assert f'== "{name}"' not in text, f"{path} special-cases method {name}"


# -- contract: methods ----------------------------------------------------------------------------
@pytest.fixture(params=METHODS.names())
def method_cls(request: pytest.FixtureRequest) -> type[Method]:
    return METHODS.get(request.param)


def test_method_class_contract(method_cls: type[Method]) -> None:
    assert issubclass(method_cls, Method)
    assert method_cls.name in METHODS.names()
    assert {"paper", "tiny"} <= set(method_cls.Config.PRESETS)
    for preset in method_cls.Config.PRESETS:
        config = method_cls.Config.preset(preset)
        assert method_cls.Config.from_dict(config.to_dict()) == config  # round trip
    with pytest.raises(ConfigError, match="no field"):
        method_cls.Config.from_dict({"not_a_field": 1})
    with pytest.raises(ConfigError, match="no preset"):
        method_cls.Config.preset("nonexistent")


def test_tiny_method_translates_and_trains(method_cls: type[Method]) -> None:
    torch.manual_seed(0)
    method = method_cls.from_preset("tiny")
    size = method.config.image_size
    x = torch.rand(2, 3, size, size) * 2 - 1
    for direction in DIRECTIONS:
        y = method.translate(x, direction, generator=torch.Generator().manual_seed(0))
        assert y.shape == x.shape
        assert float(y.min()) >= -1 - 1e-5 and float(y.max()) <= 1 + 1e-5
        style = method.sample_style(2, direction, torch.Generator().manual_seed(0))
        assert (style is None) == (not method_cls.multimodal)
    with pytest.raises(ValueError, match="direction"):
        method.translate(x, "a2c")  # type: ignore[arg-type]
    method.train()
    before = {k: v.clone() for k, v in method.state_dict().items()}
    global_rng = torch.get_rng_state()
    for step in range(2):
        losses = train_step(method, Batch(x, x.flip(0)), step)
        assert losses and all(math.isfinite(v) for v in losses.values())
    changed = [k for k, v in method.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "a training step must update some weights"
    # Randomness is an argument: a step draws from the generator the loop passes, never the global RNG.
    assert torch.equal(torch.get_rng_state(), global_rng), "a training step drew from torch's global RNG"


def test_method_state_round_trips(method_cls: type[Method]) -> None:
    torch.manual_seed(0)
    a = method_cls.from_preset("tiny")
    torch.manual_seed(1)
    b = method_cls.from_preset("tiny")
    b.load_network_state(a.network_state())
    for attr in a.networks:
        for (ka, va), (kb, vb) in zip(getattr(a, attr).state_dict().items(), getattr(b, attr).state_dict().items()):
            assert ka == kb and torch.equal(va, vb)


# -- contract: datasets and metrics ---------------------------------------------------------------
@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_spec_contract(name: str) -> None:
    spec = DATASETS.get(name)
    assert spec.name == name
    for method in METHODS.names():
        assert spec.default_preset in METHODS.get(method).Config.PRESETS
    assert DATASETS.description(name)


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_contract(name: str) -> None:
    from bench.evaluate.gather import Timing
    from bench.evaluate.metrics import EvalOptions

    metric = METRICS.get(name)
    assert metric.name == name and dataclasses.is_dataclass(metric) and METRICS.description(name)
    assert metric.extractor in ("inception", "lpips", "style", "dinov2", "clip", "none")
    assert callable(metric.gather) and hash(metric.gather) == hash(dataclasses.replace(metric.gather))
    assert (metric.higher_is_better is None) == isinstance(metric.gather, Timing)
    if not metric.set_metric:
        return
    # a set metric moves away from its ideal value when one set moves away from the other
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(200, 16, generator=generator, dtype=torch.float64).numpy()
    other = torch.randn(200, 16, generator=generator, dtype=torch.float64).numpy()
    options = EvalOptions(bootstrap=20)
    (same,) = metric.compute(other, real, options)
    (worse,) = metric.compute(other + 2.0, real, options)
    assert (worse.value > same.value) == (not metric.higher_is_better)
    assert abs(same.value - metric.ideal) < abs(worse.value - metric.ideal)
    assert worse.interval is not None and worse.interval.low <= worse.value <= worse.interval.high * 1.5
