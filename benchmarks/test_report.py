"""Report generation (`nox -s bench`): `bench.report.build_report` from a results document on disk, the size
of a full run (five methods, both directions, two seeds, loss curves), as `bench report` does it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.registry import METHODS
from bench.results import ResultRow, RunResult

# (metric, value scale, has an interval): what `bench run` writes for every method and direction
METRICS = [("fid", 100.0, True), ("kid", 0.05, True), ("lpips_diversity", 0.3, True)]
METRICS += [("images_per_s_b1", 20.0, False), ("parameters", 1e7, False)]


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = []
    for method in METHODS.names():
        for direction in ("a2b", "b2a"):
            for seed in (0, 1):
                for metric, scale, interval in METRICS:
                    value = float(scale * rng.uniform(0.5, 1.5))
                    low, high = (value * 0.9, value * 1.1) if interval else (math.nan, math.nan)
                    rows.append(
                        ResultRow(
                            **{"run_id": "bench", "method": method, "preset": "tiny", "dataset": "toyfaces"},
                            **{"direction": direction, "metric": metric, "value": value, "n": 100, "n_ref": 100},
                            **{"reference": "testB", "extractor": "inception", "weights_sha256": "ab"},
                            **{"preprocessing": "p", "protocol": "harness: p", "standard": True, "seed": seed},
                            **{"ci_low": low, "ci_high": high, "ci_level": 0.95 if interval else math.nan},
                        )
                    )
    steps = list(range(0, 30_000, 100))  # 300 points: what `thin_curve` keeps of a long run
    curve = {"step": steps, "G": rng.uniform(1, 2, len(steps)).tolist(), "D": rng.uniform(0, 1, len(steps)).tolist()}
    train = {"steps": 30_000, "resumed_from": 0, "seconds": 3600.0, "checkpoint": "", "loss_curve": curve}
    info = {"status": "ok", "preset": "tiny", "parameters": {"G": 10**7}, "train": train, "images": {}}
    info |= {"error": None, "sample_grid": None, "mlflow_run_id": None}
    methods = {name: info for name in METHODS.names()}
    dataset = {"name": "toyfaces", "root": "datasets/toyfaces", "image_size": 64, "counts": {}, "notes": []}
    result = RunResult("bench", "now", "python -m bench run", {"seed": 0}, {}, {**dataset, "skipped": []}, methods)
    result.rows = rows
    directory = tmp_path_factory.mktemp("run")
    return result.save(directory), directory


def test_build_report(benchmark, document) -> None:
    from bench.report import build_report

    path, directory = document
    benchmark.pedantic(lambda: build_report(RunResult.load(path), directory / "report"), rounds=3, warmup_rounds=1)
    benchmark.extra_info["rows"] = len(RunResult.load(path).rows)
