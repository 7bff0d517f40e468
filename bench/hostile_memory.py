"""Benchmark: peak memory of a harvest when some results bodies are hostile in size.

Each scenario runs in a fresh child process whose peak RSS the parent reads with
``os.wait4`` (``ru_maxrss`` of that child alone):

- ``one-61``: one job whose results body is 61 MiB, among ordinary jobs;
- ``eight-15``: eight jobs in a row whose bodies are 15 MiB each (all eight can be in
  flight at once at the fetcher's default concurrency), among ordinary jobs.

A hostile body has one of three shapes (``--shapes``): ``floats``, a model explanation
that is a long list of numbers (what an honest but large output looks like);
``objects``, a list of empty objects (the most memory per byte ``json`` makes, about
24 times the text); ``inputs``, a results map of a million tiny inputs (each becomes a
parsed model and a record). The ordinary jobs have four inputs and about 3 KB of
results each.

The server is a small asyncio HTTP server in its own process on loopback (its memory is
not counted). It sends results bodies chunked, with no ``Content-Length``: a limit must
hold while the body arrives, not only from a header. The child runs
``JobHistoryQuery | ResultFetcher | VoteFilter`` at the library's defaults and reports
what came out and what was dropped.

Run: ``.venv/bin/python bench/hostile_memory.py`` (this checkout). ``--code DIR`` runs
the child against another checkout's ``modzy_retrain`` (the "before" figures come from
``--code`` pointing at the commit before the change). ``--bound MIB`` fails the run
when a peak passes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
ORDINARY = 120  # ordinary jobs; the hostile ones come after the twentieth
SCENARIOS = {"one-61": (1, 61), "eight-15": (8, 15)}

# -- the server -------------------------------------------------------------------------


def _jobs(hostile: int) -> list[dict[str, Any]]:
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    jobs = []
    for n in range(ORDINARY + hostile):
        is_hostile = 20 <= n < 20 + hostile
        # A hostile job has one input by its history entry (what its body claims is
        # another matter): 4 for an ordinary one.
        names = ["in-0"] if is_hostile else [f"in-{i}" for i in range(4)]
        stamp = (start + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        jobs.append(
            {
                "jobIdentifier": f"job-{n:05d}" + ("-hostile" if is_hostile else ""),
                "status": "COMPLETED",
                "model": {"identifier": "m1", "version": "1.0.0", "name": "Model"},
                "createdAt": stamp,
                "submittedAt": stamp,
                "total": len(names),
                "completed": len(names),
                "failed": 0,
                "jobInputs": {"identifier": names},
            }
        )
    return jobs


def _ordinary(job_id: str) -> bytes:
    results = {}
    for i in range(4):
        results[f"in-{i}"] = {
            "status": "SUCCESSFUL",
            "engine": "model-batch-1",
            "startTime": "2025-01-01T00:00:00.000+0000",
            "endTime": "2025-01-01T00:00:01.000+0000",
            "results.json": {
                "data": {
                    "result": {
                        "classPredictions": [
                            {"class": f"class-{k}", "score": round(0.9 - k * 0.2, 3)}
                            for k in range(5)
                        ]
                    },
                    "explanation": None,
                    "drift": None,
                }
            },
            "voting": {"up": i % 2, "down": 0},
        }
    body = {"jobIdentifier": job_id, "total": 4, "completed": 4, "failed": 0}
    body.update(finished=True, results=results, failures={})
    return json.dumps(body).encode()


def _hostile(job_id: str, shape: str, size: int) -> Iterator[bytes]:
    """The body, in pieces of about 1 MiB, ``size`` bytes in all (to a few bytes)."""
    head = {"jobIdentifier": job_id, "total": 1, "completed": 1, "failed": 0, "finished": True}
    prefix = json.dumps(head)[:-1].encode()
    if shape == "inputs":
        yield prefix + b', "results": {'
        item, end = b'"i%07d": {"status": "SUCCESSFUL"}, ', b'"last": {}}}'
    else:
        output = b'{"status": "SUCCESSFUL", "results.json": {"data": {"result": '
        output += b'{"classPredictions": [{"class": "a", "score": 0.9}]}, "explanation": ['
        yield prefix + b', "results": {"in-0": ' + output
        item = b"0.123456789, " if shape == "floats" else b"{}, "
        end = b'0]}}, "voting": {"up": 1, "down": 0}}}}'
    numbered = shape == "inputs"  # each input needs a name of its own
    unit = len(item % 0 if numbered else item)
    items = (size - 300) // unit  # the head and the end take less than 300 bytes
    per_piece = max(1, MIB // unit)
    for n in range(0, items, per_piece):
        count = min(per_piece, items - n)
        yield b"".join(item % (n + k) for k in range(count)) if numbered else item * count
    yield end


class Server:
    def __init__(self, shape: str, hostile: int, size_mib: int) -> None:
        self.shape, self.size = shape, size_mib * MIB
        self.jobs = _jobs(hostile)

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                await self.answer(urlsplit(target), writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    async def answer(self, url: Any, writer: asyncio.StreamWriter) -> None:
        path = url.path
        if path.endswith("/jobs/history"):
            query = parse_qs(url.query)
            page, per = int(query["page"][0]), int(query["per-page"][0])
            body = json.dumps(self.jobs[(page - 1) * per : page * per]).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        elif path.split("/")[-1].endswith("-hostile"):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in _hostile(path.split("/")[-1], self.shape, self.size):
                writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            body = _ordinary(path.split("/")[-1])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()

    async def serve(self) -> None:
        server = await asyncio.start_server(self.connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"base_url": f"http://127.0.0.1:{port}/api"}), flush=True)
        async with server:
            await server.serve_forever()


# -- the child: the harvest under measurement -------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _limit(detail: str) -> str | None:
    """Which of the library's limits a drop's detail names, if any."""
    names = ("max_response_bytes", "max_bytes_in_flight", "max_inputs_per_job")
    return next((name for name in names if name in detail), None)


def child(base_url: str) -> int:
    import modzy_retrain
    from modzy_retrain import JobHistoryQuery, ModzyClient, ResultFetcher, VoteFilter

    baseline = _status_kib("VmRSS")
    hostile = 0
    with ModzyClient(api_key="bench.key", base_url=base_url) as client:
        it = (JobHistoryQuery(client) | ResultFetcher(client) | VoteFilter()).stream()
        for sample in it:
            hostile += sample.record.job_id.endswith("-hostile")
    report = it.report
    refused = [d for d in report.drops if d.job_id.endswith("-hostile")]
    print(
        json.dumps(
            {
                "module": modzy_retrain.__file__,
                "baseline_kib": baseline,
                "vmhwm_kib": _status_kib("VmHWM"),
                "hostile_delivered": hostile,
                "hostile_refused": len({d.job_id for d in refused}),
                "why": sorted({_limit(d.detail) or d.reason for d in refused}),
                "reconciled": report.reconciled,
            }
        )
    )
    return 0


# -- the parent -------------------------------------------------------------------------


def measure(shape: str, scenario: str, code: Path) -> dict[str, Any]:
    hostile, size = SCENARIOS[scenario]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", shape, str(hostile), str(size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = json.loads(server.stdout.readline())["base_url"]
        env = dict(os.environ, PYTHONPATH=str(code))
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--child", base_url], stdout=out, env=env, cwd="/"
            )
            _, status, usage = os.wait4(proc.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"the harvest failed for {shape} {scenario}")
            out.seek(0)
            result: dict[str, Any] = json.loads(out.read())
    finally:
        server.terminate()
        server.wait()
    result.update(shape=shape, scenario=scenario, maxrss_kib=usage.ru_maxrss)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["floats", "objects", "inputs"])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout to import")
    parser.add_argument("--bound", type=float, help="fail when a peak passes this (MiB)")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        shape, hostile, size = args.serve
        asyncio.run(Server(shape, int(hostile), int(size)).serve())
        return 0
    if args.child:
        return child(args.child)
    if sys.platform != "linux":
        raise SystemExit("bench/hostile_memory.py reads Linux's /proc and ru_maxrss (KiB)")
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    ok = True
    for scenario in args.scenarios:
        for shape in args.shapes:
            r = measure(shape, scenario, args.code.resolve())
            peak = r["maxrss_kib"] / 1024
            passed = args.bound is None or peak <= args.bound
            ok = ok and passed and r["reconciled"]
            why = f" by {', '.join(r['why'])}" if r["why"] else ""
            print(
                f"{scenario:9} {shape:8} peak RSS {peak:7.1f} MiB (after imports "
                f"{r['baseline_kib'] / 1024:.1f}); hostile jobs delivered "
                f"{r['hostile_delivered']}, refused {r['hostile_refused']}{why}"
                + ("" if passed else f"  OVER {args.bound:g} MiB"),
                flush=True,
            )
    print(f"module: {r['module']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
