"""Datasets for the loader tests: the sandbox's world through the whole chain (its image
model and its two text models), in each layout, written once per session; and small
synthetic ones written straight from ``Sample`` records, for exact class lists."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
    load_checkpoint,
)
from modzy_retrain.sandbox import Sandbox

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
Build = Callable[..., str]


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    sb = Sandbox(seed=11, jobs=90, data_url=str(tmp_path_factory.mktemp("loader-inputs")))
    sb.write_inputs()
    return sb


def model_of(sb: Sandbox, kind: str, name: str | None = None) -> str:
    """The id of the sandbox's (first, or named) model of a kind."""
    return next(m.id for m in sb.models if m.kind == kind and name in (None, m.name))


def chain(sb: Sandbox, writer: DatasetWriter, *, end: datetime | None = None) -> RunReport:
    with ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport()) as c:
        since = load_checkpoint(writer.url) if writer.versioned else None
        return (
            JobHistoryQuery(c, start=None if since else EPOCH, end=end, since=since)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sb.input_templates)
            | writer
        ).run()


@pytest.fixture(scope="session")
def built(world: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Build:
    """``built(fmt, mode, versioned=False)``: the world's dataset in that layout, written
    once; a versioned one has two versions (the first half of the history, then all)."""
    made: dict[tuple[str, str, bool], str] = {}

    def build(fmt: str = "jsonl", mode: str = "copy", versioned: bool = False) -> str:
        key = (fmt, mode, versioned)
        if key not in made:
            url = str(tmp_path_factory.mktemp(f"ds-{fmt}-{mode}") / "ds")
            writer = DatasetWriter(url, format=fmt, mode=mode, versioned=versioned)  # type: ignore[arg-type]
            if versioned:
                middle = sorted(j.created_at for j in world.jobs)[len(world.jobs) // 2]
                chain(world, writer, end=middle)
            chain(world, writer)
            made[key] = url
        return made[key]

    return build


def synthetic(
    folder: Path,
    rows: Iterable[tuple[str, str | None, str]],
    *,
    model: str = "m",
    ext: str = ".txt",
) -> list[Sample]:
    """Samples of one model from ``(name, label, state)``: each predicts its label (or
    ``"cat"``), its input a text file in ``folder`` named ``<name><ext>``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, label, state in rows:
        source = folder / f"{name}{ext}"
        source.write_text(f"the text of {name}")
        record = PredictionRecord(
            job_id=f"job-{name}",
            input_name=name,
            model_id=model,
            model_version="1",
            job_status="COMPLETED",
            submitted_at=EPOCH,
            predictions=(ClassPrediction(label=label or "cat", score=0.9),),
        )
        out.append(
            Sample(
                record=record,
                label=label,
                label_state=state,  # type: ignore[arg-type]
                rule="test",
                source_url=str(source),
            )
        )
    return out


def write(url: str, samples: list[Sample], **options: object) -> RunReport:
    """One run of the writer in reference mode (versioned unless told)."""
    options.setdefault("versioned", True)
    return DatasetWriter(url, mode="reference", **options).write(samples)  # type: ignore[arg-type]
