"""Benchmark: ``load_hf_dataset`` beside ``datasets.load_dataset("parquet", ...)`` on the
same files, in one run.

1. Builds a versioned Parquet dataset of N samples (100,000 by default) of one image
   model, in reference mode, with ``DatasetWriter`` from synthetic samples (the chain
   before the writer is not what is measured). Their sources are real PNG files, 1,000
   of them shared in rotation, so that decoding a loaded image works.
2. Times, in alternation, ``repeat`` times each, in this process:
   - (a) the plain load: ``datasets.load_dataset("parquet", data_files=<the version's
     samples.parquet>, cache_dir=<a fresh folder>)``, which converts the table to
     Hugging Face's Arrow cache and memory-maps it: what a user would type;
   - (b) ``load_hf_dataset(url)``: manifest, model and states (the trainable ones,
     pushed down to pyarrow), class ids, the image column, one ``Dataset`` per split.
   Both start from a cold ``datasets`` cache (a new ``cache_dir`` for every (a) run;
   (b) keeps its tables in memory and has no cache). For the record, (a') is (a) again
   on its warm cache: Hugging Face then only memory-maps its Arrow file; (b) has no
   such second-load path (``save_to_disk`` gives one).
3. Prints the medians, their ratio and PASS (ratio <= 1.5) or FAIL, and checks that
   (b) gives as many rows as (a) holds trainable ones, and that an image decodes.

``--text`` builds a text model's dataset instead: its inputs are read into the table
(strings), so (b) also reads every selected sample's file, which (a) never does. One
more figure then says where the time goes: (c) the reads alone, a Python loop of
``open().read()`` and UTF-8 decoding over the same files: the floor of any loader that
gives the texts.

Run: ``.venv/bin/python bench/loaders.py [--samples 100000] [--repeat 5] [--text]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

MODEL = "bench-model"
CLASSES = [f"class-{i:02d}" for i in range(20)]
STATES = ("confirmed", "confirmed", "confirmed", "corrected", "labelled", "needs_label")
SOURCES = 1000


def write_sources(folder: Path, text: bool) -> list[str]:
    from modzy_retrain.sandbox._png import encode_rgb

    folder.mkdir(parents=True)
    paths = []
    for i in range(SOURCES):
        path = folder / (f"in-{i:04d}.txt" if text else f"in-{i:04d}.png")
        if text:
            path.write_text(f"message {i}: " + "word " * (i % 40))
        else:
            path.write_bytes(encode_rgb(16, 16, bytes((i * 7 + j) % 256 for j in range(768))))
        paths.append(str(path))
    return paths


def samples(n: int, sources: list[str]) -> Iterator[object]:
    from modzy_retrain import ClassPrediction, PredictionRecord, Sample

    epoch = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for i in range(n):
        state = STATES[i % len(STATES)]
        top = CLASSES[i % len(CLASSES)]
        second = CLASSES[(i + 1) % len(CLASSES)]
        record = PredictionRecord(
            job_id=f"job-{i // 4:06d}",
            input_name=f"input-{i % 4}",
            model_id=MODEL,
            model_name="Bench Model",
            model_version="1.0.0",
            submitted_at=epoch + timedelta(seconds=i),
            job_status="COMPLETED",
            predictions=(
                ClassPrediction(label=top, score=0.7),
                ClassPrediction(label=second, score=0.3),
            ),
        )
        label = None if state == "needs_label" else (second if state == "corrected" else top)
        yield Sample(
            record=record,
            label=label,
            label_state=state,
            rule="bench",
            source_url=sources[i % len(sources)],
            size=100,
        )


def build(root: Path, n: int, text: bool) -> str:
    from modzy_retrain import DatasetWriter

    sources = write_sources(root / "sources", text)
    url = str(root / "dataset")
    started = time.perf_counter()
    report = DatasetWriter(url, format="parquet", mode="reference", versioned=True).write(
        samples(n, sources)  # type: ignore[arg-type]
    )
    assert report.dataset is not None
    assert report.dataset["samples"] == n, report.dataset
    print(f"built {n:,} samples in {time.perf_counter() - started:.1f} s")
    return url


def plain(table: str, cache: Path) -> tuple[float, object]:
    import datasets

    started = time.perf_counter()
    ds = datasets.load_dataset("parquet", data_files=table, cache_dir=str(cache))
    return time.perf_counter() - started, ds


def reads_alone(paths: list[str]) -> float:
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb") as handle:
            handle.read().decode("utf-8")
    return time.perf_counter() - started


def ours(url: str) -> tuple[float, object]:
    from modzy_retrain import load_hf_dataset

    started = time.perf_counter()
    ds = load_hf_dataset(url)
    return time.perf_counter() - started, ds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--text", action="store_true", help="a text model (inputs read)")
    args = parser.parse_args()

    import datasets
    import pyarrow

    datasets.disable_progress_bars()  # they cost time, and are not what is measured
    work = Path(tempfile.mkdtemp(prefix="bench-loaders-"))
    try:
        url = build(work, args.samples, args.text)
        from modzy_retrain import load_manifest

        manifest = load_manifest(url)
        # A versioned Parquet dataset also keeps a JSONL table, for the next version.
        (table,) = (os.path.join(url, n) for n in manifest.samples_files if n.endswith(".parquet"))
        a_times: list[float] = []
        b_times: list[float] = []
        c_times: list[float] = []
        warm: list[float] = []
        for run in range(args.repeat):
            seconds, a = plain(table, work / f"cache-{run}")
            a_times.append(seconds)
            warm.append(plain(table, work / f"cache-{run}")[0])
            seconds, b = ours(url)
            b_times.append(seconds)
            if args.text:
                paths = [p for s in b.values() for p in s["source_url"]]  # type: ignore[attr-defined]
                c_times.append(reads_alone(paths))
        rows = a["train"]  # type: ignore[index]
        trainable = sum(s in ("confirmed", "corrected", "labelled") for s in rows["label_state"])
        got = sum(len(split) for split in b.values())  # type: ignore[attr-defined]
        assert got == trainable, (got, trainable)
        first = b["train"][0]  # type: ignore[index]
        decoded = first["text" if args.text else "image"]
        a_med, b_med = statistics.median(a_times), statistics.median(b_times)
        ratio = b_med / a_med
        print(
            f"python {platform.python_version()}, datasets {datasets.__version__}, "
            f"pyarrow {pyarrow.__version__}, {os.cpu_count()} cores"
        )
        print(f"model kind: {'text' if args.text else 'image'}; first input: {decoded!r:.60}")
        print(f"(a) datasets.load_dataset('parquet'): {', '.join(f'{t:.2f}' for t in a_times)} s")
        print(f"(a') the same, warm cache:            {', '.join(f'{t:.2f}' for t in warm)} s")
        print(f"(b) load_hf_dataset:                 {', '.join(f'{t:.2f}' for t in b_times)} s")
        if args.text:
            c_med = statistics.median(c_times)
            reads = ", ".join(f"{t:.2f}" for t in c_times)
            print(f"(c) the {len(paths):,} reads alone:          {reads} s")
            print(f"(b) - (c) = {b_med - c_med:.2f} s beside (a) {a_med:.2f} s")
        print(f"median (a) {a_med:.2f} s, (b) {b_med:.2f} s: (b)/(a) = {ratio:.2f}x")
        if args.text:
            # Not the same work: (a) gives no text, and (c) is most of the difference.
            print("(no verdict: the target is for the like-for-like load, without --text)")
            return 0
        print("PASS" if ratio <= 1.5 else "FAIL", "(target: within 1.5x)")
        return 0 if ratio <= 1.5 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
