"""The results document of a run: one tidy table of numbers with their provenance, plus run metadata.

Reports, MLflow and regression checks read this document only, so they work on any past run.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.files import write_atomically

SCHEMA_VERSION = 2  # 2: confidence intervals (ci_low, ci_high, ci_level)
# Method names of the reference rows a run adds beside its methods; never ranked as methods.
IDENTITY = "identity"  # no translation: each set metric between the source and the target real sets
NOISE_FLOOR = "real_vs_real"  # each set metric between two disjoint halves of the target real set
REFERENCE_ROWS = (IDENTITY, NOISE_FLOOR)


@dataclass(frozen=True)
class ResultRow:
    run_id: str
    method: str
    preset: str
    dataset: str
    direction: str  # a2b or b2a
    metric: str
    value: float  # raw scale (KID is not multiplied by 100 here)
    n: int  # translated images compared
    n_ref: int  # real reference images
    reference: str  # the real set, e.g. testB
    extractor: str  # feature extractor id, "(non-standard extractor)" appended when not standard
    weights_sha256: str
    preprocessing: str
    protocol: str
    standard: bool  # True only with the published extractor weights
    seed: int
    ci_low: float = float("nan")  # bootstrap interval over test inputs (NaN: the metric has none)
    ci_high: float = float("nan")
    ci_level: float = float("nan")  # e.g. 0.95


READABLE_SCHEMAS = {1, 2}
COLUMNS = [f.name for f in dataclasses.fields(ResultRow)]


@dataclass
class RunResult:
    run_id: str
    created: str
    command: str
    config: dict[str, Any]
    environment: dict[str, Any]
    dataset: dict[str, Any]
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method: preset, params, training, status
    rows: list[ResultRow] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(r) for r in self.rows], columns=COLUMNS)

    def save(self, directory: Path) -> Path:
        document = json.dumps(dataclasses.asdict(self), indent=1, default=str)
        path = write_atomically(directory / "results.json", lambda tmp: tmp.write_text(document))
        write_atomically(directory / "results.csv", lambda tmp: self.table().to_csv(tmp, index=False))
        return path

    @classmethod
    def load(cls, path: Path) -> RunResult:
        data = json.loads(Path(path).read_text())
        if data.get("schema_version") not in READABLE_SCHEMAS:
            raise ValueError(
                f"{path} has results schema {data.get('schema_version')}; this version of i2i-bench reads "
                f"{sorted(READABLE_SCHEMAS)}. Use the i2i-bench version that wrote it."
            )
        data["schema_version"] = SCHEMA_VERSION  # version 1 rows have no intervals: the defaults (NaN) fill them
        data["rows"] = [ResultRow(**row) for row in data["rows"]]
        return cls(**data)


def thin_curve(curve: dict[str, list[Any]], max_points: int = 300) -> dict[str, list[Any]]:
    """A loss curve {"step": [...], loss: [...]} with at most `max_points` points, for the results document:
    consecutive points averaged in equal runs, each at its run's last step. A loss missing (None) from some
    points of a run is averaged over the others; None where a run has none."""
    steps = curve.get("step", [])
    size = -(-len(steps) // max_points) if steps else 1
    if size <= 1:
        return curve
    out: dict[str, list[Any]] = {"step": [chunk[-1] for chunk in _runs(steps, size)]}
    for name, values in curve.items():
        if name != "step":
            present = ([v for v in chunk if v is not None] for chunk in _runs(values, size))
            out[name] = [sum(p) / len(p) if p else None for p in present]
    return out


def _runs(values: list[Any], size: int) -> list[list[Any]]:
    return [values[start : start + size] for start in range(0, len(values), size)]
