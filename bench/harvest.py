"""Benchmark: harvest the whole history (every job's results, parsed) from the sandbox.

Compares, in one run against the same sandbox (its own process, real HTTP on loopback,
a fixed per-request latency):

- (a) the official SDK (modzy-sdk 0.11.6, in a throwaway venv) the way its README shows:
  one history page per call, then one ``results.get`` per job, sequentially;
- (b) modzy_retrain's sync ``JobHistoryQuery | ResultFetcher`` at default settings;
- (c) the async path at default settings;
- (d) both at concurrency 16, 32 and 64;
- (e) the async path at default settings on the opt-in aiohttp stack
  (``AsyncModzyClient(http_client=httpx_aiohttp.HttpxAiohttpClient())``), when
  ``httpx-aiohttp`` is installed (the ``aiohttp`` extra).

Each is reported in jobs per second, as a ratio to (a), and as a share of the bound
``concurrency / latency``. The sandbox's own capacity is measured too (many raw
keep-alive connections), to say which side limits.

Run: ``.venv/bin/python bench/harvest.py [--jobs 2000] [--latency-ms 50] [--venv DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from _sandbox_process import start_sandbox as sandbox_process  # noqa: E402
from check_official_sdk import _ensure_sdk  # noqa: E402

from modzy_retrain import (  # noqa: E402
    AsyncModzyClient,
    JobHistoryQuery,
    ModzyClient,
    ResultFetcher,
)
from modzy_retrain._stages.fetch import DEFAULT_CONCURRENCY  # noqa: E402

SDK_LOOP = r"""
import json, sys, time
from modzy import ApiClient
base_url, api_key = sys.argv[1], sys.argv[2]
client = ApiClient(base_url=base_url, api_key=api_key)
started = time.perf_counter()
jobs, page = [], 1
while True:
    batch = client.jobs.get_history(page=page, per_page=100)
    jobs.extend(batch)
    if len(batch) < 100:
        break
    page += 1
done = 0
for job in jobs:
    if job.status in ("SUBMITTED", "OPEN"):
        continue
    results = client.results.get(job)
    done += 1
