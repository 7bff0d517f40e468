"""LineageResolver: templates, patterns, hostile names, and real files."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import fsspec
import pytest

from modzy_retrain import (
    LineageError,
    LineageResolver,
    PredictionRecord,
    Sample,
    UnsafeNameError,
)
from modzy_retrain._stages.lineage import check_safe_value, render_template, validate_template

WHEN = datetime(2025, 1, 14, 8, 30, tzinfo=timezone.utc)


def sample(name: str, job: str = "job-1", model: str = "m1", label: str | None = "cat") -> Sample:
    record = PredictionRecord(
        job_id=job,
        input_name=name,
        model_id=model,
        model_version="1.0.0",
        model_name="Model",
        submitted_at=WHEN,
        job_status="COMPLETED",
    )
    return Sample(record=record, label=label, label_state="confirmed", rule="test")


@pytest.fixture
def memroot() -> Iterator[str]:
    root = f"memory://lineage-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_render_template_fields_and_dates() -> None:
    url = render_template(
        "s3://bucket/raw/{model_id}/{submitted_at:%Y/%m/%d}/{job_id}/{input_name}.png",
        {"model_id": "m1", "submitted_at": WHEN, "job_id": "j", "input_name": "cam_01"},
    )
    assert url == "s3://bucket/raw/m1/2025/01/14/j/cam_01.png"
    # Sub-folders inside a name are allowed, as long as they stay inside.
    assert render_template("/data/{input_name}", {"input_name": "a/b.txt"}) == "/data/a/b.txt"


HOSTILE = [
    "..",
    "../etc/passwd",
    "a/../../b",
    "./a",
    "/etc/passwd",
    "~root/x",
    "s3://other-bucket/x",
    "file:///etc/passwd",
    "memory::s3://x",
    "data:text/plain,hi",
    "C:evil",
    "a\\..\\b",
    "%2e%2e/secret",
    "%2E%2E%2Fsecret",
    "..%2fsecret",
    "a\x00b",
    "line\nbreak",
    "tab\there",
    "bell\x07",
    "rtl\u202eexe.png",
    "\uff0e\uff0e/x",  # fullwidth dots
    "a//b",
    "",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_rejected_with_a_reason(name: str) -> None:
    with pytest.raises(UnsafeNameError) as info:
        render_template("/data/root/{input_name}.txt", {"input_name": name})
    assert "input_name" in str(info.value)


@pytest.mark.parametrize(
    "name",
    ["0001", "cam03_20250114_000123", "msg-1f3750f4 (fwd #4) 100% ü+é", "a.b.c", "x..y", "naïve"],
)
def test_ordinary_odd_names_are_fine(name: str) -> None:
    check_safe_value("input_name", name)


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("/d/{0}", "positional"),
        ("/d/{}", "positional"),
        ("/d/{input_name.upper}", "attribute"),
        ("/d/{input_name!r}", "conversion"),
        ("/d/{user_home}", "unknown field"),
        ("/d/{input_name", "malformed"),
    ],
)
def test_bad_templates_fail_when_the_stage_is_built(template: str, needle: str) -> None:
    with pytest.raises(LineageError, match=needle):
        validate_template(template)
    with pytest.raises(LineageError):
        LineageResolver(template)


def write(fs_root: str, rel: str, data: bytes) -> str:
    url = f"{fs_root}/{rel}"
    with fsspec.open(url, "wb") as handle:
        handle.write(data)
    return url


def test_resolves_hashes_and_reports(memroot: str) -> None:
    write(memroot, "m1/job-1/a.txt", b"hello")
    write(memroot, "m1/job-1/b.txt", b"world!")
    resolver = LineageResolver(f"{memroot}/{{model_id}}/{{job_id}}/{{input_name}}.txt")
    it = resolver([sample("a"), sample("missing"), sample("b"), sample("../../escape")])
    out = list(it)
    assert [s.input_name for s in out] == ["a", "b"]
    assert out[0].sha256 == hashlib.sha256(b"hello").hexdigest()
    assert out[0].size == 5
    assert out[0].payload == b"hello"
    assert out[0].source_url == f"{memroot}/m1/job-1/a.txt"
    drops = {d.input_name: d for d in it.report.drops}
    assert drops["missing"].reason == "source_missing"
    assert drops["../../escape"].reason == "unsafe_name"
    assert [d.input_name for d in it.report.unresolved] == ["missing", "../../escape"]


def test_per_model_templates_pattern_and_callable(memroot: str) -> None:
    write(memroot, "cams/03/20250114/cam03_20250114_000123.png", b"png")
    write(memroot, "text/x.txt", b"txt")
    resolver = LineageResolver(
        templates={"cam": f"{memroot}/cams/{{camera}}/{{day}}/{{input_name}}.png"},
        pattern=r"cam(?P<camera>\d{2})_(?P<day>\d{8})_\d+",
    )
    good = sample("cam03_20250114_000123", model="cam")
    odd = sample("frame-7", model="cam")
    other = sample("x", model="no-template")
    it = resolver([good, odd, other])
    assert [s.input_name for s in it] == ["cam03_20250114_000123"]
    reasons = {d.input_name: d.reason for d in it.report.drops}
    assert reasons == {"frame-7": "name_pattern_mismatch", "x": "no_template"}

    by_callable = LineageResolver(locate=lambda s: f"{memroot}/text/{s.input_name}.txt")
    assert [s.size for s in by_callable([sample("x")])] == [3]


def test_subclass_hook_locate(memroot: str) -> None:
    write(memroot, "flat/JOB-1__a", b"1")

    class Flat(LineageResolver):
        def locate(self, sample: Sample) -> str | None:
            return f"{memroot}/flat/{sample.job_id.upper()}__{sample.input_name}"

    assert [s.size for s in Flat()([sample("a")])] == [1]


def test_local_paths_file_urls_limits_and_order(tmp_path: Path) -> None:
    names = [f"n{i:03d}" for i in range(60)]
    for i, name in enumerate(names):
        (tmp_path / f"{name}.bin").write_bytes(bytes([i]) * (i + 1))
    for template in (str(tmp_path) + "/{input_name}.bin", f"file://{tmp_path}/{{input_name}}.bin"):
        out = list(LineageResolver(template, concurrency=8)([sample(n) for n in names]))
        assert [s.input_name for s in out] == names  # order kept despite concurrency
        assert [s.size for s in out] == list(range(1, 61))
    limited = LineageResolver(str(tmp_path) + "/{input_name}.bin", max_bytes=10, keep_bytes_up_to=0)
    it = limited([sample("n005"), sample("n020")])
    kept = list(it)
    assert [s.input_name for s in kept] == ["n005"]
    assert kept[0].payload is None
    assert it.report.drops[0].reason == "source_too_large"


@pytest.mark.anyio
async def test_async_twin_matches_sync(memroot: str) -> None:
    for n in range(10):
        write(memroot, f"{n}.txt", str(n).encode())
    resolver = LineageResolver(f"{memroot}/{{input_name}}.txt", concurrency=3)
    samples = [sample(str(n)) for n in [*range(10), 99]]
    sync_out = [(s.input_name, s.sha256) for s in resolver(samples)]
    it = resolver.astream(samples)
    async_out = [(s.input_name, s.sha256) async for s in it]
    assert async_out == sync_out
    assert it.report.drops[0].input_name == "99"


@pytest.mark.parametrize(("size", "keep"), [(0, 8), (8, 8), (9, 8), (100, 8), (5, 0)])
def test_small_and_large_files_hash_the_same_way(memroot: str, size: int, keep: int) -> None:
    data = bytes(range(256))[:size] if size <= 256 else b"x" * size
    write(memroot, "f.bin", data)
    resolver = LineageResolver(f"{memroot}/{{input_name}}.bin", keep_bytes_up_to=keep)
    (out,) = list(resolver([sample("f")]))
    assert out.sha256 == hashlib.sha256(data).hexdigest()
    assert out.size == size
    assert out.payload == (data if size <= keep and keep > 0 else None)


def test_max_bytes_below_the_keep_threshold(memroot: str) -> None:
    write(memroot, "big.bin", b"y" * 50)
    write(memroot, "ok.bin", b"y" * 10)
    resolver = LineageResolver(f"{memroot}/{{input_name}}.bin", keep_bytes_up_to=1000, max_bytes=20)
    it = resolver([sample("big"), sample("ok")])
    assert [s.input_name for s in it] == ["ok"]
    assert it.report.drops[0].reason == "source_too_large"
