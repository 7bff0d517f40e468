"""Hostile input names through the lineage templates and every dataset layout.

Each name of the corpus either is refused by the lineage stage with a reason that says
what is wrong with it, or resolves to a file under the template's root; then every
layout writes it under the dataset's root, with a file name that is safe on any OS and
store, and unique (names equal but for case or Unicode normalisation included).
"""

from __future__ import annotations

import os
import posixpath
import unicodedata
from pathlib import Path

import pytest

from modzy_retrain import (
    DatasetWriter,
    LineageResolver,
    PredictionRecord,
    Sample,
    UnsafeNameError,
    load_manifest,
    read_samples,
    verify_dataset,
)
from modzy_retrain._stages.lineage import render_template

# (name, why it is here). Refused ones say so in their second element.
CORPUS: list[tuple[str, str]] = [
    ("..", "refused: a '..' segment"),
    ("../../etc/passwd", "refused: a '..' segment"),
    ("a/../../b", "refused: a '..' segment"),
    ("./a", "refused: a '.' segment"),
    ("/etc/passwd", "refused: absolute"),
    ("~root/.ssh/id_rsa", "refused: home-relative"),
    ("C:\\Windows\\win.ini", "refused: drive letter"),
    ("a\\..\\..\\b", "refused: backslash"),
    ("s3://other-bucket/key", "refused: URL scheme"),
    ("file:///etc/passwd", "refused: URL scheme"),
    ("gcs::s3://x", "refused: fsspec chaining"),
    ("data:text/plain,owned", "refused: inline data URL"),
    ("%2e%2e/secret", "refused: percent-encoded '..'"),
    ("%2E%2E%2Fsecret", "refused: percent-encoded '../'"),
    ("..%2f..%2fsecret", "refused: percent-encoded '/'"),
    ("%252e%252e%252fsecret", "double-encoded: literal after one decoding, kept"),
    ("a\x00b.png", "refused: NUL"),
    ("line\nbreak", "refused: control character"),
    ("tab\there", "refused: control character"),
    ("esc\x1b[31mred", "refused: control character"),
    ("rtl\u202egnp.exe", "refused: bidi override (format character)"),
    ("zero\u200bwidth", "refused: zero-width space (format character)"),
    ("\uff0e\uff0e/x", "refused: fullwidth dots are '..' after NFKC"),
    ("\u2024\u2024/x", "refused: one-dot leaders are '..' after NFKC"),
    ("a\uff0f..\uff0fb", "refused: fullwidth slashes around '..' after NFKC"),
    ("a//b", "refused: empty segment"),
    ("", "refused: empty"),
    ("x" * 300, "very long: kept, written under a cut name"),
    ("y" * 5000, "far too long for any file system: kept, cut"),
    ("CON", "Windows reserved"),
    ("nul.txt", "Windows reserved with an extension"),
    ("COM1.png", "Windows reserved"),
    ("lpt9", "Windows reserved, lower case"),
    ("aux.tar.gz", "Windows reserved, two extensions"),
    ("trailing dot.", "Windows strips trailing dots"),
    ("trailing space ", "Windows strips trailing spaces"),
    ("Image.PNG", "differs from the next only in case"),
    ("image.png", "differs from the previous only in case"),
    ("caf\u00e9", "NFC"),
    ("cafe\u0301", "NFD: the same text as the previous once normalised"),
    ("\u0430pple", "Cyrillic a: looks like 'apple'"),
    ("apple", "the Latin one"),
    (':colon?star*pipe|<>"', "characters Windows refuses in file names"),
    ("-rf", "looks like a flag"),
    (".hidden", "a dot file"),
    ("sub/dir/name", "nested: fine, stays under the root"),
]

REFUSED = [name for name, why in CORPUS if why.startswith("refused")]
ACCEPTED = [name for name, why in CORPUS if not why.startswith("refused")]
WHEN_ROOT = "/data/root"


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 30
    assert len(set(CORPUS)) == len(CORPUS)


