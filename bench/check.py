"""`python -m bench check`: the regression gate, a run's results against a committed baseline.

The baseline holds, per (method, preset, dataset, direction, metric), the mean and the spread (sample std) of
the value over training seeds, and the provenance of the rows it came from. A value regresses when it is worse
than the baseline mean by more than `TOLERANCE_SPREADS` spreads, in the metric's own direction; the tolerance
is measured run-to-run variation, not a constant. Rows whose provenance differs (extractor, weights, images'
preprocessing, protocol, n, reference) are not compared at all. Descriptive numbers (throughput) are not gated:
they measure the machine.

Exit codes: 0 pass, 1 regression or a baseline metric missing from the run, 2 incomparable rows or bad input.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.registry import METRICS
from bench.results import RunResult

BASELINE_FORMAT = 1
TOLERANCE_SPREADS = 3.0  # ~3 standard deviations of seed-to-seed variation
# With one seed, or values that did not vary, the spread is 0: then only float-rounding differences between
# machines are tolerated (another CPU's kernels round differently).
ROUNDING = 1e-6
KEY = ["method", "preset", "dataset", "direction", "metric"]
PROVENANCE = ["extractor", "weights_sha256", "preprocessing", "protocol", "n", "n_ref", "reference"]


def _gated(metric: str) -> bool:
    return metric in METRICS and METRICS.get(metric).higher_is_better is not None


def _rows(paths: list[Path]) -> pd.DataFrame:
    frames = []
    for path in paths:
        try:
            frames.append(RunResult.load(path).table())
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
            raise BenchError(f"{path} is not a results.json bench run wrote: {error}") from error
    table = pd.concat(frames, ignore_index=True)
    table = table[table["metric"].map(_gated)].copy()
    table["protocol"] = table["protocol"].str.split(":", n=1).str[0]  # its name; the estimator text has run values
    return table


def make_baseline(paths: list[Path]) -> dict[str, Any]:
    table = _rows(paths)
    if table.empty:
        raise BenchError("the results hold no gated metric (fid, kid, lpips_diversity, ...)")
    entries = []
    for key, group in table.groupby(KEY, sort=True):
        provenance = group[PROVENANCE].drop_duplicates()
        if len(provenance) > 1:
            raise BenchError(f"{dict(zip(KEY, key))}: the runs differ in provenance; a baseline needs one setup")
        values = group["value"].astype(float)
        entries.append(
            {
                **dict(zip(KEY, key)),
                "mean": float(values.mean()),
                "spread": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "seeds": sorted(int(s) for s in group["seed"]),
                "higher_is_better": bool(METRICS.get(key[-1]).higher_is_better),
                "provenance": {k: _plain(v) for k, v in provenance.iloc[0].items()},
            }
        )
    return {
        "format": BASELINE_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "from": [str(p) for p in paths],
        "entries": entries,
    }


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def check(baseline: dict[str, Any], paths: list[Path]) -> tuple[int, str]:
    """(exit code, Markdown report) of the run at `paths` against `baseline`."""
    if baseline.get("format") != BASELINE_FORMAT:
        raise BenchError(f"the baseline is of format {baseline.get('format')}, this version reads {BASELINE_FORMAT}")
    table = _rows(paths)
    lines = [
        "| method | direction | metric | baseline | measured | tolerance | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for entry in baseline["entries"]:
        key = {k: entry[k] for k in KEY}
        rows = table.loc[(table[KEY] == pd.Series(key)).all(axis=1)]
        tolerance = TOLERANCE_SPREADS * entry["spread"] + ROUNDING * max(1.0, abs(entry["mean"]))
        if rows.empty:
            verdict, measured = "missing: the run has no such row", ""
        elif differs := _differs(entry["provenance"], rows.iloc[0]):
            verdict, measured = f"incomparable: {differs}", f"{rows['value'].mean():.5g}"
        else:
            value = float(rows["value"].mean())
            worse = (entry["mean"] - value) if entry["higher_is_better"] else (value - entry["mean"])
            measured = f"{value:.5g}"
            if worse > tolerance:
                verdict = f"regression: worse by {worse:.3g}"
            elif -worse > tolerance:
                verdict = "better than the baseline (update it?)"
            else:
                verdict = "pass"
        verdicts.append(verdict)
        arrow = "↑" if entry["higher_is_better"] else "↓"
        lines.append(
            f"| {entry['method']} | {entry['direction']} | {entry['metric']} {arrow} | "
            f"{entry['mean']:.5g} ± {entry['spread']:.3g} (seeds {entry['seeds']}) | {measured} | "
            f"{tolerance:.3g} | {verdict} |"
        )
    if any(v.startswith("incomparable") for v in verdicts):
        code = 2
    elif any(v.startswith(("regression", "missing")) for v in verdicts):
        code = 1
    else:
        code = 0
    summary = {0: "PASS", 1: "FAIL: regression", 2: "INCOMPARABLE"}[code]
    counts = ", ".join(f"{n} {w}" for w, n in pd.Series([v.split(":")[0] for v in verdicts]).value_counts().items())
    head = f"### bench check: {summary}\n\n{counts}; tolerance = {TOLERANCE_SPREADS:g} seed spreads + rounding\n\n"
    return code, head + "\n".join(lines) + "\n"


def _differs(expected: dict[str, Any], row: pd.Series) -> str:
    changed = [f"{k} {row[k]!r} (baseline {expected[k]!r})" for k in PROVENANCE if _plain(row[k]) != expected[k]]
    return "; ".join(changed)


def run_check(args: argparse.Namespace) -> int:
    if args.update_baseline:
        baseline = make_baseline(args.results)
        args.baseline.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.baseline.with_suffix(".tmp")
        tmp.write_text(json.dumps(baseline, indent=1) + "\n")
        tmp.replace(args.baseline)
        print(f"wrote {len(baseline['entries'])} baseline entries to {args.baseline}")
        return 0
    try:
        baseline = json.loads(args.baseline.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BenchError(f"--baseline {args.baseline}: {error}") from error
    code, report = check(baseline, args.results)
    print(report)
    return code
