"""``label push`` against a real Label Studio 1.23.2: tasks, idempotence, versions, bulk."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from modzy_retrain import (
    AnyVotes,
    DatasetWriter,
    JobHistoryQuery,
    LabelStudioClient,
    LineageResolver,
    ModzyClient,
    PublishedSample,
    PushResult,
    ResultFetcher,
    VoteFilter,
    dataset_files,
    load_checkpoint,
    load_manifest,
    push_to_label_studio,
    read_samples,
    verify_dataset,
)
from modzy_retrain._cli.main import main
from modzy_retrain._labels.ledger import LEDGER_PATH
from modzy_retrain._labels.projects import config_choices, local_storage_paths
from modzy_retrain._labels.tasks import label_config
from modzy_retrain.sandbox import Sandbox

from .conftest import LabelStudioServer

pytestmark = pytest.mark.timeout(600)
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
NEEDS_HUMAN = ("needs_label", "conflict")


class Counter:
    """Counts requests per (method, path) through an httpx event hook."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> None:
        self.seen.append((request.method, request.url.path))

    def imports(self) -> int:
        return sum(1 for m, p in self.seen if m == "POST" and p.endswith("/import"))


def build(sb: Sandbox, url: str, end: datetime | None = None) -> None:
    with ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport()) as c:
        since = load_checkpoint(url)
        (
            JobHistoryQuery(c, start=None if since else EPOCH, end=end, since=since)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sb.input_templates)
            | DatasetWriter(url, versioned=True)
        ).run()


@pytest.fixture(scope="module")
def sandbox(label_studio: LabelStudioServer) -> Sandbox:
    sb = Sandbox(seed=5, jobs=160, data_url=str(label_studio.files_root / "inputs"))
    sb.write_inputs()
    return sb


@pytest.fixture(autouse=True)
def _local_files_root(label_studio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # What a push on the server's machine reads when it is not told.
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(label_studio.files_root))


