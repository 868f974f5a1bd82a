"""Experiment tracking. The only module that imports mlflow.

Runs go to an embedded store (`sqlite:///mlflow.db` in the working directory, artifacts under
`mlruns/`) unless MLFLOW_TRACKING_URI names another store or a server. One experiment per dataset
(`i2i-bench/<dataset>`, or the run's `experiment` key), one MLflow run per (method, seed) of a `bench run`.

A server that does not answer `<uri>/health` within a few seconds is not waited for: the run keeps its results
in `reports/<run-id>/` and `bench track push` logs them later, as the same MLflow runs a live run creates.

A run killed outright (SIGKILL, the machine's OOM killer) cannot end its MLflow runs nor write its report. Every
run therefore records which process owns it (bench.owner: host, pid, process start time, as tags of its MLflow
runs and owner.json in its report folder), and the next run on the same host marks the MLflow runs of a process
that is gone KILLED and names the report folders left without index.html. A run of another host is never
touched: only that host can tell whether it still runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from bench.errors import BenchError
from bench.owner import owner, owner_gone, rebuild_hint
from bench.results import ResultRow, RunResult

log = logging.getLogger(__name__)

DEFAULT_TRACKING_FILE = "mlflow.db"  # in the working directory, unless MLFLOW_TRACKING_URI names a store
EXPERIMENT = "i2i-bench"  # the prefix of every experiment: i2i-bench/<dataset>
_FLUSH_EVERY = 500  # buffered metric points per write; MLflow accepts up to 1000 per batch
PROBE_TIMEOUT_S = 3.0
COMPLETE_TAG = "bench_complete"  # set once a run's results document and report are logged
REPORT_FILES = ("results.json", "results.csv", "index.html")
KILLED_TAG = "bench_killed"  # why a later run marked this one KILLED


class TrackingError(BenchError):
    """A tracking store or server cannot be used, or holds no run of what was asked for."""


class TrackedRun(Protocol):
    run_id: str

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, subdir: str | None = None) -> None: ...
    def log_report(self, out_dir: Path) -> None: ...
    def finish(self, failed: bool = False) -> None: ...


class Tracker(Protocol):
    def start_run(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> TrackedRun: ...


class NullRun:
    run_id = ""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        pass

    def log_report(self, out_dir: Path) -> None:
        pass

    def finish(self, failed: bool = False) -> None:
        pass


class NullTracker:
    """Tracking switched off (`--no-track`)."""

    uri = "none"

    def start_run(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> TrackedRun:
        return NullRun()

    def describe(self, out_dir: Path) -> str:
        return "none"


def push_hint(out_dir: Path) -> str:
    return f"python -m bench track push {out_dir}"


class UnreachableTracker(NullTracker):
    """The tracking server did not answer: nothing is logged, the results stay local for `bench track push`."""

    def __init__(self, uri: str, reason: str) -> None:
        self.uri, self.reason = uri, reason

    def describe(self, out_dir: Path) -> str:
        return (
            f"{self.uri} was unreachable ({self.reason}); nothing was logged, the results are in {out_dir}; "
            f"log them later with: {push_hint(out_dir)}"
        )


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts to dotted keys with string values, as MLflow params need."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


def experiment_name(dataset: str, override: str | None = None) -> str:
    """The experiment of a run on `dataset`: the `experiment` key when set, else i2i-bench/<dataset>."""
    return override or f"{EXPERIMENT}/{dataset}"


def tracking_uri(uri: str | None = None) -> str:
    """`uri`, else MLFLOW_TRACKING_URI, else the working directory's sqlite file (an absolute path: MLflow caches
    one store per URI in a process, so a relative "sqlite:///mlflow.db" would keep writing to the first working
    directory's file after a chdir)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(DEFAULT_TRACKING_FILE).resolve()}"


