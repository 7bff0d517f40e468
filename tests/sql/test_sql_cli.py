"""`modzy-retrain build --input-query ... --input-database ...` and the same TOML keys,
on SQLite and a real PostgreSQL: published datasets, bad settings (exit 2 before any
request), and a database that is down (exit 1, nothing published)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from modzy_retrain import DatabaseRetry, load_manifest, read_samples
from modzy_retrain._cli.main import main
from modzy_retrain._stages import sql_database
from modzy_retrain.sandbox import Sandbox, SandboxServer

from .conftest import Db, sandbox_rows

BATCHED = (
    "SELECT job_id, input_name, payload, "
    "CASE WHEN model_id = 'c60c8dbd79' THEN 'png' ELSE 'txt' END AS extension "
    "FROM {t} WHERE (job_id, input_name) IN :keys"
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, SandboxServer]]:
    sb = Sandbox(seed=5, jobs=40, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    with sb.serve() as server:
        yield sb, server


@pytest.fixture
def sandbox(world: tuple[Sandbox, SandboxServer], monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    monkeypatch.setenv("MODZY_API_KEY", world[0].api_key)
    return world[0]


def build(world: tuple[Sandbox, SandboxServer], out: Path, *extra: str) -> int:
    _, server = world
    argv = ["build", "--base-url", server.base_url, "--out", str(out), "--quiet"]
    return main([*argv, "--select", "everything", *extra])


def test_payloads_in_a_table(
    db: Db,
    world: tuple[Sandbox, SandboxServer],
    sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = db.table(sandbox_rows(sandbox))
    out, report = tmp_path / "ds", tmp_path / "report.json"
    query = ["--input-query", BATCHED.format(t=table), "--input-database", db.url]
    assert build(world, out, *query, "--report", str(report)) == 0, capsys.readouterr().err
    rows = list(read_samples(str(out)))
    assert rows
    for row in rows:
        data = sandbox.input_bytes(row.job_id, row.input_name)
        assert (out / str(row.file)).read_bytes() == data
        assert row.source_url is not None
        assert row.source_url.startswith(f"{db.backend}://")
        assert row.source_url.endswith(".png" if row.model_id == "c60c8dbd79" else ".txt")
        assert str(row.file).endswith(row.source_url.rsplit(".", 1)[-1])
    body = json.loads(report.read_text())
    missing = [d for d in body["drops"] if d["reason"] == "source_missing"]
    assert {(d["job_id"], d["input_name"]) for d in missing} == {
        (m.job_id, m.input_name) for m in sandbox.missing_inputs
    }
    resolve = next(s for s in load_manifest(str(out)).stages if s["stage"] == "resolve")
    assert resolve["query"] == BATCHED.format(t=table)
    assert "@" not in resolve["database"]  # no user, no password


def test_per_model_queries_pointers_and_templates_from_the_config_file(
    tmp_path: Path,
    world: tuple[Sandbox, SandboxServer],
    sandbox: Sandbox,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    db = Db("sqlite", url, __import__("sqlalchemy").create_engine(url))
    images, reviews, spam = (m.id for m in sandbox.models)
    payloads = db.table([r for r in sandbox_rows(sandbox) if r["model_id"] == images])
    pointers = db.table(
        [
            {"job_id": j.id, "input_name": i.name, "url": sandbox.input_url(j.id, i.name)}
            for j in sandbox.jobs
            if j.model.id == reviews
            for i in j.inputs
        ]
    )
    config = tmp_path / "build.toml"
    config.write_text(
        f'input_database = "{url}"\n'
        f'input_root = "{sandbox.data_url}"\n'
        "[input_queries]\n"
        f'"{images}" = "SELECT payload FROM {payloads} WHERE job_id = :job_id '
        'AND input_name = :input_name"\n'
        f'"{reviews}" = "SELECT job_id, input_name, url FROM {pointers} '
        'WHERE (job_id, input_name) IN :keys"\n'
        "[input_templates]\n"
        f'"{spam}" = "{sandbox.input_templates[spam]}"\n'
    )
    out = tmp_path / "ds"
    assert build(world, out, "--config", str(config)) == 0, capsys.readouterr().err
    by_model: dict[str, list[str]] = {}
    for row in read_samples(str(out)):
        by_model.setdefault(str(row.model_id), []).append(str(row.source_url))
    assert set(by_model) == {images, reviews, spam}
    assert all(u.startswith("sqlite:///") for u in by_model[images])
    assert all(u.startswith(sandbox.data_url) for u in by_model[reviews] + by_model[spam])
    db.drop()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            ["--input-query", "SELECT payload FROM t WHERE job_id = :job_id"],
            "needs --input-database",
        ),
        (["--input-database", "sqlite:////tmp/x.db"], "read by --input-query"),
        (
            [
                "--input-query",
                "SELECT payload FROM t WHERE a = :job_id",
                "--input-database",
                "postgresql://reader:Canary5ecretPw@db/prod",
            ],
            "holds a password",
        ),
        (
            [
                "--input-query",
                "SELECT payload FROM t WHERE a = :job_id",
                "--input-database",
                "sqlite:////tmp/x.db",
                "--input-template",
                "/d/{input_name}",
            ],
            "give one",
        ),
        (
            [
                "--input-query",
                "m1=SELECT payload FROM t WHERE a = :job_id",
                "--input-database",
                "sqlite:////tmp/x.db",
                "--input-template",
                "m1=/d/{input_name}",
            ],
            "model m1",
        ),
        (
            [
                "--input-query",
                "SELECT payload FROM t WHERE a = :secret",
                "--input-database",
                "sqlite:////tmp/x.db",
            ],
            ":secret",
        ),
    ],
)
def test_bad_lineage_settings_exit_2_before_any_request(
    world: tuple[Sandbox, SandboxServer],
    sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    needle: str,
) -> None:
    before = sandbox.request_total
    assert build(world, tmp_path / "ds", *extra) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Canary5ecretPw" not in err
    assert sandbox.request_total == before


def test_a_query_whose_columns_name_no_shape_exits_2_before_any_request(
    world: tuple[Sandbox, SandboxServer],
    sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    db = Db("sqlite", url, __import__("sqlalchemy").create_engine(url))
    table = db.table([])
    before = sandbox.request_total
    query = f"SELECT input_name FROM {table} WHERE job_id = :job_id"
    assert build(world, tmp_path / "ds", "--input-query", query, "--input-database", url) == 2
    assert "payload" in capsys.readouterr().err
    assert sandbox.request_total == before
    db.drop()


def test_a_database_that_is_down_exits_1_and_publishes_nothing(
    world: tuple[Sandbox, SandboxServer],
    sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The retry budget as configured, without its waits (tests never sleep).
    monkeypatch.setattr(sql_database, "DEFAULT_RETRY", DatabaseRetry(initial_wait=0, jitter=0))
    url = f"sqlite:///{tmp_path / 'no-such-folder' / 'lineage.db'}"
    out, report = tmp_path / "ds", tmp_path / "report.json"
    query = "SELECT payload FROM requests WHERE job_id = :job_id AND input_name = :input_name"
    code = build(
        world, out, "--input-query", query, "--input-database", url, "--report", str(report)
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "DatabaseError" in err
    assert "could not be read after 5 attempts" in err
    assert json.loads(report.read_text())["error"]["type"] == "DatabaseError"
    assert not (out / "manifest.json").exists()
    assert not out.exists() or not any(out.rglob("manifest.json"))
