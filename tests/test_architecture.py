"""The layers of docs/architecture.md, checked: which way imports go, and module sizes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "modzy_retrain"

# What each layer may import from the package (besides itself and _version).
ALLOWED: dict[str, set[str]] = {
    "_core": set(),
    "_client": {"_core"},
    "_dataset": {"_core"},
    # The push (_labels/push.py and its helpers) reads datasets; the REST client does not.
    # The pull fires the trigger's actions, as a build does.
    "_labels": {"_core", "_dataset", "_triggers"},
    # The training loaders read datasets; they know no stage, client or labelling tool.
    "_loaders": {"_core", "_dataset"},
    "_stages": {"_core", "_client", "_dataset"},
    # The trigger's actions read manifests and write their records beside the dataset.
    "_triggers": {"_core", "_dataset"},
    # The feedback report reads manifests; its charts' library only when it draws.
    "_report": {"_core", "_dataset"},
    "_cli": {
        "_core",
        "_client",
        "_dataset",
        "_labels",
        "_report",
        "_stages",
        "_triggers",
        "sandbox",
    },
    "sandbox": {"_core"},
}
MAX_LINES = 500


def _layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0]


def _imported_layers(path: Path) -> set[str]:
    """The package's top-level folders a module imports, at module level or lazily."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.startswith("modzy_retrain."):
                found.add(node.module.split(".")[1])
            elif node.level > 1 and node.module:  # from ..x (banned by ruff, checked anyway)
                found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("modzy_retrain."):
                    found.add(alias.name.split(".")[1])
    return found - {"_version"}


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if len(p.relative_to(PACKAGE).parts) > 1)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path: Path) -> None:
    layer = _layer(path)
    wrong = _imported_layers(path) - ALLOWED[layer] - {layer}
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer}) imports {sorted(wrong)}"


# The Label Studio REST client knows nothing of datasets: only the push does.
LABELS_CLIENT = ("client.py", "auth.py", "models.py", "retry.py", "projects.py")


@pytest.mark.parametrize("name", LABELS_CLIENT)
def test_the_label_studio_client_imports_only_core(name: str) -> None:
    assert _imported_layers(PACKAGE / "_labels" / name) <= {"_core"}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_module_is_over_the_size_limit(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines"


def test_every_layer_is_a_folder_and_nothing_else_sits_at_the_top() -> None:
    top = {p.name for p in PACKAGE.iterdir() if not p.name.startswith("__pycache__")}
    assert top == {"__init__.py", "_version.py", "py.typed", *ALLOWED}


def test_the_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from modzy_retrain._stages.records import Sample\n")
    assert _imported_layers(bad) == {"_stages"}
