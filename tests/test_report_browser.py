"""The report as a reader sees it: a tiny `bench run`'s index.html in headless Chromium (Debian's `chromium`,
driven by Playwright), with no console errors, every image decoded, and the leaderboard, a figure and a
side-by-side grid visible above the fold of a 1400x900 window. The screenshot is kept for CI:
ci-artifacts/report-screenshot.png (the window) and report-full.png (the whole page) at the repository root,
or under $BENCH_ARTIFACTS_DIR.

Chromium: $BENCH_CHROMIUM, else `chromium` (or chromium-browser, google-chrome) on PATH, else the test session
installs Debian's `chromium` with apt-get (as root or through passwordless sudo); the test is skipped, with the
reason, when none of that works. Playwright's own browser download is not used (it needs the internet).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLD = {"width": 1400, "height": 900}  # the window; "above the fold" = within its first 900 pixels
SHOWN = 100  # pixels of an element (or all of it, if shorter) that must lie above the fold
APT_TIMEOUT_S = 900
RUN = [
    "run",
    "--methods",
    "cyclegan,gnr",  # one deterministic and one multimodal method: grids with several styles
    "--steps",
    "1",
    "--data-option",
    "size=32",
    "--data-option",
    "n_train=16",
    "--data-option",
    "n_test=8",
    "--metrics",
    "fid,lpips_diversity,throughput",  # quality vs diversity and quality vs speed have their numbers
    "--set=eval.styles=3",
    "--set=eval.throughput_iterations=2",
    "--set=eval.throughput_batch=2",
    "--set=eval.bootstrap=20",
    "--no-track",
]


def _artifacts_dir() -> Path:
    path = Path(os.environ.get("BENCH_ARTIFACTS_DIR") or ROOT / "ci-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _find_chromium() -> str | None:
    configured = os.environ.get("BENCH_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _install_chromium() -> str:
    """apt-get install chromium; returns why not when it cannot (empty string when it worked)."""
    if not shutil.which("apt-get"):
        return "no apt-get on this machine"
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        return "not root and no passwordless sudo to apt-get install chromium"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    try:
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT_S)
        if done.returncode != 0:  # a fresh image may have no package lists yet
            subprocess.run([*prefix, "apt-get", "update"], capture_output=True, env=env, timeout=APT_TIMEOUT_S)
            done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"apt-get install chromium took more than {APT_TIMEOUT_S} s"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return "apt-get install chromium failed: " + " | ".join(tail)
    return ""


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a Chromium executable, installed with apt-get when missing."""
    found = _find_chromium()
    if found is None:
        why = _install_chromium()
        found = _find_chromium()
        if found is None:
            pytest.skip(f"no Chromium for the report screenshot test: {why or 'chromium not on PATH after apt-get'}")
    return found


@pytest.fixture(scope="session")
def report_page(tmp_path_factory: pytest.TempPathFactory, private_cache: Path) -> Path:
    """index.html of a tiny `bench run` (two methods, one step), found from the path the run ends with."""
    cwd = tmp_path_factory.mktemp("browser-run")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "bench", *RUN], cwd=cwd, capture_output=True, text=True, env=env, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reports = [line.split(":", 1)[1].strip() for line in done.stdout.splitlines() if line.startswith("report:")]
    assert reports, f"`bench run` did not end with the report's path:\n{done.stdout[-2000:]}"
    page = cwd / reports[-1]
    assert page.name == "index.html" and page.is_file(), page
    return page


def _above_the_fold(box: dict[str, float] | None) -> bool:
    if box is None:
        return False
    return box["y"] >= 0 and box["y"] + min(box["height"], SHOWN) <= FOLD["height"]


@pytest.mark.slow
def test_the_report_shows_leaderboard_figure_and_grid_above_the_fold(chromium: str, report_page: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")
    artifacts = _artifacts_dir()
    problems: list[str] = []  # console errors, uncaught exceptions, failed loads
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
        except Exception as error:  # a Chromium Playwright cannot drive is an environment problem
            pytest.skip(f"Playwright cannot start {chromium}: {str(error).splitlines()[0]}")
        try:
            page = browser.new_page(viewport=FOLD)
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"failed to load {r.url[:120]}: {r.failure}"))
            page.goto(report_page.as_uri(), wait_until="load")
            # saved before any assertion, so a failing run leaves its picture too
            page.screenshot(path=str(artifacts / "report-screenshot.png"))
            page.screenshot(path=str(artifacts / "report-full.png"), full_page=True)
            broken = page.evaluate(
                "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                ".map(i => (i.className || 'img') + ' ' + (i.alt || i.src.slice(0, 60)))"
            )
            boxes = {}
            visible = {}
            for name, selector in (
                ("leaderboard", "table.leaderboard"),
                ("figure", "img.figure"),
                ("side-by-side grid", ".side-by-side"),
            ):
                first = page.locator(selector).first
                found = page.locator(selector).count() > 0
                visible[name] = found and first.is_visible()
                boxes[name] = (selector, first.bounding_box() if found else None)
            leaderboard_text = page.locator("table.leaderboard").first.inner_text()
        finally:
            browser.close()

    assert not problems, "the report logged errors in Chromium:\n" + "\n".join(problems)
    assert not broken, f"images that did not decode: {broken}"
    assert "cyclegan" in leaderboard_text and "gnr" in leaderboard_text, leaderboard_text
    for name, (selector, box) in boxes.items():
        assert visible[name], f"no visible {name} ({selector}) in the report"
        assert _above_the_fold(box), (
            f"the {name} ({selector}) is not above the fold of a {FOLD['width']}x{FOLD['height']} window: "
            f"its box is {box}; see {artifacts / 'report-screenshot.png'}"
        )
