"""`python -m bench reproduce`: a paper's table beside what this harness measures under that paper's protocol."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.paper import PaperData, compare, load, markdown
from bench.paper import rows as printed
from bench.protocols import PROTOCOLS


def listing(data: PaperData) -> str:
    """The tables, their methods, protocols and sources; then the protocols' choices; then what was not found."""
    lines = []
    for table in data.tables.values():
        cells = data.cells_of(table.id)
        ours = sorted({c.harness_method for c in cells if c.harness_method})
        tasks = sorted({c.task for c in cells})
        lines += [
            f"{table.id}: {table.title}",
            f"    {len(cells)} cells; tasks {', '.join(tasks)}; methods of this harness: {', '.join(ours) or 'none'}",
            f"    protocol {table.protocol}; source {table.source}",
        ]
    lines += ["", "protocols:"]
    for p in PROTOCOLS.values():
        choices = "; ".join(f"{k} {v}" for k, v in p.describe().items() if k != "protocol")
        lines.append(f"  {p.name}: {p.summary}\n      {choices}")
    lines += ["", "not found by the research (never filled from memory):"]
    lines += [f"  {item['paper']}: {item['what']}" for item in data.not_found]
    return "\n".join(lines)


def run_reproduce(args: argparse.Namespace, argv: list[str], load_cfg: Any, command: str) -> int:
    data = load()
    if args.list or args.table is None:
        print(listing(data))
        return 0
    if args.table not in data.tables:
        raise ConfigError(f"unknown table {args.table!r}; tables: {', '.join(data.tables)} (see --list)")
    table = data.tables[args.table]
    cells = data.cells_of(table.id)
    checkpoints = dict(args.checkpoint or [])
    if len(checkpoints) < len(args.checkpoint or []):
        raise ConfigError("--checkpoint names a method more than once")
    rows: list[dict[str, Any]] = []
    out_dir = Path("reports")
    if checkpoints:
        from bench.run import run

        metrics = sorted({c.metric for c in cells})
        extra = [("eval.protocol", table.protocol), ("eval.metrics", metrics), ("checkpoints", checkpoints)]
        cfg = load_cfg(args, *extra)
        outcome = run(cfg, command=command)
        rows = outcome.result.table().to_dict("records")
        out_dir = outcome.report.parent if outcome.report else Path(cfg.reports_dir)
    comparisons = compare(table, cells, rows)
    text = markdown(table, comparisons)
    if checkpoints and outcome.report:  # the run's report, with the paper table at its top
        from bench.report import build_report

        shown = {"title": table.title, "source": table.source, "protocol": table.protocol, "rows": printed(comparisons)}
        build_report(outcome.result, outcome.report.parent, paper=shown)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"reproduce-{table.id}.md"
    path.write_text(text)
    print(text)
    print(f"written to {path}")
    if not checkpoints:
        print("no --checkpoint METHOD=PATH given: the paper values stand alone")
    return 0
