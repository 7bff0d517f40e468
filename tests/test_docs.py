"""Keep the docs true: run their sandbox examples, and check the names they cite exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import modzy_retrain

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def sandbox_examples() -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        for n, code in enumerate(BLOCK.findall(path.read_text())):
            # Examples that run on the sandbox are self-contained; the others need a
            # real Modzy account or bucket and are only checked for names below.
            if "Sandbox(" in code and "s3_server" not in code and "..." not in code:
                out.append((f"{path.name}#{n}", code))
    return out


@pytest.mark.parametrize(
    ("where", "code"), sandbox_examples(), ids=[w for w, _ in sandbox_examples()]
)
def test_sandbox_examples_run(
    where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})


def test_there_are_sandbox_examples() -> None:
    assert len(sandbox_examples()) >= 3


def test_every_public_name_cited_in_the_docs_exists() -> None:
    cited: set[str] = set()
    for path in DOCS:
        for code in BLOCK.findall(path.read_text()):
            for match in re.finditer(
                r"from modzy_retrain import \(?([^)]*?)\)?\n(?!\s)", code + "\n"
            ):
                cited |= {
                    n.strip() for n in match.group(1).replace("\n", " ").split(",") if n.strip()
                }
    assert cited, "the docs should import from modzy_retrain"
    missing = sorted(n for n in cited if not hasattr(modzy_retrain, n))
    assert missing == []
