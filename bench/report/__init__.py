"""A single self-contained HTML report (images inline) built from a run's results document."""

from __future__ import annotations

import base64
import io
from pathlib import Path

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


def metrics_figure(result: RunResult) -> plt.Figure | None:
    """One bar chart per metric: methods on the x axis, one bar per direction."""
    table = result.table()
    if table.empty:
        return None
    table["shown"] = [v * _scale(m) for v, m in zip(table["value"], table["metric"])]
    metrics = list(dict.fromkeys(table["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        part = table[table["metric"] == metric]
        sns.barplot(data=part, x="method", y="shown", hue="direction", ax=ax)
        scale = _scale(metric)
        ax.set_ylabel(f"{metric.upper()}{f' x{scale:g}' if scale != 1 else ''} (lower is better)")
        ax.set_xlabel("")
        if not part["standard"].all():
            ax.set_title(f"{metric.upper()}: {NON_STANDARD}", color="#9a6700")
    fig.tight_layout()
    return fig


def build_report(result: RunResult, directory: Path) -> Path:
    """Write `directory/index.html` for `result`; sample grids are read from the paths it records."""
    rows = []
    for row in result.rows:
        scale = _scale(row.metric)
        label = f"{row.metric.upper()} x{scale:g}" if scale != 1 else row.metric.upper()
        rows.append({**row.__dict__, "metric_label": label, "shown": f"{row.value * scale:.4g}"})
    grids = {}
    for name, info in result.methods.items():
        grid = info.get("sample_grid")
        if grid and Path(grid).is_file():
            grids[name] = _png(Path(grid))
    figure = metrics_figure(result)
    html = _TEMPLATES.get_template("report.html.j2").render(
        r=result,
        rows=rows,
        nonstandard=any(not row.standard for row in result.rows),
        extractors=sorted({row.extractor for row in result.rows if not row.standard}),
        failed={n: i for n, i in result.methods.items() if i.get("status") == "failed"},
        plot=_png(figure) if figure is not None else None,
        grids=grids,
        config_yaml=yaml.safe_dump(result.config, sort_keys=False),
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "index.html"
    path.write_text(html)
    return path
