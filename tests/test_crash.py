"""Faults injected into whole runs: a SIGKILL mid-training, then --resume; a method whose loss diverges."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.__main__ import main
from bench.train import Checkpointer
from methods.cyclegan import CycleGAN

SMALL = ["--data-option", "size=32", "--data-option", "n_train=16", "--data-option", "n_test=8"]
QUIET = ["--metrics", "kid", "--eval-option", "bootstrap=0"]


def _bench(cwd: Path, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=cwd, env=os.environ.copy(), **kwargs)


@pytest.mark.slow
def test_a_run_killed_after_its_second_checkpoint_resumes_to_the_uninterrupted_weights(tmp_path: Path, standin):
    """SIGKILL of a real `bench run` once its step-4 checkpoint exists; `--resume` continues from the newest
    checkpoint and ends with exactly the weights of a run that was never interrupted."""
    args = ["run", "--methods", "cyclegan", "--steps", "8", "--checkpoint-every", "2", *SMALL, *QUIET, "--no-track"]
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    killed_dir.mkdir(), clean_dir.mkdir()
    clean = _bench(clean_dir, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = _bench(killed_dir, *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list(killed_dir.glob("runs/*/cyclegan/checkpoints/step_0000004.pt")):
        assert run.poll() is None, f"the run ended before its second checkpoint: {run.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "no second checkpoint within 300 s"
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait()
    (checkpoints,) = killed_dir.glob("runs/*/cyclegan/checkpoints")
    newest = Checkpointer(checkpoints).latest()
    step = Checkpointer.load(newest)["step"]
    assert 4 <= step < 8, "the kill came after the run had finished"
    assert not list(killed_dir.glob("reports/*/index.html"))  # it died before its report

    resumed = _bench(killed_dir, *args, "--resume", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = resumed.communicate(timeout=600)[0].decode()
    assert resumed.returncode == 0, output[-3000:]
    assert clean.wait(timeout=600) == 0
    (document,) = killed_dir.glob("reports/*/results.json")
    train = json.loads(document.read_text())["methods"]["cyclegan"]["train"]
    assert train["resumed_from"] == step and train["steps"] == 8
    final = Checkpointer.load(killed_dir / train["checkpoint"])["networks"]  # relative to its cwd
    (reference,) = clean_dir.glob("runs/*/cyclegan/checkpoints/step_0000008.pt")
    expected = Checkpointer.load(reference)["networks"]
    for network, state in expected.items():
        for key, tensor in state.items():
            assert torch.equal(tensor, final[network][key]), f"{network}.{key} differs after the kill and resume"


@pytest.mark.slow
def test_a_diverging_method_fails_alone_and_keeps_its_last_good_checkpoint(in_tmp: Path, standin, monkeypatch):
    """A NaN loss at step 3 stops that method with the step and the loss; its MLflow run is FAILED, its step-2
    checkpoint stays, the next method still trains and is scored, and the report shows the failure."""
    from mlflow.tracking import MlflowClient

    original = CycleGAN.training_step

    def diverging(self, nets, batch, step, rng):
        for update in original(self, nets, batch, step, rng):
            if step == 3:
                nan = update.loss * float("nan")
                update = dataclasses.replace(update, loss=nan, logs={**update.logs, "G_A": nan})
            yield update

    monkeypatch.setattr(CycleGAN, "training_step", diverging)
    code = main(["run", "--methods", "cyclegan,ugatit", "--steps", "4", "--checkpoint-every", "2", *SMALL, *QUIET])
    assert code == 1  # one method failed
    (document,) = in_tmp.glob("reports/*/results.json")
    result = json.loads(document.read_text())
    failed, other = result["methods"]["cyclegan"], result["methods"]["ugatit"]
    assert failed["status"] == "failed" and "non-finite loss at step 3" in failed["error"]
    assert "G_A" in failed["error"] and "step_0000002.pt" in failed["error"]  # the loss, the last good checkpoint
    assert other["status"] == "ok" and {r["method"] for r in result["rows"]} >= {"ugatit"}
    assert not any(r["method"] == "cyclegan" for r in result["rows"])
    (checkpoints,) = in_tmp.glob("runs/*/cyclegan/checkpoints")
    assert [p.name for p in Checkpointer(checkpoints).all()] == ["step_0000002.pt"]
    report = (document.parent / "index.html").read_text()
    assert "<b>cyclegan failed:</b>" in report and "non-finite loss at step 3" in report
    client = MlflowClient(tracking_uri=f"sqlite:///{in_tmp / 'mlflow.db'}")
    statuses = {
        run.data.tags["method"]: run.info.status
        for run in client.search_runs([e.experiment_id for e in client.search_experiments()])
    }
    assert statuses == {"cyclegan": "FAILED", "ugatit": "FINISHED"}
