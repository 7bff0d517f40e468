"""Canary secrets: the demo, a build, a failing build and the CLI never show them.

A canary API key and canary storage options go in; every log record at DEBUG (ours,
httpx's, httpcore's, fsspec's), stdout and stderr, the run report (text, HTML, JSON,
the report file), the feedback report (text, HTML page, JSON), the manifest, its
tallies and samples, every file the runs wrote, exception texts
and reprs are searched for them afterwards. (Real S3 and GCS credentials get the same
treatment in tests/cloud.)

The lineage database's password too: a real PostgreSQL role with a password, read
from ``PGPASSWORD`` and from a variable the settings name, and a wrong one refused.

Credentials inside URLs get the same treatment: input templates with ``user:password@``
and signed queries (an Azure SAS, S3 and GCS presigned URLs, tokens), served over HTTP
on loopback, through builds in copy and reference mode.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import fsspec
import pytest
import sqlalchemy as sa

from modzy_retrain import (
    DatabaseError,
    DatasetWriter,
    Everything,
    JobHistoryQuery,
    LineageResolver,
    ModzyClient,
    ModzyRetrainError,
    ResultFetcher,
    RunReport,
    SqlLineageResolver,
    VoteFilter,
    read_samples,
)
from modzy_retrain._cli.build import EXIT_ERROR, load_settings
from modzy_retrain._cli.main import main
from modzy_retrain.sandbox import PostgresServer, Sandbox

KEY_SECRET = "CanarySecret0xDEADBEEF42"
CANARY_KEY = f"CanaryPrefix01.{KEY_SECRET}"
STORAGE_SECRET = "canary-storage-secret-9d1e"


def everything_written(root: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()
    )


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records
    return caplog


class Echo(BaseHTTPRequestHandler):
    """A hostile server: echoes the request's headers back in an error body."""

    def do_GET(self) -> None:
        body = json.dumps({"message": f"rejected {dict(self.headers)}", "status": 400}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_canaries_appear_nowhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    debug_logs: pytest.LogCaptureFixture,
    echo_url: str,
) -> None:
    sandbox = Sandbox(seed=8, jobs=60, api_key=CANARY_KEY, data_url=str(tmp_path / "inputs"))
    sandbox.write_inputs()
    texts: list[str] = []
    monkeypatch.setenv("MODZY_API_KEY", CANARY_KEY)
    templates = [
        a for m, t in sandbox.input_templates.items() for a in ("--input-template", f"{m}={t}")
    ]
    storage = ["--storage-option", f"canary_token={STORAGE_SECRET}"]
    with sandbox.serve() as server:
        common = ["--base-url", server.base_url, *templates, *storage, "--quiet"]
        out = tmp_path / "built"
        report_file = tmp_path / "report.json"
        # A build, then a second one (nothing new), then inspect.
        assert main(["build", "--out", str(out), "--report", str(report_file), *common]) == 0
        assert main(["build", "--out", str(out), *common]) == 3
        assert main(["inspect", str(out)]) == 0
        # The feedback report: its summary, its page and its numbers, all written here.
        page, numbers = str(tmp_path / "feedback.html"), str(tmp_path / "feedback.json")
        assert main(["report", str(out), "--html", page, "--json", numbers, *storage]) == 0
        # A dry run prints the plan.
        assert main(["build", "--out", str(tmp_path / "dry"), "--dry-run", *common]) == 0
        # A client's repr, and a report made through the library.
        with ModzyClient(base_url=server.base_url) as client:
            texts.append(repr(client))
            report = RunReport()
            texts += [str(report), report._repr_html_(), report.to_json()]
    # A failing build: the server echoes the Authorization header back in its error.
    failing = ["build", "--out", str(tmp_path / "failed"), "--base-url", echo_url, *templates]
    assert main([*failing, *storage, "--quiet"]) == EXIT_ERROR
    # The settings a build reads, with the storage secret in them.
    settings = load_settings(
        None,
        {"out": str(tmp_path / "x"), "storage_options": {"secret": STORAGE_SECRET}},
    )
    texts += [repr(settings), str(settings)]
    try:
        with ModzyClient(api_key=CANARY_KEY, base_url=echo_url) as client:
            client.models.list()
    except ModzyRetrainError as exc:
        texts += [str(exc), repr(exc), repr(exc.__dict__)]
    else:  # pragma: no cover - the echo server always answers 400
        pytest.fail("the echo server should have refused")
    # The demo, with its own sandbox's key.
    demo_key = Sandbox(seed=0, jobs=40).api_key
    assert main(["demo", "--out", str(tmp_path / "demo"), "--jobs", "40"]) == 0

    captured = capsys.readouterr()
    texts += [captured.out, captured.err, debug_logs.text, everything_written(tmp_path)]
    texts += [repr(r.args) + r.getMessage() for r in debug_logs.records]
    assert any("GET /results/" in r.getMessage() for r in debug_logs.records)  # logs were on
    haystack = "\n".join(texts)
    assert "rejected" in haystack  # the echo's error reached the output, redacted
    for secret in (KEY_SECRET, STORAGE_SECRET, demo_key.split(".", 1)[1]):
        assert secret not in haystack


