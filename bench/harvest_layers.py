"""Benchmark: where a harvest's time goes, layer by layer, at one concurrency.

Against the same sandbox (its own process, real HTTP on loopback, 50 ms per request),
fetches every finished job's results with 32 threads (``--concurrency``), adding one
layer at a time: httpx's transport alone (one pool), then ``httpx.Client.send`` (what
the library sends through), then JSON decoding, then this library's client call
(retries, error mapping), then parsing, then the ``ResultFetcher``, then the history
pager in front of it. Then the same raw fetch on asyncio tasks: ``httpx.AsyncClient``
and, when installed, the opt-in ``httpx-aiohttp`` client. Prints jobs per second, the
share of the bound (concurrency / latency) and the client's CPU per job for each.

Run: ``.venv/bin/python bench/harvest_layers.py [--jobs 2000] [--concurrency 32]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from modzy_retrain._client.parsing import parse_job_results


def async_clients(headers: dict[str, str]) -> list[tuple[str, Callable[[], Any]]]:
    """The async HTTP clients to compare: stock httpx, and httpx-aiohttp if installed."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    clients: list[tuple[str, Callable[[], Any]]] = [
        ("async: httpx.AsyncClient", lambda: httpx.AsyncClient(limits=limits, headers=headers))
    ]
    try:
        from httpx_aiohttp import HttpxAiohttpClient
    except ImportError:
        return clients
    clients.append(("async: httpx-aiohttp client", lambda: HttpxAiohttpClient(headers=headers)))
    return clients


async def fetch_async(make: Callable[[], Any], url: str, ids: list[str], conc: int) -> None:
    """Every job's results body, ``conc`` requests in flight on one event loop."""
    queue = iter(ids)
    async with make() as http:

        async def worker() -> None:
            for job_id in queue:
                (await http.get(f"{url}/results/{job_id}")).raise_for_status()

        await asyncio.gather(*(worker() for _ in range(conc)))


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
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        transport = httpx.HTTPTransport(limits=limits)
        http = httpx.Client(limits=limits, headers=headers)
        timeout = {"timeout": httpx.Timeout(60.0).as_dict()}

        def transport_only(job_id: str) -> bytes:
            request = httpx.Request(
                "GET", f"{url}/results/{job_id}", headers=headers, extensions=timeout
            )
            response = transport.handle_request(request)
            try:
                return response.read()
            finally:
                response.close()

        def raw(job_id: str) -> bytes:
            return http.get(f"{url}/results/{job_id}").content

        ids = [j.job_id for j in jobs]
        with ThreadPoolExecutor(conc) as pool, ModzyClient(api_key=key, base_url=url) as c:
            measure("httpx transport alone (one pool)", lambda: list(pool.map(transport_only, ids)))
            measure("httpx.Client", lambda: list(pool.map(raw, ids)))
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
        transport.close()
        http.close()
        with ModzyClient(api_key=key, base_url=url) as c:
            measure("ResultFetcher (records, report)", lambda: list(ResultFetcher(c)(jobs)))
            measure(
                "JobHistoryQuery | ResultFetcher",
                lambda: list(JobHistoryQuery(c) | ResultFetcher(c, concurrency=conc)),
            )
        for name, make in async_clients(headers):
            measure(name, lambda make=make: asyncio.run(fetch_async(make, url, ids, conc)))
    finally:
        proc.terminate()
        proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
