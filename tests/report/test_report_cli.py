"""``modzy-retrain report``: text, ``--html``, ``--json``, and its exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import FeedbackReport, feedback_report
from modzy_retrain._cli.main import main
from modzy_retrain._cli.report_command import REPORT_EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]


def test_report_prints_a_summary_and_writes_the_page_and_the_numbers(
    feedback: tuple[Any, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = feedback[1]
    page, numbers = tmp_path / "out" / "feedback.html", tmp_path / "feedback.json"
    assert main(["report", url, "--html", str(page), "--json", str(numbers)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"feedback report: {url} v0003\n")
    assert "model Image Classification (c60c8dbd79)" in out
    assert f"wrote {page}" in out
    assert page.read_text().startswith("<!DOCTYPE html>")
    written = FeedbackReport.model_validate_json(numbers.read_text())
    assert written == feedback_report(url)


def test_an_earlier_version_by_month(
    feedback: tuple[Any, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    numbers = tmp_path / "v1.json"
    code = main(["report", feedback[1], "--version", "v0001", "--period", "month",
                 "--json", str(numbers)])  # fmt: skip
    assert code == 0
    body = json.loads(numbers.read_text())
    assert (body["version"], body["period"]) == ("v0001", "month")
    assert all(p["period"].endswith("-01") for m in body["models"] for p in m["over_time"])
    assert "v0002" not in capsys.readouterr().out


def test_errors_and_their_exit_codes(
    feedback: tuple[Any, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["report", str(tmp_path / "nothing")]) == 1
    assert "no dataset" in capsys.readouterr().err
    assert main(["report", feedback[1], "--version", "v0042"]) == 1
    assert "no published version v0042" in capsys.readouterr().err
    assert main(["report", feedback[1], "--confidence", "1.5"]) == 2
    assert "confidence" in capsys.readouterr().err
    assert main(["report", feedback[1], "--storage-option", "oops"]) == 2
    with pytest.raises(SystemExit) as exited:
        main(["report", feedback[1], "--period", "fortnight"])
    assert exited.value.code == 2
    capsys.readouterr()
    # --html without the charts' library: exit 2 before anything is read or written.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    page = tmp_path / "page.html"
    assert main(["report", str(tmp_path / "nothing"), "--html", str(page)]) == 2
    assert "pip install 'modzy-retrain[report]'" in capsys.readouterr().err
    assert not page.exists()
    # Without --html the text report needs no extra.
    assert main(["report", feedback[1]]) == 0


def test_the_exit_codes_in_help_and_in_the_docs_are_the_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    shown = capsys.readouterr().out
    assert "Not a build's run report" in shown
    docs = (ROOT / "docs" / "deciding-when-to-retrain.md").read_text().replace("\\|", "|")
    for code, text in REPORT_EXIT_CODES.items():
        assert f"  {code}  {text}" in shown
        assert f"| {code} | {text} |" in docs, f"the docs lack exit code {code}"
