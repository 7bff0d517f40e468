"""Benchmark: parsing job results into typed records, on one core.

Takes the results bodies of every finished job of a sandbox world (fetched once, in
process), then times, on this one thread and without any I/O:

- ``parse``: ``parse_job_results`` (the typed ``JobResults``) from decoded JSON;
- ``parse + records``: that, then the ``PredictionRecord`` per input the fetcher yields;
- ``bytes to records``: ``json.loads`` of the body bytes first, as a fetch does.

Each is the best of ``--repeat`` rounds, as process CPU time, in jobs and records per
second. ``--profile`` prints where the time goes (cProfile, by own time); for a live
view of a whole run, ``py-spy record -o out.svg -- python bench/harvest.py`` works too.

Run: ``.venv/bin/python bench/parse.py [--jobs 2000] [--repeat 5] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

from modzy_retrain import JobHistoryQuery, ModzyClient
from modzy_retrain._client.calls import job_results_body
from modzy_retrain._client.parsing import parse_job_results
from modzy_retrain._stages.records import records_from_results
from modzy_retrain.sandbox import Sandbox


def best_cpu(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """The least CPU time of ``repeat`` calls, and what the call returned."""
    best, out = float("inf"), 0
    for _ in range(repeat):
        started = time.process_time()
        out = fn()
        best = min(best, time.process_time() - started)
    return best, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print the hot spots")
    args = parser.parse_args()

    sandbox = Sandbox(seed=3, jobs=args.jobs)
    with ModzyClient(
        api_key=sandbox.api_key, base_url="http://sandbox.invalid", transport=sandbox.transport()
    ) as client:
        jobs = [j for j in JobHistoryQuery(client, page_size=1000) if j.is_finished]
        bodies: list[Any] = [client.call(job_results_body(j.job_id)) for j in jobs]
    raw = [json.dumps(body).encode() for body in bodies]
    pairs = list(zip(jobs, bodies, strict=True))

    def parse() -> int:
        return sum(len(parse_job_results(j.job_id, b, strict=False).results) for j, b in pairs)

    def parse_records() -> int:
        n = 0
        for job, body in pairs:
            n += len(
                list(records_from_results(job, parse_job_results(job.job_id, body, strict=False)))
            )
        return n

    def from_bytes() -> int:
        n = 0
        for job, data in zip(jobs, raw, strict=True):
            results = parse_job_results(job.job_id, json.loads(data), strict=False)
            n += len(list(records_from_results(job, results)))
        return n

    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, one thread")
    size = sum(map(len, raw)) / len(raw)
    print(f"workload: {len(jobs)} finished jobs, results bodies of {size:,.0f} bytes on average")
    print(f"{'step':<20}{'jobs/s':>10}{'records/s':>12}{'µs/job':>9}")
    for name, fn in (
        ("parse", parse),
        ("parse + records", parse_records),
        ("bytes to records", from_bytes),
    ):
        seconds, records = best_cpu(fn, args.repeat)
        print(
            f"{name:<20}{len(jobs) / seconds:>10,.0f}{records / seconds:>12,.0f}"
            f"{seconds / len(jobs) * 1e6:>9.0f}"
        )
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(from_bytes)
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
