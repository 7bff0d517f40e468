"""SqlLineageResolver on a SQLite file and on a real PostgreSQL: payloads and pointers,
the batched and the one-key forms, per-model queries, and every bad answer's reason."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modzy_retrain import (
    DatabaseError,
    LineageError,
    LineageResolver,
    Sample,
    SqlLineageResolver,
)

from .conftest import Db, sample

BATCHED = "SELECT job_id, input_name, payload FROM {t} WHERE (job_id, input_name) IN :keys"
ONE_KEY = "SELECT payload FROM {t} WHERE job_id = :job_id AND input_name = :input_name"
FORMS = {"batched": BATCHED, "one-key": ONE_KEY}


def run(stage: SqlLineageResolver, samples: list[Sample]) -> tuple[list[Sample], dict[str, Any]]:
    it = stage(samples)
    out = list(it)
    drops = {(d.job_id, d.input_name): d for d in it.report.drops}
    return out, drops


def rows(n: int, job: str = "job-1", model: str = "m1") -> list[dict[str, Any]]:
    return [
        {"job_id": job, "input_name": f"in-{i}.txt", "model_id": model, "payload": b"x%d" % i}
        for i in range(n)
    ]


@pytest.mark.parametrize("form", FORMS)
def test_payloads_are_hashed_sized_and_kept_for_the_writer(db: Db, form: str) -> None:
    table = db.table(rows(600))  # more than one batch
    stage = SqlLineageResolver(db.url, FORMS[form].format(t=table), batch_size=256)
    stage.check()
    samples = [sample(f"in-{i}.txt") for i in range(600)]
    out, drops = run(stage, samples)
    assert drops == {}
    assert [s.input_name for s in out] == [s.input_name for s in samples]  # input order
    for i, s in enumerate(out):
        data = b"x%d" % i
        assert (s.payload, s.size, s.sha256) == (data, len(data), hashlib.sha256(data).hexdigest())
    host = "127.0.0.1:" if db.backend == "postgresql" else ""
    assert out[0].source_url is not None
    assert out[0].source_url.startswith(f"{db.backend}://{host}")
    assert out[0].source_url.endswith(f"/{table}/job_id=job-1/input_name=in-0.txt")


@pytest.mark.parametrize("form", FORMS)
def test_bad_answers_are_dropped_with_their_reasons(db: Db, form: str) -> None:
    table = db.table(
        [
            {"job_id": "j", "input_name": "ok", "payload": b"fine"},
            {"job_id": "j", "input_name": "null", "payload": None},
            {"job_id": "j", "input_name": "twice", "payload": b"a"},
            {"job_id": "j", "input_name": "twice", "payload": b"b"},
            {"job_id": "j", "input_name": "big", "payload": b"z" * 101},
            {"job_id": "j", "input_name": "edge", "payload": b"z" * 100},
        ]
    )
    stage = SqlLineageResolver(db.url, FORMS[form].format(t=table), max_bytes=100)
    names = ["ok", "null", "twice", "big", "edge", "absent"]
    out, drops = run(stage, [sample(n, job="j") for n in names])
    assert [s.input_name for s in out] == ["ok", "edge"]
    reasons = {name: drops[("j", name)].reason for name in ("null", "twice", "big", "absent")}
    assert reasons == {
        "null": "source_missing",
        "twice": "ambiguous_source",
        "big": "source_too_large",
        "absent": "source_missing",
    }
    assert "no row for" in drops[("j", "absent")].detail
    assert "input_name=absent" in drops[("j", "absent")].detail
    assert "NULL" in drops[("j", "null")].detail


def test_a_hostile_input_name_is_only_a_value(db: Db) -> None:
    hostile = ["'; DROP TABLE x; --", "../../etc/passwd", "a\x01b", "%2e%2e/x", 'ü "q" :job_id']
    stored = [n for n in hostile if "\x01" not in n]
    table = db.table([{"job_id": "j", "input_name": n, "payload": n.encode()} for n in stored])
    for template in FORMS.values():
        stage = SqlLineageResolver(db.url, template.format(t=table))
        out, drops = run(stage, [sample(n, job="j") for n in hostile])
        assert [s.payload for s in out] == [n.encode() for n in stored]
        assert drops[("j", "a\x01b")].reason == "source_missing"
    with db.engine.connect() as connection:  # the table is still there, whole
        count = connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
    assert count == len(hostile) - 1


def test_text_payloads_and_scalar_parameters_beside_the_key(db: Db) -> None:
    table = db.table(
        [
            {"job_id": "j", "input_name": "a", "model_id": "m1", "body": "héllo"},
            {"job_id": "j", "input_name": "a", "model_id": "m2", "body": "other model"},
        ],
        columns=[("body", sa.Text)],
    )
    query = (
        f"SELECT job_id, input_name, body AS payload FROM {table} "
        "WHERE model_id = :model_id AND (job_id, input_name) IN :keys"
    )
    out, drops = run(SqlLineageResolver(db.url, query), [sample("a", job="j", model="m2")])
    assert drops == {}
    assert out[0].payload == b"other model"
    assert out[0].source_url is not None
    assert out[0].source_url.endswith("/job_id=j/input_name=a/model_id=m2")


def test_pointers_are_read_through_fsspec_and_confined_to_their_root(
    db: Db, tmp_path: Path
) -> None:
    root = tmp_path / "inputs"
    (root / "cam1").mkdir(parents=True)
    (root / "cam1" / "a.png").write_bytes(b"png bytes")
    (tmp_path / "secret.txt").write_bytes(b"outside")
    table = db.table(
        [
            {"job_id": "j", "input_name": "a", "url": str(root / "cam1" / "a.png")},
            {"job_id": "j", "input_name": "rel", "url": "cam1/a.png"},
            {"job_id": "j", "input_name": "escape", "url": f"{root}/../secret.txt"},
            {"job_id": "j", "input_name": "outside", "url": str(tmp_path / "secret.txt")},
            {"job_id": "j", "input_name": "gone", "url": str(root / "gone.png")},
            {"job_id": "j", "input_name": "null", "url": None},
        ]
    )
    query = f"SELECT job_id, input_name, url FROM {table} WHERE (job_id, input_name) IN :keys"
    stage = SqlLineageResolver(db.url, query, root=str(root), keep_bytes_up_to=0)
    names = ["a", "rel", "escape", "outside", "gone", "null"]
    out, drops = run(stage, [sample(n, job="j") for n in names])
    assert [(s.input_name, s.source_url, s.size) for s in out] == [
        ("a", str(root / "cam1" / "a.png"), 9),
        ("rel", f"{root}/cam1/a.png", 9),
    ]
    assert out[0].payload is None  # not kept: the writer reads the file again
    reasons = {n: drops[("j", n)].reason for n in ("escape", "outside", "gone", "null")}
    assert reasons == {
        "escape": "unsafe_name",
        "outside": "unsafe_name",
        "gone": "source_missing",
        "null": "source_missing",
    }


def test_per_model_queries_beside_templates(db: Db, tmp_path: Path) -> None:
    table = db.table(rows(2, job="j", model="m1"))
    (tmp_path / "m2").mkdir()
    (tmp_path / "m2" / "in-0.txt").write_bytes(b"from a file")
    stage = SqlLineageResolver(
        db.url,
        queries={"m1": ONE_KEY.format(t=table)},
        fallback=LineageResolver(templates={"m2": f"{tmp_path}/{{model_id}}/{{input_name}}"}),
    )
    samples = [sample("in-0.txt", "j", "m1"), sample("in-0.txt", "j", "m2"), sample("x", "j", "m3")]
    out, drops = run(stage, samples)
    assert [(s.record.model_id, s.payload) for s in out] == [("m1", b"x0"), ("m2", b"from a file")]
    assert drops[("j", "x")].reason == "no_template"
    described = stage.describe()
    assert described["queries"] == {"m1": ONE_KEY.format(t=table)}
    assert described["fallback"]["templates"] == {"m2": f"{tmp_path}/{{model_id}}/{{input_name}}"}


def test_pattern_groups_are_bound(db: Db) -> None:
    table = db.table([], columns=[("camera", sa.Text), ("frame", sa.Text)])
    with db.engine.begin() as connection:
        connection.execute(
            sa.text(f"INSERT INTO {table} (camera, frame, payload) VALUES ('07', '12', :p)"),
            {"p": b"frame 12"},
        )
    query = f"SELECT camera, frame, payload FROM {table} WHERE (camera, frame) IN :keys"
    stage = SqlLineageResolver(db.url, query, pattern=r"cam(?P<camera>\d+)_(?P<frame>\d+)")
    out, drops = run(stage, [sample("cam07_12"), sample("cam07_13"), sample("nope")])
    assert [s.payload for s in out] == [b"frame 12"]
    assert drops[("job-1", "cam07_13")].reason == "source_missing"
    assert drops[("job-1", "nope")].reason == "name_pattern_mismatch"


def test_the_check_names_what_is_wrong_before_any_record(db: Db) -> None:
    table = db.table(rows(1))
    wrong_shape = f"SELECT input_name FROM {table} WHERE job_id = :job_id"
    with pytest.raises(LineageError, match="payload"):
        SqlLineageResolver(db.url, wrong_shape).check()
    with pytest.raises(DatabaseError, match="refused the lineage query") as caught:
        SqlLineageResolver(db.url, "SELECT payload FROM nowhere WHERE job_id = :job_id").check()
    assert caught.value.retryable is False
    assert caught.value.attempts == 1  # a refusal is not retried


@pytest.mark.anyio
async def test_the_async_path_gives_the_same(db: Db) -> None:
    table = db.table(rows(300))
    stage = SqlLineageResolver(db.url, BATCHED.format(t=table), batch_size=64)
    samples = [sample(f"in-{i}.txt") for i in range(301)]
    out = [s async for s in stage.astream(samples)]
    assert [s.payload for s in out] == [b"x%d" % i for i in range(300)]


def test_construction_refusals(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    query = ONE_KEY.format(t="t")
    with pytest.raises(LineageError, match="needs a query"):
        SqlLineageResolver(url)
    with pytest.raises(LineageError, match="holds a password"):
        SqlLineageResolver("postgresql://reader:Canary5ecret@db/prod", query)
    with pytest.raises(LineageError, match="in-memory"):
        SqlLineageResolver("sqlite://", query)
    with pytest.raises(LineageError, match="not a SQLAlchemy database URL"):
        SqlLineageResolver("not a url", query)
    with pytest.raises(LineageError, match="give one"):
        SqlLineageResolver(url, query, fallback=LineageResolver("/d/{input_name}"))
    with pytest.raises(LineageError, match="model m1"):
        SqlLineageResolver(
            url, queries={"m1": query}, fallback=LineageResolver(templates={"m1": "/d/{job_id}"})
        )
    with pytest.raises(LineageError, match="batch_size"):
        SqlLineageResolver(url, query, batch_size=0)


def test_memory_stays_flat_however_many_records_come_through(tmp_path: Path) -> None:
    """The peak of Python's allocations while resolving 4,000 inputs is that of 1,000:
    a window of batches is held, never the run (samples made and let go as they pass)."""
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    db = Db("sqlite", url, sa.create_engine(url))
    payload = bytes(range(256)) * 8  # 2 KiB
    table = db.table(
        {"job_id": "j", "input_name": f"in-{i}", "payload": payload} for i in range(4000)
    )
    query = BATCHED.format(t=table)

    def peak(n: int) -> int:
        stage = SqlLineageResolver(url, query, batch_size=32, concurrency=2)
        tracemalloc.start()
        try:
            for s in stage(sample(f"in-{i}", job="j") for i in range(n)):
                assert s.size == len(payload)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(1000), peak(4000)
    assert large < small * 1.5, (small, large)
    assert large < 4000 * len(payload) / 2  # far under what holding every payload takes
    db.drop()
