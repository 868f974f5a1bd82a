"""How fast a bad command line is answered: `python -m bench run --methods nope` in a fresh interpreter.

The target is under a second: the parser and the configuration checks import neither torch nor the methods
(they took 10-14 s and about 1 GB before). A bare `python -c pass` is measured beside it, since on a loaded
machine the interpreter's own start is most of the time.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from conftest import fastest_seconds

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 1.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "BENCH_CACHE", "TORCH_HOME")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_an_unknown_method_is_answered_in_under_a_second(benchmark, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench", "run", "--methods", "nope", "--no-track"]

    def probe() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=60)

    out = benchmark.pedantic(probe, rounds=5, warmup_rounds=1)
    assert out.returncode == 2 and out.stderr.startswith("error: unknown method 'nope'")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=_env(), check=True)
    benchmark.extra_info["bare_interpreter_s"] = round(time.perf_counter() - started, 3)
    # the largest resident set of any child so far: the probes (and the bare interpreter)
    benchmark.extra_info["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    benchmark.extra_info["target_s"] = TARGET_SECONDS
    assert fastest_seconds(benchmark) < TARGET_SECONDS  # the least disturbed round, as the other benchmarks
