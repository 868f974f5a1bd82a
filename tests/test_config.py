"""The configuration tree: defaults, YAML file, overrides in order, strict keys and types, round trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from bench.config import RunConfig, load_config
from bench.errors import BenchError, ConfigError
from bench.evaluate.metrics import EvalOptions


def test_yaml_then_overrides_in_order(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("seed: 3\nmethods: [cyclegan]\ntrain: {steps: 5}\ndata: {options: {size: 32}}\n")
    overrides = [("seed", 7), ("train.steps", 6), ("train.steps", 8), ("data.options.n_test", 4)]
    cfg = load_config(path, overrides)
    assert (cfg.seed, cfg.methods, cfg.train.steps) == (7, ("cyclegan",), 8)  # the last override wins
    assert cfg.data.options == {"size": 32, "n_test": 4}  # a key inside a mapping, the file's keys kept
    assert cfg.preset is None and cfg.train.batch_size is None  # not given: the defaults stand


def test_the_run_has_one_seed_and_the_metrics_read_it() -> None:
    cfg = load_config(None, [("seed", 5)])
    assert cfg.eval.seed == 5 and isinstance(cfg.eval, EvalOptions)
    assert dataclasses.replace(cfg, seed=9).eval.seed == 9  # per-seed runs of --seeds
    assert "seed" not in cfg.to_dict()["eval"]
    with pytest.raises(ConfigError, match="eval has no field.*seed"):
        load_config(None, [("eval.seed", 1)])


def test_dataset_evaluation_defaults_lie_beneath_the_users_values() -> None:
    toy = load_config(None, [("eval.dfid_styles", 30)])
    assert (toy.eval.styles, toy.eval.dfid_styles) == (5, 30)  # toyfaces' lighter default, the user's value
    assert load_config(None, [("data.dataset", "folder")]).eval.styles == 10  # no such default on real data


def test_print_config_yaml_round_trips(tmp_path: Path) -> None:
    overrides = [("methods", ["cyclegan", "gnr"]), ("train.seeds", [1, 2]), ("eval.styles", 7)]
    overrides += [("weights.vgg16", "/w/vgg.pth"), ("data.options.size", 32), ("checkpoints", {"gnr": "g.pt"})]
    cfg = load_config(None, overrides)
    path = tmp_path / "printed.yaml"
    path.write_text(cfg.to_yaml())
    again = load_config(path)
    assert again == cfg and again.to_yaml() == cfg.to_yaml()
    assert again.methods == ("cyclegan", "gnr") and again.train.seeds == (1, 2)  # lists became tuples again


@pytest.mark.parametrize(
    ("key", "section", "valid"),
    [
        ("stepz", "top level", "valid top-level keys: checkpoints, data, device, eval"),
        (
            "train.stepz",
            "train",
            "valid keys of train: batch_size, channels_last, checkpoint_every, compile, log_every",
        ),
        ("eval.stlyes", "eval", "(did you mean styles?)"),
        (
            "weights.dinov2",
            "weights",
            "valid keys of weights: alexnet, allow_standin, clip, inception, inception_torchvision, vgg16",
        ),
    ],
)
def test_an_unknown_key_names_the_valid_keys_of_its_section(key: str, section: str, valid: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, [(key, 1)])
    message = str(raised.value)
    assert f"{section} has no field(s) {key.split('.')[-1]}" in message and valid in message
    assert "\n" not in message and isinstance(raised.value, BenchError)  # one line, reported without traceback


def test_unknown_keys_in_the_yaml_file_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  steps: 5\n  stepz: 6\n")
    with pytest.raises(ConfigError, match="train has no field.*stepz"):
        load_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.steps", "abc", "train.steps must be int, got 'abc'"),
        ("train.steps", True, "train.steps must be int"),  # a YAML `true` is not 1
        ("train.steps", 0, "train.steps must be at least 1"),
        ("eval.styles", 1, "eval.styles must be at least 2"),
        ("eval.ci_level", 2.0, "eval.ci_level must be between 0 and 1"),
        ("eval.ci_level", 1, "eval.ci_level must be float, got 1"),
        ("methods", "cyclegan", "methods must be a list"),
        ("train", 5, "train must be a mapping"),
        ("data.options", 3, "data.options must be a mapping"),
    ],
)
def test_values_are_checked_with_the_key_named(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, [(key, value)])


def test_weights_paths_are_the_files_given() -> None:
    cfg = load_config(None, [("weights.inception", "/i.pth"), ("weights.allow_standin", True)])
    assert cfg.weights.paths() == {"inception": "/i.pth"} and cfg.weights.path("vgg16") is None


def test_the_printed_yaml_is_plain() -> None:
    printed = yaml.safe_load(load_config(None, [("methods", ["gnr"])]).to_yaml())
    assert list(printed) == [f.name for f in dataclasses.fields(RunConfig)]
    assert list(printed["eval"])[-5:] == ["metrics", "batch_size", "limit", "dump_images", "feature_cache"]
