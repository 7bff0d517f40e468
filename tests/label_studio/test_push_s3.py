"""``label push`` of a dataset in S3 against a real Label Studio 1.23.2 and a real S3
server (moto, on loopback): the annotator gets the image.

The dataset is written to a moto bucket in copy mode; the push gives its images as
``s3://bucket/<dataset>/<file>`` and connects an S3 source storage on the dataset's
folder. Then, as the annotator's browser does: the task as Label Studio serves it
(``GET /api/tasks/<id>``) points at ``/tasks/<id>/resolve/?fileuri=<base64>``, which
answers a 303 to a URL the server presigned; fetched from moto, its bytes are the
dataset's copy. Nothing is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from modzy_retrain import (
    AnyVotes,
    DatasetWriter,
    JobHistoryQuery,
    LabelStudioClient,
    LabelStudioStatusError,
    LineageResolver,
    ModzyClient,
    PublishedSample,
    ResultFetcher,
    S3StorageSettings,
    VoteFilter,
    load_manifest,
    push_to_label_studio,
    read_samples,
)
from modzy_retrain._labels.ledger import LEDGER_PATH
from modzy_retrain._labels.projects import create_s3_storage, s3_storages
from modzy_retrain._labels.tasks import label_config
from modzy_retrain.sandbox import ObjectStoreServer, Sandbox
from tests.cloud.conftest import S3_KEY_ID, S3_SECRET, Store, new_store, s3_endpoint, s3_options

from .conftest import LabelStudioServer

# The cloud suite's moto server (a session fixture, requested by name) is re-exported,
# so pytest finds it here; its canary credentials are the ones S3 is reached with.
__all__ = ["s3_endpoint"]

pytestmark = pytest.mark.timeout(600)
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
NEEDS_HUMAN = ("needs_label", "conflict")
CANARIES = (S3_KEY_ID, S3_SECRET)


@pytest.fixture(scope="module")
def store(s3_endpoint: ObjectStoreServer) -> Store:
    return new_store("s3", s3_options(s3_endpoint))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    sb = Sandbox(seed=5, jobs=60, data_url=str(tmp_path_factory.mktemp("s3-inputs")))
    sb.write_inputs()
    return sb


@pytest.fixture
def dataset(sandbox: Sandbox, store: Store) -> str:
    """A fresh copy-mode dataset in the bucket, under ``sets/``."""
    url = store.url("sets", f"ds-{uuid.uuid4().hex[:8]}")
    with ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    ) as c:
        (
            JobHistoryQuery(c, start=EPOCH)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sandbox.input_templates)
            # The raw inputs are local files; the dataset is written to the bucket.
            | DatasetWriter(url, storage_options=store.options, source_storage_options={})
        ).run()
    return url


@pytest.fixture
def settings(s3_endpoint: ObjectStoreServer) -> S3StorageSettings:
    # The Label Studio server reaches moto on loopback, as the test process does.
    return S3StorageSettings(
        endpoint_url=s3_endpoint.endpoint,
        region_name="us-east-1",
        access_key_id=S3_KEY_ID,
        secret_access_key=S3_SECRET,
    )


@pytest.fixture
def client(label_studio: LabelStudioServer) -> Iterator[LabelStudioClient]:
    with LabelStudioClient(label_studio.url, label_studio.token) as ls:
        yield ls


def needing(url: str, store: Store) -> dict[tuple[str, str], PublishedSample]:
    return {
        s.key: s
        for s in read_samples(url, storage_options=store.options)
        if s.label_state in NEEDS_HUMAN
    }


def image_model(samples: dict[tuple[str, str], PublishedSample]) -> str:
    (model,) = {s.model_id for s in samples.values() if s.file and s.file.endswith(".png")}
    return model


def as_served(label_studio: LabelStudioServer, task_id: int, *, resolve: bool) -> Any:
    """The task's data as Label Studio answers it (``resolve_uri`` as the front end
    leaves it, or off to see what was imported)."""
    got = httpx.get(
        f"{label_studio.url}/api/tasks/{task_id}",
        params={"resolve_uri": "true" if resolve else "false"},
        headers={"Authorization": f"Token {label_studio.token}"},
    )
    assert got.status_code == 200
    return got.json()["data"]


def test_the_annotator_gets_the_image_from_the_bucket(
    label_studio: LabelStudioServer,
    s3_endpoint: ObjectStoreServer,
    store: Store,
    dataset: str,
    settings: S3StorageSettings,
    client: LabelStudioClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="modzy_retrain")
    wanted = needing(dataset, store)
    images = image_model(wanted)
    result = push_to_label_studio(
        dataset, client=client, storage_options=store.options, s3_storage=settings
    )
    assert (result.selected, result.created, result.skipped) == (len(wanted), len(wanted), {})
    root = dataset.split("://", 1)[1]  # bucket/sets/ds-...
    prefix = root.split("/", 1)[1]

    # One S3 storage, on the dataset's folder, for the images' project only (texts
    # are in the tasks themselves).
    project = result.projects[images]
    (storage,) = s3_storages(client, project.id)
    assert (storage.bucket, storage.prefix) == (store.bucket, prefix)
    assert storage.s3_endpoint == s3_endpoint.endpoint
    assert (storage.presign, storage.use_blob_urls) == (True, False)
    for model_id, other in result.projects.items():
        if model_id != images:
            assert s3_storages(client, other.id) == []

    fs = store.fs()
    tasks = list(client.tasks(project.id))
    assert len(tasks) == sum(1 for s in wanted.values() if s.model_id == images) > 0
    for task in tasks:
        sample = wanted[(task.data["job_id"], task.data["input_name"])]
        assert sample.file is not None
        uri = f"s3://{root}/{sample.file}"
        assert as_served(label_studio, task.id, resolve=False)["image"] == uri
        # What the annotator's browser loads: a resolve URL on Label Studio...
        image = as_served(label_studio, task.id, resolve=True)["image"]
        parts = urlsplit(image)
        assert parts.path == f"/tasks/{task.id}/resolve/"
        (fileuri,) = parse_qs(parts.query)["fileuri"]
        assert base64.urlsafe_b64decode(fileuri).decode() == uri
        resolved = httpx.get(
            label_studio.url + image,
            headers={"Authorization": f"Token {label_studio.token}"},
            follow_redirects=False,
        )
        # ...answered by a redirect to a URL presigned for moto...
        assert resolved.status_code == 303
        presigned = resolved.headers["location"]
        assert presigned.startswith(f"{s3_endpoint.endpoint}/{root}/{sample.file}?")
        assert "X-Amz-Signature=" in presigned
        # ...whose bytes, fetched without any Label Studio token, are the dataset's copy.
        got = httpx.get(presigned)
        assert got.status_code == 200
        assert got.content == fs.cat_file(f"{root}/{sample.file}")
        assert hashlib.sha256(got.content).hexdigest() == sample.sha256
        assert got.headers["content-type"] == "image/png"

    # A rerun imports nothing and connects no second storage.
    again = push_to_label_studio(
        dataset, client=client, storage_options=store.options, s3_storage=settings
    )
    assert (again.created, again.already_present) == (0, len(wanted))
    assert [s.id for s in s3_storages(client, project.id)] == [storage.id]

    # The credentials are Label Studio's: in no result, ledger, log line or answer.
    ledger = fs.cat_file(f"{root}/{LEDGER_PATH}").decode()
    listed = httpx.get(
        f"{label_studio.url}/api/storages/s3",
        params={"project": project.id},
        headers={"Authorization": f"Token {label_studio.token}"},
    ).text
    for text in (repr(result), repr(again), ledger, caplog.text, listed, repr(settings)):
        for canary in CANARIES:
            assert canary not in text


@pytest.mark.parametrize("prefix", ["sets", "elsewhere"])
def test_a_storage_already_on_the_bucket(
    prefix: str,
    store: Store,
    dataset: str,
    settings: S3StorageSettings,
    client: LabelStudioClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A storage on "sets/" holds the dataset's folder: kept, no other connected. One on
    "elsewhere/" does not: the push connects its own and warns, as Label Studio
    presigns with the first storage on the bucket."""
    wanted = needing(dataset, store)
    images = image_model(wanted)
    classes = load_manifest(dataset, storage_options=store.options).classes[images]
    title = f"s3 {uuid.uuid4().hex[:10]}"
    made = client.create_project(title, label_config("image", list(classes)))
    store.fs().pipe_file(f"{store.bucket}/elsewhere/readme.txt", b"not the dataset")
    # Connected by hand before the push (Label Studio wants an object under the prefix).
    kept = create_s3_storage(client, made.id, bucket=store.bucket, prefix=prefix, settings=settings)
    caplog.set_level(logging.WARNING, logger="modzy_retrain")
    result = push_to_label_studio(
        dataset,
        client=client,
        storage_options=store.options,
        s3_storage=settings,
        project={images: title},
        select=lambda s: s.model_id == images and s.label_state in NEEDS_HUMAN,
    )
    assert result.projects[images].id == made.id
    assert result.created == sum(1 for s in wanted.values() if s.model_id == images)
    found = s3_storages(client, made.id)
    assert found[0].id == kept.id
    if prefix == "sets":
        assert len(found) == 1
        assert caplog.text == ""
    else:
        assert [s.prefix for s in found[1:]] == [dataset.split("://", 1)[1].split("/", 1)[1]]
        assert "presigns the images with the first of them" in caplog.text
        assert str(kept.id) in caplog.text


def test_a_storage_label_studio_cannot_check_fails_without_its_secret(
    store: Store, dataset: str, settings: S3StorageSettings, client: LabelStudioClient
) -> None:
    project = client.create_project(f"s3 {uuid.uuid4().hex[:10]}", label_config("image", ["a"]))
    # Label Studio lists the prefix when the storage is created; nothing is under this one.
    with pytest.raises(LabelStudioStatusError) as caught:
        create_s3_storage(
            client, project.id, bucket=store.bucket, prefix="nothing-here", settings=settings
        )
    error = caught.value
    assert error.status_code == 500
    assert "could not list s3://" in str(error)
    assert error.__context__ is None
    assert error.__cause__ is None
    for text in (str(error), repr(error), repr(error.body), repr(error.args)):
        for canary in CANARIES:
            assert canary not in text
    assert s3_storages(client, project.id) == []
