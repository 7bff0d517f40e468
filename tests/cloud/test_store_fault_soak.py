"""Fault soak on the object stores: a flaky S3 or GCS gives the same dataset, or none.

``modzy-retrain build`` (the command, in process) writes to moto's S3 server or the GCS
emulator through the fault proxy (``_store_proxy``): 5xx answers, slow answers,
connections dropped before the store saw the request, answers lost after the store
acted on it, a multipart (S3) or resumable (GCS) upload that fails half-way. Faults
are drawn from a seed and the request, never from timing. The store clients' waits
between retries are recorded, not slept.

Each build either publishes the same samples as a healthy build, or publishes nothing
and exits 1 with a message naming the store's error; a rerun against a healthy store
then publishes the healthy dataset. A reader polling the store directly during the
faulty build never sees a version that does not verify.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from modzy_retrain import list_versions, read_samples, verify_dataset
from modzy_retrain._cli.main import main
from modzy_retrain._core.fs import url_to_fs
from modzy_retrain.sandbox import ObjectStoreServer, Sandbox, SandboxServer

from ._store_proxy import FaultPlan, Seen, StoreProxy, first, is_write
from .conftest import Store, gcs_options, new_store, s3_options

# gcsfs hands aiohttp a resumable upload's chunks as bytes, which aiohttp warns about
# (over 1 MiB): not ours to fix.
# A build a test, and a healthy one before it: minutes on a busy machine.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning"),
    pytest.mark.timeout(600),
]

SEED, JOBS = 17, 40
BIG = 7 * 2**20  # two inputs this large: more than one part at a 5 MiB block size
BLOCK = 5 * 2**20
STORES = ["s3", "gcs"]

Key = tuple[str, str, str | None, str | None]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, SandboxServer]]:
    """The sandbox over HTTP, with two of its inputs made large (multipart uploads)."""
    data = tmp_path_factory.mktemp("soak-inputs")
    sb = Sandbox(seed=SEED, jobs=JOBS, data_url=str(data))
    sb.write_inputs()
    files = sorted(p for p in data.rglob("*") if p.is_file())
    for n, path in enumerate(files[:2]):
        path.write_bytes(bytes([n + 1]) * BIG)
    with sb.serve() as server:
        yield sb, server


def flags(options: dict[str, Any]) -> list[str]:
    out = []
    for key, value in options.items():
        if key == "skip_instance_cache":
            continue
        out += ["--storage-option", f"{key}={value}"]
    # Big inputs go up in parts (an S3 multipart upload, a GCS resumable one).
    size = "default_block_size" if "key" in options else "block_size"
    return [*out, "--storage-option", f"{size}={BLOCK}"]


def build(
    world: tuple[Sandbox, SandboxServer],
    url: str,
    options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> int:
    sb, server = world
    monkeypatch.setenv("MODZY_API_KEY", sb.api_key)
    templates = [a for m, t in sb.input_templates.items() for a in ("--input-template", f"{m}={t}")]
    argv = ["build", "--base-url", server.base_url, "--out", url, *templates, "--quiet"]
    return main([*argv, *flags(options)])


def fresh(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options``, whose (cached) file system forgets the listings it holds: a reader
    in this process sees what the store holds now, not what it listed before."""
    url_to_fs(url, options)[0].invalidate_cache()
    return options


def keys(url: str, options: dict[str, Any]) -> set[Key]:
    found = read_samples(url, storage_options=fresh(url, options))
    return {(s.job_id, s.input_name, s.label, s.sha256) for s in found}


@contextmanager
def watching(url: str, options: dict[str, Any]) -> Iterator[list[str]]:
    """A reader that polls the store directly (no proxy) while a build runs: every
    version it can see must verify. Yields the problems it met."""
    problems: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        checked: set[str] = set()
        while not stop.wait(0.05):
            try:
                versions = list_versions(url, storage_options=fresh(url, options))
            except Exception as exc:  # pragma: no cover - reported below
                problems.append(f"list_versions: {exc!r}")
                return
            for version in set(versions) - checked:
                found = verify_dataset(url, version=version, storage_options=options)
                problems.extend(f"{version}: {p}" for p in found)
                checked.add(version)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield problems
    finally:
        stop.set()
        thread.join(timeout=30)


class Target:
    """One store: its bucket direct (the healthy reader's view) and through the proxy."""

    def __init__(self, direct: Store, proxy: StoreProxy) -> None:
        self.direct = direct
        self.proxy = proxy
        self.options = {**direct.options, "skip_instance_cache": False}
        self.via = {**self.options, "endpoint_url": proxy.endpoint}

    def url(self, name: str) -> str:
        return self.direct.url(name)


@pytest.fixture(params=STORES)
def target(request: pytest.FixtureRequest, store_waits: list[float]) -> Target:
    name = request.param
    server: ObjectStoreServer = request.getfixturevalue(f"{name}_endpoint")
    proxy: StoreProxy = request.getfixturevalue(f"{name}_proxy")
    options = s3_options(server) if name == "s3" else gcs_options(server)
    return Target(new_store("s3" if name == "s3" else "gs", options), proxy)


