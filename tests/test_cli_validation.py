"""Bad command lines: one line naming the valid choices, exit 2, no traceback, and the early ones before torch.

Also: the light name catalogues agree with what they resolve to, the light parser matches the full one, and
`--device` / `--mixed-precision` reach Accelerate (bench/accel.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import main, parser
from bench.config import DEVICES, MIXED_PRECISION, RunConfig, check_early, load_config
from bench.errors import BenchError, ConfigError
from bench.registry import DATASETS, METHODS, METRICS

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--data-option", "size=32", "--data-option", "n_train=2", "--data-option", "n_test=2", "--eval-limit", "2"]

METHOD_NAMES = "Registered methods: cyclegan, ugatit, stargan_v2, council, gnr"
METRIC_NAMES = "Registered metrics: fid, kid, kid_mean_with_source"
DATASET_NAMES = "Registered datasets: folder, selfie2anime, toyfaces"
TRAIN_KEYS = "valid keys of train: batch_size, channels_last, checkpoint_every, compile, log_every, mixed_precision"

# Refused before torch or a method is imported: command line -> what the one line says (the valid choices
# where there are choices).
EARLY = [
    (["run", "--methods", "nope"], f"error: unknown method 'nope'. {METHOD_NAMES}"),
    (["run", "--methods", "cyclegn"], "error: unknown method 'cyclegn'. Did you mean: cyclegan?"),
    (["run", "--set", "methods=[cyclegan,nope]"], f"error: unknown method 'nope'. {METHOD_NAMES}"),
    (["run", "--steps", "0"], "error: train.steps must be at least 1, got 0"),
    (["run", "--steps", "-3"], "error: train.steps must be at least 1, got -3"),
    (["run", "--batch-size", "0"], "error: train.batch_size must be at least 1, got 0"),
    (["run", "--set", "train.batch_size=-2"], "error: train.batch_size must be at least 1, got -2"),
    (
        ["run", "--dataset", "folder", "--data-root", "/nonexistent"],
        "error: folder: no dataset at /nonexistent (expected trainA, trainB, testA, testB inside).",
    ),
    (["run", "--set", "train.foo=1"], f"error: train has no field(s) foo; {TRAIN_KEYS}"),
    (["run", "--set", "trian.steps=1"], "error: the top level has no field(s) trian (did you mean train?); valid"),
    (["run", "--set", "data.sizes=32"], "error: data has no field(s) sizes; valid keys of data: dataset, options"),
    (["run", "--set", "weights.vgg=x"], "error: weights has no field(s) vgg (did you mean vgg16?); valid keys of"),
    (["run", "--metrics", "nope"], f"error: unknown metric 'nope'. {METRIC_NAMES}"),
    (["run", "--set", "eval.metrics=[fid,kidd]"], "error: unknown metric 'kidd'. Did you mean: kid"),
    (["run", "--set", "eval.protocol=nope"], "error: unknown protocol 'nope'; protocols: harness, ugatit, acl_gan"),
    (["run", "--protocol", "ugatitt"], "error: unknown protocol 'ugatitt'; protocols: harness, ugatit, acl_gan"),
    (["run", "--set", "train.steps=abc"], "error: train.steps must be int, got 'abc'"),
    (["run", "--set", "seed=1.5"], "error: seed must be int, got 1.5"),
    (["run", "--set", "train.resume=maybe"], "error: train.resume must be bool, got 'maybe'"),
    (["run", "--set", "methods=cyclegan"], "error: methods must be a list, got 'cyclegan'"),
    (["run", "--dataset", "nope"], f"error: unknown dataset 'nope'. {DATASET_NAMES}"),
    (["run", "--set", "device=tpu"], "error: device must be one of auto, cpu, cuda, got 'tpu'"),
    (
        ["run", "--set", "train.mixed_precision=fp8"],
        "error: train.mixed_precision must be one of no, bf16, fp16, got 'fp8'",
    ),
    (
        ["run", "--set", "train.mixed_precision=no"],  # YAML's `no` is False
        "error: train.mixed_precision must be str, got False (YAML reads no, yes, off, on as booleans",
    ),
    # argparse's own errors, as one line too
    (["run", "--steps", "abc"], "error: argument --steps: invalid int value: 'abc' (see python -m bench run --help)"),
    (["run", "--device", "gpu"], "error: argument --device: invalid choice: 'gpu' (choose from 'auto', 'cpu', 'cuda')"),
    (["run", "--mixed-precision", "fp32"], "error: argument --mixed-precision: invalid choice: 'fp32' (choose from"),
    (["run", "--set", "steps"], "error: argument --set: expected SECTION.KEY=VALUE, got 'steps'"),
    (["runn"], "error: argument command: invalid choice: 'runn' (choose from 'run', 'eval', 'data',"),
    (["eval", "--checkpoint", "nope=x.pt"], f"error: unknown method 'nope'. {METHOD_NAMES}"),
    (["eval", "--metrics", "nope", "--translations", "a", "--reference", "b"], "error: unknown metric 'nope'."),
]

PROBE = """
import contextlib, io, json, sys
from bench.__main__ import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    try:
        rc = main(json.loads(sys.argv[1]))
    except SystemExit as exit:  # argparse's errors
        rc = exit.code
