"""docs/human-labels.md's loop on the sandbox, run as written against the real server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import LabelStudioServer

pytestmark = pytest.mark.timeout(600)
DOC = Path(__file__).resolve().parents[2] / "docs" / "human-labels.md"


def example() -> str:
    section = DOC.read_text().split("## The loop on the sandbox", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_the_loop_on_the_sandbox_runs_as_written(
    label_studio: LabelStudioServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(label_studio.files_root))
    code = example()
    assert "Sandbox(" in code
    assert "pull_from_label_studio" in code
    exec(compile(code, "human-labels.md", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out
    assert "tasks created:" in out
    assert "labelled: " in out
