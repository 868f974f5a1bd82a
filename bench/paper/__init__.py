"""Published numbers as data (tables.yaml), and measured rows set beside them only where that is fair.

A paper's value and a measured one are compared only when the dataset, the protocol, standard extractor
weights, the number of images and the real reference set all match; otherwise the paper value stands alone
with the first reason it cannot be compared.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.errors import ConfigError
from bench.protocols import PROTOCOLS

TABLES_FILE = Path(__file__).with_name("tables.yaml")
METRIC_NAMES = ("fid", "kid", "kid_mean_with_source", "lpips_diversity")


@dataclass(frozen=True)
class PaperTable:
    id: str
    title: str
    paper: str
    arxiv: str
    kind: str  # paper_table | third_party_table | official_readme | paper_text_quoted | third_party_reproduction
    protocol: str  # a name in bench.protocols.PROTOCOLS
    spread: str  # what the printed +- means
    note: str
    source: str


@dataclass(frozen=True)
class PaperCell:
    table: str
    task: str
    printed_direction: str
    dataset: str | None  # the harness dataset, when the task is one
    direction: str | None  # a2b | b2a on that dataset
    method: str  # as the paper names it
    harness_method: str | None
    harness_preset: str | None
    metric: str
    printed_metric: str
    printed_scale: int  # the value was printed x this (KID x100); `value` and `spread` are raw
    value: float
    spread: float | None
    guidance: str | None = None  # StarGAN v2: latent | reference
    reference: str | None = None  # train | test where a source states it
    n: int | None = None  # translated images, where a source states it
    n_ref: int | None = None


@dataclass(frozen=True)
class PaperData:
    tables: dict[str, PaperTable]
    cells: list[PaperCell]
    not_found: list[dict[str, str]]

    def cells_of(self, table: str) -> list[PaperCell]:
        return [c for c in self.cells if c.table == table]


def load(path: Path = TABLES_FILE) -> PaperData:
    """The published numbers, checked against the schema (a ConfigError names the first bad entry)."""
    raw = yaml.safe_load(path.read_text())
    tables = {tid: _strict(PaperTable, {"id": tid, **entry}, f"table {tid}") for tid, entry in raw["tables"].items()}
    cells = [_strict(PaperCell, entry, f"cell {i}") for i, entry in enumerate(raw["cells"])]
    for i, cell in enumerate(cells):
        _check_cell(cell, tables, f"cell {i} ({cell.table}, {cell.method}, {cell.metric})")
    for table in tables.values():
        if table.protocol not in PROTOCOLS:
            raise ConfigError(f"table {table.id}: unknown protocol {table.protocol!r}")
        if "https://" not in table.source:
            raise ConfigError(f"table {table.id}: its source must be a URL, got {table.source!r}")
    not_found = raw.get("not_found", [])
    if any(not {"paper", "what", "why"} <= set(item) for item in not_found):
        raise ConfigError("every not_found entry needs paper, what and why")
    return PaperData(tables, cells, not_found)


def _strict(cls: type, values: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    unknown, missing = sorted(set(values) - names), sorted(required - set(values))
    if unknown or missing:
        raise ConfigError(f"{where}: unknown keys {unknown}, missing keys {missing}")
    return cls(**values)


def _check_cell(cell: PaperCell, tables: dict[str, PaperTable], where: str) -> None:
    from bench.registry import METHODS

    problems = []
    if cell.table not in tables:
        problems.append(f"table {cell.table!r} is not defined")
    if cell.metric not in METRIC_NAMES:
        problems.append(f"metric {cell.metric!r} is not one of {METRIC_NAMES}")
    if cell.printed_scale not in (1, 100):
        problems.append(f"printed_scale {cell.printed_scale} is not 1 or 100")
    if not isinstance(cell.value, (int, float)) or not math.isfinite(cell.value):
        problems.append(f"value {cell.value!r} is not a finite number (a cell not found is listed under not_found)")
    if cell.spread is not None and not cell.spread >= 0:
        problems.append(f"spread {cell.spread!r} is negative")
    if (cell.dataset is None) != (cell.direction is None) or cell.direction not in (None, "a2b", "b2a"):
        problems.append(f"dataset {cell.dataset!r} and direction {cell.direction!r} must both be set (a2b|b2a) or null")
    if cell.harness_method is not None and cell.harness_method not in METHODS:
        problems.append(f"harness_method {cell.harness_method!r} is not registered")
    if cell.reference not in (None, "train", "test"):
        problems.append(f"reference {cell.reference!r} is not train, test or absent")
    if problems:
        raise ConfigError(f"{where}: {'; '.join(problems)}")


# -- comparison ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    cell: PaperCell
    measured: dict[str, Any] | None  # the results row (a dict) of the same method, direction and metric
    reason: str  # why the paper value stands alone; "" when the two are compared
    difference: float | None = None  # measured - paper (raw scale)
    inside_interval: bool | None = None  # the paper value lies in the measured interval

    @property
    def compared(self) -> bool:
        return not self.reason


def compare(table: PaperTable, cells: list[PaperCell], rows: list[dict[str, Any]]) -> list[Comparison]:
    """Each cell with the measured row that matches it, compared only when every condition holds."""
    out = []
    for cell in cells:
        same = [
            r
            for r in rows
            if (r["method"], r["direction"], r["metric"]) == (cell.harness_method, cell.direction, cell.metric)
        ]
        row = next((r for r in same if r["preset"] == cell.harness_preset), same[0] if same else None)
        reason = _why_not(table, cell, row)
        if reason or row is None:
            out.append(Comparison(cell, row, reason))
            continue
        low, high = row.get("ci_low", float("nan")), row.get("ci_high", float("nan"))
        inside = bool(low <= cell.value <= high) if math.isfinite(low) and math.isfinite(high) else None
        out.append(Comparison(cell, row, "", row["value"] - cell.value, inside))
    return out


def _why_not(table: PaperTable, cell: PaperCell, row: dict[str, Any] | None) -> str:
    if cell.harness_method is None:
        return f"{cell.method} is not a method of this harness"
    if cell.dataset is None:
        return f"{cell.task} is not a dataset of this harness"
    if row is None:
        return f"not measured: no checkpoint of {cell.harness_method} ({cell.harness_preset}) was scored"
    if row["dataset"] != cell.dataset:
        return f"measured on {row['dataset']}, the paper used {cell.dataset}"
    if row["preset"] != cell.harness_preset:
        return f"measured the {row['preset']} preset, the paper's model is {cell.harness_preset}"
    measured_protocol = str(row["protocol"]).split(":", 1)[0]
    if measured_protocol != table.protocol:
        return f"measured under protocol {measured_protocol}, the paper's is {table.protocol}"
    if not row["standard"]:
        return "measured with non-standard extractor weights"
    if cell.reference is None:
        return "the paper does not say which real images it compared against"
    if not str(row["reference"]).startswith(cell.reference):
        return f"measured against {row['reference']}, the paper against its {cell.reference} split"
    if cell.n is None:
        return "the paper does not say how many images it translated"
    if row["n"] != cell.n or (cell.n_ref is not None and row["n_ref"] != cell.n_ref):
        return f"measured on n={row['n']} (n_ref={row['n_ref']}), the paper on n={cell.n} (n_ref={cell.n_ref})"
    return ""


def _printed(value: float | None, scale: int) -> str:
    return "" if value is None else f"{value * scale:.5g}"


def rows(comparisons: list[Comparison]) -> list[dict[str, str]]:
    """One printable row per cell, at the paper's printed scale: what the Markdown and the HTML report show."""
    out = []
    for c in comparisons:
        s = c.cell.printed_scale
        metric = f"{c.cell.metric}{f' x{s}' if s != 1 else ''}{f' ({c.cell.guidance})' if c.cell.guidance else ''}"
        paper = _printed(c.cell.value, s) + (f" ± {_printed(c.cell.spread, s)}" if c.cell.spread is not None else "")
        out.append(
            {
                "method": c.cell.method,
                "task": c.cell.printed_direction,
                "metric": metric,
                "paper": paper,
                "measured": _printed(c.measured["value"], s) if c.compared and c.measured else "",
                "difference": _printed(c.difference, s),
                "inside": "" if c.inside_interval is None else ("yes" if c.inside_interval else "no"),
                "note": c.reason or "same dataset, protocol, standard weights, n and reference",
            }
        )
    return out


