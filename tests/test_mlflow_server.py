"""MLflow as users run it: a real `mlflow server`, a `bench run` tracked on it through MLFLOW_TRACKING_URI, the
report rebuilt from the server alone; an unreachable server, and `bench track push` afterwards."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.report import leaderboards
from bench.results import ResultRow, RunResult

EXPERIMENT = "i2i-bench/toyfaces"
SMALL = ["--data-option", "size=32", "--data-option", "n_train=8", "--data-option", "n_test=4"]
RUN = ["run", "--methods", "cyclegan", "--steps", "2", "--data-root", "data", *SMALL, "--metrics", "fid"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` on a free localhost port (sqlite store, proxied artifacts), started in the background so
    that it comes up while a test's bench run works; `uri()` waits until /health answers."""

    def __init__(self, root: Path) -> None:
        port = _free_port()
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner: starts faster
        env.pop("MLFLOW_TRACKING_URI", None)
        args = ["server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--workers", "1"]
        args += ["--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
        self.log_path = root / "server.log"
        self.log = self.log_path.open("w")
        mlflow = shutil.which("mlflow") or pytest.skip("the mlflow command is not on PATH")
        self.process = subprocess.Popen([mlflow, *args], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.address, self.up = f"http://127.0.0.1:{port}", False

    def uri(self) -> str:
        deadline = time.monotonic() + 240  # a loaded 2-core machine takes a minute or more
        while not self.up:
            try:
                with urllib.request.urlopen(f"{self.address}/health", timeout=2) as response:
                    self.up = response.status == 200
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not come up:\n{self.log_path.read_text()[-3000:]}")
                time.sleep(0.2)
        return self.address

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("mlflow-server"))
    yield started
    started.stop()


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str, bench_run_id: str, experiment: str = EXPERIMENT) -> list:
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return list(client.search_runs([found.experiment_id], f"tags.bench_run_id = '{bench_run_id}'"))


def _leaderboard_tables(report: Path) -> list[str]:
    return re.findall(r'<table class="leaderboard">.*?</table>', report.read_text(), flags=re.S)


def _check_tracked(uri: str, result: RunResult, key: str = "cyclegan") -> None:
    """The MLflow run of `key` holds the tags, params, metrics (intervals too) and artifacts a run logs."""
    (run,) = _runs(uri, result.run_id)
    info = result.methods[key]
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["bench_key"] == key and tags["method"] == key and tags["bench_complete"] == "true"
    assert tags["preset"] == "tiny" and tags["protocol"] == "harness" and tags["dataset"] == "toyfaces"
    assert tags["git_commit"] == result.environment["i2i-bench git commit"] and tags["git_commit"]
    rows = [r for r in result.rows if r.method == key and r.metric == "fid"]
    assert len(rows) == 2 and tags["standard"] == str(rows[0].standard).lower()
    assert params["run.eval.metrics"] == "['fid']" and params["run.data.options.n_test"] == "4"
    assert params["method.ngf"] == "16" and params["total_steps"] == "2" and params["run.seed"] == "0"
    for row in rows:
        name = f"fid_{row.direction}{'' if row.standard else '_nonstandard'}"
        assert metrics[name] == pytest.approx(row.value, rel=1e-12)
        assert metrics[f"{name}_ci_low"] == pytest.approx(row.ci_low, rel=1e-12)
        assert metrics[f"{name}_ci_high"] == pytest.approx(row.ci_high, rel=1e-12)
    assert any(k.startswith("train/") for k in metrics)
    client = _client(uri)
    assert {"results.json", "results.csv", "index.html"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    images = info.get("images") or {}
    logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, f"samples/{key}")}
    assert logged == {Path(p).name for p in images.values()}


def _rebuild(monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str) -> Path:
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["report", "--mlflow-experiment", EXPERIMENT, *args]) == 0
    return cwd


