"""Experiment tracking. The only module that imports mlflow.

Runs go to an embedded store (`sqlite:///mlflow.db` in the working directory, artifacts under
`mlruns/`) unless MLFLOW_TRACKING_URI names another store or a server.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

DEFAULT_TRACKING_FILE = "mlflow.db"  # in the working directory, unless MLFLOW_TRACKING_URI names a store
EXPERIMENT = "i2i-bench"
_FLUSH_EVERY = 500  # buffered metric points per write; MLflow accepts up to 1000 per batch


class TrackedRun(Protocol):
    run_id: str

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, subdir: str | None = None) -> None: ...
    def finish(self, failed: bool = False) -> None: ...


class Tracker(Protocol):
    def start_run(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> TrackedRun: ...


class NullRun:
    run_id = ""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        pass

    def finish(self, failed: bool = False) -> None:
        pass


class NullTracker:
    """Tracking switched off (`--no-track`)."""

    uri = "none"

    def start_run(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> TrackedRun:
        return NullRun()


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


class LossLog:
    """Sends each loss's mean over every `every` steps to a tracked run, at the last of those steps."""

    def __init__(self, run: TrackedRun, every: int, prefix: str = "train/") -> None:
        self.run, self.every, self.prefix = run, every, prefix
        self._sums: dict[str, float] = {}
        self._count = 0

    def __call__(self, step: int, losses: dict[str, float]) -> None:
        for key, value in losses.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        self._count += 1
        if (step + 1) % self.every == 0:
            self.flush(step)

    def flush(self, step: int) -> None:
        if self._count:
            self.run.log_metrics({self.prefix + k: v / self._count for k, v in self._sums.items()}, step)
        self._sums, self._count = {}, 0


class MlflowRun:
    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self._pending: list[Any] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(key, float(value), now, step or 0) for key, value in metrics.items()]
        if len(self._pending) >= _FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        self._flush()
        self.client.log_artifact(self.run_id, str(path), subdir)

    def finish(self, failed: bool = False) -> None:
        self._flush()
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


class MlflowTracker:
    def __init__(self, uri: str | None = None, experiment: str = EXPERIMENT) -> None:
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):  # after the import: mlflow configures its loggers when imported
            logging.getLogger(noisy).setLevel(logging.WARNING)

        # An absolute path: MLflow caches one store per URI in a process, so a relative "sqlite:///mlflow.db"
        # would keep writing to the first working directory's file after a chdir.
        default = f"sqlite:///{Path(DEFAULT_TRACKING_FILE).resolve()}"
        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)

    def start_run(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> TrackedRun:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        items = [Param(k, v[:6000]) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per call
            self.client.log_batch(run.info.run_id, params=items[start : start + 100])
        return MlflowRun(self.client, run.info.run_id)
