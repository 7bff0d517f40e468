"""The S3 storage option without a server: its validation, the credentials never shown
(repr, str, JSON, exceptions), the request it makes, and the push's checks.

Label Studio's answers here are the ones 1.23.2 gave (test_push_s3.py runs the real
thing); an ``httpx.MockTransport`` plays only what a real server does not do on
demand: echo a credential, refuse a loopback endpoint (our test server allows it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modzy_retrain import (
    ConfigurationError,
    LabelStudioAuthError,
    LabelStudioClient,
    LabelStudioConnectionError,
    LabelStudioError,
    LabelStudioRetry,
    LabelStudioStatusError,
    S3StorageSettings,
    push_to_label_studio,
)
from modzy_retrain._labels.inputs import InputResolver, is_s3
from modzy_retrain._labels.models import LabelStudioS3Storage
from modzy_retrain._labels.projects import create_s3_storage, s3_storages, storage_covers

TOKEN = "0123456789abcdef0123456789abcdef01234567"
KEY_ID = "AKIAUNITCANARY000042"
SECRET = "unit-canary-secret-9d2e"
SESSION = "unit-canary-session-token-4b1f"
CANARIES = (KEY_ID, SECRET, SESSION)


def settings(**fields: Any) -> S3StorageSettings:
    base: dict[str, Any] = {
        "endpoint_url": "http://127.0.0.1:9000",
        "region_name": "us-east-1",
        "access_key_id": KEY_ID,
        "secret_access_key": SECRET,
        "session_token": SESSION,
    }
    return S3StorageSettings(**{**base, **fields})


def shown(text: str) -> list[str]:
    return [c for c in CANARIES if c in text]


# -- the settings -------------------------------------------------------------------------


def test_the_credentials_never_show() -> None:
    s = settings()
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.model_dump()), f"{s}", f"{s!r}"):
        assert shown(text) == []
    assert s.secret_values() == (KEY_ID, SECRET, SESSION)
    # Still a value: equal when equal, hashable, frozen.
    assert s == settings()
    assert hash(s) == hash(settings())
    with pytest.raises(ValueError, match="frozen"):
        s.title = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"endpoint_url": f"ftp://{SECRET}"}, "endpoint_url"),
        ({"endpoint_url": f"http://{KEY_ID}:{SECRET}@host"}, "endpoint_url"),
        ({"endpoint_url": f"http://host/?key={SECRET}"}, "endpoint_url"),
        ({"endpoint_url": "http://"}, "endpoint_url"),
        ({"region_name": f"us east {SECRET}"}, "region_name"),
        ({"secret_access_key": None}, "access_key_id and secret_access_key"),
        ({"access_key_id": None}, "access_key_id and secret_access_key"),
        ({"access_key_id": None, "secret_access_key": None}, "session_token"),
        ({"secret_access_key": ""}, "secret_access_key"),
        ({"secret_access_key": f"{SECRET} "}, "secret_access_key"),
        ({"session_token": f"a\n{SESSION}"}, "session_token"),
        ({"secret_access_key": 42}, "secret_access_key"),
        ({"presign_ttl": 0}, "presign_ttl"),
        ({"presign_ttl": 7 * 24 * 60 + 1}, "presign_ttl"),
        ({"presign_ttl": True}, "presign_ttl"),
        ({"presign_ttl": "5"}, "presign_ttl"),
        ({"title": ""}, "title"),
        ({"aws_secret_access_key": SECRET}, "aws_secret_access_key"),
    ],
)
def test_invalid_settings_are_refused_without_repeating_them(
    fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(**fields)
    assert named in str(caught.value)
    assert shown(str(caught.value)) == []
    assert caught.value.__cause__ is None


def test_no_credentials_leaves_them_to_label_studio() -> None:
    s = S3StorageSettings()
    assert s.secret_values() == ()
    body = s.storage_body(7, "bucket", "sets/ds")
    assert not {"s3_endpoint", "region_name", "aws_access_key_id"} & set(body)
    assert body["bucket"] == "bucket"


def test_the_storage_body_uses_label_studio_field_names() -> None:
    body = settings(presign_ttl=15).storage_body(7, "bucket", "sets/ds")
    assert body == {
        "project": 7,
        "title": "modzy-retrain dataset",
        "description": body["description"],
        "bucket": "bucket",
        "prefix": "sets/ds",
        "presign": True,
        "presign_ttl": 15,
        "use_blob_urls": False,
        "recursive_scan": False,
        "s3_endpoint": "http://127.0.0.1:9000",
        "region_name": "us-east-1",
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
        "aws_session_token": SESSION,
    }
    assert "do not sync" in body["description"]


@pytest.mark.parametrize(
    ("bucket", "prefix", "folder", "covers"),
    [
        ("b", None, "sets/ds", True),
        ("b", "", "sets/ds", True),
        ("b", "sets", "sets/ds", True),
        ("b", "sets/", "sets/ds", True),
        ("b", "sets/ds", "sets/ds", True),
        ("b", "sets/ds2", "sets/ds", False),
        ("b", "set", "sets/ds", False),
        ("b", "sets/ds/data", "sets/ds", False),
        ("other", "", "sets/ds", False),
        ("b", "sets", "", False),
        ("b", "", "", True),
    ],
)
def test_which_storage_holds_the_dataset_folder(
    bucket: str, prefix: str | None, folder: str, covers: bool
) -> None:
    storage = LabelStudioS3Storage(id=1, bucket=bucket, prefix=prefix)
    assert storage_covers(storage, "b", folder) is covers


def test_the_dataset_folder_in_its_bucket() -> None:
    ds = InputResolver("s3://bucket/sets/ds", {"anon": True}, None)
    assert ds.s3_folder == ("bucket", "sets/ds")
    assert ds.in_s3_folder("s3://bucket/sets/ds/data/ab/x.png")
    assert not ds.in_s3_folder("s3://bucket/sets/ds2/data/x.png")
    assert not ds.in_s3_folder("s3://other/sets/ds/data/x.png")
    assert not ds.in_s3_folder("https://bucket/sets/ds/x.png")
    whole = InputResolver("s3://bucket", {"anon": True}, None)
    assert whole.s3_folder == ("bucket", "")
    assert whole.in_s3_folder("s3://bucket/data/x.png")
    assert is_s3("s3a://bucket/x")
    assert not is_s3("gs://bucket/x")
    assert not is_s3("/data/x")


# -- the requests -------------------------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], tuple[LabelStudioClient, list[httpx.Request]]]]:
    """A client whose requests go to ``handler`` (recorded); waits are recorded, never slept."""
    opened: list[Any] = []

    def make(handler: Handler) -> tuple[LabelStudioClient, list[httpx.Request]]:
        sent: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return handler(request)

        http = httpx.Client(transport=httpx.MockTransport(record))
        client = LabelStudioClient(
            "http://ls.invalid",
            TOKEN,
            http_client=http,
            retry=LabelStudioRetry(),
            sleep=lambda _s: None,
        )
        opened.extend([client, http])
        return client, sent

    yield make
    for thing in opened:
        thing.close()


STORED = {
    "id": 3,
    "type": "s3",
    "presign": True,
    "title": "modzy-retrain dataset",
    "bucket": "bucket",
    "prefix": "sets/ds",
    "use_blob_urls": False,
    "region_name": "us-east-1",
    "s3_endpoint": "http://127.0.0.1:9000",
    "presign_ttl": 1,
    "project": 7,
}


def test_create_sends_the_credentials_once_and_lists_without_them(serve: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json=STORED)
        return httpx.Response(200, json=[STORED, {**STORED, "id": 2, "prefix": None}])

    client, sent = serve(handler)
    made = create_s3_storage(client, 7, bucket="bucket", prefix="sets/ds/", settings=settings())
    assert (made.id, made.bucket, made.prefix, made.presign) == (3, "bucket", "sets/ds", True)
    (post,) = sent
    assert (post.method, post.url.path) == ("POST", "/api/storages/s3")
    body = json.loads(post.content)
    assert (body["aws_secret_access_key"], body["prefix"]) == (SECRET, "sets/ds")
    assert [s.id for s in s3_storages(client, 7)] == [2, 3]
    assert sent[-1].url.params["project"] == "7"


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        # A server that echoes what it was sent, in its message and its errors.
        (400, {"detail": f"bad key {KEY_ID}", "validation_errors": {"x": [SECRET, SESSION]}}),
        # What 1.23.2 answers when it cannot list the prefix (moto, an empty prefix).
        (500, {"status_code": 500, "detail": "Debugging info is not available"}),
    ],
)
def test_a_refused_storage_is_reported_without_its_credentials(
    serve: Any, status: int, answer: dict[str, Any]
) -> None:
    client, sent = serve(lambda _r: httpx.Response(status, json=answer))
    with pytest.raises(LabelStudioStatusError) as caught:
        create_s3_storage(client, 7, bucket="bucket", prefix="sets/ds", settings=settings())
    error = caught.value
    assert error.status_code == status
    assert "could not list s3://bucket/sets/ds" in str(error)
    for text in (str(error), repr(error), repr(error.body), repr(error.args)):
        assert shown(text) == []
    # Raised fresh: the unredacted error is neither its cause nor its context.
    assert error.__cause__ is None
    assert error.__context__ is None
    assert len(sent) == 1  # a creation the server answered is never sent again


def test_a_loopback_endpoint_refused_by_label_studio_is_no_token_problem(serve: Any) -> None:
    # 1.23.2's answer for an endpoint on 127.0.0.1 with its default SSRF guard.
    detail = "URL resolves to a reserved network address (block: 127.0.0.0/8)"
    client, _ = serve(lambda _r: httpx.Response(403, json={"status_code": 403, "detail": detail}))
    with pytest.raises(LabelStudioStatusError) as caught:
        create_s3_storage(client, 7, bucket="bucket", prefix="sets/ds", settings=settings())
    assert not isinstance(caught.value, LabelStudioAuthError)
    assert "USE_DEFAULT_BANNED_SUBNETS=false" in str(caught.value)
    assert "token" not in str(caught.value)


def test_no_connection_is_reported_without_the_credentials(serve: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused while sending {request.content.decode()}")

    client, sent = serve(handler)
    with pytest.raises(LabelStudioConnectionError) as caught:
        create_s3_storage(client, 7, bucket="bucket", prefix="sets/ds", settings=settings())
    assert len(sent) == LabelStudioRetry().max_attempts  # never connected: safe to resend
    assert shown(str(caught.value)) == []
    assert shown(repr(caught.value)) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bucket": "", "prefix": "p"},
        {"bucket": "a/b", "prefix": "p"},
        {"bucket": "b", "prefix": "/p"},
        {"bucket": "b", "prefix": "p", "settings": {"secret_access_key": SECRET}},
    ],
)
def test_create_refuses_invalid_arguments_before_any_request(
    serve: Any, kwargs: dict[str, Any]
) -> None:
    client, sent = serve(lambda _r: httpx.Response(201, json=STORED))
    with pytest.raises(ConfigurationError) as caught:
        create_s3_storage(client, 7, **{"settings": settings(), **kwargs})
    assert sent == []
    assert shown(str(caught.value)) == []


def test_a_list_that_is_not_storages_is_a_response_error(serve: Any) -> None:
    client, _ = serve(lambda _r: httpx.Response(200, json={"results": []}))
    with pytest.raises(LabelStudioError, match="expected a JSON list"):
        s3_storages(client, 7)


# -- the push's checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "s3_storage"),
    [
        ("local", settings()),  # a local dataset: Label Studio serves it as local files
        ("gs://bucket/ds", settings()),
        ("s3://bucket/ds", {"access_key_id": KEY_ID, "secret_access_key": SECRET}),
    ],
)
def test_the_push_refuses_s3_storage_it_cannot_use_before_any_request(
    tmp_path: Path, serve: Any, where: str, s3_storage: Any
) -> None:
    client, sent = serve(lambda _r: httpx.Response(500))
    url = str(tmp_path / "ds") if where == "local" else where
    with pytest.raises(ConfigurationError, match="s3_storage") as caught:
        push_to_label_studio(url, client=client, s3_storage=s3_storage)
    assert sent == []
    assert shown(str(caught.value)) == []
