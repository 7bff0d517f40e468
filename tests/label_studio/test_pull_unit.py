"""The pull without a server: a fake Label Studio on an httpx transport that fails in
every way a real one can (down, slow, 401, 403, 404, 5xx, malformed JSON, a body of the
wrong shape), half-way through. Each is a typed error or a retried call, and never a
half-applied pull: the dataset keeps its versions, files and ledger byte for byte."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from modzy_retrain import (
    AnyVotes,
    ConfigurationError,
    DatasetError,
    DatasetWriter,
    JobHistoryQuery,
    LabelStudioAuthError,
    LabelStudioClient,
    LabelStudioConnectionError,
    LabelStudioError,
    LabelStudioNotFoundError,
    LabelStudioResponseError,
    LabelStudioRetry,
    LabelStudioStatusError,
    LineageResolver,
    Majority,
    ModzyClient,
    PublishedSample,
    ResultFetcher,
    TriggerGate,
    TrustedAnnotator,
    VoteFilter,
    Weighted,
    list_versions,
    load_manifest,
    pull_from_label_studio,
    read_samples,
    verify_dataset,
)
from modzy_retrain._cli.exit_codes import EXIT_CODES, LABEL_PULL_EXIT_CODES
from modzy_retrain._cli.main import main
from modzy_retrain._dataset.lock import LOCK_NAME, DatasetLockedError
from modzy_retrain._labels.ledger import Ledger, entry
from modzy_retrain.sandbox import Sandbox

SERVER = "http://ls.invalid"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
PROJECT = 7
AT = "2026-11-30T10:00:00Z"
Fault = Callable[[httpx.Request, int], httpx.Response | None]


def _build(url: str, data: Path, fmt: str = "jsonl") -> None:
    sb = Sandbox(seed=3, jobs=40, data_url=str(data))
    sb.write_inputs()
    with ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport()) as c:
        (
            JobHistoryQuery(c)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sb.input_templates)
            | DatasetWriter(url, versioned=True, format=fmt)  # type: ignore[arg-type]
        ).run()


def _needing(url: str) -> list[PublishedSample]:
    found = [s for s in read_samples(url) if s.label_state in ("needs_label", "conflict")]
    model = max({s.model_id for s in found}, key=lambda m: sum(s.model_id == m for s in found))
    return sorted((s for s in found if s.model_id == model), key=lambda s: s.key)


class FakeLabelStudio:
    """The task pages of one project, as Label Studio 1.23.2 answers them."""

    def __init__(self, samples: list[PublishedSample], page_size: int = 100) -> None:
        self.tasks: list[dict[str, Any]] = []
        for n, s in enumerate(samples, 1):
            data = {"job_id": s.job_id, "input_name": s.input_name, "model_id": s.model_id}
            self.tasks.append({"id": n, "project": PROJECT, "data": data, "annotations": []})
        self.page_size = page_size
        self.fault: Fault | None = None
        self.calls = 0

    def annotate(self, task: int, label: str | None, who: int, cancelled: bool = False) -> None:
        result = (
            []
            if label is None
            else [
                {
                    "from_name": "label",
                    "to_name": "image",
                    "type": "choices",
                    "value": {"choices": [label]},
                }
            ]
        )
        annotations = self.tasks[task - 1]["annotations"]
        annotations.append(
            {
                "id": 1000 * task + len(annotations),
                "completed_by": who,
                "result": result,
                "was_cancelled": cancelled,
                "created_at": AT,
                "updated_at": AT,
            }
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.fault is not None:
            answer = self.fault(request, self.calls)
            if answer is not None:
                return answer
        assert request.url.path == "/api/tasks", request.url
        page = int(request.url.params["page"])
        # Smaller pages than asked for, so a pull reads several (the client goes on
        # until it has seen ``total`` tasks).
        size = min(self.page_size, int(request.url.params["page_size"]))
        chunk = self.tasks[(page - 1) * size : page * size]
        return httpx.Response(200, json={"tasks": chunk, "total": len(self.tasks)})


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pull-unit")
    _build(str(root / "ds"), root / "inputs")
    return root / "ds"


@pytest.fixture
def dataset(built: Path, tmp_path: Path) -> tuple[str, list[PublishedSample]]:
    """A copy of v0001 with a ledger mapping its samples that need a human to tasks."""
    import shutil

    url = tmp_path / "ds"
    shutil.copytree(built, url)
    samples = _needing(str(url))
    assert len(samples) >= 4
    ledger = Ledger(*_fs(str(url)))
    ledger.append(
        entry(SERVER, PROJECT, n, s.key, s.model_id, "v0001") for n, s in enumerate(samples, 1)
    )
    return str(url), samples


def _fs(url: str) -> tuple[Any, str]:
    from modzy_retrain._core.fs import url_to_fs

    return url_to_fs(url, {})


def client_for(fake: FakeLabelStudio) -> LabelStudioClient:
    """A client of the fake; its retries wait on a list, never for real."""
    sleeps: list[float] = []
    http = httpx.Client(transport=httpx.MockTransport(fake))
    retry = LabelStudioRetry(max_attempts=3)
    return LabelStudioClient(SERVER, TOKEN, http_client=http, retry=retry, sleep=sleeps.append)


def test_a_pull_agrees_annotators_and_reports_what_it_cannot_use(
    dataset: tuple[str, list[PublishedSample]],
) -> None:
    url, samples = dataset
    classes = load_manifest(url).classes[samples[0].model_id]
    fake = FakeLabelStudio(samples, page_size=2)
    fake.annotate(1, classes[0], 1)
    fake.annotate(1, classes[0], 2)
    fake.annotate(1, classes[1], 3)
    fake.annotate(2, classes[1], 1)
    fake.annotate(2, None, 2, cancelled=True)
    fake.annotate(3, "nonsense", 1)
    fake.tasks[3]["data"]["input_name"] = "../../etc/passwd"  # edited in Label Studio
    fake.annotate(4, classes[0], 1)
    with client_for(fake) as client:
        result = pull_from_label_studio(url, client=client)
    assert result.version == "v0002"
    assert (result.labelled, result.conflicts, result.skipped) == (2, 0, 1)
    assert result.problem_counts == {"label_not_in_classes": 1, "provenance_edited": 1}
    got = {s.key: s for s in read_samples(url)}
    first, second = got[samples[0].key], got[samples[1].key]
    assert (first.label, first.rule) == (classes[0], "human:label-studio")
    assert [(a.annotator, a.label) for a in first.annotations] == [
        ("1", classes[0]),
        ("2", classes[0]),
        ("3", classes[1]),
    ]
    assert first.annotations[0].at == datetime(2026, 11, 30, 10, tzinfo=timezone.utc)
    assert second.label == classes[1]
    # The task whose provenance was edited wrote nothing, and its text was never a path.
    assert got[samples[3].key].label_state == samples[3].label_state
    assert not (Path(url).parent.parent / "etc").exists()


@pytest.mark.parametrize(
    ("policy", "label"),
    [
        (Majority(min_agreement=0.7), None),
        (TrustedAnnotator("3"), 1),
        (Weighted({"3": 5}), 1),
        (Majority(), 0),
    ],
)
def test_the_policy_decides(
    dataset: tuple[str, list[PublishedSample]], policy: Any, label: int | None
) -> None:
    url, samples = dataset
    classes = load_manifest(url).classes[samples[0].model_id]
    fake = FakeLabelStudio(samples)
    for who, chosen in ((1, 0), (2, 0), (3, 1)):
        fake.annotate(1, classes[chosen], who)
    with client_for(fake) as client:
        pull_from_label_studio(url, client=client, policy=policy)
    sample = {s.key: s for s in read_samples(url)}[samples[0].key]
    if label is None:
        assert sample.label_state == "conflict"
        assert set(sample.candidates) == {classes[0], classes[1]}
    else:
        assert (sample.label, sample.label_state) == (classes[label], "labelled")


def _status(code: int, body: Any = None) -> Fault:
    def fault(request: httpx.Request, call: int) -> httpx.Response | None:
        return httpx.Response(code, json=body or {"detail": "no"}) if call >= 2 else None

    return fault


def _raise(exc: Exception) -> Fault:
    def fault(request: httpx.Request, call: int) -> httpx.Response | None:
        if call >= 2:
            raise exc
        return None

    return fault


def _body(content: bytes) -> Fault:
    def fault(request: httpx.Request, call: int) -> httpx.Response | None:
        if call >= 2:
            return httpx.Response(
                200, content=content, headers={"content-type": "application/json"}
            )
        return None

    return fault


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (_raise(httpx.ConnectError("refused")), LabelStudioConnectionError),
        (_raise(httpx.ReadTimeout("slow")), LabelStudioConnectionError),
        (_status(401), LabelStudioAuthError),
        (_status(403), LabelStudioAuthError),
        (_status(404), LabelStudioNotFoundError),
        (_status(500), LabelStudioStatusError),
        (_status(503), LabelStudioStatusError),
        (_body(b"{not json"), LabelStudioResponseError),
        (_body(b'{"tasks": "no", "total": 9}'), LabelStudioResponseError),
        (_body(b'{"tasks": [{"id": "x"}], "total": 9}'), LabelStudioResponseError),
    ],
)
def test_a_failing_label_studio_leaves_the_dataset_untouched(
    dataset: tuple[str, list[PublishedSample]], fault: Fault, error: type[Exception]
) -> None:
    url, samples = dataset
    classes = load_manifest(url).classes[samples[0].model_id]
    fake = FakeLabelStudio(samples, page_size=1)
    for task in range(1, len(samples) + 1):
        fake.annotate(task, classes[0], 1)
    fake.fault = fault  # the first page is read, then every request fails
    before = snapshot(Path(url))
    with client_for(fake) as client, pytest.raises(error) as caught:
        pull_from_label_studio(url, client=client)
    assert isinstance(caught.value, LabelStudioError)
    assert TOKEN not in str(caught.value)
    assert snapshot(Path(url)) == before
    assert list_versions(url) == ["v0001"]
    assert not (Path(url) / LOCK_NAME).exists()


def test_a_flaky_label_studio_is_retried(dataset: tuple[str, list[PublishedSample]]) -> None:
    url, samples = dataset
    classes = load_manifest(url).classes[samples[0].model_id]
    fake = FakeLabelStudio(samples, page_size=1)
    fake.annotate(1, classes[0], 1)
    fake.fault = lambda request, call: httpx.Response(503) if call in (2, 3) else None
    with client_for(fake) as client:
        result = pull_from_label_studio(url, client=client)
    assert result.version == "v0002"
    assert result.tasks == len(samples)


def test_arguments_are_checked_before_any_request(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="policy"):
        pull_from_label_studio(str(tmp_path), url=SERVER, api_key=TOKEN, policy="majority")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="projects"):
        pull_from_label_studio(str(tmp_path), url=SERVER, api_key=TOKEN, projects=["a"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="on_ready needs a trigger"):
        pull_from_label_studio(str(tmp_path), url=SERVER, api_key=TOKEN, on_ready=print)
    fake = FakeLabelStudio([])
    with client_for(fake) as client, pytest.raises(DatasetError, match="no published version"):
        pull_from_label_studio(str(tmp_path / "none"), client=client)
    assert fake.calls == 0


def test_a_locked_dataset_is_refused_after_reading_nothing_is_written(
    dataset: tuple[str, list[PublishedSample]],
) -> None:
    url, samples = dataset
    classes = load_manifest(url).classes[samples[0].model_id]
    fake = FakeLabelStudio(samples)
    fake.annotate(1, classes[0], 1)
    lock = Path(url) / LOCK_NAME
    lock.write_text(json.dumps(HELD))
    before = snapshot(Path(url))
    with client_for(fake) as client, pytest.raises(DatasetLockedError, match="another build"):
        pull_from_label_studio(url, client=client)
    assert snapshot(Path(url)) == before


HELD = {
    "run_id": "other",
    "host": "elsewhere",
    "pid": 1,
    "acquired_at": AT,
    "expires_at": "2999-01-01T00:00:00+00:00",
}


def test_the_command_line(
    dataset: tuple[str, list[PublishedSample]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, samples = dataset
    classes = load_manifest(url).classes[samples[0].model_id]
    monkeypatch.setenv("LABEL_STUDIO_URL", SERVER)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    assert main(["label", "pull", url]) == 2
    assert "LABEL_STUDIO_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)

    fake = FakeLabelStudio(samples)
    made: list[LabelStudioClient] = []

    def fake_client(url: str | None = None) -> LabelStudioClient:
        made.append(client_for(fake))
        return made[-1]

    monkeypatch.setattr("modzy_retrain._cli.label_pull_command.LabelStudioClient", fake_client)
    assert main(["label", "pull", url, "--trusted", "3"]) == 2
    assert "--policy trusted" in capsys.readouterr().err
    assert main(["label", "pull", url, "--policy", "trusted"]) == 2
    assert main(["label", "pull", url]) == 3  # no annotation yet: nothing new
    fake.annotate(1, classes[0], 1)
    fake.annotate(2, classes[0], 1)
    fake.annotate(2, classes[1], 2)
    assert main(["label", "pull", url]) == 0
    out = capsys.readouterr().out
    assert "labels pulled: 2 (agreed 1, in conflict 1)" in out
    assert "published: version v0002 (relabelled 2, annotations updated 0, unchanged 0)" in out
    assert main(["label", "pull", url]) == 3
    fake.annotate(3, classes[0], 1)
    (Path(url) / LOCK_NAME).write_text(json.dumps(HELD))
    assert main(["label", "pull", url]) == 8
    (Path(url) / LOCK_NAME).unlink()
    fake.fault = _status(500)
    fake.page_size = 1
    fake.calls = 0
    assert main(["label", "pull", url]) == 1
    err = capsys.readouterr().err
    assert "answered 500" in err
    assert TOKEN not in err
    assert list_versions(url) == ["v0001", "v0002"]

    # With a build's settings, the trigger's thresholds decide (4: below the threshold).
    fake.fault = None
    settings = Path(url).parent / "build.toml"
    settings.write_text(
        f'base_url = "https://modzy.invalid"\nout = "{url}"\n[trigger]\nmin_new = 5\n'
    )
    assert main(["label", "pull", url, "--settings", str(settings)]) == 4
    assert load_manifest(url).trigger is not None


def test_annotations_that_change_no_label_wait_for_a_version(
    dataset: tuple[str, list[PublishedSample]],
) -> None:
    url, samples = dataset
    classes = load_manifest(url).classes[samples[0].model_id]
    fake = FakeLabelStudio(samples)
    fake.annotate(1, classes[0], 1)
    with client_for(fake) as client:
        assert pull_from_label_studio(url, client=client).version == "v0002"
        fake.annotate(1, classes[0], 2)  # a second annotator agrees: the label stays
        quiet = pull_from_label_studio(url, client=client)
        assert (quiet.version, quiet.relabelled, quiet.updated) == (None, 0, 1)
        fake.annotate(2, classes[1], 1)
        both = pull_from_label_studio(url, client=client)
    assert (both.version, both.relabelled, both.updated) == ("v0003", 1, 1)
    first = {s.key: s for s in read_samples(url)}[samples[0].key]
    assert [a.annotator for a in first.annotations] == ["1", "2"]


def test_the_pull_help_shows_its_exit_codes_as_the_docs_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["label", "pull", "--help"])
    shown = capsys.readouterr().out
    docs = (Path(__file__).resolve().parents[2] / "docs" / "human-labels.md").read_text()
    pull_section = docs.split("## Pull:", 1)[1]
    for code, text in LABEL_PULL_EXIT_CODES.items():
        assert f"  {code}  {text}" in shown
        if code != 141:
            assert f"| {code} | {text} |" in pull_section
    assert set(LABEL_PULL_EXIT_CODES) <= set(EXIT_CODES)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_pull_publishes_csv_and_parquet_versions(tmp_path: Path, fmt: str) -> None:
    url = str(tmp_path / "ds")
    _build(url, tmp_path / "inputs", fmt)
    samples = _needing(url)
    Ledger(*_fs(url)).append(
        entry(SERVER, PROJECT, n, s.key, s.model_id, "v0001") for n, s in enumerate(samples, 1)
    )
    classes = load_manifest(url).classes[samples[0].model_id]
    fake = FakeLabelStudio(samples)
    fake.annotate(1, classes[0], 1)
    with client_for(fake) as client:
        assert pull_from_label_studio(url, client=client).version == "v0002"
    manifest = load_manifest(url)
    assert manifest.format == fmt
    assert any(name.endswith("." + fmt) for name in manifest.samples_files)
    got = {s.key: s for s in read_samples(url)}
    assert got[samples[0].key].label == classes[0]
    assert got[samples[0].key].annotations[0].source == "label-studio"
    assert len(got) == len(list(read_samples(url, version="v0001")))
    assert verify_dataset(url) == []


def test_a_ready_pull_fires_the_trigger_once(dataset: tuple[str, list[PublishedSample]]) -> None:
    url, samples = dataset
    classes = load_manifest(url).classes[samples[0].model_id]
    fake = FakeLabelStudio(samples)
    fired: list[dict[str, Any]] = []
    fake.annotate(1, classes[0], 1)
    with client_for(fake) as client:
        below = pull_from_label_studio(
            url, client=client, trigger=TriggerGate(min_new=2), on_ready=fired.append
        )
        assert below.trigger is not None
        assert (below.trigger.ready, below.trigger.new, fired) == (False, 1, [])
        fake.annotate(2, classes[0], 1)
        fake.annotate(3, classes[1], 1)
        ready = pull_from_label_studio(
            url, client=client, trigger=TriggerGate(min_new=2), on_ready=fired.append
        )
    assert ready.trigger is not None
    assert ready.trigger.ready
    assert ready.firing is not None
    assert ready.firing.ok
    assert [(p["version"], p["new_samples"]) for p in fired] == [("v0003", 2)]
    # A pull without a gate never fires, but its labels count for the next build.
    fake.annotate(4, classes[1], 1)
    with client_for(fake) as client:
        quiet = pull_from_label_studio(url, client=client)
    assert quiet.trigger is not None
    assert (quiet.trigger.ready, quiet.trigger.since_last) == (False, 1)
    assert len(fired) == 1


def test_label_pull_settings_fire_the_build_s_actions(
    dataset: tuple[str, list[PublishedSample]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.triggers.services import FakeGitHub

    url, samples = dataset
    classes = load_manifest(url).classes[samples[0].model_id]
    fake = FakeLabelStudio(samples)
    fake.annotate(1, classes[0], 1)
    monkeypatch.setenv("LABEL_STUDIO_URL", SERVER)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    monkeypatch.setattr(
        "modzy_retrain._cli.label_pull_command.LabelStudioClient",
        lambda url=None: client_for(fake),
    )
    settings = Path(url).parent / "build.toml"
    settings.write_text(
        f'out = "{url}"\n[trigger]\nmin_new = 1\n'
        '[[trigger.actions]]\npreset = "github"\nrepository = "acme/vision"\n'
        'workflow = "retrain.yml"\nref = "main"\n'
    )
    inputs = {"dataset_url", "version", "added", "relabelled", "new_samples", "new_by_label"}
    github = FakeGitHub(
        token="ghp_pull0canary", workflows={"acme/vision/retrain.yml": {*inputs, "idempotency_key"}}
    )
    with github.running():
        monkeypatch.setenv("GITHUB_API_URL", github.url)
        monkeypatch.delenv("GITHUB_TOKEN", raising=False)
        # No token: invalid settings, before Label Studio is asked anything.
        assert main(["label", "pull", url, "--settings", str(settings)]) == 2
        assert "set GITHUB_TOKEN" in capsys.readouterr().err
        assert fake.calls == 0
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_pull0canary")
        assert main(["label", "pull", url, "--settings", str(settings)]) == 0
    out = capsys.readouterr().out
    assert "trigger for v0002: fired, ok (github:acme/vision/retrain.yml@main: 204)" in out
    assert github.problems == []
    (dispatch,) = github.dispatches
    assert (dispatch["inputs"]["version"], dispatch["inputs"]["relabelled"]) == ("v0002", "1")
    assert "ghp_pull0canary" not in out
