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
            # real Modzy account or bucket and are only checked for names below. Those
            # that need a Label Studio run in tests/label_studio/test_docs_example.py.
            if (
                "Sandbox(" in code
                and "s3_server" not in code
                and "..." not in code
                and "LabelStudioClient(" not in code
            ):
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


# -- what the docs cite exists in the repository ----------------------------------------

FENCE = re.compile(r"^```[^\n]*\n.*?^```[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^()\s]*)\)")
REPO_PATH = re.compile(r"(?<![\w./-])((?:docs|tests|bench|modzy_retrain|scripts)/[\w./-]*)")


def _cited_texts(text: str) -> list[str]:
    """The code a doc shows: its fenced blocks and its inline code spans."""
    blocks = [m.group(0) for m in FENCE.finditer(text)]
    prose = FENCE.sub("", text)
    return blocks + INLINE_CODE.findall(prose)


def _slug(heading: str) -> str:
    # GitHub's anchors: link text kept, code marks and punctuation dropped, spaces to '-'.
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", path.read_text()), re.M):
        slug = _slug(heading)
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_relative_link_exists(doc: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", doc.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:...
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target} (no such heading)")
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_cited_repo_path_exists(doc: Path) -> None:
    missing = []
    for code in _cited_texts(doc.read_text()):
        for cited in REPO_PATH.findall(code):
            cited = cited.rstrip(".,:;")
            if not (ROOT / cited).exists():
                missing.append(cited)
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_nothing_cites_files_outside_the_repository(doc: Path) -> None:
    # The team's working notes (shared/...) are not shipped: users never see them.
    assert re.findall(r"(?<![\w.-])shared/\S*", doc.read_text()) == []