@pytest.fixture
def healthy(
    target: Target, world: tuple[Sandbox, SandboxServer], monkeypatch: pytest.MonkeyPatch
) -> set[Key]:
    url = target.url("healthy")
    assert build(world, url, target.via, monkeypatch) == 0
    found = keys(url, target.options)
    assert len(found) > 20
    # What the half-way test relies on: the big inputs went up in more than one part.
    assert target.proxy.requests(part_of_a_big_upload)
    target.proxy.reset()
    return found


def published_nothing_or_healthy(
    code: int, target: Target, url: str, healthy: set[Key], problems: list[str]
) -> None:
    assert problems == []  # the reader never saw a version that does not verify
    if code == 0:
        assert keys(url, target.options) == healthy
    else:
        assert code == 1
        assert list_versions(url, storage_options=fresh(url, target.options)) == []


def rerun_completes(
    target: Target,
    world: tuple[Sandbox, SandboxServer],
    url: str,
    healthy: set[Key],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target.proxy.reset()  # the store recovered
    code = build(world, url, target.via, monkeypatch)

    assert code in (0, 3)  # 3: the faulty build had published it already
    assert list_versions(url, storage_options=fresh(url, target.options)) == ["v0001"]
    assert verify_dataset(url, storage_options=target.options) == []
    assert keys(url, target.options) == healthy


def test_a_flaky_store_gives_the_same_dataset(
    target: Target,
    world: tuple[Sandbox, SandboxServer],
    healthy: set[Key],
    store_waits: list[float],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target.proxy.plan = FaultPlan(
        seed=3, rates={"error": 0.06, "slow": 0.04, "drop": 0.03, "lost": 0.03}, slow_s=0.01
    )
    url = target.url("flaky")
    with watching(url, target.options) as problems:
        code = build(world, url, target.via, monkeypatch)
    err = capsys.readouterr().err
    assert code == 0, err
    published_nothing_or_healthy(code, target, url, healthy, problems)
    # Every kind of fault was met, and retried without sleeping.
    assert set(target.proxy.faults) == {"error", "slow", "drop", "lost"}, target.proxy.faults
    assert store_waits
    rerun_completes(target, world, url, healthy, monkeypatch)


def test_a_tables_upload_whose_last_answer_was_lost_is_the_writers_own(
    target: Target,
    world: tuple[Sandbox, SandboxServer],
    healthy: set[Key],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The store completes each table's upload, and its answer is lost: GCS's resumable
    # upload is then gone, and the client's retry fails (404). The table is there,
    # whole: the build recognises its own bytes and publishes.
    def table_upload(seen: Seen) -> bool:
        name = seen.object_name or ""
        upload = "upload_id" in seen.query or seen.method == "PUT"
        return is_write(seen) and name.endswith(("-samples.jsonl", "-tallies.jsonl")) and upload

    target.proxy.plan = FaultPlan(rules=[first(table_upload, "lost", times=2)])
    url = target.url("lost-table")
    with watching(url, target.options) as problems:
        code = build(world, url, target.via, monkeypatch)
    assert code == 0, capsys.readouterr().err
    assert target.proxy.faults["lost"] == 2
    published_nothing_or_healthy(code, target, url, healthy, problems)
    assert verify_dataset(url, storage_options=fresh(url, target.options)) == []


def failing(pred: Callable[[Seen], bool]) -> FaultPlan:
    """Every request ``pred`` accepts fails (503), however often it is sent again."""
    return FaultPlan(rules=[first(pred, "error", times=10**6)])


def test_a_store_that_keeps_failing_the_publication_publishes_nothing(
    target: Target,
    world: tuple[Sandbox, SandboxServer],
    healthy: set[Key],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target.proxy.plan = failing(lambda s: is_write(s) and "manifest.json" in (s.object_name or ""))
    url = target.url("no-manifest")
    with watching(url, target.options) as problems:
        code = build(world, url, target.via, monkeypatch)
    err = capsys.readouterr().err
    assert code == 1
    assert "modzy-retrain build:" in err
    assert "Traceback" not in err
    published_nothing_or_healthy(code, target, url, healthy, problems)
    fs, root = url_to_fs(url, fresh(url, target.options))
    assert not fs.exists(f"{root}/_lock.json")  # the failed build let its lock go
    rerun_completes(target, world, url, healthy, monkeypatch)


def part_of_a_big_upload(seen: Seen) -> bool:
    """A later part of a multipart (S3) or resumable (GCS) upload."""
    if seen.query.get("partNumber", "1") != "1":
        return True
    first_byte = (seen.header("content-range") or "bytes 0-").split(" ")[-1]
    return "upload_id" in seen.query and is_write(seen) and not first_byte.startswith("0-")


def test_an_upload_that_fails_half_way_publishes_nothing(
    target: Target,
    world: tuple[Sandbox, SandboxServer],
    healthy: set[Key],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target.proxy.plan = failing(part_of_a_big_upload)
    url = target.url("half-upload")
    with watching(url, target.options) as problems:
        code = build(world, url, target.via, monkeypatch)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    assert target.proxy.faults["error"] > 0
    published_nothing_or_healthy(code, target, url, healthy, problems)
    # No object holds part of a big input: an unfinished upload is never an object.
    fs, root = url_to_fs(url, fresh(url, target.options))
    sizes = [fs.info(p)["size"] for p in fs.find(root)]
    assert not [s for s in sizes if BLOCK <= s != BIG]
    rerun_completes(target, world, url, healthy, monkeypatch)
