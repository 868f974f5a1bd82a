"""Runs killed outright: their MLflow runs are marked KILLED by the next run on the host, their report folders
named with the command that rebuilds them; a run that still lives, or lives on another host, is never touched."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.owner import OWNER_FILE, claim_report_folder, owner, owner_gone
from bench.results import RunResult
from bench.track import KILLED_TAG, MlflowTracker

EXPERIMENT = "i2i-bench/orphans"
DEAD_RUN = "20260101-000000-toyfaces-dead"

# A `bench run` reduced to its tracking: one MLflow run started, then the process waits to be killed.
CHILD = f"""
import sys, time
from bench.track import MlflowTracker
tracker = MlflowTracker(sys.argv[1], {EXPERIMENT!r})
params = {{"run": {{"reports_dir": sys.argv[2]}}}}
run = tracker.start_run("cyclegan-toyfaces-seed0", params, {{"bench_run_id": {DEAD_RUN!r}}})
print(run.run_id, flush=True)
time.sleep(600)
"""


def _exited_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def _save_results(folder: Path, run_id: str) -> Path:
    """A results document as a run leaves it after its first method: no rows yet, no report."""
    dataset = {"name": "toyfaces", "root": "data", "image_size": 32, "counts": {}, "notes": [], "skipped": []}
    result = RunResult(run_id, "2026-01-01T00:00:00+00:00", "bench run", {"seed": 0}, {}, dataset)
    return result.save(folder)


@pytest.mark.slow
def test_a_sigkilled_runs_mlflow_run_is_marked_killed_and_a_live_one_is_not(tmp_path: Path, caplog) -> None:
    """A process that started an MLflow run is SIGKILLed: the next open of the store marks that run KILLED with
    one line (run, bench run, why, the rebuild command), while runs of live processes, of another host and of an
    older harness stay RUNNING; a run whose pid now names a younger process is dead too."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    reports = tmp_path / "reports"
    results = _save_results(reports / DEAD_RUN, DEAD_RUN)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, uri, str(reports)], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        dead_id = child.stdout.readline().strip()
        assert dead_id, "the child started no MLflow run"
        tracker = MlflowTracker(uri, EXPERIMENT)  # while the child lives: its run is alive and kept
        assert tracker.client.get_run(dead_id).info.status == "RUNNING"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    client = tracker.client
    mine = tracker.start_run("mine", {}, {"bench_run_id": "live"}).run_id  # this process: alive
    here, gone = socket.gethostname(), str(_exited_pid())
    tags = {
        "other-host": {"bench_host": "elsewhere", "bench_pid": gone, "bench_started": "1.00"},
        "reused-pid": {
            "bench_host": here,
            "bench_pid": str(os.getppid()),
            "bench_started": "1000.00",
            "bench_run_id": "reused",
        },
        "no-owner": {"bench_run_id": "old-harness"},
    }
    others = {
        name: client.create_run(tracker.experiment_id, run_name=name, tags=t).info.run_id for name, t in tags.items()
    }

    caplog.set_level(logging.DEBUG, logger="bench.track")
    MlflowTracker(uri, EXPERIMENT)  # a second open of the store sweeps its experiment
    status = {
        name: client.get_run(run_id).info.status for name, run_id in {"dead": dead_id, "mine": mine, **others}.items()
    }
    assert status == {
        "dead": "KILLED",
        "mine": "RUNNING",
        "other-host": "RUNNING",
        "reused-pid": "KILLED",
        "no-owner": "RUNNING",
    }
    assert f"process {child.pid} no longer exists" in client.get_run(dead_id).data.tags[KILLED_TAG]
    assert "now belongs to another process" in client.get_run(others["reused-pid"]).data.tags[KILLED_TAG]
    assert client.get_run(dead_id).info.end_time is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    (line,) = [w for w in warnings if dead_id in w]  # one line per run
    assert DEAD_RUN in line and f"process {child.pid} no longer exists" in line and "marked KILLED" in line
    assert line.endswith(f"rebuild its report with: python -m bench report {results}")
    assert len(warnings) == 2  # the two dead runs, nothing about the live ones
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(others["other-host"] in d and "elsewhere" in d for d in debug)
    assert any(others["no-owner"] in d and "without owner tags" in d for d in debug)

    caplog.clear()
    MlflowTracker(uri, EXPERIMENT)  # swept once: a third open says nothing
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert main(["report", str(results)]) == 0  # what the line says rebuilds the report
    assert (results.parent / "index.html").is_file()


@pytest.mark.parametrize("source", ["psutil", "proc"])
def test_owner_gone_tells_dead_and_reused_pids_from_live_ones(monkeypatch, source: str) -> None:
    """With psutil and with /proc alone: an exited pid and a pid whose start time differs are gone; this
    process, and a record that names no pid, are not."""
    if source == "proc":
        if not Path("/proc/self/stat").is_file():
            pytest.skip("no /proc here")
        monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil raises ImportError
    me = owner()
    assert me["pid"] == str(os.getpid()) and float(me["started"]) > 0
    assert owner_gone(me) is None
    assert owner_gone({**me, "started": ""}) is None  # no start time recorded: the pid alone decides
    assert "no longer exists" in owner_gone({**me, "pid": str(_exited_pid())})
    assert "another process" in owner_gone({**me, "started": f"{float(me['started']) - 3600:.2f}"})
    assert owner_gone({"host": me["host"]}) is None


def test_report_folders_of_dead_runs_are_named_once_each(tmp_path: Path, caplog) -> None:
    """Only a folder with results.json, without index.html, whose owner on this host is gone gets the warning;
    the new run's folder records this process."""
    reports, here, gone = tmp_path / "reports", socket.gethostname(), str(_exited_pid())
    dead = {"host": here, "pid": gone, "started": ""}
    folders = {
        "dead": dead,
        "finished": dead,
        "alive": owner(),
        "other-host": {**dead, "host": "elsewhere"},
        "no-owner": None,
    }
    for name, recorded in folders.items():
        _save_results(reports / name, name)
        if recorded is not None:
            (reports / name / OWNER_FILE).write_text(json.dumps(recorded))
    (reports / "finished" / "index.html").write_text("<html></html>")
    _save_results(reports / "damaged", "damaged")
    (reports / "damaged" / OWNER_FILE).write_text("[1, 2")
    caplog.set_level(logging.WARNING, logger="bench.owner")
    claim_report_folder(reports, "new-run")
    (line,) = [r.getMessage() for r in caplog.records]
    assert str(reports / "dead") in line and f"process {gone} no longer exists" in line
    assert f"python -m bench report {reports / 'dead' / 'results.json'}" in line
    recorded = json.loads((reports / "new-run" / OWNER_FILE).read_text())
    assert recorded == owner() and owner_gone(recorded) is None
