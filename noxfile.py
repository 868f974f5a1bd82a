"""Developer entry points: `nox -s tests`, `nox -s lint` (ruff, import-linter), `nox -s bench` (benchmarks, saved and
compared with the last saved run: see its docstring), `nox -s demo`.

Sessions reuse their virtual environments (`reuse_venv`), so torch is installed once per session.
"""

from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (what CI runs)."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6", "import-linter>=2.1")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports", "--no-cache")  # the import rules in pyproject.toml; needs no install of the project


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory benchmarks (pytest-benchmark, benchmarks/); not part of the tests, whose addopts skip them.

    Every run is saved under .benchmarks/<machine>/ (--benchmark-autosave, numbered 0001_..., 0002_...) and, when
    an earlier one was saved there, compared with the newest of them (--benchmark-compare) in the printed table;
    a fastest round more than 25% slower fails the session (--benchmark-compare-fail; the fastest round, as the
    one least disturbed by other work on the machine), and so does a paper training step whose peak RSS grew by
    more than 10% (benchmarks/conftest.py). Each benchmark's extra_info holds what the timing alone does not:
    images/s, fractions of the measured matmul and conv2d peaks, peak RSS, the load average. Compare on the
    machine that saved the run: saved runs are kept per machine type, not per machine. After `--`, pytest's:

        nox -s bench                                   # everything (paper presets: tens of minutes on a CPU)
        nox -s bench -- -k "tiny or fid or kid"        # a subset
        nox -s bench -- --benchmark-compare=0003       # against a chosen saved run instead of the newest
        pytest-benchmark compare --group-by=name       # the saved runs side by side, afterwards
    """
    session.install("-e", ".[dev]")
    args = ["benchmarks", "--benchmark-enable", "--benchmark-only", "--benchmark-autosave"]
    storage = Path(".benchmarks")
    if any(storage.glob("*/*.json")):  # --benchmark-compare fails when nothing was saved before
        args += ["--benchmark-compare", "--benchmark-compare-fail=min:25%"]
    session.run("python", "-m", "pytest", *args, *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The offline demo: every method, tiny preset, synthetic toyfaces."""
    session.install("-e", ".")
    session.run("python", "-m", "bench", "run", *session.posargs)
