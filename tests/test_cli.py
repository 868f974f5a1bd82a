"""The command line end to end: demo-style runs, tracking, reports, determinism, resume, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from bench.__main__ import main
from bench.registry import METHODS, METRICS
from bench.results import REFERENCE_ROWS
from tests.test_data import _write_mixed_folder

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--data-option", "size=32", "--data-option", "n_train=16", "--data-option", "n_test=8"]
# every metric, at sizes a CPU test affords
SMALL_EVAL = [
    f"--set=eval.{option}"
    for option in (
        "styles=3",
        "dfid_inputs=2",
        "dfid_styles=4",
        "consistency_inputs=4",
        "consistency_copies=3",
        "equivariance_inputs=4",
        "throughput_iterations=2",
        "throughput_batch=2",
        "bootstrap=20",
    )
]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "BENCH_CACHE", "TORCH_HOME")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def test_list_prints_every_registered_name(tmp_path: Path) -> None:
    out = _cli("list", cwd=tmp_path)
    assert out.returncode == 0
    for name in ("cyclegan", "toyfaces", "selfie2anime", "folder", "fid", "kid"):
        assert name in out.stdout


def test_selfie2anime_without_data_explains_and_exits_non_zero(in_tmp: Path, capsys) -> None:
    # in this process: a fresh interpreter spends 8 s importing torch and torch-fidelity before the same check
    assert main(["run", "--methods", "cyclegan", "--dataset", "selfie2anime"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "datasets/selfie2anime" in err and "huggan/selfie2anime" in err


def test_unknown_method_suggests_a_name(tmp_path: Path, capsys) -> None:
    assert main(["run", "--methods", "cyclegn", "--no-track"]) == 2
    assert "Did you mean: cyclegan" in capsys.readouterr().err


def test_a_method_listed_twice_is_refused(capsys) -> None:
    assert main(["run", "--methods", "cyclegan,cyclegan", "--no-track"]) == 2
    assert "more than once" in capsys.readouterr().err


def test_print_config_round_trips_and_flags_apply_in_command_line_order(tmp_path: Path, capsys) -> None:
    args = ["run", "--methods", "cyclegan", "--steps", "5", "--set", "train.steps=6", *SMALL, "--seed", "2"]
    args += ["--set", "eval.styles=4", "--eval-option", "bootstrap=0", "--weights", "vgg16=007.pth", "--no-track"]
    assert main([*args, "--print-config"]) == 0
    printed = capsys.readouterr().out
    tree = yaml.safe_load(printed)
    assert tree["train"]["steps"] == 6 and tree["seed"] == 2 and tree["methods"] == ["cyclegan"]
    assert tree["data"]["options"] == {"size": 32, "n_train": 16, "n_test": 8}
    assert (tree["eval"]["styles"], tree["eval"]["bootstrap"]) == (4, 0)
    assert tree["weights"]["vgg16"] == "007.pth" and tree["track"] is False  # paths stay text
    (tmp_path / "run.yaml").write_text(printed)
    assert main(["run", "--config", str(tmp_path / "run.yaml"), "--print-config"]) == 0
    assert capsys.readouterr().out == printed
    # the file first, then the flags in the order given: the last one wins
    assert (
        main(
            ["run", "--config", str(tmp_path / "run.yaml"), "--set", "train.steps=7", "--steps", "3", "--print-config"]
        )
        == 0
    )
    assert yaml.safe_load(capsys.readouterr().out)["train"]["steps"] == 3
    assert main(["run", "--inception-weights", "i.pth", "--print-config"]) == 0  # an alias, not a second field
    assert yaml.safe_load(capsys.readouterr().out)["weights"]["inception"] == "i.pth"
    assert not (tmp_path / "runs").exists() and not Path("runs").exists()  # printing trains nothing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "eval.stlyes=3"], "error: eval has no field(s) stlyes (did you mean styles?); valid keys of eval: "),
        (
            ["--set", "trian.steps=3"],
            "error: the top level has no field(s) trian (did you mean train?); valid top-level",
        ),
        (["--data-option", "n_test=0"], "error: toyfaces"),  # the dataset checks its own options
        (["--set", "train.steps=many"], "error: train.steps must be int, got 'many'"),
    ],
)
def test_a_bad_key_or_value_is_one_line_and_exit_2(args: list[str], message: str, in_tmp: Path, capsys) -> None:
    assert main(["run", *args, "--no-track"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


def test_an_unknown_key_in_the_config_file_exits_2_naming_the_valid_keys(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("data:\n  dataset: toyfaces\n  sizes: 32\n")
    out = _cli("run", "--config", "run.yaml", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert (
        out.stderr.strip() == "error: data has no field(s) sizes; valid keys of data: dataset, options, root, workers"
    )


def _fail_training_of(method_name: str, error: BaseException, monkeypatch) -> None:
    import bench.run

    train_method = bench.run._train_method

    def failing(s, method, *args, **kwargs):
        if method.name == method_name:
            raise error
        return train_method(s, method, *args, **kwargs)

    monkeypatch.setattr(bench.run, "_train_method", failing)


def test_a_method_that_fails_in_any_way_is_recorded_and_the_next_one_runs(
    in_tmp: Path, standin, monkeypatch, capsys, caplog
) -> None:
    _fail_training_of("ugatit", RuntimeError("boom in training"), monkeypatch)
    args = ["run", "--methods", "ugatit,cyclegan", "--steps", "1", *SMALL, "--metrics", "fid"]
    assert main([*args, "--set", "eval.bootstrap=0", "--allow-standin", "--no-track"]) == 1  # one failed
    assert "ugatit: failed: RuntimeError: boom in training" in capsys.readouterr().err
    (failed,) = [r for r in caplog.records if r.exc_info]  # the traceback is in the log
    assert failed.exc_info[0] is RuntimeError and "ugatit" in failed.getMessage()
    report_dir = next((in_tmp / "reports").iterdir())
    methods = json.loads((report_dir / "results.json").read_text())["methods"]
    assert methods["ugatit"]["status"] == "failed" and methods["ugatit"]["error"] == "RuntimeError: boom in training"
    assert methods["cyclegan"]["status"] == "ok" and methods["cyclegan"]["train"]["steps"] == 1  # it ran after
    table = pd.read_csv(report_dir / "results.csv")
    assert set(table["method"]) == {"cyclegan", "identity", "real_vs_real"}
    assert "ugatit failed:" in (report_dir / "index.html").read_text()


def test_an_interrupt_is_not_recorded_as_a_failure_but_stops_the_run(in_tmp: Path, standin, monkeypatch) -> None:
    _fail_training_of("ugatit", KeyboardInterrupt(), monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        main(["run", "--methods", "ugatit,cyclegan", "--steps", "1", *SMALL, "--metrics", "fid", "--no-track"])
    assert not list(in_tmp.glob("runs/*/cyclegan"))  # the methods after it did not start


def test_loss_log_averages_over_steps() -> None:
    from bench.track import LossLog

    logged = []

    class Run:
        def log_metrics(self, metrics, step=None):
            logged.append((step, metrics))

    log = LossLog(Run(), every=2)  # type: ignore[arg-type]
    for step, value in enumerate([1.0, 3.0, 5.0]):
        log(step, {"G": value})
    log.flush(2)
    assert logged == [(1, {"train/G": 2.0}), (2, {"train/G": 5.0})]


def test_each_working_directory_gets_its_own_tracking_store(tmp_path: Path, monkeypatch) -> None:
    """MLflow keeps one store per URI in a process: the default store must follow the working directory."""
    from mlflow.tracking import MlflowClient

    from bench.track import MlflowTracker

    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        MlflowTracker().start_run(name, params={}, tags={}).finish()
    for name in ("first", "second"):
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / name / 'mlflow.db'}")
        (run,) = client.search_runs([client.get_experiment_by_name("i2i-bench").experiment_id])
        assert run.info.run_name == name


def test_real_data_without_standard_weights_stops_before_training(
    tmp_path: Path, in_tmp: Path, capsys, no_fid_weights: Path
) -> None:
    root = _write_mixed_folder(tmp_path / "mixed")
    assert main(["run", "--dataset", "folder", "--data-root", str(root), "--preset", "tiny", "--no-track"]) == 2
    err = capsys.readouterr().err
    assert "--inception-weights" in err and "--allow-standin" in err and "fid-weights" in err
    assert not (in_tmp / "runs").exists()  # nothing was trained


def test_real_data_with_the_converted_inception_still_needs_the_lpips_trunk(
    tmp_path: Path, in_tmp: Path, capsys
) -> None:
    """The fid-weights extra makes FID/KID standard offline; the AlexNet of LPIPS is looked up next."""
    root = _write_mixed_folder(tmp_path / "mixed")
    assert main(["run", "--dataset", "folder", "--data-root", str(root), "--preset", "tiny", "--no-track"]) == 2
    err = capsys.readouterr().err
    assert "No standard alexnet weights" in err and "--weights alexnet=PATH" in err
    assert not (in_tmp / "runs").exists()


def _results(cwd: Path) -> list[pd.DataFrame]:
    return [pd.read_csv(p) for p in sorted((cwd / "reports").glob("*/results.csv"))]


@pytest.mark.slow
def test_toyfaces_run_tracks_reports_and_reproduces(in_tmp: Path, fid_inception) -> None:
    args = [
        "run",
        "--methods",
        "cyclegan",
        "--dataset",
        "toyfaces",
        "--preset",
        "tiny",
        "--steps",
        "4",
        "--seed",
        "1",
        "--data-root",
        "data",
        *SMALL,
        *SMALL_EVAL,
    ]
    assert main(args) == 0
    table = _results(in_tmp)[0]
    quality = [m for m in METRICS.names() if METRICS.get(m).default and METRICS.get(m).higher_is_better is not None]
    for direction in ("a2b", "b2a"):
        scored = table[(table["method"] == "cyclegan") & (table["direction"] == direction)]
        assert set(quality) <= set(scored["metric"]) and "images_per_s_b2" in set(scored["metric"])
        floor = table[(table["method"] == "real_vs_real") & (table["direction"] == direction)]
        assert set(floor["metric"]) == {"fid", "kid"} and (floor["n"] == 4).all()
    first = table[table["metric"].isin(["fid", "kid"]) & (table["method"] == "cyclegan")]
    assert len(first) == 4
    assert first["standard"].all() and (first["extractor"] == fid_inception.label).all()  # the fid-weights extra
    assert (first["weights_sha256"] == fid_inception.sha256).all()
    lpips = table[table["metric"] == "lpips_diversity"]  # random AlexNet trunk offline: labelled
    assert not lpips["standard"].any() and lpips["extractor"].str.contains("non-standard extractor").all()
    assert (first["n"] == 8).all() and (first["n_ref"] == 8).all() and (first["ci_low"] <= first["ci_high"]).all()
    assert table.loc[table["metric"] == "lpips_diversity", "value"].eq(0).all()  # CycleGAN is deterministic
    report = next((in_tmp / "reports").glob("*/index.html")).read_text()
    assert "non-standard extractor" in report and "data:image/png;base64" in report
    assert "cyclegan" in report and "version torch" in report

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{in_tmp / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("i2i-bench/toyfaces").experiment_id])
    for key in ("fid_a2b", "fid_a2b_ci_high", "kid_b2a", "lpips_diversity_a2b_nonstandard", "train/cycle_A"):
        assert key in run.data.metrics
    assert run.data.params["method.ngf"] == "16" and run.data.tags["standard"] == "true"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"index.html", "results.csv", "samples"} <= artifacts

    def measured(frame: pd.DataFrame) -> list[float]:  # every number but the timings
        return frame.loc[frame["metric"].isin(quality + ["fid", "kid"]), "value"].round(10).tolist()

    assert main(args) == 0  # the same command twice gives the same numbers
    second = _results(in_tmp)[1]
    assert measured(table) == measured(second)

    assert main([*args, "--resume"]) == 0  # a finished run resumes at its last step and only evaluates
    third = _results(in_tmp)[2]
    assert measured(table) == measured(third)
    assert '"resumed_from": 4' in sorted((in_tmp / "reports").glob("*/results.json"))[2].read_text()


@pytest.mark.slow
def test_resume_continues_every_method_from_its_checkpoint(in_tmp: Path, standin) -> None:
    """`--resume` after a run that died past its step-2 checkpoint continues at step 2, not 0, and ends with
    the weights the uninterrupted run ended with, for every registered method."""
    from bench.train import Checkpointer

    names = METHODS.names()
    args = ["run", "--methods", ",".join(names), "--steps", "4", "--checkpoint-every", "2", *SMALL]
    args += ["--metrics", "fid", "--no-track"]
    assert main(args) == 0
    (first,) = (in_tmp / "runs").iterdir()
    uninterrupted = {}
    for name in names:
        final = first / name / "checkpoints" / "step_0000004.pt"
        uninterrupted[name] = Checkpointer.load(final)["networks"]
        final.unlink()  # as if the process had been killed after its step-2 checkpoint
    assert main([*args, "--resume"]) == 0
    (second,) = set((in_tmp / "runs").iterdir()) - {first}
    methods = json.loads(sorted((in_tmp / "reports").glob("*/results.json"))[-1].read_text())["methods"]
    for name in names:
        info = methods[name]
        assert info["train"]["resumed_from"] == 2 and info["train"]["steps"] == 4, name
        resumed = Checkpointer.load(second / name / "checkpoints" / "step_0000004.pt")["networks"]
        differing = [
            f"{attr}.{key}"
            for attr, state in uninterrupted[name].items()
            for key, tensor in state.items()
            if not torch.equal(tensor, resumed[attr][key])
        ]
        assert not differing, f"{name}: {len(differing)} tensors differ after --resume, e.g. {differing[:3]}"


@pytest.mark.slow
def test_folder_of_mixed_modes_runs_to_the_end_and_reports_the_bad_file(in_tmp: Path, standin) -> None:
    root = _write_mixed_folder(in_tmp / "mixed")
    code = main(
        [
            "run",
            "--dataset",
            "folder",
            "--data-root",
            str(root),
            "--data-option",
            "image_size=32",
            "--preset",
            "tiny",
            "--steps",
            "2",
            "--allow-standin",
            "--no-track",
            "--metrics",
            "fid,kid",
        ]
    )
    assert code == 0
    result_dir = next((in_tmp / "reports").glob("*"))
    assert "truncated.jpg" in (result_dir / "index.html").read_text()
    # every registered method ran on the folder at 32 px and was scored in each direction it trains
    ran = json.loads((result_dir / "results.json").read_text())["methods"]
    assert set(ran) == set(METHODS.names()) and all(info["status"] == "ok" for info in ran.values())
    table = pd.read_csv(result_dir / "results.csv")
    scored = table[~table["method"].isin(REFERENCE_ROWS)]
    assert len(scored) == sum(2 * len(info["directions"]) for info in ran.values())
    (result_dir / "index.html").unlink()
    assert main(["report", str(result_dir / "results.json")]) == 0  # reports rebuild from results alone
    assert "truncated.jpg" in (result_dir / "index.html").read_text()


@pytest.mark.slow
def test_two_processes_under_accelerate_launch(tmp_path: Path, standin) -> None:
    """The distributed path (DDP over gloo on CPU): both processes train, the main one reports."""
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "BENCH_CACHE", "TORCH_HOME")}
    env["PYTHONPATH"] = str(ROOT)
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",  # what starts 2 processes (torchrun); with --cpu the launcher starts one, whatever its count
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    args = ["-m", "bench", "run", "--methods", "cyclegan", "--steps", "4", *SMALL, "--metrics", "fid,kid", "--no-track"]
    out = subprocess.run([*launch, *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(list((tmp_path / "runs").iterdir())) == 1  # one run id shared by both processes
    (document,) = (tmp_path / "reports").glob("*/results.json")
    assert json.loads(document.read_text())["environment"]["processes"] == 2  # two processes really ran
    (results,) = _results(tmp_path)
    assert len(results[results["method"] == "cyclegan"]) == 4


@pytest.mark.slow
def test_several_training_seeds_are_summarised_as_mean_and_std(in_tmp: Path, standin) -> None:
    args = ["run", "--methods", "cyclegan", "--steps", "2", "--seeds", "3,4", *SMALL, "--metrics", "fid", "--no-track"]
    assert main(args) == 0
    (table,) = _results(in_tmp)
    scored = table[table["method"] == "cyclegan"]
    assert sorted(set(scored["seed"])) == [3, 4] and len(scored) == 4  # two seeds x two directions
    assert scored.groupby("direction")["value"].nunique().eq(2).all()  # each seed trained its own model
    assert sorted(p.name for p in next((in_tmp / "runs").iterdir()).iterdir()) == ["cyclegan-seed3", "cyclegan-seed4"]
    report = next((in_tmp / "reports").glob("*/index.html")).read_text()
    assert "Across training seeds" in report and "\u00b1" in report
