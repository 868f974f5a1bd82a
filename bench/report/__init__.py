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
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402

from bench.files import write_atomically  # noqa: E402
from bench.registry import METRICS  # noqa: E402
from bench.results import REFERENCE_ROWS, RunResult  # noqa: E402
from bench.weights import NON_STANDARD  # noqa: E402

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    # every template here writes HTML that holds names users and file names chose (methods, experiments, skipped
    # files): always escaped, not by file extension, which a renamed template would silently switch off
    autoescape=True,
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


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    """Quality rows of `table` with value and interval bounds at report scale (KID x100), seeds averaged."""
    table = table[table["metric"].map(_quality).astype(bool)]
    scale = table["metric"].map(_scale).astype(float)
    shown = table.assign(value=table["value"] * scale, low=table["ci_low"] * scale, high=table["ci_high"] * scale)
    return shown.groupby(["method", "direction", "metric"], sort=False, as_index=False)[["value", "low", "high"]].mean()


def _axis_label(metric: str) -> str:
    scale = _scale(metric)
    return f"{metric.upper()}{f' x{scale:g}' if scale != 1 else ''} ({_direction_word(metric)})"


def _spans_orders(values: pd.Series) -> bool:
    """Log scale where every value is positive and they span more than a factor 20."""
    values = values.dropna()
    return bool(len(values) > 1 and (values > 0).all() and values.max() / values.min() > 20)


def _error(part: pd.DataFrame, value: str, low: str, high: str) -> np.ndarray | None:
    """Asymmetric error bar lengths (2, n) from interval bounds; None when no row has an interval."""
    if part[low].isna().all():
        return None
    return np.stack([(part[value] - part[low]).fillna(0), (part[high] - part[value]).fillna(0)]).clip(0)


def points_figure(result: RunResult) -> plt.Figure | None:
    """One panel per quality metric: a point per method and direction with its interval; log scale where the
    values span orders of magnitude, so that no method is flattened to zero by another's large value."""
    full = result.table()
    table = _shown(full)
    if table.empty:
        return None
    metrics = list(dict.fromkeys(table["metric"]))
    methods = list(dict.fromkeys(table["method"]))
    directions = list(dict.fromkeys(table["direction"]))
    columns = min(3, len(metrics))
    rows = -(-len(metrics) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.6 * columns, 0.45 * len(methods) * rows + 1.2 * rows), squeeze=False
    )
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    colours = dict(zip(directions, sns.color_palette("deep", len(directions))))
    for ax, metric in zip(axes.flat, metrics):
        part = table[table["metric"] == metric]
        for offset, direction in zip(np.linspace(-0.15, 0.15, len(directions)), directions):
            d = part[part["direction"] == direction]
            y = [methods.index(m) + offset for m in d["method"]]
            ax.errorbar(
                d["value"],
                y,
                xerr=_error(d, "value", "low", "high"),
                fmt="o",
                capsize=3,
                color=colours[direction],
                label=direction,
            )
        if _spans_orders(pd.concat([part["value"], part["low"]])):
            ax.set_xscale("log")
        ax.set_yticks(range(len(methods)), methods)
        ax.invert_yaxis()
        ax.set_xlabel(_axis_label(metric))
        ax.grid(axis="x", alpha=0.3)
        if not full.loc[full["metric"] == metric, "standard"].all():
            ax.set_title(NON_STANDARD, color="#9a6700", fontsize=9)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def tradeoff_figure(result: RunResult) -> plt.Figure | None:
    """FID against LPIPS diversity and against images/s: a point per method and direction, intervals as bars.

    None when FID or both partners are missing."""
    table = result.table()
    quality = _shown(table)
    fid = quality[quality["metric"] == "fid"].set_index(["method", "direction"])
    partners = []
    diversity = quality[quality["metric"] == "lpips_diversity"].set_index(["method", "direction"])
    if not diversity.empty:
        partners.append(("LPIPS diversity (higher is better)", diversity, False))
    speed = table[table["metric"] == "images_per_s_b1"].set_index(["method", "direction"])
    if not speed.empty:
        speed = speed.assign(low=np.nan, high=np.nan)
        partners.append(("images/s at batch 1 (log scale)", speed, True))
    if fid.empty or not partners:
        return None
    methods = list(dict.fromkeys(m for m, _ in fid.index))
    colours = dict(zip(methods, sns.color_palette("deep", len(methods))))
    markers = {"a2b": "o", "b2a": "s"}
    fig, axes = plt.subplots(1, len(partners), figsize=(5.2 * len(partners), 3.9), squeeze=False)
    for ax, (label, partner, log_x) in zip(axes.flat, partners):
        both = fid.add_suffix("_fid").join(partner.add_suffix("_x"), how="inner").reset_index()
        for _, row in both.iterrows():
            ax.errorbar(
                row["value_x"],
                row["value_fid"],
                yerr=_error(both.loc[[_]], "value_fid", "low_fid", "high_fid"),
                xerr=_error(both.loc[[_]], "value_x", "low_x", "high_x"),
                fmt=markers.get(row["direction"], "o"),
                color=colours[row["method"]],
                capsize=3,
            )
            ax.annotate(
                f"{row['method']} {row['direction']}",
                (row["value_x"], row["value_fid"]),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
            )
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap within a decade
        if _spans_orders(both["value_fid"]):
            ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(_axis_label("fid"))
        ax.grid(alpha=0.3)
    if not table.query("metric == 'fid'")["standard"].all():
        fig.suptitle(f"FID: {NON_STANDARD}", color="#9a6700", fontsize=9)
    fig.tight_layout()
    return fig


