"""Each model's class list in the manifest: stable indexes across versions, checked labels."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from modzy_retrain import (
    AnyVotes,
    ClassPrediction,
    DatasetWriter,
    JobHistoryQuery,
    LineageResolver,
    ModzyClient,
    PredictionRecord,
    ResultFetcher,
    RunReport,
    Sample,
    VoteFilter,
    load_manifest,
    read_samples,
)
from modzy_retrain._dataset.classes import ClassLists
from modzy_retrain.sandbox import Sandbox

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_class_lists_only_grow() -> None:
    lists = ClassLists({"m": ["dog", "cat"]})
    lists.see("m", ["owl", "cat", "ant"])  # seen together: the new ones go in by name
    lists.see("m", ["bee"])
    lists.see("n", ["z", "a"])
    assert lists.to_dict() == {"m": ["dog", "cat", "ant", "owl", "bee"], "n": ["a", "z"]}
    assert lists.known("m")
    assert not lists.known("x")
    assert lists.has("m", "ant")
    assert not lists.has("n", "ant")


def sample(
    job: str,
    name: str,
    classes: Iterable[str],
    *,
    label: str | None = None,
    state: str = "needs_label",
    model: str = "m",
) -> Sample:
    scores = list(classes)
    record = PredictionRecord(
        job_id=job,
        input_name=name,
        model_id=model,
        model_version="1",
        job_status="COMPLETED",
        predictions=tuple(
            ClassPrediction(label=c, score=1 - i / len(scores)) for i, c in enumerate(scores)
        ),
    )
    return Sample(record=record, label=label, label_state=state, rule="test")  # type: ignore[arg-type]


def write(
    url: str, samples: list[Sample], *, reread: Iterable[str] = (), **options: object
) -> RunReport:
    """One versioned run in reference mode; ``reread``: the jobs it read in full."""
    report = RunReport()

    def run() -> Iterator[Sample]:
        for job in reread:  # this run has the final word on these jobs' samples
            report.progress.mark(job, EPOCH, True)
        yield from samples

    return DatasetWriter(url, versioned=True, mode="reference", **options).write(  # type: ignore[arg-type]
        run(), report=report
    )


def test_the_class_list_is_append_only_across_versions(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    # v1: every class a prediction scores counts, not only the top one; a label too.
    write(
        url,
        [
            sample("j1", "a", ["dog", "cat"]),
            sample("j1", "b", ["cat"], label="owl", state="corrected"),
        ],
    )
    v1 = load_manifest(url).classes
    assert v1 == {"m": ["cat", "dog", "owl"]}
    # v2: a new class is appended; another model gets its own list.
    write(url, [sample("j2", "a", ["fox", "dog"]), sample("j2", "b", ["yes", "no"], model="n")])
    assert load_manifest(url).classes == {"m": ["cat", "dog", "owl", "fox"], "n": ["no", "yes"]}
    # v3: job j1 is read again and its samples retracted: "owl" is seen nowhere any
    # more, and keeps its index; the indexes of v1 and v2 never move.
    report = write(url, [sample("j3", "a", ["ant", "cat"])], reread=["j1"])
    assert report.dataset is not None
    assert report.dataset["changes"]["retracted"] == 2
    v3 = load_manifest(url).classes
    assert v3 == {"m": ["cat", "dog", "owl", "fox", "ant"], "n": ["no", "yes"]}
    assert all(
        v3[m][: len(classes)] == classes
        for earlier in (v1, load_manifest(url, version="v0002").classes)
        for m, classes in earlier.items()
    )
    assert "owl" not in {r.label for r in read_samples(url)}


def _strip_annotations(table: Path) -> None:
    """Rewrite a sample table as it was written before the annotations column."""
    if table.suffix == ".jsonl":
        rows = [json.loads(line) for line in table.read_text().splitlines()]
        table.write_text("".join(json.dumps(strip(r)) + "\n" for r in rows))
        return
    with table.open(newline="") as handle:
        rows = [strip(r) for r in csv.DictReader(handle)]
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def strip(row: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in row.items() if k != "annotations"}


def test_an_old_version_without_classes_reads_and_seeds_the_next(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    write(url, [sample("j1", "a", ["dog", "cat"], label="emu", state="corrected")], format="csv")
    path = Path(url) / "v0001" / "manifest.json"
    old = json.loads(path.read_text())
    del old["classes"]  # as written before class lists existed...
    for name in old["samples_files"]:  # ...and before the annotations column
        _strip_annotations(Path(url) / name)
    assert {Path(n).name.split("-", 1)[1] for n in old["samples_files"]} == {
        "samples.jsonl",
        "samples.csv",
    }
    for name in old["samples_files"]:
        assert "annotations" not in (Path(url) / name).read_text()
    for entry in old["files"]:  # the old tables, as their manifest described them
        data = (Path(url) / entry["path"]).read_bytes()
        entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
        del entry["rows"]  # recorded from format 3 on
    path.write_text(json.dumps(old))
    assert load_manifest(url).classes == {}
    assert [s.annotations for s in read_samples(url)] == [()]
    # The next version seeds the list from the previous rows, then from its own; the
    # rows carried over get the new column, so the CSV table has one header.
    write(url, [sample("j2", "a", ["bee", "dog"])], format="csv")
    assert load_manifest(url).classes == {"m": ["cat", "dog", "emu", "bee"]}
    assert sorted((s.key, s.annotations) for s in read_samples(url)) == [
        (("j1", "a"), ()),
        (("j2", "a"), ()),
    ]


def test_unversioned_datasets_have_classes_too(tmp_path: Path) -> None:
    url = str(tmp_path / "flat")
    DatasetWriter(url, mode="reference").write(
        [sample("j", "a", ["b", "a"]), sample("j", "c", ["c", "a"])]
    )
    assert load_manifest(url).classes == {"m": ["a", "b", "c"]}


def test_a_human_label_outside_the_class_list_is_reported(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    samples = [
        sample("j", "a", ["dog", "cat"], label="cat", state="labelled"),
        sample("j", "b", ["dog", "cat"], label="dgo", state="labelled"),  # a typo
        # Not a human label: from the votes, never refused.
        sample("j", "c", ["dog"], label="cow", state="corrected"),
        # A model of which nothing is known: nothing to check against.
        sample("j", "d", [], label="x", state="labelled", model="blank"),
    ]
    report = write(url, samples)
    assert report.drop_counts[("write", "label_not_in_classes")] == 1
    (drop,) = [d for d in report.drops if d.reason == "label_not_in_classes"]
    assert (drop.input_name, drop.model_id) == ("b", "m")
    assert "'dgo'" in drop.detail
    assert "allow_new_classes" in drop.detail
    assert load_manifest(url).classes == {"blank": ["x"], "m": ["cat", "dog", "cow"]}

    allowed = str(tmp_path / "allowed")
    report = write(allowed, samples, allow_new_classes=True)
    assert ("write", "label_not_in_classes") not in report.drop_counts
    assert load_manifest(allowed).classes["m"] == ["cat", "dog", "dgo", "cow"]


# -- on the sandbox ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    sb = Sandbox(seed=7, jobs=40, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    return sb


def records(sb: Sandbox) -> list[PredictionRecord]:
    with ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport()) as c:
        return list(JobHistoryQuery(c, start=EPOCH) | ResultFetcher(c))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_label_file_with_annotators_through_the_chain(
    sandbox: Sandbox, tmp_path: Path, fmt: str
) -> None:
    seen = records(sandbox)
    image = [r for r in seen if len(r.predictions) > 2]
    agreed, split, typo = image[0], image[1], image[2]
    # The label the annotators agree on is one the model never ranked first here.
    right = agreed.predictions[-1].label
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "job_id,input_name,label,annotator\n"
        f"{agreed.job_id},{agreed.input_name},{right},al\n"
        f"{split.job_id},{split.input_name},pizza,al\n"
        f"{agreed.job_id},{agreed.input_name},{right},bo\n"
        f"{split.job_id},{split.input_name},goldfish,bo\n"
        f"{typo.job_id},{typo.input_name},piza,al\n"
    )
    url = str(tmp_path / f"ds-{fmt}")
    with ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    ) as c:
        report = (
            JobHistoryQuery(c, start=EPOCH)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes(), label_file=str(labels))
            | LineageResolver(templates=sandbox.input_templates)
            | DatasetWriter(url, format=fmt)  # type: ignore[arg-type]
        ).run()
    assert report.reconciled
    (drop,) = [d for d in report.drops if d.reason == "label_not_in_classes"]
    assert (drop.job_id, drop.input_name) == typo.key
    published = {s.key: s for s in read_samples(url)}
    good, bad = published[agreed.key], published[split.key]
    assert (good.label, good.label_state, good.rule) == (right, "labelled", "human:label-file")
    assert [(a.annotator, a.label) for a in good.annotations] == [("al", right), ("bo", right)]
    assert (bad.label, bad.label_state, bad.rule) == (None, "conflict", "human:label-file:conflict")
    assert [(a.annotator, a.label) for a in bad.annotations] == [
        ("al", "pizza"),
        ("bo", "goldfish"),
    ]
    assert bad.candidates == ("goldfish", "pizza")
    assert typo.key not in published
    assert all(s.annotations == () for s in published.values() if not s.rule.startswith("human:"))
    # The class list holds every class the written samples' outputs scored, and their labels.
    classes = load_manifest(url).classes
    for model in {s.model_id for s in published.values()}:
        mine = [s for s in published.values() if s.model_id == model]
        scored = {p.label for s in mine for p in s.predictions} | {s.label for s in mine if s.label}
        assert set(classes[model]) == scored
        assert len(classes[model]) == len(set(classes[model]))
    assert "piza" not in classes[typo.model_id]