def middle(sb: Sandbox) -> datetime:
    return sorted(j.created_at for j in sb.jobs)[len(sb.jobs) // 2]


@pytest.fixture
def dataset(label_studio: LabelStudioServer, sandbox: Sandbox) -> str:
    """v0001 of a fresh dataset under the local-files root (the first half of history)."""
    url = str(label_studio.files_root / f"ds-{uuid.uuid4().hex[:8]}")
    build(sandbox, url, end=middle(sandbox))
    return url


@pytest.fixture
def counted(label_studio: LabelStudioServer) -> Iterator[tuple[LabelStudioClient, Counter]]:
    counter = Counter()
    with (
        httpx.Client(event_hooks={"request": [counter]}) as http,
        LabelStudioClient(label_studio.url, label_studio.token, http_client=http) as client,
    ):
        yield client, counter


def needing(url: str, version: str | None = None) -> dict[tuple[str, str], PublishedSample]:
    return {s.key: s for s in read_samples(url, version=version) if s.label_state in NEEDS_HUMAN}


def tasks_by_key(client: LabelStudioClient, result: PushResult) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for project in result.projects.values():
        for task in client.tasks(project.id):
            key = (task.data["job_id"], task.data["input_name"])
            assert key not in found, f"two tasks for {key}"
            found[key] = task
    return found


def test_push_rerun_and_next_version(
    label_studio: LabelStudioServer,
    sandbox: Sandbox,
    dataset: str,
    counted: tuple[LabelStudioClient, Counter],
) -> None:
    client, counter = counted
    manifest = load_manifest(dataset)
    wanted = needing(dataset)
    assert len({s.model_id for s in wanted.values()}) == 3  # images and two text models
    chunk = 7
    first = push_to_label_studio(
        dataset, client=client, chunk_size=chunk, local_files_root=str(label_studio.files_root)
    )
    assert first.version == "v0001"
    assert first.selected == len(wanted) == first.created
    assert (first.already_present, first.skipped) == (0, {})
    per_model: dict[str, int] = {}
    for sample in wanted.values():
        per_model[sample.model_id] = per_model.get(sample.model_id, 0) + 1
    assert counter.imports() == first.import_requests
    assert first.import_requests <= sum(math.ceil(n / chunk) for n in per_model.values())
    assert sorted(first.created_projects) == sorted(p.id for p in first.projects.values())

    # One project per model, its choices in the manifest's class-list order.
    for model_id, project in first.projects.items():
        found = config_choices(client.get_project(project.id).label_config, "label")
        assert found is not None
        assert found[2] == manifest.classes[model_id]
        assert project.title.endswith(f" - {model_id}")

    tasks = tasks_by_key(client, first)
    assert set(tasks) == set(wanted)
    root = Path(dataset)
    for key, task in tasks.items():
        sample = wanted[key]
        data = task.data
        assert data["model_id"] == sample.model_id
        assert data["model_version"] == sample.model_version
        assert data["dataset_version"] == "v0001"
        assert data["label_state"] == sample.label_state
        assert data["candidates"] == list(sample.candidates)
        assert (data["votes_up"], data["votes_down"]) == (sample.votes_up, sample.votes_down)
        assert data["source_url"] == sample.source_url
        assert task.meta["predictions"] == [
            {"label": p.label, "score": p.score} for p in sample.predictions
        ]
        (prediction,) = task.predictions
        assert prediction.choices("label") == (sample.predicted_label,)
        assert prediction.model_version == sample.model_version
        assert sample.file is not None
        if "text" in data:
            assert data["text"] == (root / sample.file).read_text(encoding="utf-8")
        else:
            # The admin sees the dataset's own copy, served by Label Studio itself.
            assert data["image"].startswith("/data/local-files/?d=")
            got = httpx.get(
                label_studio.url + data["image"],
                headers={"Authorization": f"Token {label_studio.token}"},
            )
            assert got.status_code == 200
            assert got.content == (root / sample.file).read_bytes()

    # The ledger maps each sample to its task; it is no file of the dataset.
    ledger = (root / LEDGER_PATH).read_text().splitlines()
    assert len(ledger) == len(wanted)
    assert all(LEDGER_PATH not in f.path for f in dataset_files(dataset))
    assert verify_dataset(dataset) == []

    # A rerun imports nothing.
    before = counter.imports()
    again = push_to_label_studio(dataset, client=client)
    assert (again.created, again.already_present, again.recovered) == (0, len(wanted), 0)
    assert again.created_projects == ()
    assert counter.imports() == before
    assert len(tasks_by_key(client, again)) == len(wanted)

    # The next version: only its new samples become tasks.
    build(sandbox, dataset)
    assert load_manifest(dataset).version == "v0002"
    later = needing(dataset)
    assert set(wanted) - set(later) == set()  # nothing needing a human was resolved
    new = set(later) - set(wanted)
    assert new
    second = push_to_label_studio(dataset, client=client)
    assert second.version == "v0002"
    assert (second.created, second.already_present) == (len(new), len(wanted))
    tasks = tasks_by_key(client, second)
    assert set(tasks) == set(later)
    assert {k for k, t in tasks.items() if t.data["dataset_version"] == "v0002"} == new
    # The images' local-files storage was connected once, on the dataset's folder.
    (image_model,) = {s.model_id for s in later.values() if s.file and s.file.endswith(".png")}
    paths = local_storage_paths(client, second.projects[image_model].id)
    assert [p.rstrip("/") for p in paths] == [str(root.resolve())]


def test_tasks_missing_from_the_ledger_are_found_and_recorded(
    dataset: str, counted: tuple[LabelStudioClient, Counter]
) -> None:
    client, counter = counted
    first = push_to_label_studio(dataset, client=client)
    ledger = Path(dataset) / LEDGER_PATH
    ledger.unlink()
    before = counter.imports()
    again = push_to_label_studio(dataset, client=client)
    assert (again.created, again.recovered, again.already_present) == (
        0,
        first.created,
        first.created,
    )
    assert counter.imports() == before
    assert len(ledger.read_text().splitlines()) == first.created


def test_a_named_project_gets_the_classes_it_lacks(
    dataset: str, counted: tuple[LabelStudioClient, Counter]
) -> None:
    client, _ = counted
    manifest = load_manifest(dataset)
    model_id = next(m for m, classes in manifest.classes.items() if len(classes) > 3)
    title = f"named {uuid.uuid4().hex[:10]}"
    # A project made for an earlier class list: the push appends the new classes.
    made = client.create_project(title, label_config("image", manifest.classes[model_id][:2]))
    result = push_to_label_studio(
        dataset,
        client=client,
        project={model_id: title},
        select=lambda s: s.model_id == model_id and s.label_state in NEEDS_HUMAN,
    )
    assert result.projects[model_id].id == made.id
    assert result.created_projects == ()
    found = config_choices(client.get_project(made.id).label_config, "label")
    assert found is not None
    assert found[2] == manifest.classes[model_id]
    assert result.created == sum(1 for s in needing(dataset).values() if s.model_id == model_id)


def test_cli_push_summary_and_rerun(
    label_studio: LabelStudioServer,
    dataset: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    manifest = load_manifest(dataset)
    model_id = next(m for m, classes in manifest.classes.items() if len(classes) == 2)
    title = f"cli {uuid.uuid4().hex[:10]}"
    argv = [
        "label",
        "push",
        dataset,
        "--label-studio-url",
        label_studio.url,
        "--project",
        title,
        "--model",
        model_id,
        "--state",
        "needs_label",
        "--state",
        "conflict",
    ]
    assert main(argv) == 0
    first = capsys.readouterr()
    n = sum(1 for s in needing(dataset).values() if s.model_id == model_id)
    assert f"tasks created: {n}" in first.out
    assert "already present: 0" in first.out
    assert main(argv) == 0
    second = capsys.readouterr()
    assert "tasks created: 0" in second.out
    assert f"already present: {n}" in second.out
    for text in (first.out, first.err, second.out, second.err):
        assert label_studio.token not in text


def test_reference_mode_texts_inline_and_local_images_skipped_with_a_reason(
    label_studio: LabelStudioServer, sandbox: Sandbox, counted: tuple[LabelStudioClient, Counter]
) -> None:
    client, _ = counted
    url = str(label_studio.files_root / f"ref-{uuid.uuid4().hex[:8]}")
    with ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    ) as c:
        (
            JobHistoryQuery(c, start=EPOCH, end=middle(sandbox))
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sandbox.input_templates)
            | DatasetWriter(url, mode="reference")
        ).run()
    wanted = needing(url)
    result = push_to_label_studio(url, client=client)
    images = {k for k, s in wanted.items() if s.source_url and s.source_url.endswith(".png")}
    assert images
    # A local source path is no URL the server serves (only a dataset's copy is).
    assert result.skipped == {"no_url_label_studio_can_serve": len(images)}
    assert {(j, i) for j, i, _ in result.skipped_samples} == images
    assert result.created == len(wanted) - len(images)
    for key, task in tasks_by_key(client, result).items():
        source = wanted[key].source_url
        assert source is not None
        assert task.data["text"] == Path(source).read_text(encoding="utf-8")
