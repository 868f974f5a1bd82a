"""`python -m bench track push RUN` and `python -m bench report --mlflow-experiment NAME`: a run's results to an
MLflow server after the fact, and a run's report back from the server alone. The MLflow calls are in bench.track."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import BenchError

# bench.results (pandas) and bench.track (mlflow) are imported only when a command runs: every command builds
# the parser that these arguments are part of.


def add_track_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="track_action", required=True)
    push = actions.add_parser(
        "push", help="log a finished run's results (reports/<run-id>/results.json) as the MLflow runs a live run makes"
    )
    push.add_argument("run", help="the run id, or its report folder (reports/<run-id>)")
    push.add_argument("--tracking-uri", metavar="URI", help="MLflow store or server (default: MLFLOW_TRACKING_URI)")
    push.add_argument(
        "--experiment", metavar="NAME", help="MLflow experiment (default: the run's, i2i-bench/<dataset>)"
    )
    push.add_argument("--reports-dir", type=Path, default=Path("reports"), help="where run ids are looked up")


def add_report_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mlflow-experiment",
        metavar="NAME",
        help="rebuild from an MLflow experiment instead of a results.json (e.g. i2i-bench/toyfaces)",
    )
    parser.add_argument("--run-id", metavar="ID", help="with --mlflow-experiment: the bench run id (default: newest)")
    parser.add_argument(
        "--output", type=Path, metavar="DIR", help="with --mlflow-experiment: the folder (default: reports/<run-id>)"
    )
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow store or server (default: MLFLOW_TRACKING_URI)")


def report_folder(run: str, reports_dir: Path) -> Path:
    """The report folder of `run` (a folder, or a run id under `reports_dir`); BenchError when it has no results."""
    folder = Path(run)
    if not folder.is_dir():
        folder = reports_dir / run
    if not folder.is_dir():
        raise BenchError(f"no report folder {run!r} (nor {reports_dir / run}); give a run id or reports/<run-id>")
    if not (folder / "results.json").is_file():
        raise BenchError(f"{folder} holds no results.json; nothing to push")
    return folder


def run_track(args: argparse.Namespace) -> int:
    from bench.results import RunResult
    from bench.track import push

    folder = report_folder(args.run, args.reports_dir)
    try:
        result = RunResult.load(folder / "results.json")
    except (ValueError, KeyError, TypeError) as error:
        raise BenchError(f"{folder / 'results.json'} cannot be read: {error}") from error
    for line in push(result, folder, args.tracking_uri, args.experiment):
        print(line)
    return 0


def run_report_from_server(args: argparse.Namespace) -> int:
    from bench.report import build_report
    from bench.results import RunResult
    from bench.track import fetch_report_folder

    folder = fetch_report_folder(args.mlflow_experiment, args.output, args.run_id, args.tracking_uri)
    print(build_report(RunResult.load(folder / "results.json"), folder))
    return 0