@pytest.mark.slow
def test_an_unreachable_server_keeps_the_results_and_push_logs_them_once(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    closed = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed)
    monkeypatch.chdir(tmp_path)
    assert main(RUN) == 0  # finishes: the run is not tracked, nothing else changes
    out = capsys.readouterr().out
    (folder,) = (tmp_path / "reports").glob("*")
    assert f"mlflow:  {closed} was unreachable" in out and f"python -m bench track push reports/{folder.name}" in out
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    result = RunResult.load(folder / "results.json")
    assert result.methods["cyclegan"]["status"] == "ok" and result.methods["cyclegan"]["mlflow_run_id"] is None

    uri = server.uri()  # it came up while the run worked
    assert main(["track", "push", folder.name, "--tracking-uri", uri]) == 0  # a run id, under reports/
    assert "cyclegan: logged as run" in capsys.readouterr().out
    _check_tracked(uri, result)
    (run,) = _runs(uri, result.run_id)
    curve = (result.methods["cyclegan"]["train"] or {}).get("loss_curve")
    if curve:  # the loss curve, replayed at its steps
        loss = next(k for k in curve if k != "step")
        history = _client(uri).get_metric_history(run.info.run_id, f"train/{loss}")
        assert [(m.step, m.value) for m in history] == pytest.approx(list(zip(curve["step"], curve[loss])))

    assert main(["track", "push", str(folder), "--tracking-uri", uri]) == 0  # a folder; twice: no duplicate
    assert f"cyclegan: already logged as run {run.info.run_id}; skipped" in capsys.readouterr().out
    assert len(_runs(uri, result.run_id)) == 1

    rebuilt = _rebuild(
        monkeypatch, tmp_path / "rebuild", "--run-id", result.run_id, "--tracking-uri", uri, "--output", "out"
    )
    rebuilt /= "out"
    assert leaderboards(RunResult.load(rebuilt / "results.json")) == leaderboards(result)


