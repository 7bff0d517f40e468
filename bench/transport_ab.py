"""Benchmark: the clients' own HTTP/1.1 transport against httpx's, alternating, one run.

The harvest (``JobHistoryQuery | ResultFetcher``) at one concurrency against the same
sandbox (its own process, real HTTP on loopback, 50 ms per request), sync and async,
each on httpx's transports (httpcore, pools of 8, as the clients use through a proxy)
and on the library's own, alternating run by run so that both meet the same moments
of a shared machine. Prints each run and the medians (share of the bound
``concurrency / latency``, client CPU per job).

Run: ``.venv/bin/python bench/transport_ab.py [--runs 4] [--concurrency 32]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harvest import start_sandbox

from modzy_retrain import AsyncModzyClient, JobHistoryQuery, ModzyClient, ResultFetcher
from modzy_retrain._client.client import _fail_fast_without_sniffio


def run_sync(url: str, key: str, conc: int, on_httpx: bool) -> tuple[float, float]:
    with ModzyClient(api_key=key, base_url=url, max_connections=max(64, conc)) as c:
        if on_httpx:
            c._pools = [httpx.HTTPTransport(**kw) for kw in c._transport_options(True)]
        wall, cpu = time.perf_counter(), time.process_time()
        it = (JobHistoryQuery(c) | ResultFetcher(c, concurrency=conc)).stream()
        for _ in it:
            pass
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        jobs = it.report.stages["fetch"].items_in
        return jobs / wall, cpu / jobs * 1000


async def run_async(url: str, key: str, conc: int, on_httpx: bool) -> tuple[float, float]:
    async with AsyncModzyClient(api_key=key, base_url=url, max_connections=max(64, conc)) as c:
        if on_httpx:
            # As the client's proxy path does it (a missing sniffio fails fast).
            _fail_fast_without_sniffio()
            c._pools = [httpx.AsyncHTTPTransport(**kw) for kw in c._transport_options(True)]
        wall, cpu = time.perf_counter(), time.process_time()
        it = (JobHistoryQuery(c) | ResultFetcher(c, concurrency=conc)).astream()
        async for _ in it:
            pass
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        jobs = it.report.stages["fetch"].items_in
        return jobs / wall, cpu / jobs * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    conc = args.concurrency
    bound = conc / (args.latency_ms / 1000)
    proc, info = start_sandbox(2000, args.latency_ms)
    url, key = info["base_url"], info["api_key"]
    plan = [(path, on) for path in ("sync", "async") for on in ("httpx", "own")]
    shares: dict[tuple[str, str], list[float]] = {p: [] for p in plan}
    cpus: dict[tuple[str, str], list[float]] = {p: [] for p in plan}
    try:
        run_sync(url, key, conc, False)  # warm the sandbox's caches
        print(f"{conc} in flight, bound {bound:.0f} jobs/s")
        for _ in range(args.runs):
            for path, on in plan:
                if path == "sync":
                    rate, cpu = run_sync(url, key, conc, on == "httpx")
                else:
                    rate, cpu = asyncio.run(run_async(url, key, conc, on == "httpx"))
                shares[(path, on)].append(rate / bound)
                cpus[(path, on)].append(cpu)
                print(
                    f"{path:<6}{on:<7}{rate:>8.1f} jobs/s {rate / bound:>5.0%} {cpu:.2f} ms CPU/job"
                )
    finally:
        proc.terminate()
        proc.wait()
    print("medians:")
    for key_ in plan:
        share, cpu = statistics.median(shares[key_]), statistics.median(cpus[key_])
        print(f"  {key_[0]:<6}{key_[1]:<7}{share:>6.1%} of the bound, {cpu:.2f} ms CPU/job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
