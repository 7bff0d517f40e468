"""Make docs/images/feedback-report.png: a sandbox dataset's feedback report, as Chromium
shows it (the picture in docs/deciding-when-to-retrain.md).

The dataset is built as a schedule would build it: three builds of a third of the
sandbox's history each, with a lag window, human labels from a label file, and votes
that change between the second build and the third. Rerun it after changing the
report:

    .venv/bin/python scripts/report_screenshot.py [--html feedback.html]

It needs the dev extra (matplotlib, playwright) and Debian's chromium (`make test`
installs it when run as root); nothing is fetched from the network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from modzy_retrain import ModzyClient, build, feedback_report, load_settings
from modzy_retrain.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images" / "feedback-report.png"
LAG = timedelta(days=2)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _build(sb: Sandbox, out: str, **settings: Any) -> None:
    given = {"base_url": sb.base_url, "out": out, "input_templates": sb.input_templates}
    loaded = load_settings(None, {**given, **settings})
    result = build(loaded, environ={"MODZY_API_KEY": sb.api_key}, transport=sb.transport())
    print(f"build: exit {result.exit_code}, {result.report.dataset}")


def _labels(sb: Sandbox, path: Path, limit: int = 80) -> str:
    """A person's labels (the hidden truth) for down-voted image inputs."""
    rows = ["job_id,input_name,label"]
    for job in sb.jobs:
        if job.model.kind != "image" or job.status in ("SUBMITTED", "IN_PROGRESS"):
            continue
        for item in job.inputs:
            if item.status == "SUCCESSFUL" and item.votes_down > item.votes_up:
                rows.append(f"{job.id},{item.name},{item.truth}")
    path.write_text("\n".join(rows[: limit + 1]) + "\n")
    return str(path)


def _change_votes(sb: Sandbox, low: datetime, high: datetime) -> None:
    """Users change their minds on a few recent inputs: three votes reset (their samples
    are retracted), three up-voted inputs down-voted too (relabelled: now a conflict)."""
    reset = flipped = 0
    with ModzyClient(
        api_key=sb.users[2].access_key, base_url=sb.base_url, transport=sb.transport()
    ) as client:
        for job in sb.jobs:
            if not low <= job.created_at < high:
                continue
            for item in job.inputs:
                up, down = sb.votes(job.id, item.name)
                if item.status != "SUCCESSFUL":
                    continue
                if down > 0 and up == 0 and reset < 3:
                    client.results.reset_vote(job.id, item.name)
                    reset += 1
                elif up == 1 and down == 0 and flipped < 3:
                    client.results.downvote(job.id, item.name)
                    flipped += 1


def make_dataset(folder: Path, *, seed: int, jobs: int) -> str:
    sb = Sandbox(seed=seed, jobs=jobs, data_url=str(folder / "inputs"))
    sb.write_inputs()
    created = sorted(j.created_at for j in sb.jobs)
    first, second = created[len(created) // 3], created[2 * len(created) // 3]
    common = {"label_file": _labels(sb, folder / "labels.csv"), "lag": LAG}
    # A relative URL: the page names the dataset as "retrain-dataset", not a temp path.
    url = "retrain-dataset"
    _build(sb, url, start=datetime(2024, 1, 1, tzinfo=timezone.utc), end=first, **common)
    _build(sb, url, end=second, **common)
    _change_votes(sb, second - LAG, second)
    _build(sb, url, **common)
    return url


def screenshot(page: Path, out: Path) -> None:
    """The top of the page, down to the first model's class chart, at 1100 px wide."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("no chromium: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            view = browser.new_page(viewport={"width": 1100, "height": 900})
            view.goto(page.as_uri(), wait_until="load")
            box = view.locator("#model-0 figure").nth(1).bounding_box()
            assert box is not None
            bottom = box["y"] + box["height"] + 8
            out.parent.mkdir(parents=True, exist_ok=True)
            clip = {"x": 0, "y": 0, "width": 1100, "height": bottom}
            view.screenshot(path=str(out), full_page=True, clip=clip)
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"the PNG (default {OUT})")
    parser.add_argument("--html", type=Path, help="also keep the report's HTML page here")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=600)
    args = parser.parse_args()
    out, kept = args.out.resolve(), args.html.resolve() if args.html else None
    with tempfile.TemporaryDirectory(prefix="modzy-report-") as tmp:
        os.chdir(tmp)
        url = make_dataset(Path(tmp), seed=args.seed, jobs=args.jobs)
        report = feedback_report(url)
        print(report)
        page = Path(tmp) / "feedback.html"
        report.write_html(str(page))
        if kept is not None:
            shutil.copyfile(page, kept)
        screenshot(page, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
