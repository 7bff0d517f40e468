"""Lineage databases for the SQL suite: a SQLite file, and the session's real PostgreSQL.

``db`` runs a test once on each: tables are made with SQLAlchemy Core (``LargeBinary``
is a BLOB in SQLite, a BYTEA in PostgreSQL), under names of their own, and dropped
after the test; the PostgreSQL cluster is the session's (``postgres`` in
tests/conftest.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modzy_retrain import PredictionRecord, Sample
from modzy_retrain.sandbox import PostgresServer, Sandbox

WHEN = datetime(2025, 1, 14, 8, 30, tzinfo=timezone.utc)


@dataclass
class Db:
    """One lineage database for a test: its URL (for the stage) and an admin engine."""

    backend: str
    url: str
    engine: Any
    tables: list[str] = field(default_factory=list)

    def table(
        self,
        rows: Iterable[dict[str, Any]],
        *,
        columns: Iterable[tuple[str, Any]] = (),
        name: str | None = None,
    ) -> str:
        """A new table (``job_id``, ``input_name``, ``model_id``, ``payload`` bytes,
        ``url`` text, and ``columns``) holding ``rows``; its name."""
        name = name or f"requests_{uuid.uuid4().hex[:10]}"
        meta = sa.MetaData()
        table = sa.Table(
            name,
            meta,
            sa.Column("job_id", sa.Text),
            sa.Column("input_name", sa.Text),
            sa.Column("model_id", sa.Text),
            sa.Column("payload", sa.LargeBinary),
            sa.Column("url", sa.Text),
            *(sa.Column(n, t) for n, t in columns),
        )
        meta.create_all(self.engine)
        self.tables.append(name)
        batch = list(rows)
        if batch:
            with self.engine.begin() as connection:
                connection.execute(table.insert(), batch)
        return name

    def drop(self) -> None:
        with self.engine.begin() as connection:
            for name in self.tables:
                connection.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
        self.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lineage.db'}"
        found = Db("sqlite", url, sa.create_engine(url))
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        found = Db("postgresql", server.url(), sa.create_engine(server.url()))
    try:
        yield found
    finally:
        found.drop()


def sample(
    name: str,
    job: str = "job-1",
    model: str = "m1",
    label: str | None = "cat",
) -> Sample:
    record = PredictionRecord(
        job_id=job,
        input_name=name,
        model_id=model,
        model_version="1.0.0",
        model_name="Model",
        submitted_at=WHEN,
        job_status="COMPLETED",
    )
    return Sample(record=record, label=label, label_state="confirmed", rule="test")


def sandbox_rows(sandbox: Sandbox) -> list[dict[str, Any]]:
    """Every raw input of a sandbox as a row (its deliberately missing ones left out)."""
    missing = {(m.job_id, m.input_name) for m in sandbox.missing_inputs}
    return [
        {
            "job_id": job.id,
            "input_name": item.name,
            "model_id": job.model.id,
            "payload": sandbox.input_bytes(job.id, item.name),
        }
        for job in sandbox.jobs
        for item in job.inputs
        if (job.id, item.name) not in missing
    ]
