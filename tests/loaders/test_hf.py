"""load_hf_dataset with the real ``datasets``: splits, the class list as ClassLabel,
images and texts, provenance, state and model filters, versions, every layout."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from modzy_retrain import (
    ConfigurationError,
    DatasetError,
    LabelNotInClassListError,
    MissingDependencyError,
    PublishedSample,
    load_hf_dataset,
    load_manifest,
    read_samples,
)
from modzy_retrain._dataset.rows import json_text
from modzy_retrain.sandbox import Sandbox

from .conftest import Build, model_of, synthetic, write

TRAINABLE = {"confirmed", "corrected", "labelled"}


def by_key(
    url: str, model: str, version: str | None = None
) -> dict[tuple[str, str], PublishedSample]:
    return {s.key: s for s in read_samples(url, version=version) if s.model_id == model}


def test_splits_class_list_labels_and_images(world: Sandbox, built: Build) -> None:
    url = built("jsonl", "copy")
    image = model_of(world, "image")
    manifest = load_manifest(url)
    ds = load_hf_dataset(url, model=image)
    assert isinstance(ds, datasets.DatasetDict)
    assert list(ds) == list(manifest.splits) == ["train", "validation"]
    samples = by_key(url, image)
    classes = manifest.classes[image]
    seen = 0
    for split, part in ds.items():
        assert part.split == split
        features = part.features
        assert isinstance(features["label"], datasets.ClassLabel)
        assert features["label"].names == classes
        assert isinstance(features["image"], datasets.Image)
        assert list(features)[:2] == ["image", "label"]
        assert features["submitted_at"] == datasets.Value("timestamp[us, tz=UTC]")
        for row in part:
            sample = samples[row["job_id"], row["input_name"]]
            assert sample.model_id == image
            assert sample.split == split
            assert sample.label_state in TRAINABLE
            assert classes[row["label"]] == sample.label
            # Provenance kept: the row's other columns, as read_samples gives them.
            assert row["sha256"] == sample.sha256
            assert row["file"] == sample.file
            assert row["votes_up"] == sample.votes_up
            assert [p["label"] for p in row["predictions"]] == [p.label for p in sample.predictions]
            # The image, decoded from the dataset's copy, is the world's input.
            picture = row["image"]
            assert isinstance(picture, Image.Image)
            raw = world.input_bytes(sample.job_id, sample.input_name)
            assert picture.tobytes() == Image.open(io.BytesIO(raw)).tobytes()
            seen += 1
    trainable = [s for s in samples.values() if s.label_state in TRAINABLE]
    assert seen == len(trainable) > 10


def test_a_text_model_gives_its_texts(world: Sandbox, built: Build) -> None:
    url = built("jsonl", "copy")
    spam = model_of(world, "text", "Spam Detection")
    ds = load_hf_dataset(url, model=spam)
    part = ds["train"]
    assert part.features["text"] == datasets.Value("string")
    assert part.features["label"].names == load_manifest(url).classes[spam]
    for row in part:
        assert row["text"] == world.input_bytes(row["job_id"], row["input_name"]).decode()
    assert len(part) > 0


def test_states_trainable_by_default_others_on_request(world: Sandbox, built: Build) -> None:
    url = built("jsonl", "copy")
    image = model_of(world, "image")
    every = ["confirmed", "corrected", "labelled", "needs_label", "conflict"]
    ds = load_hf_dataset(url, model=image, states=every)
    rows = [row for part in ds.values() for row in part]
    assert len(rows) == len(by_key(url, image))
    states = {row["label_state"] for row in rows}
    assert {"confirmed", "needs_label"} <= states
    for row in rows:
        # No label reads as -1, Hugging Face's "no label"; a label always has its id.
        assert (row["label"] == -1) == (row["label_state"] not in TRAINABLE)
    only = load_hf_dataset(url, model=image, states="needs_label")
    assert {row["label_state"] for part in only.values() for row in part} == {"needs_label"}
    with pytest.raises(ConfigurationError, match=r"unknown label state\(s\) 'unsure'"):
        load_hf_dataset(url, model=image, states=["confirmed", "unsure"])
    with pytest.raises(ConfigurationError, match="at least one"):
        load_hf_dataset(url, model=image, states=[])


def test_one_model_at_a_time(world: Sandbox, built: Build) -> None:
    url = built("jsonl", "copy")
    ids = sorted(m.id for m in world.models)
    with pytest.raises(ConfigurationError, match="holds samples of 3 models") as info:
        load_hf_dataset(url)
    assert all(model in str(info.value) for model in ids)
    with pytest.raises(ConfigurationError, match="no model 'nope'") as info:
        load_hf_dataset(url, model="nope")
    assert all(model in str(info.value) for model in ids)
    with pytest.raises(ConfigurationError, match="model id"):
        load_hf_dataset(url, model=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="input_kind"):
        load_hf_dataset(url, model=ids[0], input_kind="audio")  # type: ignore[arg-type]


def test_a_dataset_of_one_model_needs_no_model(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    write(url, synthetic(tmp_path / "in", [("a", "dog", "confirmed"), ("b", "cat", "corrected")]))
    ds = load_hf_dataset(url)
    assert sum(len(part) for part in ds.values()) == 2
    assert ds["train"].features["label"].names == load_manifest(url).classes["m"]


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("csv", "copy"),
        ("parquet", "copy"),
        ("imagefolder", "copy"),
        ("jsonl", "reference"),
        ("parquet", "reference"),
    ],
)
def test_every_layout_gives_the_same_dataset(
    fmt: str, mode: str, world: Sandbox, built: Build
) -> None:
    image = model_of(world, "image")
    want = load_hf_dataset(built("jsonl", "copy"), model=image)
    got = load_hf_dataset(built(fmt, mode), model=image)
    assert list(got) == list(want)
    for split in want:
        assert got[split].features["label"] == want[split].features["label"]
        assert isinstance(got[split].features["image"], datasets.Image)
        keep = ["job_id", "input_name", "label", "label_state", "split", "sha256"]

        def rows(ds: datasets.Dataset, keep: list[str] = keep) -> list[tuple[object, ...]]:
            return sorted(tuple(r[k] for k in keep) for r in ds.select_columns(keep))

        assert rows(got[split]) == rows(want[split])
    # The pictures are the same, read from the copies or (reference mode) the sources.
    first = got["train"][0]
    raw = world.input_bytes(first["job_id"], first["input_name"])
    assert first["image"].tobytes() == Image.open(io.BytesIO(raw)).tobytes()
    if mode == "reference":
        assert first["file"] is None


def test_a_named_version_and_ids_that_do_not_move(world: Sandbox, built: Build) -> None:
    url = built("parquet", "copy", versioned=True)
    image = model_of(world, "image")
    v1 = load_hf_dataset(url, model=image, version="v0001")
    latest = load_hf_dataset(url, model=image)
    assert sum(map(len, v1.values())) < sum(map(len, latest.values()))
    first = {(r["job_id"], r["input_name"]): r["label"] for p in v1.values() for r in p}
    later = {(r["job_id"], r["input_name"]): r["label"] for p in latest.values() for r in p}
    carried = first.keys() & later.keys()
    assert carried
    assert all(first[key] == later[key] for key in carried)
    with pytest.raises(DatasetError, match="no published version v0009"):
        load_hf_dataset(url, model=image, version="v0009")


def test_class_ids_stay_when_a_new_class_appears(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    write(url, synthetic(tmp_path / "in", [("a", "dog", "confirmed"), ("b", "cat", "confirmed")]))
    write(url, synthetic(tmp_path / "in", [("c", "ant", "corrected"), ("d", "dog", "labelled")]))
    v1 = load_manifest(url, version="v0001").classes["m"]
    v2 = load_manifest(url).classes["m"]
    assert v2[: len(v1)] == v1
    assert "ant" in v2
    assert "ant" not in v1
    old = load_hf_dataset(url, version="v0001")
    new = load_hf_dataset(url)
    assert old["train"].features["label"].names == v1
    assert new["train"].features["label"].names == v2

    def ids(ds: datasets.DatasetDict) -> dict[str, int]:
        return {r["input_name"]: r["label"] for part in ds.values() for r in part}

    before, after = ids(old), ids(new)
    assert before == {name: after[name] for name in before}  # a and b keep their ids
    assert after["c"] == v2.index("ant")
    names = new["train"].features["label"]
    assert {names.int2str(i) for i in after.values()} == {"dog", "cat", "ant"}


def _edit_manifest(url: str, edit: object) -> None:
    path = Path(url) / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)  # type: ignore[operator]
    path.write_text(json.dumps(manifest))


def test_a_label_outside_the_class_list_is_an_error(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    write(url, synthetic(tmp_path / "in", [("a", "dog", "confirmed")]), versioned=False)
    _edit_manifest(url, lambda m: m["classes"].update(m=["cat"]))
    with pytest.raises(LabelNotInClassListError, match="labelled 'dog'") as info:
        load_hf_dataset(url)
    error = info.value
    assert isinstance(error, DatasetError)
    assert (error.model_id, error.label, error.job_id, error.input_name) == (
        "m",
        "dog",
        "job-a",
        "a",
    )
    _edit_manifest(url, lambda m: m.update(classes={}))
    with pytest.raises(DatasetError, match="written before class lists"):
        load_hf_dataset(url, model="m")


def test_input_kinds_from_extensions_or_as_told(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    rows = [("a", "dog", "confirmed"), ("b", "cat", "confirmed")]
    write(url, synthetic(tmp_path / "in", rows, ext=".bin"), versioned=False)
    with pytest.raises(DatasetError, match=r"2 unknown.*input_kind="):
        load_hf_dataset(url)
    ds = load_hf_dataset(url, input_kind="text")
    assert {r["text"] for p in ds.values() for r in p} == {"the text of a", "the text of b"}
    # No sample selected: the splits are there, empty, with the class list.
    empty = load_hf_dataset(url, states="conflict")
    assert [len(p) for p in empty.values()] == [0, 0]
    assert empty["train"].features["label"].names == load_manifest(url).classes["m"]
    assert "text" not in empty["train"].features  # nothing said what kind the inputs are


def test_broken_inputs_are_named(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    rows = [("a", "dog", "confirmed"), ("b", "cat", "confirmed")]
    write(url, synthetic(tmp_path / "in", rows), versioned=False)
    (tmp_path / "in" / "b.txt").unlink()
    with pytest.raises(DatasetError, match=r"sample job-b/b is missing: .*b\.txt"):
        load_hf_dataset(url)
    (tmp_path / "in" / "b.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(DatasetError, match="job-b/b is not UTF-8"):
        load_hf_dataset(url)


def described_again(url: Path, table: str) -> None:
    """Record a rewritten table's size and sha256 in its manifest (as a writer that
    wrote it so would have): a table that does not match its manifest is refused first."""
    manifest = json.loads((url / "manifest.json").read_text())
    data = (url / table).read_bytes()
    entry = next(f for f in manifest["files"] if f["path"] == table)
    entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (url / "manifest.json").write_text(json.dumps(manifest))


def test_a_file_outside_the_dataset_is_refused(
    world: Sandbox, built: Build, tmp_path: Path
) -> None:
    source = Path(built("jsonl", "copy"))
    url = tmp_path / "copy"
    url.mkdir()
    (url / "manifest.json").write_bytes((source / "manifest.json").read_bytes())
    rows = [json.loads(line) for line in (source / "samples.jsonl").read_text().splitlines()]
    image = model_of(world, "image")
    mine = next(r for r in rows if r["model_id"] == image and r["label_state"] == "confirmed")
    mine["file"] = "../../etc/passwd.png"
    (url / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    described_again(url, "samples.jsonl")
    with pytest.raises(DatasetError, match="has a file outside the dataset"):
        load_hf_dataset(str(url), model=image)


def test_parquet_tables_of_the_old_schema_still_load(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    rows = [("a", "dog", "confirmed"), ("b", "cat", "needs_label")]
    write(url, synthetic(tmp_path / "in", rows), versioned=False, format="parquet")
    want = load_hf_dataset(url, states=["confirmed", "needs_label"])
    # Before its columns were typed, the writer held lists and timestamps as text.
    dicts = list(read_samples(url, as_dicts=True))
    old = pa.Table.from_pylist([{k: json_text(v) for k, v in row.items()} for row in dicts])
    pq.write_table(old, Path(url) / "samples.parquet")
    described_again(Path(url), "samples.parquet")
    got = load_hf_dataset(url, states=["confirmed", "needs_label"])
    for split in want:
        assert got[split].to_list() == want[split].to_list()


def test_a_missing_datasets_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "ds")
    write(url, synthetic(tmp_path / "in", [("a", "dog", "confirmed")]))
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'modzy-retrain\[hf\]'"):
        load_hf_dataset(url)


def test_images_without_pillow_name_the_extra(
    world: Sandbox, built: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = built("jsonl", "copy")
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(MissingDependencyError, match=r"needs Pillow: .*\[hf\]"):
        load_hf_dataset(url, model=model_of(world, "image"))
    # A text model needs no Pillow.
    assert load_hf_dataset(url, model=model_of(world, "text", "Spam Detection"))