URL_PASSWORD = "CanaryUrlPassw0rd77"
URL_SIGNATURE = "CanaryUrlSignature5a"
URL_TOKEN = "CanaryUrlToken3c"
URL_SECRETS = (URL_PASSWORD, URL_SIGNATURE, URL_TOKEN)
# One signed form per sandbox model (three models): each keeps versionId=7, which the
# server below needs to find an object, as a store needs a version or generation.
SIGNED_QUERIES = (
    # an Azure SAS
    f"versionId=7&sv=2022-11-02&se=2030-01-01T00%3A00%3A00Z&sr=b&sp=r&sig={URL_SIGNATURE}",
    # an S3 presigned URL (signature version 4, with a session token)
    "versionId=7&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20300101"
    f"&X-Amz-Date=20300101T000000Z&X-Amz-Expires=900&X-Amz-Security-Token={URL_TOKEN}"
    f"&X-Amz-SignedHeaders=host&X-Amz-Signature={URL_SIGNATURE}",
    # a GCS signed URL, and a plain token
    f"X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature={URL_SIGNATURE}&versionId=7"
    f"&access_token={URL_TOKEN}&token={URL_TOKEN}",
)


class VersionedFiles(SimpleHTTPRequestHandler):
    """Serves the inputs folder, but only to a request naming ``versionId=7``."""

    def do_GET(self) -> None:
        if parse_qs(urlsplit(self.path).query).get("versionId") != ["7"]:
            self.send_error(404)
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        if parse_qs(urlsplit(self.path).query).get("versionId") != ["7"]:
            self.send_error(404)
            return
        super().do_HEAD()

    def log_message(self, *args: object) -> None:
        pass


def test_credentials_in_templates_and_signed_urls_appear_nowhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    inputs = tmp_path / "inputs"
    sandbox = Sandbox(seed=8, jobs=60, data_url=str(inputs))
    sandbox.write_inputs()
    assert sandbox.missing_inputs  # their drops name their URL
    server = HTTPServer(("127.0.0.1", 0), functools.partial(VersionedFiles, directory=inputs))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    signed_root = f"http://reader:{URL_PASSWORD}@127.0.0.1:{server.server_port}"
    templates = {
        model: template.replace(str(inputs), signed_root) + "?" + query
        for (model, template), query in zip(
            sandbox.input_templates.items(), SIGNED_QUERIES, strict=True
        )
    }
    flags = [a for m, t in templates.items() for a in ("--input-template", f"{m}={t}")]
    monkeypatch.setenv("MODZY_API_KEY", sandbox.api_key)
    texts: list[str] = []
    try:
        with sandbox.serve() as api:
            common = ["--base-url", api.base_url, "--select", "everything", *flags]
            out = tmp_path / "built"
            report_file = tmp_path / "report.json"
            # Copy mode through the command line (printed, its report file), a dry run,
            # inspect, and a template refused for an unknown field.
            assert main(["build", "--out", str(out), "--report", str(report_file), *common]) == 0
            assert main(["build", "--out", str(tmp_path / "dry"), "--dry-run", *common]) == 0
            assert main(["inspect", str(out)]) == 0
            bad = f"{signed_root}/{{nope}}?sig={URL_SIGNATURE}"
            refused = ["build", "--out", str(tmp_path / "bad"), "--base-url", api.base_url]
            assert main([*refused, "--input-template", bad]) == 2
        # Reference mode through the library: source_url is all a reader has.
        with ModzyClient(
            api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
        ) as client:
            resolver = LineageResolver(templates=templates)
            chain = (
                JobHistoryQuery(client)
                | ResultFetcher(client)
                | VoteFilter(Everything())
                | resolver
                | DatasetWriter(str(tmp_path / "referenced"), mode="reference")
            )
            report = chain.run()
            texts += [repr(resolver), repr(chain), str(report), report._repr_html_()]
            texts += [report.to_json()]
        assert any(d.reason == "source_missing" for d in report.drops)
        samples = list(read_samples(str(tmp_path / "referenced")))
        assert samples
        # Each source_url still finds its input: the identifying query is kept.
        for sample in samples[:12]:
            assert sample.source_url is not None
            assert "versionId=7" in sample.source_url
            with fsspec.open(sample.source_url, "rb") as handle:
                assert hashlib.sha256(handle.read()).hexdigest() == sample.sha256
        settings = load_settings(None, {"out": str(tmp_path / "x"), "input_templates": templates})
        texts += [repr(settings), str(settings)]
    finally:
        server.shutdown()
        server.server_close()

    captured = capsys.readouterr()
    texts += [captured.out, captured.err, everything_written(tmp_path / "built")]
    texts += [everything_written(tmp_path / "referenced"), report_file.read_text()]
    for record in debug_logs.records:
        # fsspec's HTTP file system logs each URL it requests, as given, at DEBUG: a
        # record of another library, which the library does not configure (see
        # docs/reliability.md#secrets). Every other record is searched.
        if not record.name.startswith("fsspec"):
            texts.append(repr(record.args) + record.getMessage() + str(record.exc_info))
    haystack = "\n".join(texts)
    assert "source_missing" in haystack  # the drops naming a URL reached them
    assert "127.0.0.1" in haystack
    for secret in URL_SECRETS:
        assert secret not in haystack, secret


