"""The training loaders on S3 (moto's server): the dataset and its inputs in a bucket,
reached through storage_options only; copies and (reference mode) sources are read
from the bucket, not from Hugging Face's own path handling."""

from __future__ import annotations

import io

import datasets
import pytest
from PIL import Image

from modzy_retrain import (
    AnyVotes,
    DatasetWriter,
    JobHistoryQuery,
    LineageResolver,
    ModzyClient,
    ResultFetcher,
    VoteFilter,
    load_hf_dataset,
    load_manifest,
    load_torch_dataset,
    to_pandas,
)
from modzy_retrain.sandbox import ObjectStoreServer, Sandbox

from .conftest import Store, new_store, s3_options


@pytest.fixture(scope="module")
def bucket(s3_endpoint: ObjectStoreServer) -> tuple[Sandbox, Store]:
    store = new_store("s3", s3_options(s3_endpoint))
    sandbox = Sandbox(seed=17, jobs=12, data_url=store.url("raw"), storage_options=store.options)
    sandbox.write_inputs()
    return sandbox, store


def build(sandbox: Sandbox, store: Store, name: str, fmt: str, mode: str) -> str:
    url = store.url(name)
    with ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    ) as c:
        (
            JobHistoryQuery(c)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sandbox.input_templates, storage_options=store.options)
            | DatasetWriter(url, format=fmt, mode=mode, storage_options=store.options)  # type: ignore[arg-type]
        ).run()
    return url


@pytest.mark.parametrize(("fmt", "mode"), [("parquet", "copy"), ("jsonl", "reference")])
def test_loaders_read_a_dataset_in_a_bucket(
    fmt: str, mode: str, bucket: tuple[Sandbox, Store]
) -> None:
    sandbox, store = bucket
    url = build(sandbox, store, f"ds-{fmt}-{mode}", fmt, mode)
    image = next(m.id for m in sandbox.models if m.kind == "image")
    ds = load_hf_dataset(url, model=image, storage_options=store.options)
    assert list(ds) == ["train", "validation"]
    assert (
        ds["train"].features["label"].names
        == load_manifest(url, storage_options=store.options).classes[image]
    )
    rows = [row for part in ds.values() for row in part]
    assert rows
    for row in rows:
        raw = sandbox.input_bytes(row["job_id"], row["input_name"])
        assert row["image"].tobytes() == Image.open(io.BytesIO(raw)).tobytes()
    # The bytes are in the dataset: Hugging Face never opens an s3:// path itself.
    storage = ds["train"].cast_column("image", datasets.Image(decode=False))[0]["image"]
    assert storage["bytes"] is not None
    assert storage["path"].startswith("s3://")
    if mode == "reference":
        return  # the other loaders locate inputs the same way (tests/loaders)
    frame = to_pandas(url, model=image, storage_options=store.options)
    assert sorted(frame["label_id"]) == sorted(row["label"] for row in rows)
    train = load_torch_dataset(url, split="train", model=image, storage_options=store.options)
    picture, target = train[0]
    assert target == ds["train"][0]["label"]
    assert picture.tobytes() == ds["train"][0]["image"].tobytes()
