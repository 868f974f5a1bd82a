"""`bench eval --translations DIR --reference DIR` is tracked as `bench run` tracks a method: metric names with
direction, interval bounds and the stand-in suffix, and the tags every run of the harness carries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.__main__ import main


def _images(folder: Path, n: int, seed: int) -> Path:
    """`n` random 32px PNGs."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return folder


@pytest.mark.slow
def test_eval_translations_logs_the_metrics_of_bench_run(in_tmp: Path, standin, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    # the stand-in extractor, also where the fid-weights extra would give the standard Inception
    monkeypatch.setattr("bench.weights.converted_inception", lambda allow_standin: None)
    fakes, real = _images(in_tmp / "fakes", 8, 0), _images(in_tmp / "real", 8, 1)
    args = ["eval", "--translations", str(fakes), "--reference", str(real), "--name", "mine", "--allow-standin"]
    assert main([*args, "--metrics", "kid", "--eval-option", "bootstrap=20"]) == 0  # KID: the cheap interval
    (document,) = in_tmp.glob("reports/*/results.json")
    result = json.loads(document.read_text())
    rows = [r for r in result["rows"] if r["method"] == "mine"]
    assert [(r["metric"], r["direction"], r["standard"]) for r in rows] == [("kid", "a2b", False)]

    client = MlflowClient(tracking_uri=f"sqlite:///{in_tmp / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("i2i-bench/translations").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_id == result["methods"]["mine"]["mlflow_run_id"]
    expected = {}
    for row in rows:  # value and both interval bounds, under bench run's names
        name = f"{row['metric']}_a2b_nonstandard"
        assert np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]), row
        expected |= {name: row["value"], f"{name}_ci_low": row["ci_low"], f"{name}_ci_high": row["ci_high"]}
    assert run.data.metrics == expected

    tags = run.data.tags
    assert tags["bench_run_id"] == result["run_id"] and tags["bench_key"] == tags["method"] == "mine"
    assert tags["preset"] == "translations" and tags["dataset"] == "translations"
    assert tags["standard"] == "false" and tags["extractor"] == rows[0]["extractor"]
    assert tags["protocol"] == "harness" and tags["seed"] == str(result["config"]["seed"])
    assert tags["git_commit"] == result["environment"]["i2i-bench git commit"]
    assert tags["bench_pid"] == str(os.getpid())  # the owner, for the orphan sweep of a later run
    assert result["methods"]["mine"]["tracking"]["tags"].items() <= tags.items()  # what `track push` would log
    assert run.data.params["translations"] == str(fakes) and run.data.params["reference"] == str(real)
    assert run.data.params["run.eval.metrics"] == str(["kid"])
    assert {"index.html", "results.csv", "results.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
