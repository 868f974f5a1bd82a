"""A single self-contained HTML report (images inline) built from a run's results document."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import jinja2
import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402

from bench.registry import METRICS  # noqa: E402
from bench.results import RunResult  # noqa: E402
from bench.weights import NON_STANDARD  # noqa: E402

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
)


def _png(path_or_figure: Path | plt.Figure) -> str:
    if isinstance(path_or_figure, Path):
        return base64.b64encode(path_or_figure.read_bytes()).decode()
    buffer = io.BytesIO()
    path_or_figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(path_or_figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _scale(metric: str) -> float:
    return METRICS.get(metric).scale_in_reports if metric in METRICS else 1.0


def _quality(metric: str) -> bool:
    """Registered quality metrics; throughput rows (images_per_s_b1, ...) are shown apart."""
    return metric in METRICS and METRICS.get(metric).higher_is_better is not None


def _direction_word(metric: str) -> str:
    better = METRICS.get(metric).higher_is_better
    return "higher is better" if better else "lower is better"


def metrics_figure(result: RunResult) -> plt.Figure | None:
    """One bar chart per quality metric: methods on the x axis, one bar per direction, bootstrap intervals."""
    table = result.table()
    table = table[[_quality(m) for m in table["metric"]]]
    if table.empty:
        return None
    table["shown"] = [v * _scale(m) for v, m in zip(table["value"], table["metric"])]
    metrics = list(dict.fromkeys(table["metric"]))
    columns = min(3, len(metrics))
    rows = -(-len(metrics) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics):
        part = table[table["metric"] == metric]
        sns.barplot(data=part, x="method", y="shown", hue="direction", ax=ax)
        scale = _scale(metric)
        ax.set_ylabel(f"{metric.upper()}{f' x{scale:g}' if scale != 1 else ''} ({_direction_word(metric)})")
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_xlabel("")
        if not part["standard"].all():
            ax.set_title(f"{metric.upper()}: {NON_STANDARD}", color="#9a6700")
    fig.tight_layout()
    return fig


def seeds_summary(result: RunResult) -> list[dict[str, object]]:
    """Mean and std across training seeds, for each (method, direction, metric) measured with several seeds."""
    table = result.table()
    if table.empty or table["seed"].nunique() < 2:
        return []
    table = table[[_quality(m) for m in table["metric"]]]
    groups = table.groupby(["method", "direction", "metric"], sort=False)["value"]
    out = []
    for (method, direction, metric), values in groups:
        if len(values) > 1:
            scale = _scale(metric)
            out.append(
                {
                    "method": method,
                    "direction": direction,
                    "metric": metric,
                    "seeds": len(values),
                    "shown": f"{values.mean() * scale:.4g} \u00b1 {values.std(ddof=1) * scale:.2g}",
                }
            )
    return out


def leaderboards(result: RunResult) -> list[dict[str, Any]]:
    """Per direction: one row per method (the noise floor last), one column per quality metric at report scale,
    the best value per column marked and values whose interval overlaps the best's marked as ties; parameters
    and images/s; the provenance stated once, with a marker on a cell whose provenance differs from the rest.
    Several seeds of a method are averaged (values and interval bounds)."""
    table = result.table()
    if table.empty:
        return []
    quality = table[table["metric"].map(_quality)]
    speed = table[table["metric"].isin(["parameters", "images_per_s_b1"])]
    boards = []
    for direction in dict.fromkeys(quality["direction"]):
        rows = quality[quality["direction"] == direction]
        metrics = list(dict.fromkeys(rows["metric"]))
        means = rows.groupby(["method", "metric"], sort=False)[["value", "ci_low", "ci_high"]].mean()
        provenance = rows.assign(key=rows["extractor"] + " | " + rows["protocol"].str.split(":").str[0])
        usual = provenance["key"].mode().iloc[0]
        odd = set(map(tuple, provenance.loc[provenance["key"] != usual, ["method", "metric"]].values))
        methods = [m for m in dict.fromkeys(rows["method"]) if m != "real_vs_real"]
        methods += ["real_vs_real"] if "real_vs_real" in set(rows["method"]) else []
        cells: dict[tuple[str, str], dict[str, Any]] = {}
        for metric in metrics:
            scale, higher = _scale(metric), METRICS.get(metric).higher_is_better
            scored = {m: means.loc[(m, metric)] for m in methods if (m, metric) in means.index}
            ranked = {m: v for m, v in scored.items() if m != "real_vs_real"}
            best = (max if higher else min)(ranked, key=lambda m: ranked[m]["value"]) if ranked else None
            for method, v in scored.items():
                half = (v["ci_high"] - v["ci_low"]) / 2 * scale if math.isfinite(v["ci_low"]) else None
                b = ranked.get(best) if best else None
                tie = (
                    method != best
                    and method in ranked
                    and b is not None
                    and all(math.isfinite(x) for x in (v["ci_low"], v["ci_high"], b["ci_low"], b["ci_high"]))
                    and v["ci_low"] <= b["ci_high"]
                    and b["ci_low"] <= v["ci_high"]
                )
                cells[(method, metric)] = {
                    "shown": f"{v['value'] * scale:.4g}" + (f" ± {half:.2g}" if half is not None else ""),
                    "mark": "best" if method == best else ("tie" if tie else ""),
                    "odd": (method, metric) in odd,
                }
        info = {
            m: {
                "parameters": speed.loc[(speed["method"] == m) & (speed["metric"] == "parameters"), "value"],
                "images_per_s": speed.loc[
                    (speed["method"] == m) & (speed["metric"] == "images_per_s_b1") & (speed["direction"] == direction),
                    "value",
                ],
            }
            for m in methods
        }
        boards.append(
            {
                "direction": direction,
                "columns": [
                    f"{m.upper()}{f' x{_scale(m):g}' if _scale(m) != 1 else ''} "
                    f"{'↑' if METRICS.get(m).higher_is_better else '↓'}"
                    for m in metrics
                ],
                "rows": [
                    {
                        "method": m,
                        "cells": [cells.get((m, metric)) for metric in metrics],
                        "parameters": f"{info[m]['parameters'].iloc[0]:,.0f}" if len(info[m]["parameters"]) else "",
                        "images_per_s": f"{info[m]['images_per_s'].mean():.3g}" if len(info[m]["images_per_s"]) else "",
                    }
                    for m in methods
                ],
                "provenance": usual,
                "n": sorted({int(n) for n in rows["n"]}),
                "odd": bool(odd),
            }
        )
    return boards


def build_report(result: RunResult, directory: Path, paper: dict[str, Any] | None = None) -> Path:
    """Write `directory/index.html` for `result`; sample grids are read from the paths it records.

    `paper` (from `bench reproduce`): {"title", "source", "protocol", "rows"} of a paper table beside the run.
    """
    rows, speed = [], []
    for row in result.rows:
        scale = _scale(row.metric)
        label = f"{row.metric.upper()} x{scale:g}" if scale != 1 else row.metric.upper()
        interval = "" if math.isnan(row.ci_low) else f"[{row.ci_low * scale:.4g}, {row.ci_high * scale:.4g}]"
        shown = {**row.__dict__, "metric_label": label, "shown": f"{row.value * scale:.4g}", "interval": interval}
        (rows if _quality(row.metric) else speed).append(shown)
    glossary = [
        {
            "name": name,
            "description": METRICS.description(name),
            "better": _direction_word(name),
            "ideal": METRICS.get(name).ideal,
            "notes": " ".join(METRICS.get(name).notes.split()),
        }
        for name in dict.fromkeys(r["metric"] for r in rows)
    ]
    grids = {}
    for name, info in result.methods.items():
        grid = info.get("sample_grid")
        if grid and Path(grid).is_file():
            grids[name] = _png(Path(grid))
    figure = metrics_figure(result)
    html = _TEMPLATES.get_template("report.html.j2").render(
        r=result,
        rows=rows,
        speed=speed,
        glossary=glossary,
        seeds_summary=seeds_summary(result),
        ci_level=next((r.ci_level for r in result.rows if not math.isnan(r.ci_level)), None),
        nonstandard=any(not row.standard for row in result.rows),
        extractors=sorted({row.extractor for row in result.rows if not row.standard}),
        failed={n: i for n, i in result.methods.items() if i.get("status") == "failed"},
        plot=_png(figure) if figure is not None else None,
        grids=grids,
        config_yaml=yaml.safe_dump(result.config, sort_keys=False),
        paper=paper,
        leaderboards=leaderboards(result),
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "index.html"
    path.write_text(html)
    return path
