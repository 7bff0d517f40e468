"""The round trip against a real Label Studio 1.23.2: build, push, annotate as three
users, pull, push again, change an annotation, pull again, build again."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import (
    AnyVotes,
    DatasetWriter,
    JobHistoryQuery,
    LabelStudioClient,
    LineageResolver,
    ModzyClient,
    PublishedSample,
    PullResult,
    ResultFetcher,
    TriggerGate,
    Unanimous,
    VoteFilter,
    list_versions,
    load_checkpoint,
    load_manifest,
    pull_from_label_studio,
    push_to_label_studio,
    read_samples,
    verify_dataset,
)
from modzy_retrain._cli.main import main
from modzy_retrain._labels.ledger import LEDGER_PATH
from modzy_retrain.sandbox import Sandbox

from .conftest import LabelStudioServer
from .test_push import _local_files_root, dataset, needing, sandbox  # noqa: F401 - fixtures

# Long enough to read every job of the sandbox's history again.
EVERYTHING = timedelta(days=120)


def sandbox_client(sb: Sandbox) -> ModzyClient:
    return ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport())


def rebuild(sb: Sandbox, url: str, label_file: str | None = None) -> None:
    """A build that reads the whole history again (its jobs have the final word)."""
    with sandbox_client(sb) as c:
        (
            JobHistoryQuery(c, since=load_checkpoint(url), lag=EVERYTHING)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes(), label_file=label_file)
            | LineageResolver(templates=sb.input_templates)
            | DatasetWriter(url, versioned=True)
        ).run()


pytestmark = pytest.mark.timeout(600)


def choice(task: Any, label: str) -> list[dict[str, Any]]:
    kind = "image" if "image" in task.data else "text"
    return [
        {"from_name": "label", "to_name": kind, "type": "choices", "value": {"choices": [label]}}
    ]


def rows(url: str, version: str | None = None) -> dict[tuple[str, str], PublishedSample]:
    return {s.key: s for s in read_samples(url, version=version)}


@pytest.fixture
def client(label_studio: LabelStudioServer) -> Any:
    with LabelStudioClient(label_studio.url, label_studio.token) as c:
        yield c


@pytest.fixture
def users(client: LabelStudioClient) -> list[int]:
    tag = uuid.uuid4().hex[:6]
    me = client.whoami().id
    return [me] + [client.create_user(f"pull-{n}-{tag}@example.com").id for n in (2, 3)]


def test_the_round_trip(
    label_studio: LabelStudioServer,
    sandbox: Sandbox,  # noqa: F811
    dataset: str,  # noqa: F811
    client: LabelStudioClient,
    users: list[int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    first, second, third = users
    pushed = push_to_label_studio(dataset, client=client)
    manifest = load_manifest(dataset)
    wanted = needing(dataset)
    # The model with the most samples needing a human, and at least three classes.
    by_model: dict[str, list[PublishedSample]] = {}
    for s in wanted.values():
        by_model.setdefault(s.model_id, []).append(s)
    model_id = max(
        (m for m in by_model if len(manifest.classes[m]) >= 3), key=lambda m: len(by_model[m])
    )
    classes = manifest.classes[model_id]
    tasks = {
        (t.data["job_id"], t.data["input_name"]): t
        for t in client.tasks(pushed.projects[model_id].id)
    }
    keys = sorted(k for k in tasks if wanted[k].model_id == model_id)
    assert len(keys) >= 6
    agree, majority, split, skipped, outside, edited = (tasks[k] for k in keys[:6])
    x, y, z = classes[0], classes[1], classes[2]
    for who in users:
        client.create_annotation(agree.id, choice(agree, x), completed_by=who)
    client.create_annotation(majority.id, choice(majority, y), completed_by=first)
    client.create_annotation(majority.id, choice(majority, y), completed_by=second)
    client.create_annotation(majority.id, choice(majority, z), completed_by=third)
    client.create_annotation(split.id, choice(split, x), completed_by=first)
    client.create_annotation(split.id, choice(split, z), completed_by=second)
    client.create_annotation(split.id, [], completed_by=third, was_cancelled=True)
    client.create_annotation(skipped.id, [], completed_by=first, was_cancelled=True)
    client.create_annotation(outside.id, choice(outside, "not-a-class"), completed_by=first)
    client.create_annotation(edited.id, choice(edited, x), completed_by=first)
    # Someone changes the task's provenance in Label Studio: it must not be trusted.
    client._call(
        "PATCH", f"/api/tasks/{edited.id}", body={"data": {**edited.data, "job_id": "other"}}
    )

    result = pull_from_label_studio(dataset, client=client, trigger=TriggerGate(min_new=2))
    assert isinstance(result, PullResult)
    assert (result.previous, result.version) == ("v0001", "v0002")
    assert (result.labelled, result.conflicts) == (2, 1)
    assert result.relabelled == 3
    assert result.skipped == 2
    assert result.problem_counts == {"label_not_in_classes": 1, "provenance_edited": 1}
    assert result.trigger is not None
    assert (result.trigger.ready, result.trigger.new) == (True, 2)
    assert list_versions(dataset) == ["v0001", "v0002"]
    assert verify_dataset(dataset) == []

    now = rows(dataset)
    a, m, s = (now[k] for k in keys[:3])
    assert (a.label, a.label_state, a.rule) == (x, "labelled", "human:label-studio")
    assert sorted(n.annotator or "" for n in a.annotations) == sorted(map(str, users))
    assert all(n.source == "label-studio" and n.at is not None for n in a.annotations)
    assert (m.label, m.label_state) == (y, "labelled")
    assert (s.label, s.label_state, s.rule) == (None, "conflict", "human:label-studio:conflict")
    assert set(s.candidates) == {x, z}
    for key in keys[3:6]:
        assert now[key] == rows(dataset, "v0001")[key]
    changes = load_manifest(dataset).changes
    assert changes is not None
    relabelled = {(r["job_id"], r["input_name"]): r for r in changes.relabelled_samples}
    assert set(relabelled) == set(keys[:3])
    assert relabelled[keys[0]]["now"] == x
    assert (changes.trainable, changes.added) == (2, 0)
    # Everything else was carried over as it was.
    assert len(now) == len(rows(dataset, "v0001"))

    # Pushing again makes no second task for anything.
    again = push_to_label_studio(dataset, client=client)
    assert again.created == 0
    assert len(list(client.tasks(pushed.projects[model_id].id))) == len(tasks)

    # An annotation changed in Label Studio is picked up by the next pull.
    (mine,) = [n for n in client.get_task(agree.id).annotations if n.completed_by == second]
    client._call("PATCH", f"/api/annotations/{mine.id}", body={"result": choice(agree, y)})
    (theirs,) = [n for n in client.get_task(agree.id).annotations if n.completed_by == third]
    client._call("PATCH", f"/api/annotations/{theirs.id}", body={"result": choice(agree, y)})
    code = main(["label", "pull", dataset, "--label-studio-url", label_studio.url])
    assert code == 0
    assert load_manifest(dataset).version == "v0003"
    assert rows(dataset)[keys[0]].label == y
    changes = load_manifest(dataset).changes
    assert changes is not None
    assert [(r["was"], r["now"]) for r in changes.relabelled_samples] == [(x, y)]
    # Nothing changed since: nothing is published (exit code 3).
    assert main(["label", "pull", dataset, "--label-studio-url", label_studio.url]) == 3
    # A stricter policy turns the 2-of-3 majorities into conflicts.
    strict = pull_from_label_studio(dataset, client=client, policy=Unanimous())
    assert strict.version == "v0004"
    assert rows(dataset)[keys[1]].label_state == "conflict"
    pull_from_label_studio(dataset, client=client)  # back to the majority

    # A later build keeps the human labels: over the votes, and with a vote withdrawn.
    human = {k: v for k, v in rows(dataset).items() if v.rule.startswith("human:")}
    with sandbox_client(sandbox) as c:
        c.results.reset_vote(*keys[0])
    rebuild(sandbox, dataset)
    after = rows(dataset)
    assert load_manifest(dataset).changes.added > 0  # type: ignore[union-attr]
    for key, sample in human.items():
        kept = after[key]
        assert (kept.label, kept.label_state, kept.rule) == (
            sample.label,
            sample.label_state,
            sample.rule,
        )
    # Its votes are gone, so the votes alone would retract it: a human label keeps it.
    assert sandbox.votes(*keys[0]) == (0, 0)
    retracted = load_manifest(dataset).changes.retracted_samples  # type: ignore[union-attr]
    assert keys[0] not in {(r["job_id"], r["input_name"]) for r in retracted}

    # A label file that disagrees with Label Studio: a conflict listing both.
    label_file = tmp_path / "labels.csv"
    label_file.write_text(f"job_id,input_name,label,annotator\n{keys[1][0]},{keys[1][1]},{z},al\n")
    rebuild(sandbox, dataset, label_file=str(label_file))
    both = rows(dataset)[keys[1]]
    assert (both.label_state, both.rule) == ("conflict", "human:label-file+label-studio:conflict")
    assert set(both.candidates) == {y, z}
    assert {n.source for n in both.annotations} == {"label-file", "label-studio"}
    # The next pull keeps both sources' say.
    assert pull_from_label_studio(dataset, client=client).version is None
    assert verify_dataset(dataset) == []
    # The ledger is no file of any version; every version stays readable.
    for version in list_versions(dataset):
        assert verify_dataset(dataset, version=version) == []
    assert (Path(dataset) / LEDGER_PATH).exists()
    json.loads((Path(dataset) / "_latest.json").read_text())