elapsed = time.perf_counter() - started
print(json.dumps({"jobs": len(jobs), "fetched": done, "seconds": elapsed}))
"""


def start_sandbox(jobs: int, latency_ms: float) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    return sandbox_process(
        "--jobs", str(jobs), "--inputs-per-job", "4", "--latency-ms", str(latency_ms), "--seed", "3"
    )


async def sandbox_capacity(base_url: str, api_key: str, job_ids: list[str], conns: int) -> float:
    """Results requests per second the sandbox answers over `conns` raw connections."""
    host, port = base_url.split("//", 1)[1].split("/", 1)[0].split(":")
    queue = list(job_ids)

    async def worker() -> int:
        reader, writer = await asyncio.open_connection(host, int(port))
        n = 0
        while queue:
            job = queue.pop()
            writer.write(
                f"GET /api/results/{job} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: ApiKey {api_key}\r\n\r\n".encode()
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            await reader.readexactly(length)
            n += 1
        writer.close()
        return n

    started = time.perf_counter()
    total = sum(await asyncio.gather(*(worker() for _ in range(conns))))
    return total / (time.perf_counter() - started)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc; else 0)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Run:
    """One harvest: jobs, wall time, the client's CPU time and the sandbox's."""

    def __init__(self, sandbox_pid: int) -> None:
        self.sandbox_pid = sandbox_pid
        self.jobs = 0

    def __enter__(self) -> Run:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        self.sandbox_cpu = process_cpu(self.sandbox_pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.sandbox_cpu = process_cpu(self.sandbox_pid) - self.sandbox_cpu


def run_sync(base_url: str, api_key: str, concurrency: int, sandbox_pid: int) -> Run:
    with ModzyClient(api_key=api_key, base_url=base_url, max_connections=max(64, concurrency)) as c:
        with Run(sandbox_pid) as run:
            chain = JobHistoryQuery(c) | ResultFetcher(c, concurrency=concurrency)
            it = chain.stream()
            for _ in it:
                pass
        run.jobs = it.report.stages["fetch"].items_in
        return run


async def run_async(
    base_url: str, api_key: str, concurrency: int, sandbox_pid: int, aiohttp: bool = False
) -> Run:
    options: dict[str, Any] = {"max_connections": max(64, concurrency)}
    if aiohttp:
        from httpx_aiohttp import HttpxAiohttpClient

        options = {"http_client": HttpxAiohttpClient()}
    async with AsyncModzyClient(api_key=api_key, base_url=base_url, **options) as c:
        with Run(sandbox_pid) as run:
            it = (JobHistoryQuery(c) | ResultFetcher(c, concurrency=concurrency)).astream()
            async for _ in it:
                pass
        run.jobs = it.report.stages["fetch"].items_in
    if aiohttp:
        await options["http_client"].aclose()
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--venv", type=Path, default=None, help="reuse/keep the SDK venv here")
    parser.add_argument("--skip-sdk", action="store_true", help="skip (a), e.g. offline")
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    rows: list[tuple[str, int, float, Run | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        python = None if args.skip_sdk else _ensure_sdk(args.venv or Path(tmp) / "venv")
        proc, info = start_sandbox(args.jobs, args.latency_ms)
        try:
            base_url, key = info["base_url"], info["api_key"]
            with ModzyClient(api_key=key, base_url=base_url) as c:
                ids = [j.job_id for j in c.jobs.history(page_size=1000)]
            capacity = asyncio.run(sandbox_capacity(base_url, key, ids[:1000], 128))
            if python is not None:
                out = subprocess.run(
                    [str(python), "-c", SDK_LOOP, base_url, key],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                sdk = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(("(a) official SDK loop", 1, sdk["jobs"] / sdk["seconds"], None))
            plan = [("(b) sync, default", DEFAULT_CONCURRENCY, False)]
            plan.append(("(c) async, default", DEFAULT_CONCURRENCY, True))
            for conc in (16, 32, 64):
                plan += [(f"(d) sync, {conc}", conc, False), (f"(d) async, {conc}", conc, True)]
            if importlib.util.find_spec("httpx_aiohttp") is not None:
                plan.append(("(e) async, aiohttp, default", DEFAULT_CONCURRENCY, True))
            for name, conc, is_async in plan:
                if is_async:
                    aiohttp = "aiohttp" in name
                    run = asyncio.run(run_async(base_url, key, conc, proc.pid, aiohttp))
                else:
                    run = run_sync(base_url, key, conc, proc.pid)
                if "default" in name:
                    name += f" ({conc})"
                rows.append((name, conc, run.jobs / run.wall, run))
        finally:
            proc.terminate()
            proc.wait()
    sdk_rate = rows[0][2] if rows and rows[0][0].startswith("(a)") else None
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    sniffio = importlib.util.find_spec("sniffio") is not None
    print(f"httpx {httpx.__version__}, sniffio {'installed' if sniffio else 'NOT installed'}")
    print(f"workload: {args.jobs} jobs x 4 inputs, sandbox latency {args.latency_ms:g} ms")
    print(f"sandbox capacity (128 raw connections): {capacity:.0f} results/s")
    print(
        f"{'run':<26}{'jobs/s':>9}{'vs (a)':>9}{'bound':>8}{'of bound':>10}"
        f"{'client CPU':>14}{'sandbox CPU':>15}  limited by"
    )
    for name, conc, rate, run in rows:
        bound = conc / latency
        vs = f"{rate / sdk_rate:.1f}x" if sdk_rate else "-"
        side = "sandbox" if capacity < bound else "client"
        client_cpu = f"{run.cpu / run.jobs * 1000:.2f} ms/job" if run else "-"
        sandbox_cpu = f"{run.sandbox_cpu / run.wall:.0%} of a core" if run else "-"
        print(
            f"{name:<26}{rate:>9.1f}{vs:>9}{bound:>8.0f}{rate / bound:>10.0%}"
            f"{client_cpu:>14}{sandbox_cpu:>15}  {side}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