DB_PASSWORD = "CanaryDbPassw0rd-4e1f"
DB_WRONG_PASSWORD = "CanaryWrongDbPassw0rd-b2"


def test_the_lineage_database_password_appears_nowhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    debug_logs: pytest.LogCaptureFixture,
    postgres: PostgresServer,
) -> None:
    """A real PostgreSQL role with a password (SCRAM over TCP): a build reads it from
    PGPASSWORD, another from the variable --input-database-password-env names, and a
    wrong one fails; the password is nowhere in what they print, log or write."""
    sandbox = Sandbox(seed=8, jobs=30)
    table = f"canary_{uuid.uuid4().hex[:8]}"
    role = f"reader_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres.url())
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{DB_PASSWORD}'"))
        connection.execute(
            sa.text(f"CREATE TABLE {table} (job_id text, input_name text, payload bytea)")
        )
        connection.execute(
            sa.text(f"INSERT INTO {table} VALUES (:job_id, :input_name, :payload)"),
            [
                {"job_id": j.id, "input_name": i.name, "payload": sandbox.input_bytes(j.id, i.name)}
                for j in sandbox.jobs
                for i in j.inputs
            ],
        )
        connection.execute(sa.text(f"GRANT SELECT ON {table} TO {role}"))
    database = postgres.url(user=role)
    query = f"SELECT job_id, input_name, payload FROM {table} WHERE (job_id, input_name) IN :keys"
    monkeypatch.setenv("MODZY_API_KEY", sandbox.api_key)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    texts: list[str] = []
    try:
        with sandbox.serve() as api:
            common = ["--base-url", api.base_url, "--select", "everything", "--quiet"]
            common += ["--input-query", query, "--input-database", database]
            report_file = tmp_path / "report.json"
            # The driver's own convention: libpq reads PGPASSWORD.
            monkeypatch.setenv("PGPASSWORD", DB_PASSWORD)
            out = ["--out", str(tmp_path / "built"), "--report", str(report_file)]
            assert main(["build", *out, *common]) == 0
            monkeypatch.delenv("PGPASSWORD")
            # A variable the settings name.
            monkeypatch.setenv("LINEAGE_DB_PASSWORD", DB_PASSWORD)
            named = ["--input-database-password-env", "LINEAGE_DB_PASSWORD"]
            assert main(["build", "--out", str(tmp_path / "named"), *named, *common]) == 0
            # A wrong password: the database refuses it (no retry), exit 1.
            monkeypatch.setenv("LINEAGE_DB_PASSWORD", DB_WRONG_PASSWORD)
            failed = ["--out", str(tmp_path / "failed"), "--report", str(tmp_path / "f.json")]
            assert main(["build", *failed, *named, *common]) == EXIT_ERROR
        resolver = SqlLineageResolver(database, query, password_env="LINEAGE_DB_PASSWORD")
        texts += [repr(resolver), repr(resolver.db), str(resolver.describe())]
        try:
            resolver.check()
        except DatabaseError as exc:
            texts += [str(exc), repr(exc), repr(exc.__dict__)]
        else:  # pragma: no cover - the password is wrong
            pytest.fail("the wrong password should have been refused")
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {table}"))
            connection.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()
    captured = capsys.readouterr()
    assert "refused the credentials" in captured.err
    texts += [captured.out, captured.err, everything_written(tmp_path)]
    texts += [repr(r.args) + r.getMessage() + str(r.exc_info) for r in debug_logs.records]
    haystack = "\n".join(texts)
    assert role in haystack  # the reference and the errors reached the output
    for secret in (DB_PASSWORD, DB_WRONG_PASSWORD):
        assert secret not in haystack, secret
