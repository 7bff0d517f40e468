"""Golden worlds: a seed and its options always build the very same world.

Each hash covers a canonical JSON dump of everything ``build_world`` decides (jobs, ids,
timestamps, inputs, predictions, votes, labels, duplicates, missing files). A changed hash
means a changed world: every seeded test, demo and benchmark would silently shift, so a
refactor must keep them; a deliberate change of the world updates them here, on purpose.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime, timezone
from typing import Any

import pytest

from modzy_retrain.sandbox import Sandbox
from modzy_retrain.sandbox._records import World
from modzy_retrain.sandbox._world import build_world

UTC = timezone.utc
START, END = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "jobs_by_id"  # an index of ``jobs``, checked separately
        }
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _digest(world: World) -> str:
    assert list(world.jobs_by_id) == [job.id for job in world.jobs]
    text = json.dumps(_plain(world), sort_keys=True, ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# (seed, n_jobs, inputs_per_job, start, end, api_key) -> sha256 of the canonical dump.
GOLDEN = [
    pytest.param(
        (0, 200, 4, START, END, None),
        "82f0040ae49ee1611cab5cef11f789be15ed1b5f06bb1fba37b38d09298a5149",
        id="default-Sandbox(seed=0)",
    ),
    pytest.param(
        (0, 300, 4, START, END, None),
        "326f387f8e7e3db35712840f5287e7d576d25847a4203f54c23b65a605ed2932",
        id="demo-seed0-300jobs",
    ),
    pytest.param(
        (
            7,
            1000,
            2,
            datetime(2024, 6, 1, 12, 30, tzinfo=UTC),
            datetime(2024, 9, 15, tzinfo=UTC),
            "AbCdEfGhIj0123456789.ZyXwVuTsRq9876543210",
        ),
        "ef4cd4ebe532d7fb6f84002f105b2f79b41dd9b090a33abf57349ea8ef040534",
        id="seed7-1000jobs-2inputs-own-span-and-key",
    ),
    pytest.param(
        (3, 12, 9, START, datetime(2025, 1, 2, tzinfo=UTC), None),
        "9c5e771f8508c592f2355d9d00bc45e7a5af7a34989000011a33c42f591027ac",
        id="seed3-12jobs-9inputs-one-day",
    ),
    pytest.param(
        (42, 0, 1, START, END, None),
        "bcce411912ff3afb3fc3b22938ecd072d3bff60d6e6ec9ffbed18fd33e6fdaef",
        id="empty",
    ),
]


@pytest.mark.parametrize(("args", "expected"), GOLDEN)
def test_world_matches_its_golden_hash(args: tuple[Any, ...], expected: str) -> None:
    assert _digest(build_world(*args)) == expected


def test_default_sandbox_builds_the_golden_default_world() -> None:
    # Ties the first golden entry to what ``Sandbox(seed=0)`` really builds.
    world = build_world(0, 200, 4, START, END, None)
    sb = Sandbox(seed=0)
    assert sb.jobs == world.jobs
    assert sb.users == world.users
    assert sb.missing_inputs == world.missing_inputs
    assert sb.duplicate_inputs == world.duplicate_inputs
