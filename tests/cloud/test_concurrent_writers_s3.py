"""Eight writers of one dataset at once on S3 (moto's server): four builds and four
label pulls, each in its own process (``bench/_writers.py``; 2 rounds here, 20 in the
benchmark). Every change is published exactly once, the final version equals a
sequential run's, and each published version verifies."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from modzy_retrain._cli.build import EXIT_NOTHING_NEW, EXIT_PUBLISHED

from .conftest import Store

# Eight processes a round: on a busy machine this takes minutes, not seconds.
pytestmark = pytest.mark.timeout(600)


def load_harness() -> ModuleType:
    bench = Path(__file__).resolve().parents[2] / "bench"
    spec = importlib.util.spec_from_file_location("_writers", bench / "_writers.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_writers", module)
    spec.loader.exec_module(module)
    return module


def test_eight_writers_at_once_on_s3(s3: Store, tmp_path: Path) -> None:
    w = load_harness()
    # One client per process and store (each writer reads the dataset many times).
    options = {**s3.options, "skip_instance_cache": False}
    template = s3.url("template")
    prepared = w.prepare(tmp_path, template, options)
    reference = w.sequential(template, s3.url("sequential"), prepared, options)
    # Round 0 with the lock as it is; round 1 with every lock taken from its holder at
    # once, so that only the create-if-absent manifest keeps the versions apart.
    for number in range(2):
        place = s3.url(f"round{number}")
        result = w.run_round(
            number, template, place, prepared, options, reference, fencing_only=number == 1
        )
        assert [o.error for o in result.outcomes if o.error] == []
        assert set(result.codes) <= {EXIT_PUBLISHED, EXIT_NOTHING_NEW}, result.outcomes
        assert result.history.problems == []
        assert result.equal
        assert result.refused > 0 or number == 1
