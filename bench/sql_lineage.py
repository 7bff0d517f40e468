"""Benchmark: lineage through a real PostgreSQL, batched resolver against a loop.

A throwaway PostgreSQL cluster (``modzy_retrain.sandbox.postgres_server``, the
machine's server binaries) holds N inputs as rows (``job_id``, ``input_name``, a
``bytea`` payload). Over the same rows, in one run, over TCP on loopback:

- (a) a one-row-per-query loop, as a script would write it: one connection, for each
  input ``SELECT payload ... WHERE job_id = %s AND input_name = %s``, then sha256;
- (b) ``SqlLineageResolver`` with that one-key query (it runs once per input, on its
  pool of 4 connections);
- (c) ``SqlLineageResolver`` with the batched query (``(job_id, input_name) IN
  :keys``, 256 keys a query), at its defaults.

Each gives every input's size and sha256 (checked equal across the three). Then (c)
runs again under tracemalloc: the peak of Python's allocations, against the payloads'
total, shows the resolver holds a window of batches, not the run.

``--latency-ms`` puts a loopback proxy between the client and the server that delays
each client-to-server chunk (one per query), to stand in for the network distance to
a real database (on loopback a query costs a fraction of a millisecond; across a data
centre's network, about one).

Run: ``.venv/bin/python bench/sql_lineage.py [--inputs 10000] [--size 2048]
[--latency-ms 0]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _latency_proxy import latency_proxy

from modzy_retrain import PredictionRecord, Sample, SqlLineageResolver
from modzy_retrain.sandbox import postgres_server

ONE_KEY = "SELECT payload FROM requests WHERE job_id = :job_id AND input_name = :input_name"
BATCHED = "SELECT job_id, input_name, payload FROM requests WHERE (job_id, input_name) IN :keys"


def sample(job: str, name: str) -> Sample:
    record = PredictionRecord(
        job_id=job,
        input_name=name,
        model_id="m1",
        model_version="1.0.0",
        submitted_at=datetime(2025, 1, 1, tzinfo=timezone.utc),
        job_status="COMPLETED",
    )
    return Sample(record=record, label="cat", label_state="confirmed", rule="bench")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    found = fn()
    return time.perf_counter() - started, found


def peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    fn()
    _, most = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return most


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=2048, help="bytes per payload")
    parser.add_argument("--jobs", type=int, default=2500, help="jobs the inputs spread over")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    keys = [(f"job-{i % args.jobs:05d}", f"input-{i:06d}.png") for i in range(args.inputs)]
    samples = [sample(job, name) for job, name in keys]

    with postgres_server() as pg, latency_proxy(pg.port, args.latency_ms) as port:
        engine = sa.create_engine(pg.url())
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "CREATE TABLE requests (job_id text, input_name text, payload bytea, "
                    "PRIMARY KEY (job_id, input_name))"
                )
            )
            rows = [{"j": job, "n": name, "p": os.urandom(args.size)} for job, name in keys]
            connection.execute(sa.text("INSERT INTO requests VALUES (:j, :n, :p)"), rows)
            connection.execute(sa.text("ANALYZE requests"))
        engine.dispose()
        del rows
        # No proxy at all without added latency: its own hop costs a little.
        url = pg.url() if not args.latency_ms else pg.url().replace(str(pg.port), str(port))
        engine = sa.create_engine(url)

        def loop() -> dict[tuple[str, str], tuple[int, str]]:
            found = {}
            with engine.connect() as connection:
                statement = sa.text(ONE_KEY)
                for job, name in keys:
                    payload = connection.execute(
                        statement, {"job_id": job, "input_name": name}
                    ).scalar_one()
                    found[job, name] = (len(payload), hashlib.sha256(payload).hexdigest())
            return found

        def resolver(query: str) -> Callable[[], dict[tuple[str, str], tuple[int, str]]]:
            def run() -> dict[tuple[str, str], tuple[int, str]]:
                stage = SqlLineageResolver(url, query)
                found = {}
                for s in stage(samples):
                    assert s.size is not None
                    assert s.sha256 is not None
                    found[s.key] = (s.size, s.sha256)  # the payload is let go here
                return found

            return run

        runs = {
            "(a) one-row-per-query loop": loop,
            "(b) SqlLineageResolver, one-key query": resolver(ONE_KEY),
            "(c) SqlLineageResolver, batched query": resolver(BATCHED),
        }
        results = {label: timed(fn) for label, fn in runs.items()}
        held = peak(resolver(BATCHED))
        engine.dispose()

    base_seconds, base_found = results["(a) one-row-per-query loop"]
    total = args.inputs * args.size
    print(
        f"{args.inputs:,} inputs of {args.size:,} bytes ({total / 2**20:.1f} MiB) on PostgreSQL "
        f"over TCP loopback, {args.latency_ms:g} ms added per query; "
        f"Python {platform.python_version()}, {os.cpu_count()} cores"
    )
    print(f"{'run':40} {'seconds':>8} {'inputs/s':>9} {'vs (a)':>7}")
    for label, (seconds, found) in results.items():
        assert found == base_found, f"{label} found other sizes or hashes"
        print(
            f"{label:40} {seconds:8.2f} {args.inputs / seconds:9.0f} {base_seconds / seconds:6.1f}x"
        )
    print(
        f"(c) peak of Python allocations: {held / 2**20:.1f} MiB, for {total / 2**20:.1f} MiB "
        "of payloads read"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
