"""The documentation site builds in strict mode, and each way of breaking it fails the build.

The real build (mkdocs.yml, with the API reference rendered by mkdocstrings) runs once
and must be warning-free. Each breakage is then made in a temporary copy of what the
build reads (mkdocs.yml, docs/, the hooks, bench/RESULTS.md and the package's source,
which griffe reads without importing it), and the strict build of that copy must fail
naming it. Copies that break something the hooks or MkDocs check, not mkdocstrings,
build without the mkdocstrings plugin (INHERIT, plugins replaced), in about 2 s.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import modzy_retrain
import modzy_retrain.sandbox

ROOT = Path(__file__).resolve().parents[1]
# What a build reads; the package for griffe (static analysis: nothing is imported).
BUILD_INPUTS = (
    "mkdocs.yml",
    "docs",
    "scripts/mkdocs_hooks.py",
    "scripts/griffe_sphinx_roles.py",
    "bench/RESULTS.md",
    "modzy_retrain",
)
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "retraining-loop")
WITHOUT_MKDOCSTRINGS = "INHERIT: mkdocs.yml\nplugins:\n  - search\n"


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about MkDocs 2
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=300,
        check=False,
    )


def warnings(log: str) -> list[str]:
    return re.findall(r"^WARNING\s+-\s+(.*)$", log, re.M)


# -- the real site --------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("site")
    out = mkdocs_build(ROOT / "mkdocs.yml", out_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert warnings(out.stdout + out.stderr) == []
    return out_dir


def public_paths() -> list[str]:
    names = [f"modzy_retrain.{n}" for n in modzy_retrain.__all__]
    return names + [f"modzy_retrain.sandbox.{n}" for n in modzy_retrain.sandbox.__all__]


def test_every_public_name_is_rendered_in_the_reference(site: Path) -> None:
    html = "".join(p.read_text() for p in (site / "reference").rglob("index.html"))
    missing = [path for path in public_paths() if f'id="{path}"' not in html]
    assert missing == []


def test_every_docs_page_is_on_the_site(site: Path) -> None:
    for page in (ROOT / "docs").rglob("*.md"):
        rel = page.relative_to(ROOT / "docs").with_suffix("")
        folder = rel.parent if rel.name == "index" else rel  # a.md -> a/index.html
        assert (site / folder / "index.html").is_file(), rel


def test_links_to_the_benchmarks_reach_their_page_on_the_site(site: Path) -> None:
    # docs/ links ../bench/RESULTS.md#... (right on GitHub); the site has it as a page.
    reliability = (site / "reliability" / "index.html").read_text()
    assert 'href="../benchmarks/#hostile-bodies-benchhostile_memorypy"' in reliability
    assert "../bench/RESULTS.md" not in reliability
    benchmarks = (site / "benchmarks" / "index.html").read_text()
    assert 'id="hostile-bodies-benchhostile_memorypy"' in benchmarks


def test_the_docstrings_roles_become_links_or_code(site: Path) -> None:
    html = (site / "reference" / "client" / "index.html").read_text()
    assert ":class:" not in html
    assert ":meth:" not in html
    assert 'href="#modzy_retrain.RetryPolicy"' in html


# -- each breakage fails the build ----------------------------------------------------


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for rel in BUILD_INPUTS:
        source, target = ROOT / rel, root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=IGNORED)
        else:
            shutil.copy2(source, target)
    return root


def fails(root: Path, *, mkdocstrings: bool = False) -> str:
    """The log of a strict build of the copy, which must have failed."""
    config = root / "mkdocs.yml"
    if not mkdocstrings:
        config = root / "fast.yml"
        config.write_text(WITHOUT_MKDOCSTRINGS)
    out = mkdocs_build(config, root / "site")
    log = out.stdout + out.stderr
    assert out.returncode != 0, "the strict build passed"
    assert "Aborted with" in log
    return log


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def test_the_copy_builds_without_mkdocstrings(copy: Path) -> None:
    # The control: the copy as it is passes, so each failure below is its breakage's.
    (copy / "fast.yml").write_text(WITHOUT_MKDOCSTRINGS)
    out = mkdocs_build(copy / "fast.yml", copy / "site")
    assert out.returncode == 0, out.stdout + out.stderr
    assert warnings(out.stdout + out.stderr) == []


def test_a_link_to_a_missing_page_fails(copy: Path) -> None:
    with (copy / "docs" / "concepts.md").open("a") as f:
        f.write("\nSee [nowhere](no-such-page.md).\n")
    found = warnings(fails(copy))
    assert len(found) == 1
    assert "no-such-page.md" in found[0]


def test_a_link_to_a_missing_heading_fails(copy: Path) -> None:
    with (copy / "docs" / "concepts.md").open("a") as f:
        f.write("\nSee [the client](client.md#no-such-heading).\n")
    found = warnings(fails(copy))
    assert len(found) == 1
    assert "no-such-heading" in found[0]


def test_a_link_leaving_docs_to_a_file_the_site_lacks_fails(copy: Path) -> None:
    # Right on GitHub, broken on the site: bench/RESULTS.md is a page, mkdocs.yml is not.
    with (copy / "docs" / "concepts.md").open("a") as f:
        f.write("\nSee [the configuration](../mkdocs.yml).\n")
    found = warnings(fails(copy))
    assert any("links to mkdocs.yml, outside docs/" in w for w in found), found


def test_a_page_missing_from_the_nav_fails(copy: Path) -> None:
    (copy / "docs" / "orphan.md").write_text("# An orphan\n\nIn no nav.\n")
    log = fails(copy)
    found = warnings(log)
    assert len(found) == 1
    assert 'are not included in the "nav"' in found[0]
    assert "  - orphan.md" in log


def test_a_public_name_missing_from_the_reference_fails(copy: Path) -> None:
    edit(copy / "docs" / "reference" / "stages.md", "::: modzy_retrain.VoteFilter\n", "")
    found = warnings(fails(copy))
    assert found == [
        "API reference: modzy_retrain.VoteFilter is public but no "
        "'::: modzy_retrain.VoteFilter' line documents it"
    ]


def test_a_public_name_without_a_docstring_fails(copy: Path) -> None:
    edit(
        copy / "modzy_retrain" / "_stages" / "selectors.py",
        'class DownVoted(Selector):\n    """More down-votes than up-votes: the users say the '
        'prediction is wrong."""\n',
        "class DownVoted(Selector):\n",
    )
    found = warnings(fails(copy))
    assert found == ["API reference: modzy_retrain.DownVoted is public but has no docstring"]


