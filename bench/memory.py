"""Benchmark: peak memory of the whole chain, to a JSONL dataset, as the history grows.

For each job count N (10,000 and 100,000 by default):

1. the sandbox runs in its own process (``modzy-retrain sandbox``), N jobs x 4 inputs,
   real HTTP on loopback, no added latency, raw inputs written to a temporary folder;
   its memory is not counted;
2. a fresh child process runs the whole chain at default settings,
   ``JobHistoryQuery | ResultFetcher | VoteFilter | LineageResolver | DatasetWriter``,
   writing a JSONL dataset in copy mode (the inputs copied into it, the realistic case);
3. the child's peak RSS is read by the parent (``os.wait4``: ``ru_maxrss`` of that one
   child), with the child's own ``VmHWM`` as a cross-check.

The issue's bound: the peak for the largest N may exceed the peak for the smallest by at
most 20%. Prints both peaks, the ratio, wall times, samples written, PASS or FAIL.

Run: ``.venv/bin/python bench/memory.py [--jobs 10000 100000] [--seed 0]``.
``--samples-rss`` also prints the child's RSS through the run (sampled every second).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _sandbox_process import checkout_env
from _sandbox_process import start_sandbox as sandbox_process


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# -- the child: the chain under measurement -------------------------------------------


def child(info: dict[str, Any], out: str, sample_rss: bool) -> int:
    from modzy_retrain import (
        DatasetWriter,
        JobHistoryQuery,
        LineageResolver,
        ModzyClient,
        ResultFetcher,
        VoteFilter,
        verify_dataset,
    )

    trace: list[tuple[float, int]] = []
    stop = threading.Event()
    started = time.perf_counter()

    def sampler() -> None:
        while not stop.wait(1.0):
            trace.append((time.perf_counter() - started, _status_kib("VmRSS")))

    thread = threading.Thread(target=sampler, daemon=True)
    if sample_rss:
        thread.start()
    baseline = _status_kib("VmRSS")
    with ModzyClient(api_key=info["api_key"], base_url=info["base_url"]) as client:
        report = (
            JobHistoryQuery(client)
            | ResultFetcher(client)
            | VoteFilter()
            | LineageResolver(templates=info["input_templates"])
            | DatasetWriter(out)
        ).run()
    seconds = time.perf_counter() - started
    stop.set()
    peak = _status_kib("VmHWM")
    problems = verify_dataset(out)  # after the peak is read: not part of the run
    import modzy_retrain

    print(
        json.dumps(
            {
                "module": modzy_retrain.__file__,
                "seconds": seconds,
                "inputs_seen": report.inputs_seen,
                "samples": report.delivered,
                "reconciled": report.reconciled,
                "drops": report.drops_by_reason(),
                "details": len(report.drops),
                "dataset": report.dataset,
                "verified": not problems,
                "baseline_kib": baseline,
                "vmhwm_kib": peak,
                "trace": trace,
            }
        )
    )
    return 0


# -- the parent: sandbox, child, figures ------------------------------------------------


def start_sandbox(jobs: int, seed: int, inputs: int, data: Path) -> tuple[Any, dict[str, Any]]:
    return sandbox_process(
        "--jobs",
        str(jobs),
        "--inputs-per-job",
        str(inputs),
        "--seed",
        str(seed),
        "--data-url",
        str(data),
    )


def measure(jobs: int, seed: int, inputs: int, sample_rss: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="modzy-bench-memory-") as tmp:
        t0 = time.perf_counter()
        sandbox, info = start_sandbox(jobs, seed, inputs, Path(tmp) / "inputs")
        setup = time.perf_counter() - t0
        try:
            out_file = Path(tmp) / "child.json"
            with out_file.open("w") as handle:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        json.dumps(info),
                        "--out",
                        str(Path(tmp) / "dataset"),
                        *(["--samples-rss"] if sample_rss else []),
                    ],
                    stdout=handle,
                    env=checkout_env(),
                )
                # wait4: the rusage of this one child, not of every child ever waited
                # for (RUSAGE_CHILDREN would include an earlier sandbox's peak).
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise SystemExit(f"the chain failed (exit {proc.returncode}) for {jobs} jobs")
            result: dict[str, Any] = json.loads(out_file.read_text())
        finally:
            sandbox.terminate()
            sandbox.wait()
        result["jobs"] = jobs
        result["setup_seconds"] = setup
        result["maxrss_kib"] = usage.ru_maxrss  # KiB on Linux
        result["disk_bytes"] = sum(
            f.stat().st_size for f in (Path(tmp) / "dataset").rglob("*") if f.is_file()
        )
        return result


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inputs-per-job", type=int, default=4)
    parser.add_argument(
        "--bound", type=float, default=0.2, help="allowed growth of the peak (default 0.2)"
    )
    parser.add_argument("--samples-rss", action="store_true", help="print RSS through each run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(json.loads(args.child), args.out, args.samples_rss)
    if sys.platform != "linux":
        raise SystemExit("bench/memory.py reads Linux's /proc and ru_maxrss (KiB)")
    rows = []
    for jobs in args.jobs:
        row = measure(jobs, args.seed, args.inputs_per_job, args.samples_rss)
        rows.append(row)
        print(
            f"{jobs} jobs: peak RSS {mib(row['maxrss_kib'])} (VmHWM {mib(row['vmhwm_kib'])}, "
            f"after imports {mib(row['baseline_kib'])}), {row['seconds']:.1f} s, "
            f"{row['samples']} samples, reconciled {row['reconciled']}, "
            f"verified {row['verified']}",
            flush=True,
        )
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"module: {rows[0]['module']}")
    print(
        f"workload: seed {args.seed}, N jobs x {args.inputs_per_job} inputs, sandbox in its "
        "own process over loopback HTTP, latency 0; chain at defaults to JSONL, copy mode"
    )
    print(
        f"{'jobs':>8}{'inputs':>9}{'samples':>9}{'files':>9}{'dataset':>11}"
        f"{'setup s':>9}{'chain s':>9}{'peak RSS':>12}"
    )
    for r in rows:
        files = (r["dataset"] or {}).get("files", 0)
        print(
            f"{r['jobs']:>8}{r['inputs_seen']:>9}{r['samples']:>9}{files:>9}"
            f"{r['disk_bytes'] / 2**20:>9.1f}Mi{r['setup_seconds']:>9.1f}{r['seconds']:>9.1f}"
            f"{mib(r['maxrss_kib']):>12}"
        )
        drops = ", ".join(f"{k} {v}" for k, v in sorted(r["drops"].items()))
        print(f"  drops (inputs): {drops}; drop details kept: {r['details']}")
        if args.samples_rss:
            trace = r["trace"]
            step = max(1, len(trace) // 10)
            points = ", ".join(f"{t:.0f}s {kib / 1024:.0f}" for t, kib in trace[::step])
            print(f"  RSS (MiB) through the run: {points}")
    ok = all(r["reconciled"] and r["verified"] for r in rows)
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        ratio = large["maxrss_kib"] / small["maxrss_kib"]
        passed = ratio <= 1 + args.bound
        print(
            f"peak RSS {large['jobs']} / {small['jobs']} jobs: {ratio:.3f} "
            f"(bound {1 + args.bound:.2f}): {'PASS' if passed else 'FAIL'}"
        )
        ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
