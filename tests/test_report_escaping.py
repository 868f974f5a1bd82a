"""Every string a user or a file name puts into a results document reaches the HTML report escaped."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from markupsafe import escape
from PIL import Image

from bench.report import build_report
from bench.results import ResultRow, RunResult

HOSTILE = "<img src=x onerror=alert(1)>"
BREAKOUT = "\"'><script>alert(2)</script>"  # leaves an attribute, then opens a tag


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _document(tmp_path: Path) -> RunResult:
    """A run of two methods named by the user, one failed with a message that quotes a file name, on a dataset
    with an unreadable file named like markup; the names reach tables, headings, alt texts and the config."""
    label, other = f"mine {HOSTILE}", f"theirs {BREAKOUT}"
    png = tmp_path / "samples" / "side.png"
    png.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(png)
    skipped = str(tmp_path / "data" / "testA" / f"{HOSTILE}.png")
    rows = [
        ResultRow(
            "run",
            label,
            f"preset {HOSTILE}",
            "toyfaces",
            "a2b",
            metric,
            value,
            8,
            8,
            f"testB {HOSTILE}",
            f"extractor {HOSTILE}",
            "0" * 64,
            f"fake: files of /tmp/{HOSTILE}",
            f"harness {BREAKOUT}",
            False,
            0,
            value * 0.9,
            value * 1.1,
            0.95,
        )
        for metric, value in (("fid", 40.0), ("kid", 0.01))
    ]
    info = {"preset": "translations", "status": "ok", "error": None, "train": None, "parameters": {}}
    info |= {"pretrained": {"vgg": {"label": f"weights {HOSTILE}", "standard": False}}, "mlflow_run_id": HOSTILE}
    info |= {"images": {"a2b_side": "samples/side.png", "a2b_inputs": "samples/side.png"}, "sample_grid": str(png)}
    failed = {**info, "status": "failed", "error": f"could not read {skipped}", "images": {}, "sample_grid": None}
    return RunResult(
        run_id="20260101-000000-toyfaces-beef",
        created="2026-01-01T00:00:00+00:00",
        command=f"bench eval --translations {HOSTILE} --name '{label}' --experiment '{BREAKOUT}'",
        config={"seed": 0, "experiment": f"exp {HOSTILE}", "name": label},
        environment={"i2i-bench git commit": f"abc {HOSTILE}"},
        dataset={
            "name": f"toyfaces {HOSTILE}",
            "root": str(tmp_path / "data" / HOSTILE),
            "image_size": 32,
            "counts": {f"testA {HOSTILE}": 8},
            "notes": [f"note {HOSTILE}"],
            "skipped": [{"path": skipped, "reason": f"cannot identify {HOSTILE}", "kind": "corrupt"}],
        },
        methods={label: info, other: failed},
        rows=rows,
    )


def test_user_and_file_names_are_escaped_in_the_report(tmp_path: Path) -> None:
    """No markup from a method label, the experiment, the command line or a skipped file's name survives into
    index.html; each shows as text."""
    result = _document(tmp_path)
    page = build_report(result, tmp_path).read_text()
    assert HOSTILE not in page and "<script>" not in page
    escaped = str(escape(HOSTILE))
    assert escaped == "&lt;img src=x onerror=alert(1)&gt;"
    assert f"<code>{escape(result.dataset['skipped'][0]['path'])}</code>" in page  # the skipped file
    assert f"<td>mine {escaped}</td>" in page  # the method label in the tables
    assert escape(f"experiment: exp {HOSTILE}") in page  # the experiment, in the configuration
    assert f"<code>{escape(result.command)}</code>" in page
    assert page.count(escaped) >= 20  # each place the names are shown
    parser = _Tags()
    parser.feed(page)
    assert "script" not in {tag for tag, _ in parser.tags}
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(images) >= 3  # the side-by-side inputs and translations, the sample grid
    for attrs in images:  # nothing broke out of an attribute: only the report's own attributes, inline images
        assert set(attrs) <= {"class", "alt", "src", "style"} and attrs["src"].startswith("data:image/png;base64,")
    assert any(attrs["alt"].startswith(f"mine {HOSTILE}") for attrs in images)  # the alt text reads as the label
    assert f"<b>theirs {escape(BREAKOUT)} failed:</b>" in page  # quotes too, so no attribute could be left
