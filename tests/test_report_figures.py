"""The report's comparison images and figures: same inputs for every method, scales that show every method,
loss curves, and texts that say what is true of the run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.evaluate.extract import LpipsDistance, StyleStatistics
from bench.evaluate.generate import Generation
from bench.evaluate.panel import reference_panel
from bench.evaluate.samples import SIDE_INPUTS, SIDE_STYLES, STRIP_COPIES, write_samples
from bench.report import build_report, loss_figure, points_figure, side_by_side, tradeoff_figure
from bench.results import thin_curve
from bench.track import LossLog, NullRun
from bench.weights import resolve_weights
from tests.test_evaluation import _evaluator
from tests.test_report_leaderboard import _result, _row


def _tiles(path: Path, size: int) -> torch.Tensor:
    """(rows * columns, 3, size, size) uint8 tiles of an unpadded grid PNG, row-major."""
    grid = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    rows, columns = grid.shape[1] // size, grid.shape[2] // size
    return grid.view(3, rows, size, columns, size).permute(1, 3, 0, 2, 4).reshape(-1, 3, size, size)


def test_samples_show_the_scored_translations_and_change_no_score(toyfaces_small, tmp_path: Path, private_cache):
    """A unimodal row holds exactly the translations FID scored; a multimodal method gets a row per style and a
    consistency strip; writing them leaves every metric value unchanged (they draw from their own stream)."""
    panel = {t.name: t for t in reference_panel(toyfaces_small)}
    metrics, fast = ["kid", "lpips_diversity"], {"bootstrap": 0}  # FID's jackknife alone would take minutes
    a2b = ("a2b",)  # the grids checked below; b2a's are written by the same code
    for name in ("identity", "renderer"):
        plain = _evaluator(toyfaces_small, None, metrics, **fast).evaluate(panel[name], "run", "", 0, a2b)
        with_samples = _evaluator(toyfaces_small, None, metrics, **fast).evaluate(
            panel[name], "run", "", 0, a2b, samples_dir=tmp_path / name
        )
        assert plain and all(r.direction == "a2b" for r in plain)
        assert [r.value for r in plain] == [r.value for r in with_samples]
    size, n = toyfaces_small.image_size, min(SIDE_INPUTS, 8)
    inputs = toyfaces_small.split("test", "A").load_all(size, n)
    assert torch.equal(_tiles(tmp_path / "identity" / "a2b_inputs.png", size), inputs)
    assert torch.equal(_tiles(tmp_path / "identity" / "a2b_side.png", size), inputs)  # the identity's outputs
    assert not (tmp_path / "identity" / "a2b_consistency.png").exists()  # unimodal: no styles to hold fixed
    renderer = _tiles(tmp_path / "renderer" / "a2b_side.png", size)
    assert renderer.shape[0] == SIDE_STYLES * n
    rows = renderer.view(SIDE_STYLES, n, *renderer.shape[1:]).float()
    assert (rows[0] - rows[1]).abs().mean() > 1  # another style per row
    strip = _tiles(tmp_path / "renderer" / "a2b_consistency.png", size)
    assert strip.shape[0] == 2 * STRIP_COPIES


def test_write_samples_is_a_function_of_the_seed(toyfaces_small, tmp_path: Path) -> None:
    renderer = {t.name: t for t in reference_panel(toyfaces_small)}["renderer"]
    inputs = toyfaces_small.split("test", "A").load_all(toyfaces_small.image_size)
    for name, seed in (("first", 1), ("again", 1), ("other", 2)):
        write_samples(Generation(renderer, inputs, "a2b", toyfaces_small.image_size, seed), tmp_path / name)
    read = {n: (tmp_path / n / "a2b_side.png").read_bytes() for n in ("first", "again", "other")}
    assert read["first"] == read["again"] != read["other"]


def _sampled_result(tmp_path: Path) -> tuple:
    rows = [_row("cyclegan", "fid", 100.0, 90.0, 110.0), _row("gnr", "fid", 90.0, 80.0, 100.0)]
    result = _result(rows)
    tile = np.zeros((8, 8 * 3, 3), np.uint8)
    for method, kinds in (("cyclegan", ("inputs", "side")), ("gnr", ("inputs", "side", "consistency"))):
        images = {}
        for kind in kinds:
            relative = f"samples/{method}/a2b_{kind}.png"
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(tile).save(tmp_path / relative)
            images[f"a2b_{kind}"] = relative
        result.methods[method] = {
            **{"images": images, "status": "ok", "preset": "tiny", "train": None, "parameters": {}},
            **{"mlflow_run_id": None, "error": None},
        }
    return result, rows


def test_the_report_shows_every_method_on_the_same_inputs(tmp_path: Path) -> None:
    result, _ = _sampled_result(tmp_path)
    grids = side_by_side(result, tmp_path)
    assert [g["direction"] for g in grids] == ["a2b"] and grids[0]["inputs"] is not None
    assert [(r["method"], r["multimodal"]) for r in grids[0]["rows"]] == [("cyclegan", False), ("gnr", True)]
    html = build_report(result, tmp_path).read_text()
    grid = html[html.index('<figure class="side-by-side" id="side-a2b">') :]
    assert grid.index(">input<") < grid.index(">cyclegan") < grid.index(">gnr")
    assert '<figure class="consistency">' in html and 'id="leaderboard-a2b"' in html
    (tmp_path / "samples" / "gnr" / "a2b_side.png").unlink()  # a lost file drops its row, nothing else
    assert [r["method"] for r in side_by_side(result, tmp_path)[0]["rows"]] == ["cyclegan"]


def test_metric_points_use_a_log_scale_only_where_values_span_orders_of_magnitude() -> None:
    spread = _result([_row("a", "fid", 9510.0, 9000.0, 9900.0), _row("b", "fid", 12.0, 10.0, 14.0)])
    close = _result([_row("a", "kid", 0.02, -0.01, 0.05), _row("b", "kid", -0.001, -0.02, 0.01)])
    assert points_figure(spread).axes[0].get_xscale() == "log"
    assert points_figure(close).axes[0].get_xscale() == "linear"  # KID can be negative: no log scale


def test_quality_figures_pair_fid_with_diversity_and_speed() -> None:
    rows = [_row(m, "fid", v, v - 5, v + 5) for m, v in (("a", 50.0), ("b", 60.0))]
    assert tradeoff_figure(_result(rows)) is None  # nothing to plot FID against
    rows += [_row(m, "lpips_diversity", v, v - 0.01, v + 0.01) for m, v in (("a", 0.1), ("b", 0.3))]
    rows += [_row(m, "images_per_s_b1", v, math.nan, math.nan) for m, v in (("a", 3.0), ("b", 300.0))]
    figure = tradeoff_figure(_result(rows))
    diversity, speed = figure.axes
    assert diversity.get_xscale() == "linear" and speed.get_xscale() == "log"
    assert len(diversity.lines) >= 2 and "LPIPS" in diversity.get_xlabel()


def test_loss_curves_are_thinned_means_and_plotted_per_method() -> None:
    log = LossLog(NullRun(), every=1)
    for step in range(1000):
        log(step, {"G": float(step), **({"D": 1.0} if step >= 500 else {})})
    curve = thin_curve(log.curve(), max_points=300)
    assert len(curve["step"]) == 250 and curve["step"][:2] == [3, 7]  # runs of 4 consecutive means
    assert curve["G"][0] == pytest.approx(1.5) and curve["G"][-1] == pytest.approx(997.5)
    assert curve["D"][0] is None and curve["D"][-1] == 1.0  # a phase that had not started yet
    assert thin_curve({"step": [0, 1], "G": [2.0, 3.0]}) == {"step": [0, 1], "G": [2.0, 3.0]}  # short: as is
    result = _result([_row("a", "fid", 1.0, 0.5, 1.5)])
    assert loss_figure(result) is None
    result.methods = {"a": {"train": {"loss_curve": curve}}, "b": {"train": None}}
    assert [ax.get_title() for ax in loss_figure(result).axes if ax.get_visible()] == ["a"]


def test_the_small_sample_warning_states_the_runs_own_n(tmp_path: Path) -> None:
    small = build_report(_result([_row("a", "fid", 1.0, 0.5, 1.5)]), tmp_path / "small").read_text()
    large = build_report(_result([_row("a", "fid", 1.0, 0.5, 1.5, n=5000)]), tmp_path / "large").read_text()
    assert "With 8 test images most of an FID value" in small and "test images most of" not in large
    assert "100 test images" not in small


def test_stand_in_lpips_and_style_rows_name_the_tensors_they_ran(private_cache) -> None:
    """No row has an empty weights hash: a random stand-in trunk is identified by its tensors' sha256."""
    for network, extractor in (("alexnet", LpipsDistance), ("vgg16", StyleStatistics)):
        weights = resolve_weights(network, None, allow_standin=True)
        assert weights.sha256 == ""
        first, second = extractor(weights).weights_sha256, extractor(weights).weights_sha256
        assert len(first) == 64 and first == second  # the seeded random trunk is the same every time