@pytest.mark.slow
def test_a_run_tracked_on_a_server_rebuilds_the_same_report_from_it(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    uri = server.uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    assert main(RUN) == 0
    assert f"mlflow:  {uri} (experiment {EXPERIMENT})" in capsys.readouterr().out
    (folder,) = (tmp_path / "run" / "reports").glob("*")
    result = RunResult.load(folder / "results.json")
    assert result.methods["cyclegan"]["mlflow_run_id"] == _runs(uri, result.run_id)[0].info.run_id
    _check_tracked(uri, result)

    # the server alone: the run's local folders are gone (its sample grid path too)
    for name in ("reports", "runs"):
        (tmp_path / "run" / name).rename(tmp_path / f"{name}-elsewhere")
    local = tmp_path / "reports-elsewhere" / folder.name
    rebuilt = _rebuild(monkeypatch, tmp_path / "rebuild", "--run-id", result.run_id, "--output", "out") / "out"
    again = RunResult.load(rebuilt / "results.json")
    assert leaderboards(again) == leaderboards(result) and leaderboards(result)
    assert _leaderboard_tables(rebuilt / "index.html") == _leaderboard_tables(local / "index.html")
    embedded = [(d / "index.html").read_text().count("data:image/png;base64") for d in (local, rebuilt)]
    assert embedded[0] == embedded[1] > 0  # every figure and image came back from the server
    assert (rebuilt / "results.csv").read_text() == (local / "results.csv").read_text()

    newest = (
        _rebuild(monkeypatch, tmp_path / "newest") / "reports" / result.run_id
    )  # default: the newest run, reports/<id>
    assert _leaderboard_tables(newest / "index.html") == _leaderboard_tables(local / "index.html")


# -- without a server or a bench run (the push tests still create a sqlite store) ------------------------------


def test_an_unreachable_server_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.track import UnreachableTracker, describe, open_tracker

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    started = time.monotonic()
    tracker = open_tracker("toyfaces")
    assert isinstance(tracker, UnreachableTracker) and time.monotonic() - started < 5
    assert tracker.start_run("x", {}, {}).run_id == ""  # nothing is sent
    assert "python -m bench track push reports/r1" in describe(tracker, Path("reports/r1"))


@pytest.mark.parametrize("make", ["nothing", "empty folder"])
def test_push_without_results_is_one_line_and_exit_2(make: str, in_tmp: Path, capsys) -> None:
    if make == "empty folder":
        (in_tmp / "reports" / "r1").mkdir(parents=True)
    assert main(["track", "push", "r1", "--tracking-uri", f"sqlite:///{in_tmp / 'm.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("no report folder" in err or "holds no results.json" in err)
    assert not (in_tmp / "m.db").exists()


def _document(folder: Path) -> RunResult:
    """A results document of one tracked method, as `bench run` writes it (without running anything)."""
    row = dict(run_id="r1", method="cyclegan", preset="tiny", dataset="toyfaces", n=8, n_ref=8, reference="testB")
    row |= dict(weights_sha256="ab", preprocessing="p", protocol="harness: x", seed=0, ci_level=0.95)
    result = RunResult(
        run_id="r1",
        created="2026-01-02T03:04:05+00:00",
        command="python -m bench run",
        config={"seed": 0, "experiment": None, "eval": {"protocol": "harness", "metrics": ["fid"]}},
        environment={"i2i-bench git commit": "abc123 (uncommitted changes)"},
        dataset={"name": "toyfaces"},
        methods={
            "cyclegan": {
                "preset": "tiny",
                "config": {"ngf": 16},
                "pretrained": {},
                "status": "ok",
                "train": {"steps": 3, "loss_curve": {"step": [0, 1, 2], "G": [3.0, 2.0, 1.5]}},
                "sample_grid": str(folder / "missing.png"),
                "images": {"grid": "samples/cyclegan/grid.png"},
                "mlflow_run_id": None,
                "tracking": {
                    "name": "cyclegan-toyfaces-seed0",
                    "seed": 0,
                    "total_steps": 3,
                    "tags": {"bench_run_id": "r1", "bench_key": "cyclegan", "method": "cyclegan", "preset": "tiny"},
                },
            }
        },
        rows=[
            ResultRow(
                **row,
                direction="a2b",
                metric="fid",
                value=50.0,
                extractor="i",
                standard=True,
                ci_low=40.0,
                ci_high=61.0,
            ),
            ResultRow(**row, direction="a2b", metric="lpips_diversity", value=0.2, extractor="s", standard=False),
        ],
    )
    result.save(folder)
    (folder / "index.html").write_text("<html>report</html>")
    (folder / "samples" / "cyclegan").mkdir(parents=True)
    (folder / "samples" / "cyclegan" / "grid.png").write_bytes(b"png")
    return result


@pytest.mark.slow  # MLflow creates its sqlite schema: seconds
def test_push_logs_a_results_document_once_and_the_report_folder_comes_back(in_tmp: Path, capsys) -> None:
    from bench.track import fetch_report_folder

    folder = in_tmp / "reports" / "r1"
    result = _document(folder)
    uri = f"sqlite:///{in_tmp / 'm.db'}"
    assert main(["track", "push", "r1", "--tracking-uri", uri]) == 0
    (run,) = _runs(uri, "r1")
    assert run.data.tags["bench_pushed"] == "true" and run.data.tags["bench_complete"] == "true"
    assert run.data.params["method.ngf"] == "16" and run.data.params["total_steps"] == "3"
    assert run.data.metrics == {
        "fid_a2b": 50.0,
        "fid_a2b_ci_low": 40.0,
        "fid_a2b_ci_high": 61.0,
        "lpips_diversity_a2b_nonstandard": 0.2,  # no interval: no bounds
        "train/G": 1.5,
    }
    history = _client(uri).get_metric_history(run.info.run_id, "train/G")
    assert [(m.step, m.value) for m in history] == [(0, 3.0), (1, 2.0), (2, 1.5)]
    assert run.info.start_time == int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() * 1000)  # the run's
    capsys.readouterr()
    assert main(["track", "push", "reports/r1", "--tracking-uri", uri]) == 0
    assert "already logged" in capsys.readouterr().out and len(_runs(uri, "r1")) == 1

    out = fetch_report_folder(EXPERIMENT, in_tmp / "back", uri=uri)  # the newest bench run
    document = json.loads((out / "results.json").read_text())
    assert document["methods"]["cyclegan"]["mlflow_run_id"] == run.info.run_id
    assert (out / "samples" / "cyclegan" / "grid.png").read_bytes() == b"png"
    assert (out / "results.csv").read_text() == (folder / "results.csv").read_text()
    assert leaderboards(RunResult.load(out / "results.json")) == leaderboards(result)


@pytest.mark.slow  # MLflow creates its sqlite schema: seconds
def test_the_experiment_is_per_dataset_unless_the_run_names_one(in_tmp: Path) -> None:
    result = _document(in_tmp / "reports" / "r1")
    result.config["experiment"] = "mine"
    result.save(in_tmp / "reports" / "r1")
    uri = f"sqlite:///{in_tmp / 'm.db'}"
    assert main(["track", "push", "r1", "--tracking-uri", uri]) == 0
    assert len(_runs(uri, "r1", "mine")) == 1 and _client(uri).get_experiment_by_name(EXPERIMENT) is None
    assert main(["track", "push", "r1", "--tracking-uri", uri, "--experiment", "other"]) == 0
    assert len(_runs(uri, "r1", "other")) == 1
