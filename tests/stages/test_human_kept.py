"""Later builds keep human labels: over the votes' rules, through a withdrawn vote, and
a source replaces only its own label (sync and async, every versioned format)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from modzy_retrain import (
    AnyVotes,
    AsyncModzyClient,
    DatasetWriter,
    JobHistoryQuery,
    LineageResolver,
    ModzyClient,
    PublishedSample,
    ResultFetcher,
    VoteFilter,
    load_checkpoint,
    load_manifest,
    read_samples,
)
from modzy_retrain.sandbox import Sandbox

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
EVERYTHING = timedelta(days=120)  # every job of the sandbox is read again


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    sb = Sandbox(seed=5, jobs=80, data_url=str(tmp_path / "inputs"))
    sb.write_inputs()
    return sb


def chain(c: ModzyClient | AsyncModzyClient, sb: Sandbox, url: str, labels: Path | None, fmt: str):  # type: ignore[no-untyped-def]
    since = load_checkpoint(url)
    return (
        JobHistoryQuery(c, start=None if since else EPOCH, since=since, lag=EVERYTHING)
        | ResultFetcher(c)
        | VoteFilter(AnyVotes(), label_file=str(labels) if labels else None)
        | LineageResolver(templates=sb.input_templates)
        | DatasetWriter(url, versioned=True, format=fmt)  # type: ignore[arg-type]
    )


async def build(sb: Sandbox, url: str, labels: Path | None, fmt: str, mode: str) -> None:
    if mode == "sync":
        with ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport()) as c:
            chain(c, sb, url, labels, fmt).run()
        return
    async with AsyncModzyClient(
        api_key=sb.api_key, base_url=sb.base_url, transport=sb.async_transport()
    ) as ac:
        await chain(ac, sb, url, labels, fmt).arun()


def published(url: str) -> dict[tuple[str, str], PublishedSample]:
    return {s.key: s for s in read_samples(url)}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_human_labels_outlive_the_votes(
    sandbox: Sandbox, tmp_path: Path, mode: str, fmt: str
) -> None:
    url = str(tmp_path / "ds")
    await build(sandbox, url, None, fmt, mode)
    first = published(url)
    needs = sorted(k for k, s in first.items() if s.label_state == "needs_label")
    confirmed = sorted(k for k, s in first.items() if s.label_state == "confirmed")
    (flagged, other), voted = needs[:2], confirmed[0]
    right = first[flagged].predictions[-1].label
    wrong = first[voted].predictions[-1].label
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "job_id,input_name,label,annotator\n"
        f"{flagged[0]},{flagged[1]},{right},al\n"
        f"{voted[0]},{voted[1]},{wrong},al\n"
        f"{other[0]},{other[1]},{right},al\n"
    )
    await build(sandbox, url, labels, fmt, mode)
    second = published(url)
    assert (second[flagged].label, second[flagged].rule) == (right, "human:label-file")
    assert (second[voted].label, second[voted].label_state) == (wrong, "labelled")

    # The label file is gone, a vote is withdrawn: the human labels stay as they were.
    with ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    ) as c:
        c.results.reset_vote(*voted)
    # ... and the label file now says another class for "other": its own label, replaced.
    changed = next(p.label for p in first[other].predictions if p.label != right)
    labels.write_text(f"job_id,input_name,label,annotator\n{other[0]},{other[1]},{changed},bo\n")
    await build(sandbox, url, labels, fmt, mode)
    third = published(url)
    for key in (flagged, voted):
        assert (third[key].label, third[key].label_state, third[key].rule) == (
            second[key].label,
            "labelled",
            "human:label-file",
        )
    assert [(a.annotator, a.label) for a in third[other].annotations] == [("bo", changed)]
    changes = load_manifest(url).changes
    assert changes is not None
    assert [(r["was"], r["now"]) for r in changes.relabelled_samples] == [(right, changed)]
    assert voted not in {(r["job_id"], r["input_name"]) for r in changes.retracted_samples}
    assert sandbox.votes(*voted) == (0, 0)