def test_a_broken_docstring_fails(copy: Path) -> None:
    # mkdocstrings (griffe) parses the docstrings: a documented parameter the function
    # does not take is a warning. The one breakage that needs the full build.
    edit(
        copy / "modzy_retrain" / "_client" / "retry.py",
        "    Attributes:\n        max_attempts:",
        "    Args:\n        max_attempts:",
    )
    found = warnings(fails(copy, mkdocstrings=True))
    assert found
    assert all("retry.py" in w for w in found), found
    assert any("'max_attempts' does not appear in the function signature" in w for w in found)


# -- the reference's check, without a build --------------------------------------------


def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / BUILD_INPUTS[2])
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_public_names_are_those_of_every_public_package() -> None:
    # What the check reads (griffe, statically) is what the packages export.
    assert sorted(hooks().public_names([str(ROOT)])) == sorted(public_paths())


def test_a_new_public_subpackage_must_be_documented_too(copy: Path) -> None:
    package = copy / "modzy_retrain" / "extra"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""A public subpackage."""\n\n__all__ = ["thing"]\n\n\ndef thing() -> None:\n'
        '    """Something."""\n'
    )
    public = hooks().public_names([str(copy)])
    assert "modzy_retrain.extra.thing" in public
    problems = hooks().reference_problems(public, list(set(public) - {"modzy_retrain.extra.thing"}))
    assert problems == [
        "modzy_retrain.extra.thing is public but no '::: modzy_retrain.extra.thing' line "
        "documents it"
    ]


def test_reference_entries_naming_no_public_name_or_twice_the_same_are_problems() -> None:
    module = hooks()
    public = module.public_names([str(ROOT)])
    documented = [*public, "modzy_retrain._stages.votes.VoteFilter", "modzy_retrain.VoteFilter"]
    assert module.reference_problems(public, documented) == [
        "modzy_retrain.VoteFilter is documented by 2 '::: modzy_retrain.VoteFilter' lines",
        "'::: modzy_retrain._stages.votes.VoteFilter' documents no public name (see the "
        "packages' __all__)",
    ]
