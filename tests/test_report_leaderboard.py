"""The report's leaderboard: best per column, ties within intervals, the noise floor last, strings escaped."""

from __future__ import annotations

from pathlib import Path

from bench.report import build_report, leaderboards
from bench.results import ResultRow, RunResult


def _row(method: str, metric: str, value: float, low: float, high: float, direction: str = "a2b", **kw) -> ResultRow:
    fields = {
        "run_id": "r",
        "method": method,
        "preset": "tiny",
        "dataset": "toyfaces",
        "direction": direction,
        "metric": metric,
        "value": value,
        "n": 8,
        "n_ref": 8,
        "reference": "testB",
        "extractor": "inception-x",
        "weights_sha256": "ab",
        "preprocessing": "p",
        "protocol": "harness: details",
        "standard": True,
        "seed": 0,
        "ci_low": low,
        "ci_high": high,
        "ci_level": 0.95,
    }
    return ResultRow(**{**fields, **kw})


def _result(rows: list[ResultRow]) -> RunResult:
    dataset = {"name": "toyfaces", "root": "datasets/toyfaces", "image_size": 32, "counts": {"testA": 8}, "notes": []}
    return RunResult("r", "now", "python -m bench run", {"seed": 0}, {}, {**dataset, "skipped": []}, {}, rows)


def test_the_best_and_the_ties_within_intervals_are_marked() -> None:
    rows = [
        _row("identity", "fid", 95.0, float("nan"), float("nan")),  # no translation: listed last, never "best"
        _row("cyclegan", "fid", 100.0, 90.0, 110.0),
        _row("gnr", "fid", 105.0, 101.0, 109.0),  # overlaps cyclegan's interval: a tie
        _row("<b>mine</b>", "fid", 150.0, 140.0, 160.0),  # clearly worse
        _row("real_vs_real", "fid", 20.0, 15.0, 25.0),  # the noise floor is never "best"
        _row("cyclegan", "lpips_diversity", 0.1, 0.05, 0.15, extractor="lpips-y"),  # higher is better
        _row("gnr", "lpips_diversity", 0.4, 0.35, 0.45, extractor="lpips-y"),
        _row("<b>mine</b>", "lpips_diversity", 0.2, 0.15, 0.25, extractor="lpips-z"),  # not its column's
        _row("cyclegan", "parameters", 1234567.0, float("nan"), float("nan")),
        _row("cyclegan", "fid", 200.0, 190.0, 210.0, direction="b2a"),
    ]
    boards = {b["direction"]: b for b in leaderboards(_result(rows))}
    a2b = boards["a2b"]
    assert [r["method"] for r in a2b["rows"]] == ["cyclegan", "gnr", "<b>mine</b>", "identity", "real_vs_real"]
    fid = {r["method"]: r["cells"][0] for r in a2b["rows"]}
    assert fid["cyclegan"]["mark"] == "best" and fid["gnr"]["mark"] == "tie" and fid["<b>mine</b>"]["mark"] == ""
    assert fid["real_vs_real"]["mark"] == fid["identity"]["mark"] == "" and fid["cyclegan"]["shown"] == "100 ± 10"
    lpips = {r["method"]: r["cells"][1] for r in a2b["rows"]}
    assert lpips["gnr"]["mark"] == "best" and lpips["cyclegan"]["mark"] == ""  # higher is better, no overlap
    assert lpips["<b>mine</b>"]["odd"] and not lpips["gnr"]["odd"] and not fid["gnr"]["odd"]  # per column
    assert a2b["provenance"] == "FID: inception-x | harness; LPIPS_DIVERSITY: lpips-y | harness"
    assert a2b["rows"][0]["parameters"] == "1,234,567" and set(boards) == {"a2b", "b2a"}


def test_the_report_shows_the_leaderboard_first_and_escapes_names(tmp_path: Path) -> None:
    rows = [_row("cyclegan", "fid", 100.0, 90.0, 110.0), _row("<script>alert(1)</script>", "fid", 120.0, 119, 121)]
    html = build_report(_result(rows), tmp_path).read_text()
    assert html.index("Leaderboard a2b") < html.index("<h2>Results</h2>")
    folded = html[html.index("<h2>Results</h2>") :]
    assert folded.index("<details><summary>Every number") < folded.index("<th>weights sha256</th>")  # folded away
    assert '<a href="results.csv">results.csv</a>' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
