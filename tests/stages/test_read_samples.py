"""read_samples: every format, versioned or not, copy or reference, read back as the
same typed records; the dict escape hatch; Parquet's typed columns; old Parquet tables."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, get_args

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modzy_retrain import (
    AnyVotes,
    ConfigurationError,
    ConflictingVotes,
    DatasetError,
    DatasetWriter,
    JobHistoryQuery,
    LineageResolver,
    MissingDependencyError,
    ModzyClient,
    PublishedSample,
    ResultFetcher,
    Sample,
    Selector,
    VoteFilter,
    list_versions,
    load_checkpoint,
    load_manifest,
    read_samples,
    verify_dataset,
)
from modzy_retrain._dataset import tables as _tables
from modzy_retrain._dataset.rows import COLUMNS, json_text
from modzy_retrain.sandbox import Sandbox

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
TABULAR = ["jsonl", "csv", "parquet"]
# Every layout the writer can write (imagefolder is unversioned copy mode only).
LAYOUTS = [
    (fmt, versioned, mode)
    for fmt in TABULAR
    for versioned in (False, True)
    for mode in ("copy", "reference")
] + [("imagefolder", False, "copy")]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    sb = Sandbox(seed=7, jobs=60, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    return sb


def chain(
    sb: Sandbox,
    writer: DatasetWriter | None,
    *,
    end: datetime | None = None,
    select: Selector | None = None,
) -> list[Sample]:
    """Run the whole chain into ``writer``; the samples it wrote (split and file set),
    or with no writer the resolved samples."""
    with ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport()) as c:
        since = load_checkpoint(writer.url) if writer and writer.versioned else None
        resolved = (
            JobHistoryQuery(c, start=None if since else EPOCH, end=end, since=since)
            | ResultFetcher(c)
            | VoteFilter(select or AnyVotes())
            | LineageResolver(templates=sb.input_templates)
        )
        return list(resolved | writer if writer else resolved)


def expected(sample: Sample) -> PublishedSample:
    """What reading a written sample must give, from the sample itself."""
    r = sample.record
    return PublishedSample(
        job_id=r.job_id,
        input_name=r.input_name,
        model_id=r.model_id,
        model_version=r.model_version,
        model_name=r.model_name,
        submitted_at=r.submitted_at,
        label=sample.label,
        label_state=sample.label_state,
        rule=sample.rule,
        candidates=sample.candidates,
        predicted_label=r.predicted_label,
        predicted_score=r.top_score,
        predictions=[{"label": p.label, "score": p.score} for p in r.predictions],
        votes_up=r.voting.up,
        votes_down=r.voting.down,
        source_url=sample.source_url,
        sha256=sample.sha256,
        size=sample.size,
        split=sample.split,
        file=sample.file,
    )


def records(samples: Iterable[Sample]) -> set[PublishedSample]:
    return {expected(s) for s in samples}


def without_files(samples: Iterable[PublishedSample]) -> set[PublishedSample]:
    return {s.model_copy(update={"file": None}) for s in samples}


@pytest.fixture(scope="module")
def cut(sandbox: Sandbox) -> datetime:
    """Half the history: a versioned dataset's first version ends here."""
    return sorted(j.created_at for j in sandbox.jobs)[len(sandbox.jobs) // 2]


# A dataset's URL, and what each version must read back (``None``: the latest, or
# the unversioned dataset).
Written = tuple[str, dict[str | None, set[PublishedSample]]]
Write = Callable[[str, bool, str], Written]


@pytest.fixture(scope="module")
def written(sandbox: Sandbox, cut: datetime, tmp_path_factory: pytest.TempPathFactory) -> Write:
    """Write each layout once per module."""
    made: dict[tuple[str, bool, str], Written] = {}

    def write(fmt: str, versioned: bool, mode: str) -> Written:
        if (fmt, versioned, mode) not in made:
            url = str(tmp_path_factory.mktemp(f"{fmt}-{mode}-{versioned}") / "ds")
            writer = DatasetWriter(url, format=fmt, mode=mode, versioned=versioned)  # type: ignore[arg-type]
            if versioned:
                # Two versions: the second carries the first's rows over into its tables.
                first = records(chain(sandbox, writer, end=cut))
                second = records(chain(sandbox, writer))
                assert first
                assert second
                assert list_versions(url) == ["v0001", "v0002"]
                want: dict[str | None, set[PublishedSample]] = {
                    "v0001": first,
                    None: first | second,
                }
            else:
                want = {None: records(chain(sandbox, writer))}
            assert verify_dataset(url) == []
            made[fmt, versioned, mode] = (url, want)
        return made[fmt, versioned, mode]

    return write


@pytest.mark.parametrize(("fmt", "versioned", "mode"), LAYOUTS)
def test_every_layout_reads_back_what_was_written(
    fmt: str, versioned: bool, mode: str, written: Write
) -> None:
    url, want = written(fmt, versioned, mode)
    for version, samples in want.items():
        got = list(read_samples(url, version=version))
        assert all(isinstance(s, PublishedSample) for s in got)
        assert len(got) == len(samples)  # nothing read twice (a side table, a split)
        assert set(got) == samples
    root = Path(url)
    states = set()
    for sample in read_samples(url):
        states.add(sample.label_state)
        assert sample.submitted_at is not None
        assert sample.submitted_at.tzinfo is not None
        if mode == "reference":
            assert sample.file is None
            continue
        # Paths are relative to the dataset's root, whatever the format.
        assert sample.file is not None
        data = (root / sample.file).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (sample.size, sample.sha256)
        if fmt == "imagefolder":
            folder = "unlabeled" if sample.label is None else str(sample.split)
            assert sample.file.startswith(folder + "/")
    # The world's votes give every label state, a missing label among them.
    assert {"confirmed", "needs_label"} <= states


def test_every_format_holds_the_same_records(written: Write) -> None:
    # The same history read back from each format: the same records, but for where
    # the copies are (an image folder files them by split and label).
    reads = {
        layout: without_files(read_samples(written(*layout)[0]))
        for layout in LAYOUTS
        if not layout[1]  # one version: the same history
    }
    first = next(iter(reads.values()))
    assert len(first) > 20
    assert all(got == first for got in reads.values())


def test_the_dict_escape_hatch(written: Write) -> None:
    rows = {
        fmt: list(read_samples(written(fmt, False, "copy")[0], as_dicts=True))
        for fmt in [*TABULAR, "imagefolder"]
    }
    # JSON values, as serialize() returned them: the same from every tabular format.
    jsonl = rows["jsonl"]
    assert all(type(row) is dict for row in jsonl)
    assert all(list(row) == list(COLUMNS) for row in jsonl)
    key = lambda row: (row["job_id"], row["input_name"])  # noqa: E731
    for fmt in ("csv", "parquet"):
        assert sorted(rows[fmt], key=key) == sorted(jsonl, key=key), fmt
    assert json.loads(json.dumps(jsonl)) == jsonl
    assert all(isinstance(row["submitted_at"], str) for row in jsonl)
    # An image folder's rows keep the file name Hugging Face reads; the typed records
    # leave it out (``file`` holds the same path, from the root).
    for row in rows["imagefolder"]:
        assert row["file_name"] == row["file"].split("/", 1)[1]
    typed = list(read_samples(written("imagefolder", False, "copy")[0]))
    assert all(sample.model_extra == {} for sample in typed)
    # Each dict validates into the typed record read from the same table.
    url = written("csv", False, "copy")[0]
    assert [PublishedSample.model_validate(row) for row in rows["csv"]] == list(read_samples(url))
    with pytest.raises(ConfigurationError, match="as_dicts"):
        read_samples(url, as_dicts="yes")  # type: ignore[call-overload]


def test_parquet_columns_are_typed(written: Write) -> None:
    for versioned in (False, True):
        url = written("parquet", versioned, "copy")[0]
        (table,) = [n for n in load_manifest(url).samples_files if n.endswith(".parquet")]
        assert table.startswith("v0002/") if versioned else table == "samples.parquet"
        schema = pq.read_schema(Path(url) / table)
        assert schema.names == list(COLUMNS)
        assert pa.types.is_timestamp(schema.field("submitted_at").type)
        assert schema.field("submitted_at").type.tz == "UTC"
        predictions = schema.field("predictions").type
        assert pa.types.is_list(predictions)
        assert pa.types.is_struct(predictions.value_type)
        assert predictions.value_type.field("label").type == pa.string()
        assert predictions.value_type.field("score").type == pa.float64()
        assert schema.field("candidates").type == pa.list_(pa.string())
        assert schema.field("label").type == pa.string()
        assert schema.field("votes_up").type == pa.int64()
        assert schema.field("predicted_score").type == pa.float64()
        assert not schema.field("job_id").nullable
    table = pq.read_table(Path(written("parquet", False, "copy")[0]) / "samples.parquet")
    assert any(len(p) > 1 for p in table.column("predictions").to_pylist())


def test_labels_are_text_even_when_none_is_set(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Conflicts have no label: a column of nothing but None is still a text column.
    url = str(tmp_path / "conflicts")
    wrote = chain(sandbox, DatasetWriter(url, format="parquet"), select=ConflictingVotes())
    assert wrote
    assert all(s.label is None for s in wrote)
    assert pq.read_schema(Path(url) / "samples.parquet").field("label").type == pa.string()
    assert set(read_samples(url)) == records(wrote)
    # Row groups of two, the unlabeled first: the first group no longer decides the
    # column's type, so the labels after it fit.
    monkeypatch.setattr(_tables, "PARQUET_BATCH", 2)
    ordered = sorted(chain(sandbox, None), key=lambda s: s.label is not None)
    assert ordered[0].label is None
    assert ordered[-1].label is not None
    url = str(tmp_path / "batches")
    wrote = list(DatasetWriter(url, format="parquet")(ordered))
    assert pq.ParquetFile(Path(url) / "samples.parquet").num_row_groups > 2
    assert set(read_samples(url)) == records(wrote)


def test_parquet_tables_of_the_old_schema_still_read(written: Write) -> None:
    # Before its columns were typed, the writer stored lists as JSON text and
    # timestamps as ISO text, and let pyarrow infer the rest.
    url = written("parquet", False, "reference")[0]
    before = list(read_samples(url))
    rows = list(read_samples(url, as_dicts=True))
    old = pa.Table.from_pylist([{k: json_text(v) for k, v in row.items()} for row in rows])
    assert old.schema.field("predictions").type == pa.string()
    assert old.schema.field("submitted_at").type == pa.string()
    path = Path(url) / "samples.parquet"
    copy = path.with_name("typed.parquet")
    copy.write_bytes(path.read_bytes())
    manifest_path = Path(url) / "manifest.json"
    manifest = manifest_path.read_text()
    try:
        pq.write_table(old, path)
        # The old table, as its manifest described it.
        raw = json.loads(manifest)
        data = path.read_bytes()
        raw["files"][0].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
        manifest_path.write_text(json.dumps(raw))
        assert list(read_samples(url)) == before
        assert list(read_samples(url, as_dicts=True)) == rows
    finally:
        path.write_bytes(copy.read_bytes())
        manifest_path.write_text(manifest)
        copy.unlink()


def test_a_missing_pyarrow_names_the_extra(
    written: Write,
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = written("parquet", False, "copy")[0]
    # A None entry in sys.modules makes the import fail, as if pyarrow were absent.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'modzy-retrain\[parquet\]'"):
        read_samples(url)  # at the call, not at the first row
    # The other formats need no pyarrow.
    assert list(read_samples(written("csv", False, "copy")[0]))
    # Writing fails at the first row, the same way.
    with pytest.raises(MissingDependencyError, match=r"modzy-retrain\[parquet\]"):
        chain(sandbox, DatasetWriter(str(tmp_path / "no-pyarrow"), format="parquet"))
    assert not (tmp_path / "no-pyarrow" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("column", "value", "error"),
    [
        ("votes_up", "many", "does not fit the Parquet table's columns"),
        ("submitted_at", "yesterday", "a row Parquet cannot hold: not an ISO-8601 timestamp"),
    ],
)
def test_a_value_parquet_cannot_type_is_a_dataset_error(
    column: str, value: str, error: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    class Wrong(DatasetWriter):
        def serialize(self, sample: Sample) -> dict[str, Any]:
            return {**super().serialize(sample), column: value}

    with pytest.raises(DatasetError, match=error):
        chain(sandbox, Wrong(str(tmp_path / "wrong"), format="parquet"))


@pytest.mark.parametrize("fmt", TABULAR)
def test_rows_of_a_custom_serialize(fmt: str, sandbox: Sandbox, tmp_path: Path) -> None:
    class WithTeam(DatasetWriter):
        def serialize(self, sample: Sample) -> dict[str, Any]:
            return {**super().serialize(sample), "team": "vision", "tags": ["a", "b"]}

    class WithoutVotes(DatasetWriter):
        def serialize(self, sample: Sample) -> dict[str, Any]:
            row = super().serialize(sample)
            del row["votes_up"]
            return row

    url = str(tmp_path / "team")
    wrote = chain(sandbox, WithTeam(url, format=fmt))  # type: ignore[arg-type]
    got = list(read_samples(url))
    # The added columns are kept beside the typed ones (CSV and Parquet hold a list
    # as JSON text).
    tags = ["a", "b"] if fmt == "jsonl" else '["a", "b"]'
    assert all(s.model_extra == {"team": "vision", "tags": tags} for s in got)
    assert without_extras(got) == records(wrote)

    url = str(tmp_path / "no-votes")
    chain(sandbox, WithoutVotes(url, format=fmt))  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match=r"votes_up: Field required.*as_dicts=True"):
        list(read_samples(url))
    rows = list(read_samples(url, as_dicts=True))
    assert rows
    assert all("votes_up" not in row for row in rows)


def without_extras(samples: Iterable[PublishedSample]) -> set[PublishedSample]:
    return {PublishedSample.model_validate(s.model_dump(include=set(COLUMNS))) for s in samples}


def test_the_row_is_declared_once(sandbox: Sandbox) -> None:
    # The writer's row, the columns every format types, and the read-side record.
    sample = chain(sandbox, None)[0]
    row = DatasetWriter("memory://x").serialize(sample)
    assert list(row) == list(COLUMNS) == list(PublishedSample.model_fields)
    fields = PublishedSample.model_fields.items()
    nullable = {name for name, field in fields if type(None) in get_args(field.annotation)}
    assert nullable == {name for name, column in COLUMNS.items() if column.nullable}