def probe(uri: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when `uri` can be used; else why not. Only a server (http, https) is asked, at `<uri>/health`."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            return None if response.status == 200 else f"/health answered HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return f"/health answered HTTP {error.code}"
    except (OSError, ValueError) as error:  # refused, timed out, unknown host, malformed URI
        reason = getattr(error, "reason", None) or error
        return f"no answer from /health within {timeout:g} s: {reason}"


def open_tracker(dataset: str, experiment: str | None = None, uri: str | None = None) -> Tracker:
    """The tracker of a run on `dataset`; an UnreachableTracker when the server does not answer (warned once)."""
    uri = tracking_uri(uri)
    reason = probe(uri)
    if reason is not None:
        log.warning(
            "MLflow at %s is unreachable (%s): this run is not tracked; its results stay in reports/<run-id>/ "
            "and `python -m bench track push RUN` logs them later",
            uri,
            reason,
        )
        return UnreachableTracker(uri, reason)
    return MlflowTracker(uri, experiment_name(dataset, experiment))


def describe(tracker: Any, out_dir: Path) -> str:
    """One line for the end of a run: where it was tracked, or how to log it later."""
    if hasattr(tracker, "describe"):
        return tracker.describe(out_dir)
    return getattr(tracker, "uri", "none")


# -- what a run logs, from the results document (a live run and `bench track push` log the same) --------------


def run_tags(result: RunResult, key: str, **tags: Any) -> dict[str, str]:
    """The tags every run of a `bench run` carries (run id, method key, protocol, git commit), plus `tags`."""
    commit = str(result.environment.get("i2i-bench git commit", "unknown"))
    return {
        "bench_run_id": result.run_id,
        "bench_key": key,
        "protocol": str(result.config.get("eval", {}).get("protocol") or "harness"),
        "git_commit": commit,
        "mlflow.source.git.commit": commit.split()[0],
        **{k: "" if v is None else str(v) for k, v in tags.items()},
    }


def method_params(result: RunResult, key: str) -> dict[str, Any]:
    """The resolved configuration of one tracked run: the run's tree (at this run's seed), the method's config,
    its training length and pretrained networks."""
    info = result.methods[key]
    tracking = info.get("tracking") or {}
    config = json.loads(json.dumps(result.config))
    seed = tracking.get("seed")
    if seed is not None and "seed" in config:
        config["seed"] = seed
    params: dict[str, Any] = {"run": config, "method": info.get("config") or {}}
    for name in ("total_steps", "translations", "reference"):
        if name in tracking:
            params[name] = tracking[name]
    params["pretrained"] = info.get("pretrained") or {}
    return params


def metric_name(row: ResultRow) -> str:
    """`<metric>_<direction>`, with `_nonstandard` when the extractor is not the published one, so stand-in
    numbers never sit under a standard number's name."""
    return f"{row.metric}_{row.direction}{'' if row.standard else '_nonstandard'}"


def row_metrics(rows: list[ResultRow]) -> dict[str, float]:
    """Every row's value and, where it has one, its interval (`<name>_ci_low`, `<name>_ci_high`)."""
    out: dict[str, float] = {}
    for row in rows:
        name = metric_name(row)
        out[name] = float(row.value)
        if math.isfinite(row.ci_low) and math.isfinite(row.ci_high):
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = float(row.ci_low), float(row.ci_high)
    return out


class LossLog:
    """Sends each loss's mean over every `every` steps to a tracked run, at the last of those steps."""

    def __init__(self, run: TrackedRun, every: int, prefix: str = "train/") -> None:
        self.run, self.every, self.prefix = run, every, prefix
        self._sums: dict[str, float] = {}
        self._count = 0
        self._points: list[tuple[int, dict[str, float]]] = []  # every mean sent, for the results document

    def __call__(self, step: int, losses: dict[str, float]) -> None:
        for key, value in losses.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        self._count += 1
        if (step + 1) % self.every == 0:
            self.flush(step)

    def flush(self, step: int) -> None:
        if self._count:
            means = {k: v / self._count for k, v in self._sums.items()}
            self._points.append((step, means))
            self.run.log_metrics({self.prefix + k: v for k, v in means.items()}, step)
        self._sums, self._count = {}, 0

    def curve(self) -> dict[str, list[Any]]:
        """{"step": [...], "<loss>": [...]}: what was sent, as the results document keeps it (None where a loss
        was not reported in a window); empty when nothing was."""
        if not self._points:
            return {}
        names = list(dict.fromkeys(k for _, means in self._points for k in means))
        curve: dict[str, list[Any]] = {"step": [step for step, _ in self._points]}
        for name in names:
            curve[name] = [means.get(name) for _, means in self._points]
        return curve


# -- MLflow ----------------------------------------------------------------------------------------------------


class MlflowRun:
    """One MLflow run. A call that fails (the server went away mid-run) is logged once and tracking of this run
    stops; the `bench run` goes on, and its summary says how to log the results later."""

    def __init__(self, tracker: MlflowTracker, run_id: str, key: str = "") -> None:
        self.tracker, self.client, self.run_id, self.key = tracker, tracker.client, run_id, key
        self._pending: list[Any] = []

    def _guard(self, what: str, call: Any, *args: Any) -> None:
        if self.tracker.failure is not None:
            return
        try:
            call(*args)
        except Exception as error:  # whatever MLflow or its HTTP stack raises: the run's results matter more
            self.tracker.failure = f"{what} failed: {type(error).__name__}: {str(error)[:300]}"
            log.warning("MLflow: %s; tracking stops for this bench run", self.tracker.failure)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(key, float(value), now, step or 0) for key, value in metrics.items()]
        if len(self._pending) >= _FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self._guard("logging metrics", lambda b: self.client.log_batch(self.run_id, metrics=b), batch)

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        self._flush()
        self._guard(f"logging {path}", self.client.log_artifact, self.run_id, str(path), subdir)

    def log_report(self, out_dir: Path) -> None:
        """The results document and report at the artifact root, this run's sample images under samples/<key>;
        then the tag that marks the run complete (what `bench track push` and `bench report` look for)."""
        self._flush()
        for name in REPORT_FILES:
            if (out_dir / name).is_file():
                self._guard(f"logging {name}", self.client.log_artifact, self.run_id, str(out_dir / name))
        samples = out_dir / "samples" / self.key
        if self.key and samples.is_dir():
            self._guard("logging samples", self.client.log_artifacts, self.run_id, str(samples), f"samples/{self.key}")
        self._guard("tagging", self.client.set_tag, self.run_id, COMPLETE_TAG, "true")

    def finish(self, failed: bool = False) -> None:
        self._flush()
        self._guard("ending the run", self.client.set_terminated, self.run_id, "FAILED" if failed else "FINISHED")


