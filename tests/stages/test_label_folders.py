"""Labels as folder names stay distinct (issue 17, item 5).

In the image-folder layout each label gets its own folder in every split: readable
when the label is a safe name of its own, with a short hash of the exact label when
the safe name differs from the label, is reserved (Hugging Face's ``metadata.*``) or
would collide with another label's folder on a case-blind file system. The metadata
rows map every folder back to its exact label, and read the labels back exactly.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from modzy_retrain import (
    ConfigurationError,
    DatasetWriter,
    PredictionRecord,
    Sample,
    read_samples,
    verify_dataset,
)
from modzy_retrain._dataset.layout import LabelFolders, safe_component

LABELS = [
    "cat",  # first: keeps its plain name
    "Cat",  # the same folder on a case-blind file system
    "CAT",
    "metadata.jsonl",  # Hugging Face's metadata file: crashed every write
    "METADATA.JSONL",
    "metadata.csv",
    "metadata.parquet",
    "..",  # '..', '.' and '' all became '_'
    ".",
    "",
    "_",
    "cat?",  # 'cat?' and 'cat*' both became 'cat_'
    "cat*",
    "cat_",
    "a/b",
    "a\\b",
    " cat ",
    "cat.",
    "CON",  # Windows reserved
    "con.txt",
    "__pycache__",  # Hugging Face skips folders named __*
    ".hidden",  # and hidden ones
    "caf\u00e9",  # NFC
    "cafe\u0301",  # NFD: the same name once normalised
    "\uff43\uff41\uff54",  # fullwidth 'cat'
    "\U00020000" * 100,  # 100 four-byte letters: 400 bytes
    "x" * 300,
    "dog",
    "dog-0123456789",  # looks like a folder with a hash
    "unlabeled",
    "train",
]
RESERVED = {"metadata.jsonl", "metadata.csv", "metadata.parquet"}
_HASHED = re.compile(r"-[0-9a-f]{10}$")


def make(root: str, n: int, label: str) -> Sample:
    url = f"{root}/in{n}.png"
    data = f"image {n}".encode()
    with fsspec.open(url, "wb") as handle:
        handle.write(data)
    record = PredictionRecord(
        job_id=f"job-{n:03d}",
        input_name=f"in{n}",
        model_id="m",
        model_version="1",
        job_status="COMPLETED",
    )
    return Sample(
        record=record,
        label=label,
        label_state="confirmed",
        rule="test",
        source_url=url,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


@pytest.fixture
def source() -> Iterator[str]:
    root = f"memory://label-folders-{uuid.uuid4().hex}"
    yield root
    fsspec.filesystem("memory").rm(root, recursive=True)


def safe_folder(part: str) -> bool:
    reserved = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10))}
    reserved |= {f"LPT{i}" for i in range(10)}
    return (
        0 < len(part.encode()) <= 255
        and part not in (".", "..")
        and not part.startswith((".", "__"))
        and not part.endswith((" ", "."))
        and part.split(".", 1)[0].upper() not in reserved
        and part.lower() not in RESERVED
        and not any(ch in part for ch in '\\/:*?"<>|')
        and all(unicodedata.category(ch)[0] != "C" for ch in part)
    )


def test_every_label_gets_its_own_safe_folder(tmp_path: Path, source: str) -> None:
    # Twice each label (in more than one split, most likely): one folder per label.
    samples = [make(source, n, label) for n, label in enumerate(LABELS * 2)]
    out = tmp_path / "out"
    report = DatasetWriter(str(out), format="imagefolder").write(samples)
    assert report.dataset is not None
    assert report.dataset["published"] is True
    assert verify_dataset(str(out)) == []

    folders: dict[str, set[str]] = defaultdict(set)  # label -> its folders
    labels_of: dict[tuple[str, str], set[str]] = defaultdict(set)  # (split, folder) -> labels
    for metadata in out.glob("*/metadata.jsonl"):
        split = metadata.parent.name
        for line in metadata.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row["label"] is None:
                continue
            folder, name = row["file_name"].split("/")
            assert (metadata.parent / folder / name).is_file()  # what Hugging Face reads
            assert row["file"] == f"{split}/{folder}/{name}"
            folders[row["label"]].add(folder)
            labels_of[(split, folder)].add(row["label"])
    assert set(folders) == set(LABELS)
    # The metadata maps each folder back to exactly one label, and each label has one
    # folder in every split: distinct even on a case-blind file system.
    assert all(len(labels) == 1 for labels in labels_of.values())
    assert all(len(names) == 1 for names in folders.values())
    chosen = {label: next(iter(names)) for label, names in folders.items()}
    assert len({f.lower() for f in chosen.values()}) == len(LABELS)
    for label, folder in chosen.items():
        assert safe_folder(folder), (label, folder)
    # Readable where it can be: a safe label is its own folder; the rest carry a hash.
    assert chosen["cat"] == "cat"
    assert chosen["dog"] == "dog"
    assert chosen["train"] == "train"
    assert chosen["unlabeled"] == "unlabeled"  # under a split: no clash with unlabeled/
    for label in ("Cat", "CAT", "metadata.jsonl", "..", "", "cat?", "cat*", "dog-0123456789"):
        assert _HASHED.search(chosen[label]), (label, chosen[label])
    assert chosen["cat?"].startswith("cat_-")
    # read_samples gives the exact labels back.
    read = {s.input_name: s.label for s in read_samples(str(out))}
    assert read == {s.input_name: s.label for s in samples}


def test_label_folders_are_stable_and_distinct() -> None:
    folders = LabelFolders()
    first = [folders.folder(label) for label in LABELS]
    assert [folders.folder(label) for label in LABELS] == first  # the same label, again
    assert len({f.lower() for f in first}) == len(LABELS)
    # A hashed name is the label's own: a fresh writer gives it the same folder.
    fresh = LabelFolders()
    assert fresh.folder("cat?") == folders.folder("cat?")
    assert fresh.folder("cat?") == f"cat_-{hashlib.sha256(b'cat?').hexdigest()[:10]}"


def test_names_stay_within_255_bytes() -> None:
    for text in ("\U00020000" * 300, "\u00e9" * 300, "x" * 5000):
        assert len(safe_component(text).encode()) <= 200
        assert len(safe_component(text, limit=80).encode()) <= 200


@pytest.mark.parametrize(
    "splits",
    [
        {"unlabeled": 1.0},
        {"Unlabeled": 0.5, "train": 0.5},
        {"Train": 0.5, "train": 0.5},
        {"__train": 1.0},
    ],
)
def test_split_folders_that_would_clash_are_refused(splits: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError, match="split"):
        DatasetWriter("memory://never", format="imagefolder", splits=splits)


def test_hugging_face_loads_every_exact_label(tmp_path: Path, source: str) -> None:
    # Hugging Face's own loader (the dev dependencies bring it, for the hf extra).
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("PIL")
    from modzy_retrain.sandbox._content import render_input

    samples = []
    for n, label in enumerate(LABELS * 2):
        sample = make(source, n, label)
        data = render_input("image", "tabby cat", n)  # a real PNG
        with fsspec.open(sample.source_url, "wb") as handle:
            handle.write(data)
        samples.append(
            sample.model_copy(
                update={"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            )
        )
    out = tmp_path / "out"
    DatasetWriter(str(out), format="imagefolder").write(samples)
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out))
    labels = [row["label"] for split in loaded for row in loaded[split]]
    assert sorted(labels) == sorted(LABELS * 2)