heavy = sorted(m for m in sys.modules if m == "torch" or m.startswith(("methods.", "accelerate")))
print(json.dumps({"rc": rc, "err": err.getvalue(), "heavy": heavy}))
"""


def probe(argv: list[str], cwd: Path) -> dict:
    """`main(argv)` in a fresh interpreter: its exit code, its stderr, and which heavy modules it imported."""
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "BENCH_CACHE", "TORCH_HOME")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("argv", "message"), EARLY, ids=[" ".join(argv) for argv, _ in EARLY])
def test_a_bad_command_line_is_one_line_and_exit_2_before_torch(argv: list[str], message: str, tmp_path) -> None:
    answer = probe([*argv, "--no-track"] if argv[0] in ("run", "eval") else argv, tmp_path)
    assert answer["rc"] == 2
    assert answer["err"].startswith(message) and answer["err"].count("\n") == 1, answer["err"]
    assert answer["heavy"] == []  # neither torch, nor Accelerate, nor any method was imported
    assert list(tmp_path.iterdir()) == []  # nothing was written


# Refused once the tree is built (EvalOptions' checks, the datasets' own options): one line, exit 2 too.
LATER = [
    (["--set", "eval.bootstrap=[1]"], "error: eval.bootstrap must be int, got [1]"),
    (["--set", "eval.stlyes=3"], "error: eval has no field(s) stlyes (did you mean styles?); valid keys of eval: "),
    (["--set", "eval.styles=1"], "error: eval.styles must be at least 2, got 1"),
    (["--set", "eval.reference=val"], "error: eval.reference must be 'test' or 'train', got 'val'"),
    (["--set", "eval.batch_size=0"], "error: eval.batch_size must be at least 1, got 0"),
    (["--eval-limit", "0"], "error: eval.limit must be at least 1, got 0"),
    (["--set", "eval=5"], "error: eval must be a mapping of protocol, reference"),
    (["--set", "eval.protocol=3"], "error: eval.protocol must be str, got 3"),
    (["--set", "eval.metrics=fid"], "error: eval.metrics must be a list, got 'fid'"),
    (["--data-option", "n_test=0"], "error: toyfaces needs size >= 16 and at least one train and test image"),
    (["--data-option", "colour=1"], "error: toyfaces has no option(s) colour; its options: "),
    (["--methods", "cyclegan,cyclegan"], "error: --methods lists cyclegan more than once"),
    (["--protocol", "ugatit", "--set", "eval.kid_estimator=subsets"], "error: protocol ugatit fixes eval.kid_estim"),
]


@pytest.mark.parametrize(("args", "message"), LATER, ids=[" ".join(args) for args, _ in LATER])
def test_a_bad_value_found_later_is_one_line_and_exit_2(args: list[str], message: str, in_tmp: Path, capsys) -> None:
    assert main(["run", "--methods", "cyclegan", *args, "--no-track"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (in_tmp / "runs").exists()


def test_the_early_check_has_the_messages_of_the_full_one(tmp_path: Path) -> None:
    """What check_early refuses, the full checks refuse with the same words (they ran alone before)."""
    from bench.data.folder import DatasetSpec

    missing = tmp_path / "missing"
    spec: DatasetSpec = DATASETS.get("folder")
    with pytest.raises(BenchError) as opened:
        spec.open(missing, {})
    with pytest.raises(BenchError) as early:
        check_early({"data": {"dataset": "folder", "root": str(missing)}})
    assert str(early.value) == str(opened.value)
    with pytest.raises(ConfigError) as early:
        check_early({"device": "tpu"})
    with pytest.raises(ConfigError) as built:
        RunConfig(device="tpu")
    assert str(early.value) == str(built.value)


def test_the_light_catalogues_name_what_they_resolve_to() -> None:
    """Names are checked against the registries' lazy entries: each must resolve to the object of that name."""
    from accelerate.utils import PrecisionType

    for name in METHODS.names():
        assert METHODS.get(name).name == name
    for name in DATASETS.names():
        assert DATASETS.get(name).name == name
    for name in METRICS.names():
        assert METRICS.get(name).name == name
    assert set(MIXED_PRECISION) <= {p.value for p in PrecisionType}
    assert DEVICES[0] == "auto" and load_config().device == "auto"