class MlflowTracker:
    def __init__(self, uri: str | None = None, experiment: str = EXPERIMENT) -> None:
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):  # after the import: mlflow configures its loggers when imported
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.uri = tracking_uri(uri)
        self.experiment = experiment
        self.failure: str | None = None  # set when a call failed mid-run
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = experiment_id(self.client, experiment, create=True)
        self.reap_orphans()

    def reap_orphans(self) -> list[str]:
        """Mark KILLED the RUNNING runs of this experiment whose owner process, on this host, is gone; one warning
        each. Returns their MLflow run ids. Runs of other hosts, and runs without owner tags (an older harness),
        are left as they are."""
        here, killed = socket.gethostname(), []
        try:
            for run in _all_runs(self.client, self.experiment_id, "attributes.status = 'RUNNING'"):
                tags = run.data.tags
                recorded = {k: tags.get(f"bench_{k}", "") for k in ("host", "pid", "started")}
                if recorded["host"] != here:
                    log.debug(
                        "MLflow run %s is RUNNING %s: left alone",
                        run.info.run_id,
                        f"on host {recorded['host']!r}, which alone can tell whether it runs"
                        if recorded["host"]
                        else "without owner tags (an older harness started it)",
                    )
                    continue
                why = owner_gone(recorded)
                if why is None:
                    continue
                self.client.set_tag(run.info.run_id, KILLED_TAG, why)
                self.client.set_terminated(run.info.run_id, "KILLED")
                killed.append(run.info.run_id)
                bench_run = tags.get("bench_run_id", "")
                results = Path(run.data.params.get("run.reports_dir") or "reports") / bench_run / "results.json"
                if not bench_run:
                    rebuild = "it names no bench run, so there is no report to rebuild"
                elif results.is_file():
                    rebuild = f"rebuild its report with: {rebuild_hint(results)}"
                else:
                    rebuild = f"{results} is not here (the run may have died before its first result)"
                log.warning(
                    "MLflow run %s (%s) of bench run %s was left RUNNING by a process that is gone (%s): "
                    "marked KILLED; %s",
                    run.info.run_id,
                    run.info.run_name,
                    bench_run or "unknown",
                    why,
                    rebuild,
                )
        except Exception as error:  # as MlflowRun._guard: a store that cannot be swept still takes this run
            log.warning(
                "MLflow: looking for runs left RUNNING by dead processes failed: %s: %s", type(error).__name__, error
            )
        return killed

    def start_run(
        self, name: str, params: dict[str, Any], tags: dict[str, str], start_time: int | None = None
    ) -> TrackedRun:
        from mlflow.entities import Param

        if self.failure is not None:
            return NullRun()
        tags = {**tags, **{f"bench_{k}": v for k, v in owner().items()}}  # what reap_orphans() reads
        try:
            run = self.client.create_run(self.experiment_id, start_time=start_time, run_name=name, tags=tags)
        except Exception as error:  # as MlflowRun._guard
            self.failure = f"starting a run failed: {type(error).__name__}: {str(error)[:300]}"
            log.warning("MLflow: %s; tracking stops for this bench run", self.failure)
            return NullRun()
        tracked = MlflowRun(self, run.info.run_id, tags.get("bench_key") or tags.get("method", ""))
        items = [Param(k, v[:6000]) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per call
            batch = items[start : start + 100]
            tracked._guard("logging params", lambda b: self.client.log_batch(tracked.run_id, params=b), batch)
        return tracked

    def describe(self, out_dir: Path) -> str:
        if self.failure is not None:
            return (
                f"{self.uri}: {self.failure}; the MLflow runs are incomplete, the results are in {out_dir}; "
                f"log them completely with: {push_hint(out_dir)}"
            )
        return f"{self.uri} (experiment {self.experiment})"


def experiment_id(client: Any, name: str, create: bool = False) -> str | None:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name) if create else None


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def bench_runs(client: Any, experiment: str, bench_run_id: str) -> list[Any]:
    return _all_runs(client, experiment, f"tags.bench_run_id = {_quote(bench_run_id)}")


