"""Developer entry points: `nox -s tests`, `nox -s lint` (ruff, import-linter), `nox -s bench`, `nox -s demo`.

Sessions reuse their virtual environments (`reuse_venv`), so torch is installed once per session.
"""

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
    """Speed benchmarks (pytest-benchmark); not part of the tests."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", "benchmarks", "--benchmark-only", "--benchmark-enable", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The offline demo: every method, tiny preset, synthetic toyfaces."""
    session.install("-e", ".")
    session.run("python", "-m", "bench", "run", *session.posargs)
