"""The public surface: what __all__ promises, and what importing costs."""

from __future__ import annotations

import subprocess
import sys

import modzy_retrain


def test_all_is_sorted_and_unique() -> None:
    assert list(modzy_retrain.__all__) == sorted(set(modzy_retrain.__all__))


def test_all_matches_the_public_names() -> None:
    public = {
        name
        for name, value in vars(modzy_retrain).items()
        if not name.startswith("_") and not isinstance(value, type(modzy_retrain))
    }
    assert public == set(modzy_retrain.__all__) - {"__version__"}


def test_every_exported_name_exists_and_reports_the_public_module() -> None:
    for name in modzy_retrain.__all__:
        obj = getattr(modzy_retrain, name)
        if isinstance(obj, type):
            assert obj.__module__ == "modzy_retrain", name


def test_a_custom_stage_needs_nothing_private() -> None:
    # The stage contract: the base class and its methods, the several-outputs wrapper,
    # the drop, and what chains stages.
    for name in ("Chain", "Drop", "Many", "Source", "Stage", "pipeline"):
        assert name in modzy_retrain.__all__, name
    for method in ("process", "process_stream", "aprocess", "aprocess_stream"):
        assert callable(getattr(modzy_retrain.Stage, method)), method


def test_version_is_a_string() -> None:
    assert isinstance(modzy_retrain.__version__, str)
    assert modzy_retrain.__version__[0].isdigit()


def test_import_does_no_io_and_loads_no_optional_extra() -> None:
    # A fresh interpreter, with socket creation and file opens outside the stdlib and
    # site-packages trapped: importing must neither connect nor load s3fs, gcsfs,
    # pyarrow, pandas, the training loaders' datasets, torch and Pillow, SQLAlchemy, or
    # the feedback report's matplotlib.
    code = r"""
import socket, sys
class NoSocket(socket.socket):
    def __init__(self, *a, **k):
        raise AssertionError("import opened a socket")
socket.socket = NoSocket
import modzy_retrain, modzy_retrain.sandbox
for extra in ("s3fs", "gcsfs", "pyarrow", "pandas", "datasets", "torch", "PIL", "sqlalchemy",
              "psycopg", "matplotlib"):
    assert extra not in sys.modules, extra
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
