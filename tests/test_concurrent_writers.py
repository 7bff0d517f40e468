"""Eight writers of one dataset at once, on the local disk: four builds and four label
pulls, each in its own process, started together (``bench/_writers.py``; the
benchmark runs 20 rounds, this test 2). Every change is published exactly once, the
refused writers publish nothing and try again, and the final version equals the one a
single process gets by running the same writers one after another.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from modzy_retrain import ModzyClient, list_versions
from modzy_retrain._cli.build import EXIT_NOTHING_NEW, EXIT_PUBLISHED, build

# Eight processes a round: on a busy machine this takes minutes, not seconds.
pytestmark = pytest.mark.timeout(600)


def load_harness() -> ModuleType:
    bench = Path(__file__).resolve().parents[1] / "bench"
    spec = importlib.util.spec_from_file_location("_writers", bench / "_writers.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_writers", module)
    spec.loader.exec_module(module)
    return module


w = load_harness()


def test_a_build_whose_window_ends_before_the_checkpoint_finds_nothing_new(
    tmp_path: Path,
) -> None:
    """Two builds with different windows raced; the one that ends later published
    first. The other, run again, finds every job of its window already published:
    nothing new (exit 3), not a query whose end is before its start."""
    data_dir = str(tmp_path / "inputs")
    sb = w.sandbox(data_dir)
    sb.write_inputs()
    url = str(tmp_path / "ds")
    assert w.run_build(data_dir, url, {}, 0.85) == EXIT_PUBLISHED
    with ModzyClient(
        api_key=sb.api_key, base_url="http://sandbox.invalid", transport=sb.transport()
    ) as client:
        result = build(w.settings(sb, url, {}, w.point(sb, 0.55)), environ={}, client=client)
    assert result.exit_code == EXIT_NOTHING_NEW
    assert any("checkpoint" in note for note in result.notes), result.notes
    assert list_versions(url) == ["v0001"]


def test_eight_writers_at_once_publish_every_change_once(tmp_path: Path) -> None:
    template = str(tmp_path / "template")
    prepared = w.prepare(tmp_path, template, {})
    reference = w.sequential(template, str(tmp_path / "sequential"), prepared, {})
    # Round 0 with the lock as it is; round 1 with every lock taken from its holder at
    # once, so that only the create-if-absent manifest keeps the versions apart.
    for number in range(2):
        place = str(tmp_path / f"round{number}")
        result = w.run_round(
            number, template, place, prepared, {}, reference, fencing_only=number == 1
        )
        assert [o.error for o in result.outcomes if o.error] == []
        # Each writer ends published, or with nothing new (a build whose window another
        # build covered first); none is left refused.
        assert set(result.codes) <= {EXIT_PUBLISHED, EXIT_NOTHING_NEW}, result.outcomes
        assert result.history.problems == []
        assert result.equal
        assert result.refused > 0 or number == 1  # they did collide