def loss_figure(result: RunResult) -> plt.Figure | None:
    """Training losses per method (the results document's thinned curves), one panel per method."""
    curves = {name: (info.get("train") or {}).get("loss_curve") or {} for name, info in result.methods.items()}
    curves = {name: c for name, c in curves.items() if len(c.get("step", ())) > 0}
    if not curves:
        return None
    columns = min(3, len(curves))
    rows = -(-len(curves) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(curves) :]:
        ax.set_visible(False)
    for ax, (name, curve) in zip(axes.flat, curves.items()):
        marker = "o" if len(curve["step"]) < 10 else None
        for loss, values in curve.items():
            if loss != "step":
                shown = [math.nan if v is None else v for v in values]  # a loss not yet reported
                ax.plot(curve["step"], shown, marker=marker, label=loss, linewidth=1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
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
    and images/s; the provenance stated once per group of columns, with a marker on a cell whose provenance
    differs from the rest of its column.
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
        # each column's provenance (extractor | protocol) is its most common one; a cell with another is marked
        provenance = rows.assign(key=rows["extractor"] + " | " + rows["protocol"].str.split(":").str[0])
        usual = provenance.groupby("metric", sort=False)["key"].agg(lambda keys: keys.mode().iloc[0])
        odd = set(
            map(
                tuple, provenance.loc[provenance["key"] != provenance["metric"].map(usual), ["method", "metric"]].values
            )
        )
        by_key: dict[str, list[str]] = {}
        for metric, key in usual.items():
            by_key.setdefault(key, []).append(metric.upper())
        methods = [m for m in dict.fromkeys(rows["method"]) if m not in REFERENCE_ROWS]
        methods += [m for m in REFERENCE_ROWS if m in set(rows["method"])]  # last, in this order
        cells: dict[tuple[str, str], dict[str, Any]] = {}
        for metric in metrics:
            scale, higher = _scale(metric), METRICS.get(metric).higher_is_better
            scored = {m: means.loc[(m, metric)] for m in methods if (m, metric) in means.index}
            ranked = {m: v for m, v in scored.items() if m not in REFERENCE_ROWS}
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
                "provenance": "; ".join(f"{', '.join(names)}: {key}" for key, names in by_key.items()),
                "n": sorted({int(n) for n in rows["n"]}),
                "odd": bool(odd),
            }
        )
    return boards


def _images(result: RunResult, directory: Path, suffix: str) -> dict[str, dict[str, str]]:
    """{direction: {method: base64 PNG}} of the methods' `<direction>_<suffix>` sample images that exist."""
    found: dict[str, dict[str, str]] = {}
    for name, info in result.methods.items():
        for key, relative in (info.get("images") or {}).items():
            direction, _, kind = key.partition("_")
            if kind == suffix and (directory / relative).is_file():
                found.setdefault(direction, {})[name] = _png(directory / relative)
    return found


def side_by_side(result: RunResult, directory: Path) -> list[dict[str, Any]]:
    """Per direction: the test inputs once, then each method's translations of the same inputs (one row per
    style for multimodal methods)."""
    inputs, sides = _images(result, directory, "inputs"), _images(result, directory, "side")
    return [
        {
            "direction": direction,
            "inputs": next(iter(inputs.get(direction, {}).values()), None),
            "rows": [{"method": m, "png": png, "multimodal": _is_multimodal(result, m)} for m, png in rows.items()],
        }
        for direction, rows in sides.items()
    ]


def consistency_strips(result: RunResult, directory: Path) -> list[dict[str, str]]:
    """Per multimodal method and direction: augmented copies of one input and their translations under one style."""
    strips = _images(result, directory, "consistency")
    return [{"direction": d, "method": m, "png": png} for d, by in strips.items() for m, png in by.items()]


def _is_multimodal(result: RunResult, method: str) -> bool:
    images = result.methods.get(method, {}).get("images") or {}
    return any(key.endswith("_consistency") for key in images)


def small_n(result: RunResult) -> int | None:
    """The test-set size when it is small enough that FID's estimator bias dominates (below 2,000 images)."""
    n = [row.n for row in result.rows if row.metric == "fid" and row.method not in REFERENCE_ROWS]
    return max(n) if n and max(n) < 2000 else None


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
    figures = [
        {"id": name, "title": title, "png": _png(figure)}
        for name, title, figure in (
            ("tradeoffs", "Quality vs diversity and speed", tradeoff_figure(result)),
            ("metrics", "Every metric, with intervals", points_figure(result)),
            ("losses", "Training losses", loss_figure(result)),
        )
        if figure is not None
    ]
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
        figures=figures,
        grids=grids,
        side_by_side=side_by_side(result, directory),
        consistency=consistency_strips(result, directory),
        small_n=small_n(result),
        config_yaml=yaml.safe_dump(result.config, sort_keys=False),
        paper=paper,
        leaderboards=leaderboards(result),
    )
    return write_atomically(directory / "index.html", lambda tmp: tmp.write_text(html))