def _all_runs(client: Any, experiment: str, query: str) -> list[Any]:
    """Every run of `experiment` that matches `query`, page by page."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment], query, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


# -- bench track push: a results document to the MLflow runs a live run would have made -----------------------


def push(result: RunResult, folder: Path, uri: str | None = None, experiment: str | None = None) -> list[str]:
    """Log `result` (read from `folder`) as one MLflow run per method key; returns one line per method.

    A key already logged completely (tags bench_run_id, bench_key, bench_complete) is skipped, so pushing
    twice does not duplicate."""
    uri = tracking_uri(uri)
    reason = probe(uri)
    if reason is not None:
        raise TrackingError(f"MLflow at {uri} is unreachable ({reason}); nothing was pushed")
    name = experiment_name(str(result.dataset.get("name", "unknown")), experiment or result.config.get("experiment"))
    tracker = MlflowTracker(uri, name)
    existing: dict[str, list[Any]] = {}
    for run in bench_runs(tracker.client, tracker.experiment_id, result.run_id):
        existing.setdefault(run.data.tags.get("bench_key") or run.data.tags.get("method", ""), []).append(run)
    try:  # the MLflow runs start when the bench run did
        created: int | None = int(datetime.fromisoformat(result.created).timestamp() * 1000)
    except (TypeError, ValueError):
        created = None
    lines = [f"{uri}, experiment {name}:"]
    # a method that failed before its MLflow run started has none; documents older than the "tracking" entry: all
    keyed = any("tracking" in info for info in result.methods.values())
    for key, info in result.methods.items():
        if keyed and "tracking" not in info:
            lines.append(f"  {key}: not tracked by its run (it failed before tracking started); skipped")
            continue
        complete = [r for r in existing.get(key, []) if r.data.tags.get(COMPLETE_TAG) == "true"]
        if complete:
            lines.append(f"  {key}: already logged as run {complete[0].info.run_id}; skipped")
            continue
        tracking = info.get("tracking") or {}
        tags = tracking.get("tags") or run_tags(
            result, key, method=key, dataset=result.dataset.get("name", ""), preset=info.get("preset", "")
        )
        tags = {**tags, "bench_key": key, "bench_pushed": "true"}
        run_name = tracking.get("name") or f"{key}-{result.dataset.get('name', '')}"
        tracked = tracker.start_run(run_name, method_params(result, key), tags, start_time=created)
        if not isinstance(tracked, MlflowRun):
            break
        curve = (info.get("train") or {}).get("loss_curve") or {}
        steps = curve.get("step") or []
        for loss, values in curve.items():
            if loss == "step":
                continue
            for step, value in zip(steps, values):
                if value is not None and math.isfinite(float(value)):
                    tracked.log_metrics({f"train/{loss}": float(value)}, int(step))
        tracked.log_metrics(row_metrics(_rows_of(result, key, tags)))
        grid = info.get("sample_grid")
        if grid and Path(grid).is_file():
            tracked.log_artifact(Path(grid), "samples")
        with tempfile.TemporaryDirectory() as tmp:  # the document as logged: it names its MLflow run
            copy = Path(tmp)
            for file in REPORT_FILES[1:]:
                if (folder / file).is_file():
                    shutil.copy2(folder / file, copy / file)
            document = json.loads((folder / "results.json").read_text())
            document["methods"][key]["mlflow_run_id"] = tracked.run_id
            (copy / "results.json").write_text(json.dumps(document, indent=1, default=str))
            if (folder / "samples" / key).is_dir():
                shutil.copytree(folder / "samples" / key, copy / "samples" / key)
            tracked.log_report(copy)
        tracked.finish(failed=info.get("status") != "ok")
        note = f" (an incomplete run {existing[key][0].info.run_id} of it was there already)" if key in existing else ""
        lines.append(f"  {key}: logged as run {tracked.run_id}{note}")
    if tracker.failure is not None:
        raise TrackingError(f"MLflow at {uri}: {tracker.failure}; push again to log the rest")
    return lines


def _rows_of(result: RunResult, key: str, tags: dict[str, str]) -> list[ResultRow]:
    """The rows of method key `key`: rows name the method, and with several seeds (key <method>-seed<N>) the seed
    tells them apart."""
    if any(r.method == key for r in result.rows):
        return [r for r in result.rows if r.method == key]
    method, seed = tags.get("method", key), tags.get("seed", "")
    return [r for r in result.rows if r.method == method and str(r.seed) == seed]


# -- bench report --mlflow-experiment: a run's report folder from the server alone ----------------------------


def fetch_report_folder(
    experiment: str, output: Path | None = None, bench_run_id: str | None = None, uri: str | None = None
) -> Path:
    """Download a bench run's results.json, results.csv and each method's samples/<key> from the complete runs of
    `experiment` into `output` (default reports/<bench run id>); the newest bench run unless `bench_run_id`.

    A method's final sample grid, named in the document by a path of the machine that ran it, is downloaded to
    grids/<key>/ and the document points there instead."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(uri)
    reason = probe(uri)
    if reason is not None:
        raise TrackingError(f"MLflow at {uri} is unreachable ({reason})")
    client = MlflowClient(tracking_uri=uri)
    found = experiment_id(client, experiment)
    if found is None:
        raise TrackingError(f"MLflow at {uri} has no experiment {experiment!r}")
    if bench_run_id is None:
        newest = client.search_runs(
            [found], f"tags.{COMPLETE_TAG} = 'true'", max_results=1, order_by=["attributes.start_time DESC"]
        )
        if not newest:
            raise TrackingError(f"experiment {experiment!r} at {uri} holds no complete bench run")
        bench_run_id = newest[0].data.tags["bench_run_id"]
    runs = [r for r in bench_runs(client, found, bench_run_id) if r.data.tags.get(COMPLETE_TAG) == "true"]
    if not runs:
        raise TrackingError(f"experiment {experiment!r} at {uri} holds no complete run of bench run {bench_run_id}")
    by_key: dict[str, Any] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):  # the latest complete run of each key wins
        by_key[run.data.tags.get("bench_key") or run.data.tags.get("method", "")] = run
    output = Path(output) if output is not None else Path("reports") / bench_run_id
    output.mkdir(parents=True, exist_ok=True)
    first = next(iter(by_key.values()))
    for name in REPORT_FILES[:2]:
        _download(client, first.info.run_id, name, output / name)
    document = json.loads((output / "results.json").read_text())
    for key, info in document.get("methods", {}).items():
        run = by_key.get(key)
        if run is None:
            log.warning("%s: no complete MLflow run of it in %r; its images are missing", key, experiment)
            continue
        info["mlflow_run_id"] = run.info.run_id  # a pushed run's document names only its own
        listed = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
        if f"samples/{key}" in listed:
            _download(client, run.info.run_id, f"samples/{key}", output / "samples" / key)
        grid = info.get("sample_grid")
        if grid and not Path(grid).is_file() and f"samples/{Path(grid).name}" in listed:
            target = output / "grids" / key / Path(grid).name
            _download(client, run.info.run_id, f"samples/{Path(grid).name}", target)
            info["sample_grid"] = str(target)
    (output / "results.json").write_text(json.dumps(document, indent=1, default=str))
    return output


def _download(client: Any, run_id: str, path: str, target: Path) -> None:
    """Artifact `path` (a file or folder) of `run_id` to `target` (where artifact stores put a downloaded folder
    differs between them, so it goes to a scratch folder first)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(client.download_artifacts(run_id, path, tmp))
        target.parent.mkdir(parents=True, exist_ok=True)
        if local.is_dir():
            shutil.copytree(local, target, dirs_exist_ok=True)
        else:
            shutil.copy2(local, target)
