"""Benchmark: eight writers of one dataset started at once, round after round.

Each round (see ``bench/_writers.py``): four builds and four label pulls, each in its
own process, start together against a copy of one prepared dataset; a writer refused
because another holds the dataset (exit 8, a lost version included) tries again after
a short random pause. The round's final version is compared with a sequential run of
the same eight writers, and every version of its history is verified.

Run: ``.venv/bin/python bench/concurrent_writers.py [--rounds 20] [--store local|s3|both]
[--modes lease,fencing]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _writers as w

from modzy_retrain.sandbox import s3_server

MODES = {
    "lease": "the lock as it is (a two-minute lease, renewed)",
    "fencing": "fencing only: every lock counts as expired, writers take it from each "
    "other at once, and only the create-if-absent manifest keeps versions apart",
}


def rounds_on(
    name: str, base: str, options: dict[str, Any], rounds: int, work: Path, modes: list[str]
) -> bool:
    template = f"{base}/template"
    prepared = w.prepare(work, template, options)
    reference = w.sequential(template, f"{base}/sequential", prepared, options)
    ok = True
    for mode, what in MODES.items():
        if mode not in modes:
            continue
        ok &= mode_rounds(name, base, mode, what, prepared, options, reference, rounds)
    return ok


def mode_rounds(
    name: str,
    base: str,
    mode: str,
    what: str,
    prepared: dict[str, Any],
    options: dict[str, Any],
    reference: list[Any],
    rounds: int,
) -> bool:
    template = f"{base}/template"
    print(f"\n## {name}, {mode}: {rounds} rounds of 8 writers (4 builds, 4 label pulls)\n")
    print(f"Lock: {what}.\n")
    print("| round | published | nothing new | refused (exit 8) | of which lost versions "
          "| versions | final = sequential | history verified | seconds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    totals: Counter[str] = Counter()
    ok = True
    for number in range(rounds):
        result = w.run_round(number, template, f"{base}/{mode}{number:02d}", prepared, options,
                             reference, fencing_only=mode == "fencing")  # fmt: skip
        errors = [o.error for o in result.outcomes if o.error]
        codes = result.codes
        clean = not errors and not result.history.problems and result.equal
        ok = ok and clean and set(codes) <= {0, 3}
        totals.update(
            published=result.published,
            nothing_new=codes.get(3, 0),
            refused=result.refused,
            conflicts=result.conflicts,
            equal=int(result.equal),
            verified=int(not result.history.problems),
            errors=len(errors),
        )
        print(f"| {number + 1} | {result.published} | {codes.get(3, 0)} | {result.refused} "
              f"| {result.conflicts} | {result.history.versions} | {result.equal} "
              f"| {not result.history.problems} | {result.seconds:.1f} |", flush=True)  # fmt: skip
        for error in errors:
            print(f"    error: {error.splitlines()[-1] if error else error}")
        for problem in result.history.problems:
            print(f"    problem: {problem}")
    print(
        f"\n{name}, {mode}: {totals['published']} published, {totals['nothing_new']} nothing new, "
        f"{totals['refused']} refused attempts ({totals['conflicts']} lost versions), "
        f"{totals['errors']} errors; final = sequential in {totals['equal']}/{rounds} rounds, "
        f"every version verified in {totals['verified']}/{rounds}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--store", choices=["local", "s3", "both"], default="both")
    parser.add_argument("--modes", default="lease,fencing", help="lease, fencing or both")
    args = parser.parse_args()
    print(f"# {platform.python_version()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    modes = args.modes.split(",")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.store in ("local", "both"):
            local = str(work / "local")
            ok &= rounds_on("local disk", local, {}, args.rounds, work / "l", modes)
        if args.store in ("s3", "both"):
            with s3_server() as server:
                bucket = server.make_bucket("concurrent-writers")
                options = {**server.storage_options, "skip_instance_cache": False}
                ok &= rounds_on("S3 (moto)", bucket, options, args.rounds, work / "s", modes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
