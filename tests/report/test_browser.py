"""The report as people see it: the HTML file opened in a real headless Chromium.

The browser is Debian's ``chromium`` package (``make test`` installs it when it is
missing and it runs as root, as CI does), driven by Playwright over its pipe; Playwright
never downloads a browser of its own here. Without Chromium the test fails under
``make test`` and in CI (``MODZY_RETRAIN_REQUIRE_BROWSER=1``, or ``CI`` set), and is
skipped, saying why, only when pytest is run by hand.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import FeedbackReport, feedback_report

# What this machine's closed network needs: no background requests, no QUIC, no GPU.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _required() -> bool:
    flag = os.environ.get("MODZY_RETRAIN_REQUIRE_BROWSER", "").strip().lower()
    ci = os.environ.get("CI", "").strip().lower()
    return flag not in ("", "0", "false", "no") or ci not in ("", "0", "false", "no")


def _unavailable(why: str) -> None:
    if _required():
        pytest.fail(f"{why} (required here: make test, or CI)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        _unavailable(
            "no Chromium: install Debian's package (apt-get install chromium); "
            "make test does when run as root"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("no playwright: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def written(feedback: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("page") / "feedback.html"
    feedback_report(feedback[1]).write_html(str(path))
    return path


def non_blank(png: bytes) -> tuple[int, float]:
    """How many colours a screenshot has, and the share of its pixels that are not the
    background (its most common colour)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    background = max(colours)[0] if colours else 0
    pixels = image.width * image.height
    return len(colours), 1 - background / pixels


def test_the_page_opens_offline_and_every_chart_renders(
    browser: Any, written: Path, feedback: tuple[Any, str]
) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
    page = context.new_page()
    requests: list[str] = []
    failed: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed.append(f"{r.url[:80]}: {r.failure}"))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        page.goto(written.as_uri(), wait_until="load")
        # The page asked for nothing but itself (its charts are inside it).
        assert requests == [written.as_uri()]
        assert failed == []
        assert problems == []
        images = page.evaluate(
            "Array.from(document.images, i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        report: FeedbackReport = feedback_report(feedback[1])
        expected = sum(2 + bool(m.confusion.samples) for m in report.models) + 2
        assert len(images) == expected
        assert all(done and width > 100 and height > 50 for done, width, height in images)
        charts = page.locator("img.chart")
        for n in range(charts.count()):
            colours, drawn = non_blank(charts.nth(n).screenshot())
            assert colours > 8, f"chart {n} is blank"
            assert drawn > 0.02, f"chart {n} is blank"
        # Nothing wider than the window: wide tables scroll in their own box.
        width, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert width <= inner
        colours, drawn = non_blank(page.screenshot(full_page=True))
        assert colours > 8
        assert drawn > 0.05
    finally:
        context.close()
