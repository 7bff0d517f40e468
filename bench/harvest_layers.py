"""Benchmark: where a harvest's time goes, layer by layer, at one concurrency.

Against the same sandbox (its own process, real HTTP on loopback, 50 ms per request),
fetches every finished job's results with 32 threads (``--concurrency``), adding one
layer at a time: a transport alone (httpx's, then this library's own), then JSON
decoding, then this library's client call (retries, error mapping), then parsing, then
the ``ResultFetcher``, then the history pager in front of it. Prints jobs per second,
the share of the bound (concurrency / latency) and the client's CPU per job for each.

Run: ``.venv/bin/python bench/harvest_layers.py [--jobs 2000] [--concurrency 32]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import ssl
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harvest import start_sandbox

from modzy_retrain import JobHistoryQuery, ModzyClient, ResultFetcher
from modzy_retrain._client.calls import job_results_body
from modzy_retrain._client.http11 import HTTP11Transport
from modzy_retrain._client.parsing import parse_job_results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    conc = args.concurrency
    bound = conc / (args.latency_ms / 1000)
    proc, info = start_sandbox(args.jobs, args.latency_ms)
    url, key = info["base_url"], info["api_key"]
    try:
        with ModzyClient(api_key=key, base_url=url) as c:
            jobs = [j for j in JobHistoryQuery(c, page_size=1000) if j.is_finished]
        n = len(jobs)

        def measure(name: str, run: Callable[[], Any]) -> None:
            cpu, wall = time.process_time(), time.perf_counter()
            run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"{name:<40}{n / wall:>8.0f}{n / wall / bound:>9.0%}{cpu / n * 1e6:>10.0f}")

        print(f"{n} finished jobs, {conc} in flight, bound {bound:.0f} jobs/s")
        print(f"{'layers':<40}{'jobs/s':>8}{'of bound':>9}{'µs CPU':>10}")
        headers = {"Authorization": f"ApiKey {key}", "Accept": "application/json"}
        limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
        pools = [httpx.HTTPTransport(limits=limits) for _ in range(max(1, conc // 8))]
        ours = HTTP11Transport(ssl_context=ssl.create_default_context(), max_connections=64)
        turn = itertools.count()
        timeout = {"timeout": httpx.Timeout(60.0).as_dict()}

        def send(transport: httpx.BaseTransport, job_id: str) -> bytes:
            request = httpx.Request(
                "GET", f"{url}/results/{job_id}", headers=headers, extensions=timeout
            )
            response = transport.handle_request(request)
            try:
                return response.read()
            finally:
                response.close()

        def httpx_raw(job_id: str) -> bytes:
            return send(pools[next(turn) % len(pools)], job_id)

        def raw(job_id: str) -> bytes:
            return send(ours, job_id)

        ids = [j.job_id for j in jobs]
        with ThreadPoolExecutor(conc) as pool, ModzyClient(api_key=key, base_url=url) as c:
            measure("httpx transport (pools of 8)", lambda: list(pool.map(httpx_raw, ids)))
            measure("modzy_retrain HTTP11Transport", lambda: list(pool.map(raw, ids)))
            measure("+ JSON decoding", lambda: list(pool.map(lambda i: json.loads(raw(i)), ids)))
            measure(
                "client.call (retries, errors, decoding)",
                lambda: list(pool.map(lambda i: c.call(job_results_body(i)), ids)),
            )
            measure(
                "+ parsing",
                lambda: list(
                    pool.map(
                        lambda j: parse_job_results(
                            j.job_id, c.call(job_results_body(j.job_id)), strict=False
                        ),
                        jobs,
                    )
                ),
            )
        with ModzyClient(api_key=key, base_url=url) as c:
            measure("ResultFetcher (records, report)", lambda: list(ResultFetcher(c)(jobs)))
            measure(
                "JobHistoryQuery | ResultFetcher",
                lambda: list(JobHistoryQuery(c) | ResultFetcher(c, concurrency=conc)),
            )
    finally:
        proc.terminate()
        proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
