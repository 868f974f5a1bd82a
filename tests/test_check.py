"""`bench check`, the regression gate: pass on an unchanged run, fail on a worse one, refuse another setup."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.results import RunResult

SMALL = ["--data-option", "size=32", "--data-option", "n_train=16", "--data-option", "n_test=8"]


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory: pytest.TempPathFactory, standin) -> Path:
    """results.json of a real tiny run with two training seeds."""
    cwd = tmp_path_factory.mktemp("check")
    old = os.getcwd()
    os.chdir(cwd)
    try:
        args = ["run", "--methods", "cyclegan", "--steps", "2", "--seeds", "0,1", *SMALL, "--metrics", "fid,kid"]
        assert main([*args, "--no-track", "--eval-option", "bootstrap=0"]) == 0
    finally:
        os.chdir(old)
    (results,) = (cwd / "reports").glob("*/results.json")
    return results


def _edited(results: Path, out: Path, edit) -> Path:
    run = RunResult.load(results)
    run.rows = [edit(row) for row in run.rows if edit(row) is not None]
    return run.save(out)


def test_an_unchanged_run_passes_and_a_worse_one_fails(two_seeds: Path, tmp_path: Path, capsys) -> None:
    baseline = tmp_path / "baseline.json"
    assert main(["check", "--update-baseline", "--baseline", str(baseline), str(two_seeds)]) == 0
    entries = json.loads(baseline.read_text())["entries"]
    fid = next(e for e in entries if e["metric"] == "fid" and e["direction"] == "a2b")
    assert fid["seeds"] == [0, 1] and fid["spread"] > 0  # the tolerance comes from the seeds' spread
    capsys.readouterr()

    assert main(["check", "--baseline", str(baseline), str(two_seeds)]) == 0
    out = capsys.readouterr().out
    assert "bench check: PASS" in out and "| cyclegan | a2b | fid ↓ |" in out

    # worse than the baseline mean by more than 3 spreads, in FID's direction (lower is better)
    def worse(row):
        bump = 3.5 * fid["spread"] + 1 if row.metric == "fid" and row.direction == "a2b" else 0
        return dataclasses.replace(row, value=row.value + bump)

    assert main(["check", "--baseline", str(baseline), str(_edited(two_seeds, tmp_path / "worse", worse))]) == 1
    assert "regression: worse by" in capsys.readouterr().out

    def better(row):
        return dataclasses.replace(row, value=row.value - (4 * fid["spread"] + 1) if row.metric == "fid" else row.value)

    assert main(["check", "--baseline", str(baseline), str(_edited(two_seeds, tmp_path / "better", better))]) == 0
    assert "better than the baseline" in capsys.readouterr().out

    without_kid = _edited(two_seeds, tmp_path / "no-kid", lambda row: None if row.metric == "kid" else row)
    assert main(["check", "--baseline", str(baseline), str(without_kid)]) == 1
    assert "missing: the run has no such row" in capsys.readouterr().out


def test_a_run_with_another_extractor_is_refused_as_incomparable(two_seeds: Path, tmp_path: Path, capsys) -> None:
    baseline = tmp_path / "baseline.json"
    assert main(["check", "--update-baseline", "--baseline", str(baseline), str(two_seeds)]) == 0
    other = _edited(
        two_seeds, tmp_path / "other", lambda row: dataclasses.replace(row, extractor="dinov2", weights_sha256="ab")
    )
    capsys.readouterr()
    assert main(["check", "--baseline", str(baseline), str(other)]) == 2
    out = capsys.readouterr().out
    assert "INCOMPARABLE" in out and "incomparable: extractor 'dinov2'" in out


def test_bad_input_exits_2_in_one_line(two_seeds: Path, tmp_path: Path, capsys) -> None:
    assert main(["check", "--baseline", str(tmp_path / "absent.json"), str(two_seeds)]) == 2
    (tmp_path / "junk.json").write_text("{}")
    baseline = tmp_path / "baseline.json"
    assert main(["check", "--update-baseline", "--baseline", str(baseline), str(two_seeds)]) == 0
    assert main(["check", "--baseline", str(baseline), str(tmp_path / "junk.json")]) == 2
    err = capsys.readouterr().err
    assert "error: --baseline" in err and "is not a results.json bench run wrote" in err