@pytest.mark.parametrize("name", REFUSED, ids=repr)
def test_refused_names_say_why(name: str) -> None:
    with pytest.raises(UnsafeNameError) as info:
        render_template(WHEN_ROOT + "/{input_name}", {"input_name": name})
    reason = str(info.value)
    assert reason.startswith("input_name ")
    assert any(
        word in reason
        for word in ("segment", "absolute", "URL", "drive", "backslash", "NUL", "control", "empty")
    ), reason


@pytest.mark.parametrize("name", ACCEPTED, ids=lambda n: repr(n[:40]))
def test_accepted_names_stay_under_the_root(name: str) -> None:
    path = render_template(WHEN_ROOT + "/{input_name}", {"input_name": name})
    assert posixpath.normpath(path).startswith(WHEN_ROOT + "/")
    assert path == f"{WHEN_ROOT}/{name}"


def sample(name: str, n: int) -> Sample:
    record = PredictionRecord(
        job_id=f"job-{n:03d}",
        input_name=name,
        model_id="m1",
        model_version="1.0.0",
        job_status="COMPLETED",
    )
    return Sample(record=record, label="cat", label_state="confirmed", rule="test")


def safe_file_name(part: str) -> bool:
    reserved = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10))}
    reserved |= {f"LPT{i}" for i in range(10)}
    return (
        0 < len(part.encode()) <= 255
        and part not in (".", "..")
        and not part.endswith((" ", "."))
        and part.split(".", 1)[0].upper() not in reserved
        and not any(ch in part for ch in '\\/:*?"<>|')
        and all(unicodedata.category(ch)[0] != "C" for ch in part)
    )


@pytest.mark.parametrize("fmt", ["jsonl", "imagefolder"])
def test_every_layout_writes_safe_unique_names_under_its_root(tmp_path: Path, fmt: str) -> None:
    source = tmp_path / "inputs"
    written_names = []
    for n, name in enumerate(ACCEPTED):
        # Files whose names the local file system can hold (it refuses over 255 bytes);
        # the rest stand for objects in a bucket, which takes keys of any length.
        target = source / "by-name" / name
        if all(len(part.encode()) <= 255 for part in name.split("/")):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f"content {n}".encode())
            written_names.append(name)
    names = [*REFUSED, *ACCEPTED]
    samples = [sample(name, n) for n, name in enumerate(names)]
    out = tmp_path / "out"
    chain_input = LineageResolver(str(source) + "/by-name/{input_name}")(samples)
    it = DatasetWriter(str(out), format=fmt)(chain_input)
    written = list(it)
    report = it.report

    # Refused names: one drop each, with its reason; missing files: reported too.
    unsafe = {d.input_name: d.detail for d in report.drops if d.reason == "unsafe_name"}
    assert set(unsafe) == set(REFUSED)
    assert all(detail.startswith("input_name ") for detail in unsafe.values())
    too_long = {d.input_name for d in report.drops if d.reason != "unsafe_name"}
    assert too_long == set(ACCEPTED) - set(written_names)
    assert {s.input_name for s in written} == set(written_names)
    assert len(written) + report.dropped_inputs == len(names)  # nothing silent

    # Everything written is under the dataset root, with safe and unique names.
    root = os.path.realpath(out)
    files = [p for p in out.rglob("*") if p.is_file()]
    for path in files:
        assert os.path.realpath(path).startswith(root + os.sep)
        for part in path.relative_to(out).parts:
            assert safe_file_name(part), part
    data = [p for p in files if p.suffix not in (".json", ".jsonl")]
    assert len(data) == len(written_names)
    lowered = [str(p.relative_to(out)).lower() for p in data]
    assert len(set(lowered)) == len(lowered)  # unique even on a case-blind file system
    assert verify_dataset(str(out)) == []
    rows = list(read_samples(str(out)))
    assert sorted(r.input_name for r in rows) == sorted(written_names)
    assert load_manifest(str(out)).counts.samples == len(written_names)