def markdown(table: PaperTable, comparisons: list[Comparison]) -> str:
    """Paper vs measured as Markdown: measured values beside paper ones only where compared."""
    scale_note = {c.cell.metric: c.cell.printed_scale for c in comparisons}
    lines = [
        f"## {table.title}",
        "",
        f"Source: {table.source}  ",
        f"Paper: {table.paper}, arXiv {table.arxiv}; protocol `{table.protocol}`; +-: {table.spread}.",
        "",
        "| method | task | metric | paper | measured | difference | in interval | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(r.values()) + " |" for r in rows(comparisons)]
    measured_rows = [c for c in comparisons if c.measured is not None]
    if measured_rows:
        lines += ["", "Measured in this run (beside the paper only where the note says they compare):", ""]
        lines += ["| method | preset | direction | metric | value | interval | n | reference | protocol |"]
        lines += ["|---|---|---|---|---|---|---|---|---|"]
        for c in measured_rows:
            r, s = c.measured, scale_note.get(c.cell.metric, 1)
            interval = (
                f"[{_printed(r['ci_low'], s)}, {_printed(r['ci_high'], s)}]" if math.isfinite(r["ci_low"]) else ""
            )
            lines.append(
                f"| {r['method']} | {r['preset']} | {r['direction']} | {r['metric']}{f' x{s}' if s != 1 else ''} | "
                f"{_printed(r['value'], s)} | {interval} | {r['n']} | {r['reference']} | "
                f"{str(r['protocol']).split(':', 1)[0]} |"
            )
    return "\n".join(lines) + "\n"
