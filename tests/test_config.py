"""Run configuration: defaults, YAML file, command-line overrides, strict keys, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import RunConfig, load_config
from methods.base import ConfigError


def test_yaml_then_flags_override(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("steps: 5\nseed: 3\nmethods: [cyclegan]\ndata_options: {size: 32}\n")
    cfg = load_config(path, {"seed": 7, "preset": None})
    assert (cfg.steps, cfg.seed, cfg.methods, cfg.data_options) == (5, 7, ("cyclegan",), {"size": 32})
    assert cfg.preset is None  # None means "not given", so the YAML or the default stands


def test_unknown_keys_and_bad_values_raise(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("stepz: 5\n")
    with pytest.raises(ConfigError, match="no field.*stepz"):
        load_config(path, {})
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path, {})
    with pytest.raises(ConfigError, match="steps must be at least 1"):
        RunConfig(steps=0)


def test_round_trip() -> None:
    cfg = RunConfig(methods=("cyclegan",), steps=3, data_options={"size": 32})
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(seed=4).seed == 4
