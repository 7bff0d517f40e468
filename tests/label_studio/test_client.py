"""LabelStudioClient against a real Label Studio 1.23.2 on loopback (see conftest.py)."""

from __future__ import annotations

import logging
import pickle
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modzy_retrain import (
    LabelStudioAuthError,
    LabelStudioClient,
    LabelStudioError,
    LabelStudioNotFoundError,
    LabelStudioStatusError,
)

# Installing Label Studio on a fresh machine (~75 s) and its first start (~35 s) happen
# in the first test's setup: the module's timeout covers them.
pytestmark = pytest.mark.timeout(600)

CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="label" toName="text" choice="single">'
    '<Choice value="cat"/><Choice value="dog"/><Choice value="bird"/></Choices></View>'
)


def choice(label: str) -> list[dict[str, Any]]:
    return [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}
    ]


def title() -> str:
    return f"retrain {uuid.uuid4().hex[:12]}"


class Counter:
    """Counts requests per (method, path) through an httpx event hook."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> None:
        self.seen.append((request.method, request.url.path))

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.seen if m == method and p == path)


@pytest.fixture(scope="session")
def admin(label_studio: Any) -> Iterator[LabelStudioClient]:
    with LabelStudioClient(label_studio.url, label_studio.token) as client:
        yield client


@pytest.fixture(scope="session")
def annotators(admin: LabelStudioClient) -> list[int]:
    """Three annotators: the admin and two users it created (it annotates for them)."""
    tag = uuid.uuid4().hex[:8]
    others = [admin.create_user(f"annotator-{n}-{tag}@example.com") for n in (2, 3)]
    return [admin.whoami().id, *(u.id for u in others)]


@pytest.fixture(scope="session")
def personal_access_token(admin: LabelStudioClient) -> str:
    # One per user: a second POST /api/token/ answers 409, so it is made once a session.
    return admin.create_personal_access_token()


def test_bulk_import_in_chunks_and_list_back(label_studio: Any) -> None:
    counter = Counter()
    with (
        httpx.Client(event_hooks={"request": [counter]}) as http,
        LabelStudioClient(label_studio.url, label_studio.token, http_client=http) as client,
    ):
        project = client.create_project(title(), CONFIG)
        tasks = [
            {
                "data": {"text": f"input {i}", "job_id": f"job-{i // 10}", "input_name": f"in-{i}"},
                "meta": {"model": "sentiment", "n": i},
                "predictions": [
                    {"model_version": "1.0", "score": 0.4, "result": choice("cat")},
                ],
            }
            for i in range(1200)
        ]
        ids = client.import_tasks(project.id, tasks, chunk_size=500)
        assert len(ids) == len(set(ids)) == 1200
        assert counter.count("POST", f"/api/projects/{project.id}/import") == 3

        listed = list(client.tasks(project.id, page_size=500))
        assert counter.count("GET", "/api/tasks") == 3  # 500 + 500 + 200, none past the end
    assert [t.id for t in listed] == ids
    assert listed[7].data == {"text": "input 7", "job_id": "job-0", "input_name": "in-7"}
    assert listed[7].meta == {"model": "sentiment", "n": 7}
    assert listed[7].project == project.id
    assert listed[7].predictions[0].choices() == ("cat",)
    assert not any(t.annotations or t.is_labeled for t in listed)


def test_annotations_of_several_annotators_come_back(
    admin: LabelStudioClient, annotators: list[int]
) -> None:
    first, second, third = annotators
    project = admin.create_project(title(), CONFIG)
    agree, disagree, skipped = admin.import_tasks(
        project.id, [{"data": {"text": t}} for t in ("agree", "disagree", "skipped")]
    )
    admin.create_annotation(agree, choice("cat"), completed_by=first)
    admin.create_annotation(agree, choice("cat"), completed_by=second)
    admin.create_annotation(disagree, choice("cat"), completed_by=first)
    posted = admin.create_annotation(disagree, choice("dog"), completed_by=third, lead_time=4.5)
    admin.create_annotation(skipped, [], completed_by=second, was_cancelled=True)
    assert posted.completed_by == third
    assert posted.lead_time == 4.5
    assert posted.created_at is not None

    by_id = {t.id: t for t in admin.tasks(project.id)}
    assert sorted((a.completed_by, a.choices()) for a in by_id[agree].annotations) == sorted(
        [(first, ("cat",)), (second, ("cat",))]
    )
    assert sorted((a.completed_by, a.choices()) for a in by_id[disagree].annotations) == sorted(
        [(first, ("cat",)), (third, ("dog",))]
    )
    (cancelled,) = by_id[skipped].annotations
    assert cancelled.was_cancelled
    assert cancelled.completed_by == second
    assert cancelled.choices() == ()
    assert all(a.updated_at and a.created_at for t in by_id.values() for a in t.annotations)

    # The export has the same answers; GET /api/tasks/{id} nests the user (id and email).
    exported = {t.id: t for t in admin.export(project.id)}
    assert {a.id for a in exported[disagree].annotations} == {
        a.id for a in by_id[disagree].annotations
    }
    one = admin.get_task(disagree)
    assert {a.completed_by for a in one.annotations} == {first, third}
    assert all(a.completed_by_email for a in one.annotations)


def test_a_personal_access_token_is_refreshed_to_a_bearer_token(
    label_studio: Any, personal_access_token: str
) -> None:
    counter = Counter()
    with (
        httpx.Client(event_hooks={"request": [counter]}) as http,
        LabelStudioClient(label_studio.url, personal_access_token, http_client=http) as client,
    ):
        assert client.token_kind == "personal"
        assert client.whoami().email == "admin@example.com"
        project = client.create_project(title(), CONFIG)
        assert client.find_project(project.title).id == project.id  # type: ignore[union-attr]
    assert counter.count("POST", "/api/token/refresh/") == 1  # then the access token is kept
    assert personal_access_token not in repr(client)


def test_the_same_pat_sent_as_a_legacy_token_is_refused(
    label_studio: Any, personal_access_token: str
) -> None:
    # What a client that does not tell the kinds apart would do: Label Studio says 401.
    answer = httpx.get(
        f"{label_studio.url}/api/current-user/whoami",
        headers={"Authorization": f"Token {personal_access_token}"},
    )
    assert answer.status_code == 401


@pytest.mark.parametrize("kind", ["legacy", "personal"])
def test_a_wrong_token_is_a_typed_401_that_does_not_show_it(
    label_studio: Any, personal_access_token: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A legacy token of the right shape; a PAT with a forged signature.
    wrong = "0f" * 20 if kind == "legacy" else personal_access_token[:-6] + "AAAAAA"
    caplog.set_level(logging.DEBUG)
    with LabelStudioClient(label_studio.url, wrong) as client:
        assert client.token_kind == kind
        with pytest.raises(LabelStudioAuthError) as info:
            client.whoami()
    error = info.value
    assert error.status_code == 401
    for text in (str(error), repr(error), repr(error.__dict__), caplog.text, repr(client)):
        assert wrong not in text
        assert wrong[-12:] not in text
    assert pickle.loads(pickle.dumps(error)).status_code == 401


def test_missing_projects_and_tasks_are_typed(admin: LabelStudioClient) -> None:
    with pytest.raises(LabelStudioNotFoundError) as info:
        admin.get_project(987_654)
    assert info.value.status_code == 404
    assert info.value.path == "/api/projects/987654"
    assert admin.find_project(987_654) is None
    assert admin.find_project("no project has this title") is None
    with pytest.raises(LabelStudioNotFoundError):
        admin.import_tasks(987_654, [{"data": {"text": "x"}}])
    with pytest.raises(LabelStudioNotFoundError):
        admin.create_annotation(987_654, choice("cat"))


def test_find_project_by_title_is_exact_and_refuses_ambiguity(admin: LabelStudioClient) -> None:
    name = title()
    made = admin.create_project(name, CONFIG)
    admin.create_project(name + " v2", CONFIG)  # the server's title filter would match it
    # task_number is null in the creation's answer, a count afterwards: compare ids.
    assert admin.find_project(name).id == made.id  # type: ignore[union-attr]
    assert admin.find_project(made.id).id == made.id  # type: ignore[union-attr]
    admin.create_project(name, CONFIG)
    with pytest.raises(LabelStudioError, match="2 projects are titled"):
        admin.find_project(name)


def test_the_server_refusing_a_request_says_why(admin: LabelStudioClient) -> None:
    project = admin.create_project(title(), CONFIG)
    with pytest.raises(LabelStudioStatusError) as info:
        admin.create_annotation(
            admin.import_tasks(project.id, [{"data": {"text": "x"}}])[0],
            choice("cat"),
            completed_by=987_654,
        )
    assert info.value.status_code == 400
    assert "completed_by" in str(info.value)
