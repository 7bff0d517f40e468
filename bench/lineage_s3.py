"""Benchmark: resolve and copy N small inputs on moto's S3 server.

Compares, in one run and over the same files:

- a plain sequential fsspec loop: for each input, ``cat_file`` (one GET), sha256,
  ``pipe_file`` to the dataset (one PUT): the fewest requests a script can make;
- modzy_retrain's ``LineageResolver`` (existence, size, sha256) and ``DatasetWriter``
  (copy, ``samples.jsonl``, ``manifest.json``) at their default concurrency.

Run: ``.venv/bin/python bench/lineage_s3.py [--files 5000] [--latency-ms 0]``.
``--latency-ms`` puts a loopback proxy in front of moto that delays each request, to
stand in for the network distance to a real object store.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _latency_proxy import latency_proxy

from modzy_retrain import DatasetWriter, LineageResolver, PredictionRecord, Sample
from modzy_retrain.sandbox import s3_server


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", type=int, default=512, help="bytes per input")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()

    with s3_server() as server:
        port = int(server.endpoint.rsplit(":", 1)[1])
        with latency_proxy(port, args.latency_ms) as proxy_port:
            endpoint = f"http://127.0.0.1:{proxy_port}"
            options = {**server.storage_options, "endpoint_url": endpoint}
            import fsspec

            fs = fsspec.filesystem("s3", **options)
            fs.mkdir("bench")
            names = [f"in{i:05d}" for i in range(args.files)]

            def put(name: str) -> None:
                payload = (name.encode() * (args.size // len(name) + 1))[: args.size]
                fs.pipe_file(f"bench/raw/{name}.bin", payload)

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(put, names))

            # 1. The plain sequential loop.
            moto_cpu = cpu_seconds(server.pid)
            started = time.perf_counter()
            for name in names:
                data = fs.cat_file(f"bench/raw/{name}.bin")
                digest = hashlib.sha256(data).hexdigest()
                fs.pipe_file(f"bench/plain/data/{digest}.bin", data)
            plain = time.perf_counter() - started
            plain_cpu = cpu_seconds(server.pid) - moto_cpu

            # 2. modzy_retrain at its defaults.
            def sample(name: str) -> Sample:
                record = PredictionRecord(
                    job_id="job",
                    input_name=name,
                    model_id="m",
                    model_version="1",
                    job_status="COMPLETED",
                )
                return Sample(record=record, label="x", label_state="confirmed", rule="bench")

            moto_cpu = cpu_seconds(server.pid)
            started = time.perf_counter()
            resolver = LineageResolver("s3://bench/raw/{input_name}.bin", storage_options=options)
            writer = DatasetWriter("s3://bench/ours", storage_options=options, dedupe=False)
            report = writer.write(resolver(sample(n) for n in names))
            ours = time.perf_counter() - started
            ours_cpu = cpu_seconds(server.pid) - moto_cpu

    assert report.delivered == args.files, str(report)
    ratio = plain / ours
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"files: {args.files} x {args.size} B on moto_server, "
        f"added latency {args.latency_ms:g} ms per request chunk"
    )
    print(
        f"plain sequential fsspec loop: {plain:8.2f} s {args.files / plain:8.1f} files/s"
        f"  (moto busy {plain_cpu:.1f} CPU s)"
    )
    print(
        f"modzy_retrain resolve+write:  {ours:8.2f} s {args.files / ours:8.1f} files/s"
        f"  (moto busy {ours_cpu:.1f} CPU s)"
    )
    print(f"ratio: {ratio:.2f}x")
    # moto serves from one process (one core under the GIL): no client can finish
    # faster than the CPU time moto needs for the same requests.
    print(f"bound set by moto's own CPU time: {plain / max(ours_cpu, 1e-9):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
