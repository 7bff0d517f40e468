"""Lineage and dataset writing on S3 and GCS, against live local servers.

The raw inputs live on one store and the dataset is written to the other, both ways,
in every format; the manifest and every hash are verified by reading back.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import pytest

from modzy_retrain import (
    DatasetError,
    DatasetWriter,
    Everything,
    JobHistoryQuery,
    LineageResolver,
    ModzyClient,
    ResultFetcher,
    RunReport,
    Sample,
    VoteFilter,
    dataset_files,
    load_manifest,
    read_samples,
    verify_dataset,
)
from modzy_retrain.sandbox import ObjectStoreServer, Sandbox

from .conftest import S3_KEY_ID, S3_SECRET, Store, gcs_options, new_store, s3_options

SEED = 13


def world_on(store: Store) -> tuple[Sandbox, Store]:
    sandbox = Sandbox(
        seed=SEED,
        jobs=24,
        inputs_per_job=3,
        data_url=store.url("raw"),
        storage_options=store.options,
    )
    sandbox.write_inputs()
    return sandbox, store


@pytest.fixture(scope="module")
def s3_world(s3_endpoint: ObjectStoreServer) -> tuple[Sandbox, Store]:
    return world_on(new_store("s3", s3_options(s3_endpoint), "world-inputs"))


@pytest.fixture(scope="module")
def gcs_world(gcs_endpoint: ObjectStoreServer) -> tuple[Sandbox, Store]:
    return world_on(new_store("gs", gcs_options(gcs_endpoint), "world-inputs"))


def run_chain(
    sandbox: Sandbox,
    source: Store,
    out_url: str,
    dest: Store,
    writer_cls: type[DatasetWriter] = DatasetWriter,
    **writer: Any,
) -> RunReport:
    with ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    ) as client:
        return (
            JobHistoryQuery(client)
            | ResultFetcher(client)
            # Every prediction, so the sandbox's missing raw files reach the resolver.
            | VoteFilter(Everything())
            | LineageResolver(templates=sandbox.input_templates, storage_options=source.options)
            | writer_cls(
                out_url,
                storage_options=dest.options,
                source_storage_options=source.options,
                **writer,
            )
        ).run()


def check(sandbox: Sandbox, report: RunReport, url: str, dest: Store) -> None:
    assert report.reconciled, str(report)
    assert verify_dataset(url, storage_options=dest.options) == []
    manifest = load_manifest(url, storage_options=dest.options)
    assert manifest.counts.samples == report.delivered > 0
    fs = dest.fs()
    root = url.split("://", 1)[1]
    for entry in dataset_files(url, storage_options=dest.options):
        assert fs.info(f"{root}/{entry.path}")["size"] == entry.size
    finished = ("COMPLETED", "CANCELED", "TIMEDOUT")
    expected = {
        (m.job_id, m.input_name)
        for m in sandbox.missing_inputs
        if sandbox.job(m.job_id).status in finished
        and getattr(sandbox.job(m.job_id).input(m.input_name), "status", None) == "SUCCESSFUL"
    }
    assert expected, "the sandbox world should have a missing raw file to report"
    assert {(d.job_id, d.input_name) for d in report.unresolved} == expected
    assert all(d.reason == "source_missing" for d in report.unresolved)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "imagefolder"])
def test_s3_inputs_to_a_gcs_dataset(fmt: str, s3_world: tuple[Sandbox, Store], gcs: Store) -> None:
    sandbox, source = s3_world
    url = gcs.url("datasets", fmt)
    report = run_chain(sandbox, source, url, gcs, format=fmt)
    check(sandbox, report, url, gcs)
    rows = list(read_samples(url, storage_options=gcs.options))
    assert len(rows) == report.delivered
    assert all(str(r.source_url).startswith("s3://world-inputs/raw/") for r in rows)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "imagefolder"])
def test_gcs_inputs_to_an_s3_dataset(fmt: str, gcs_world: tuple[Sandbox, Store], s3: Store) -> None:
    sandbox, source = gcs_world
    url = s3.url("datasets", fmt)
    report = run_chain(sandbox, source, url, s3, format=fmt)
    check(sandbox, report, url, s3)


def test_large_inputs_are_streamed_between_stores(
    s3_world: tuple[Sandbox, Store], gcs: Store
) -> None:
    # keep_bytes_up_to=0: the writer reads every input again, from S3 into GCS, chunk by
    # chunk, and checks it against the hash the resolver recorded.
    sandbox, source = s3_world
    url = gcs.url("streamed")
    with ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    ) as client:
        report = (
            JobHistoryQuery(client)
            | ResultFetcher(client)
            | VoteFilter(Everything())
            | LineageResolver(
                templates=sandbox.input_templates,
                storage_options=source.options,
                keep_bytes_up_to=0,
            )
            | DatasetWriter(url, storage_options=gcs.options, source_storage_options=source.options)
        ).run()
    check(sandbox, report, url, gcs)


class Interrupted(DatasetWriter):
    """Dies after its data files are written, before the manifest."""

    def serialize(self, sample: Sample) -> dict[str, object]:
        if self._count >= 5:
            raise KeyboardInterrupt
        self._count += 1
        return super().serialize(sample)

    _count = 0


@pytest.mark.parametrize("dest_name", ["s3", "gcs"])
def test_an_interrupted_writer_leaves_no_visible_dataset(
    dest_name: str, s3_world: tuple[Sandbox, Store], request: pytest.FixtureRequest
) -> None:
    sandbox, source = s3_world
    dest: Store = request.getfixturevalue(dest_name)
    url = dest.url("half")
    with pytest.raises(KeyboardInterrupt):
        run_chain(sandbox, source, url, dest, writer_cls=Interrupted)
    fs = dest.fs()
    root = url.split("://", 1)[1]
    assert fs.find(f"{root}/data")  # data files were written...
    assert not fs.exists(f"{root}/manifest.json")  # ...but nothing was published
    with pytest.raises(DatasetError, match="no dataset"):
        load_manifest(url, storage_options=dest.options)
    # A later run over the debris publishes a complete, verified dataset.
    report = run_chain(sandbox, source, url, dest)
    check(sandbox, report, url, dest)


def test_credentials_never_appear_in_reports_manifests_or_logs(
    s3_world: tuple[Sandbox, Store], s3: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox, source = s3_world
    url = s3.url("secret-check")
    report = run_chain(sandbox, source, url, s3)
    fs = s3.fs()
    manifest = fs.cat_file(f"{url.split('://', 1)[1]}/manifest.json").decode()
    samples = fs.cat_file(f"{url.split('://', 1)[1]}/samples.jsonl").decode()
    texts = [report.to_json(), str(report), repr(report), manifest, samples]
    # A failing build too: the dataset's bucket does not exist.
    with pytest.raises(Exception) as info:  # noqa: PT011 - any failure will do
        run_chain(
            sandbox, Store("s3", "no-such-bucket", source.options), "s3://no-such-bucket-xyz/ds", s3
        )
    texts += [str(info.value), repr(info.value)]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("modzy_retrain")]
    everything = [r.getMessage() for r in caplog.records]
    for text in [*texts, *ours]:
        assert S3_SECRET not in text
        assert S3_KEY_ID not in text
    for text in everything:
        assert S3_SECRET not in text


def test_sandbox_command_puts_its_inputs_on_s3(s3: Store) -> None:
    options = s3.options
    cmd = [
        sys.executable,
        "-m",
        "modzy_retrain._cli",
        "sandbox",
        "--jobs",
        "6",
        "--data-url",
        s3.url("cli"),
        "--storage-option",
        f"endpoint_url={options['endpoint_url']}",
        "--storage-option",
        f"key={options['key']}",
        "--storage-option",
        f"secret={options['secret']}",
        "--storage-option",
        "use_ssl=false",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        info = json.loads(line)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert S3_SECRET not in line
    assert S3_SECRET not in err
    assert info["data_url"] == s3.url("cli")
    templates = info["input_templates"]
    assert all(t.startswith(s3.url("cli") + "/") for t in templates.values())
    assert s3.fs().find(f"{s3.bucket}/cli")
