"""Shared fixtures of the benchmarks (`nox -s bench`): a private weights cache, the machine's measured peaks,
paper-step workers and the per-round statistic the derived numbers (images/s, fraction of peak) use."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

WORKER = Path(__file__).with_name("step_worker.py")


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stand-in or converted weights go to a temporary folder, never the user's cache (as in the tests)."""
    cache = tmp_path_factory.mktemp("bench-cache")
    old = {k: os.environ.get(k) for k in ("BENCH_CACHE", "TORCH_HOME", "BENCH_INCEPTION_WEIGHTS")}
    os.environ["BENCH_CACHE"] = str(cache)
    os.environ["TORCH_HOME"] = str(cache / "torch")
    os.environ.pop("BENCH_INCEPTION_WEIGHTS", None)
    yield cache
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def load_average(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every benchmark records the machine's 1-minute load average: a number measured while other processes
    competed for the cores is slower by their share, which the saved JSON should show when compared."""
    benchmark = request.getfixturevalue("benchmark") if "benchmark" in request.fixturenames else None
    yield  # requested first, so `benchmark` is torn down after this fixture
    if benchmark is not None:
        benchmark.extra_info["load_average_1min"] = round(os.getloadavg()[0], 2)


def fastest_seconds(benchmark: Any) -> float:
    """The fastest round: what images/s and fractions of peak are computed from. The peaks are fastest blocks
    too, and on a machine shared with other work the fastest round is the one least slowed by it (here rounds
    differed by up to 5x while other jobs ran; the medians moved with them, the minima far less)."""
    return benchmark.stats.stats.min


@pytest.fixture(scope="session")
def peaks() -> dict[str, float]:
    """FLOP/s of a large float32 matmul and of a large float32 3x3 conv2d on this machine, measured once per
    session, with the FLOPs counted as the translate benchmarks count theirs (FlopCounterMode, 2 per MAC).

    The matmul is `bench.evaluate.throughput.machine_peak_flops` (what `bench run`'s throughput metric divides
    by). The conv is shaped like a generator's residual block, so its rate is what convolution-bound
    translators could reach; it is often below the matmul's (im2col, memory traffic) and decides most of them.
    """
    from torch.utils.benchmark import Timer

    from bench.evaluate.throughput import count_flops, machine_peak_flops

    conv = torch.nn.Conv2d(256, 256, 3, padding=1).eval()
    x = torch.randn(4, 256, 64, 64)
    with torch.no_grad():
        flops = count_flops(conv, x)
        timer = Timer("conv(x)", globals={"conv": conv, "x": x}, num_threads=torch.get_num_threads())
        best = min(timer.blocked_autorange(min_run_time=1.0).times)
    return {"matmul": machine_peak_flops(torch.device("cpu")), "conv2d": flops / best}


def record_peaks(benchmark: Any, peaks: dict[str, float], flops_per_call: float) -> None:
    """Achieved FLOP/s of the benchmarked call (fastest round) and its fraction of each measured peak."""
    achieved = flops_per_call / fastest_seconds(benchmark)
    benchmark.extra_info["gflop_per_s"] = round(achieved / 1e9, 2)
    for kind, peak in peaks.items():
        benchmark.extra_info[f"peak_{kind}_gflop_per_s"] = round(peak / 1e9, 2)
        benchmark.extra_info[f"fraction_of_{kind}_peak"] = round(achieved / peak, 4) if peak > 0 else math.nan


# Peak RSS may grow this much over the newest saved run before a paper-step benchmark fails. The timings are
# guarded by --benchmark-compare-fail (noxfile.py); pytest-benchmark compares no extra_info, hence this.
RSS_GROWTH_ALLOWED = 1.10


@pytest.fixture(scope="session")
def saved_extra_info(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    """extra_info by benchmark name from the newest run saved in pytest-benchmark's storage ({} when none)."""
    storage = Path(str(request.config.getoption("benchmark_storage")).removeprefix("file://"))
    saved = sorted(storage.glob("*/*.json"), key=lambda path: path.stat().st_mtime)
    if not saved:
        return {}
    return {b["fullname"]: b.get("extra_info", {}) for b in json.loads(saved[-1].read_text())["benchmarks"]}


class StepWorker:
    """A fresh process that built one method and runs its training step at a fixed step index on request."""

    def __init__(self, name: str, preset: str, step: int) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WORKER.parents[1]), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), name, preset, str(step), str(torch.get_num_threads())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.built = self._reply()

    def _reply(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:  # it died: out of memory (the kernel's SIGKILL), or an error it printed on stderr
            raise RuntimeError(f"the step worker exited with {self.process.wait()}")
        return json.loads(line)

    def ask(self, command: str) -> dict[str, Any]:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._reply()

    def step(self) -> dict[str, float]:
        return self.ask("step")["logs"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


@pytest.fixture
def step_worker() -> Iterator[type[StepWorker]]:
    """Start workers with `step_worker(name, preset, step)`; they are ended when the benchmark ends."""
    started: list[StepWorker] = []

    def start(name: str, preset: str, step: int) -> StepWorker:
        started.append(StepWorker(name, preset, step))
        return started[-1]

    yield start
    for worker in started:
        worker.close()