def _options(p) -> dict[str, str]:
    """Every sub-command's help text (what `python -m bench CMD --help` prints), nested ones included."""
    import argparse

    helps = {}
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                helps[f"{p.prog} {name}"] = sub.format_help()
                helps |= _options(sub)
    return helps


def test_the_light_parser_of_each_command_is_the_full_one() -> None:
    full = _options(parser())
    assert len(full) > 13  # every command and data fetch, weights ls, ...
    for command in ("run", "eval", "data", "weights", "convert", "translate", "list"):
        light = _options(parser(command))
        assert {k: v for k, v in light.items() if k.startswith(f"python -m bench {command}")} == {
            k: v for k, v in full.items() if k.startswith(f"python -m bench {command}")
        }
    run_help = full["python -m bench run"]
    assert "--mixed-precision {no,bf16,fp16}" in run_help and "--device {auto,cpu,cuda}" in run_help


# -- device and mixed precision ---------------------------------------------------------------------------


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.accel.torch.cuda.is_available", lambda: False)
    for key in ("ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "cuda"], "error: --device cuda: no CUDA device is visible to torch; use --device cpu (or auto)"),
        (["--mixed-precision", "fp16"], "error: --mixed-precision fp16 needs a CUDA device; on the CPU use"),
    ],
)
def test_without_cuda_a_cuda_setting_is_refused_before_anything_runs(
    args: list[str], message: str, no_cuda, in_tmp: Path, capsys
) -> None:
    assert main(["run", "--methods", "cyclegan", "--steps", "1", *SMALL, *args, "--no-track"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (in_tmp / "runs").exists() and not (in_tmp / "datasets").exists()  # before the data was made


def test_the_launchers_settings_must_agree_with_the_tree(no_cuda, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.accel import accelerator_for

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # accelerate launch --mixed_precision bf16
    with pytest.raises(ConfigError, match="accelerate launch says mixed precision bf16.*--mixed-precision bf16"):
        accelerator_for(load_config())
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    with pytest.raises(ConfigError, match="accelerate launch --cpu contradicts --device cuda"):
        accelerator_for(load_config(None, [("device", "cuda")]))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    built = []  # Accelerate's state is one per process: record what it is given instead of building it
    monkeypatch.setattr("bench.accel.Accelerator", lambda **kwargs: built.append(kwargs))
    accelerator_for(load_config(None, [("device", "cpu"), ("train.mixed_precision", "bf16")]))
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    monkeypatch.delenv("ACCELERATE_USE_CPU")
    accelerator_for(load_config())
    # auto without a GPU is cpu=True too: torchrun's processes join over gloo only so (bench/accel.py)
    assert built == [{"mixed_precision": "bf16", "cpu": True}, {"mixed_precision": "no", "cpu": True}]


def test_accelerate_takes_the_defaults_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Accelerator (the process's only state, so the defaults other tests build too)."""
    from bench.accel import accelerator_for

    for key in ("ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(key, raising=False)
    assert accelerator_for(load_config()).mixed_precision == "no"


@pytest.mark.slow  # one bf16 CycleGAN step takes about a minute on a 2-core CPU
def test_a_bf16_run_on_the_cpu_completes_or_stops_with_one_line(tmp_path: Path) -> None:
    """Accelerate autocasts bf16 on the CPU; this run must finish, or be refused in one line, never crash."""
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "BENCH_CACHE", "TORCH_HOME")}
    env["PYTHONPATH"] = str(ROOT)
    args = ["run", "--methods", "cyclegan", "--steps", "1", *SMALL, "--metrics", "fid", "--set", "eval.bootstrap=0"]
    args += ["--allow-standin", "--no-track", "--mixed-precision", "bf16", "--device", "cpu"]
    out = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600
    )
    assert "Traceback" not in out.stderr
    if out.returncode == 2:  # refused: one line saying why
        (line,) = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
        assert "bf16" in line
    else:
        assert out.returncode == 0, out.stderr[-2000:]
        results = json.loads(next(tmp_path.glob("reports/*/results.json")).read_text())
        assert results["methods"]["cyclegan"]["status"] == "ok"
        assert results["config"]["train"]["mixed_precision"] == "bf16"
