"""Lineage queries, pure: parameters checked at construction, the batched key, the
answer's shape, references, and pointers checked like a template's result."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from modzy_retrain import LineageError, UnsafeNameError
from modzy_retrain._stages.lineage import TEMPLATE_FIELDS, check_pointer
from modzy_retrain._stages.sql_query import (
    answer_of,
    parse_query,
    payload_bytes,
    pointer_text,
    reference,
)

FIELDS = {*TEMPLATE_FIELDS, "camera"}


@pytest.mark.parametrize(
    ("sql", "params", "keys", "name"),
    [
        (
            "SELECT payload FROM requests WHERE job_id = :job_id AND input_name = :input_name",
            ("job_id", "input_name"),
            (),
            "requests",
        ),
        (
            "SELECT job_id, input_name, payload FROM requests WHERE (job_id, input_name) IN :keys",
            (),
            ("job_id", "input_name"),
            "requests",
        ),
        (
            # qualified and quoted names, a cast, a scalar beside the key, new lines
            'SELECT r.job_id, r."input_name", r.body::bytea AS payload\n'
            'FROM "prod"."Requests" AS r\n'
            'WHERE r.model = :model_id AND (r.job_id, r."input_name") IN :keys',
            ("model_id",),
            ("job_id", "input_name"),
            "Requests",
        ),
        (
            "SELECT input_name, url FROM frames WHERE input_name IN :keys",
            (),
            ("input_name",),
            "frames",
        ),
        (
            "SELECT url FROM frames WHERE camera = :camera AND day = '12\\:30'",
            ("camera",),
            (),
            "frames",
        ),
        ("SELECT payload FROM (SELECT 1) AS q WHERE :job_id = 'x'", ("job_id",), (), "q"),
    ],
)
def test_queries_are_read_as_sqlalchemy_reads_them(
    sql: str, params: tuple[str, ...], keys: tuple[str, ...], name: str
) -> None:
    query = parse_query(sql, FIELDS)
    assert query.params == params
    assert query.key_fields == keys
    assert query.batched is bool(keys)
    # The same bound parameters as SQLAlchemy's own text() finds.
    assert set(sa.text(sql).compile().params) == {*params, *(("keys",) if keys else ())}
    if name != "q":
        assert query.name == name


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("", "non-empty"),
        ("SELECT payload FROM requests", "binds no record field"),
        ("SELECT payload FROM requests WHERE secret = :password", ":password"),
        ("SELECT payload FROM t WHERE job_id = :job_id AND x IN :keys AND y IN :keys", ":keys"),
        ("SELECT payload FROM t WHERE (request, item) IN :keys", "named like record fields"),
        ("SELECT payload FROM t WHERE (job_id, job_id) IN :keys", "named like record fields"),
        ("SELECT payload FROM t WHERE :keys = job_id", ":keys is the batched form's"),
    ],
)
def test_bad_queries_fail_when_checked(sql: str, needle: str) -> None:
    with pytest.raises(LineageError, match=needle):
        parse_query(sql, FIELDS)


def test_pattern_groups_are_parameters_only_when_the_pattern_has_them() -> None:
    sql = "SELECT url FROM frames WHERE camera = :camera"
    assert parse_query(sql, FIELDS).params == ("camera",)
    with pytest.raises(LineageError, match=":camera"):
        parse_query(sql, TEMPLATE_FIELDS)


def test_the_answer_shape_comes_from_the_column_names() -> None:
    one = parse_query("SELECT payload FROM t WHERE job_id = :job_id", FIELDS)
    assert answer_of(["PAYLOAD"], one).shape == "payload"
    assert answer_of(["id", "url"], one).shape == "pointer"
    assert answer_of(["path"], one).column == 0
    for columns, needle in ((["bytes"], "found none"), (["payload", "url"], "payload, url")):
        with pytest.raises(LineageError, match=needle):
            answer_of(columns, one)
    many = parse_query("SELECT * FROM t WHERE (job_id, input_name) IN :keys", FIELDS)
    answer = answer_of(["input_name", "payload", "job_id"], many)
    assert (answer.shape, answer.column, answer.keys) == ("payload", 1, (2, 0))
    with pytest.raises(LineageError, match="input_name missing"):
        answer_of(["job_id", "payload"], many)


def test_references_hold_the_database_table_and_key_and_nothing_else() -> None:
    query = parse_query(
        "SELECT payload FROM requests WHERE job_id = :job_id AND input_name = :input_name",
        FIELDS,
    )
    ref = reference(
        "postgresql://db:5432/prod", query, {"job_id": "J1", "input_name": "a/b c?.png"}
    )
    assert ref == "postgresql://db:5432/prod/requests/job_id=J1/input_name=a%2Fb%20c%3F.png"


def test_payload_and_pointer_values() -> None:
    assert payload_bytes(memoryview(b"ab")) == b"ab"
    assert payload_bytes("é") == "é".encode()
    with pytest.raises(TypeError, match="int"):
        payload_bytes(3)
    assert pointer_text(b"/data/x.png") == "/data/x.png"
    for bad in (b"\xff\xfe", 42):
        with pytest.raises(UnsafeNameError):
            pointer_text(bad)


HOSTILE_POINTERS = [
    "",
    "relative/x.png",  # no root to put it under
    "/data/inputs/../../etc/passwd",
    "/data/inputs/%2e%2e/%2e%2e/etc/passwd",
    "/data/inputs/./x",
    "/data/inputs//x",
    "/data/inputs/a\x00b",
    "/data/inputs/line\nbreak",
    "/data/inputs/a\\..\\b",
    "simplecache::s3://bucket/x",
    "data:text/plain,hi",
    "s3://bucket/\uff0e\uff0e/x",
]


@pytest.mark.parametrize("pointer", HOSTILE_POINTERS)
def test_hostile_pointers_are_refused(pointer: str) -> None:
    with pytest.raises(UnsafeNameError):
        check_pointer(pointer)


@pytest.mark.parametrize(
    ("pointer", "root", "ok"),
    [
        ("/data/inputs/x.png", "/data/inputs", True),
        ("file:///data/inputs/x.png", "/data/inputs/", True),
        ("/data/inputs-evil/x.png", "/data/inputs", False),
        ("/etc/passwd", "/data/inputs", False),
        ("s3://bucket/inputs/a/b.png", "s3://bucket/inputs", True),
        ("s3://other/inputs/a.png", "s3://bucket/inputs", False),
        ("gs://bucket/inputs/a.png", "s3://bucket/inputs", False),
    ],
)
def test_pointers_are_confined_to_their_root(pointer: str, root: str, ok: bool) -> None:
    if ok:
        assert check_pointer(pointer, root) == pointer
    else:
        with pytest.raises(UnsafeNameError, match="outside the root"):
            check_pointer(pointer, root)


def test_relative_pointers_go_under_the_root_as_template_values_do() -> None:
    assert check_pointer("cam01/x.png", "s3://bucket/inputs/") == "s3://bucket/inputs/cam01/x.png"
    for hostile in ("../x", "~root/x", "C:evil", "a//b"):
        with pytest.raises(UnsafeNameError):
            check_pointer(hostile, "s3://bucket/inputs")
