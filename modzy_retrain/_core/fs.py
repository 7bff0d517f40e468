"""Thin typed helpers over fsspec (which is mostly untyped)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .exceptions import (
    ConfigurationError,
    MissingDependencyError,
    ModzyRetrainError,
    StorageError,
)

CHUNK = 1 << 20
# How often a local write whose temporary file or folder vanished is made again.
_VANISHED_ATTEMPTS = 3


# The libraries under fsspec's stores whose own exceptions mean "the store failed"
# (not all are OSErrors: gcsfs's HttpError for a 5xx, aiohttp's dropped connections,
# botocore's unreachable endpoint).
_STORE_LIBRARIES = frozenset(
    {"botocore", "aiobotocore", "s3fs", "gcsfs", "google", "aiohttp", "adlfs", "requests"}
)


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Turn a store library's own exception (botocore's ``EndpointConnectionError``,
    aiohttp's ``ClientConnectorError``...) into :class:`StorageError`, the cause kept.

    Its type and text go into the message: a store names the URL it could not reach,
    never a credential.
    """
    try:
        yield
    except Exception as exc:
        if isinstance(exc, ModzyRetrainError):
            raise
        if not _from_store_library(exc):
            raise
        raise StorageError(f"the store failed: {type(exc).__name__}: {exc}") from exc


def url_to_fs(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """``fsspec.core.url_to_fs`` with our options; returns (filesystem, path)."""
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    return fs, str(path)


# Which extra brings the fsspec backend of a protocol this library documents.
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


def check_backend(url: str, what: str) -> None:
    """Check, without touching storage, that fsspec can open ``url``'s protocol(s).

    Raises:
        MissingDependencyError: The backend's package is not installed (names the extra).
        ConfigurationError: fsspec knows no such protocol.
    """
    for part in url.split("::"):
        protocol = fsspec.core.split_protocol(part)[0] or "file"
        try:
            fsspec.get_filesystem_class(protocol)
        except ImportError as exc:
            extra = _EXTRAS.get(protocol)
            how = (
                f"pip install 'modzy-retrain[{extra}]'"
                if extra
                else f"install the fsspec backend for {protocol}:// ({exc})"
            )
            raise MissingDependencyError(f"{what} {protocol}:// needs a package: {how}") from None
        except ValueError:
            raise ConfigurationError(
                f"{what}: fsspec knows no protocol {protocol!r} (in {part.split('/')[0]}...)"
            ) from None


def is_store_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a storage failure: an ``OSError``, or an error of an object
    store's client that ran out of retries (gcsfs raises its own ``HttpError`` for a
    5xx, aiohttp a ``ClientError`` for a dropped connection)."""
    return isinstance(exc, OSError) or _from_store_library(exc)


def _from_store_library(exc: BaseException) -> bool:
    return any(cls.__module__.split(".")[0] in _STORE_LIBRARIES for cls in type(exc).__mro__)


def require_module(module: str, what: str, extra: str) -> None:
    """Check that an optional dependency imports, before any work needs it."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{what} needs {module}: pip install 'modzy-retrain[{extra}]'"
        ) from None


class FileSystems:
    """One filesystem per protocol for a whole run, shared by the worker threads.

    ``fsspec.core.url_to_fs`` per file would build a new client per file whenever the
    instance cache is off (``skip_instance_cache``), and costs a tokenize even when it
    is on. Chained URLs (``simplecache::s3://...``) still go through it each time.
    """

    def __init__(self, storage_options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(storage_options or {})
        self._by_protocol: dict[str, Any] = {}
        self._lock = threading.Lock()

    def resolve(self, url: str) -> tuple[Any, str]:
        if "::" in url:
            return url_to_fs(url, self.options)
        protocol = fsspec.core.split_protocol(url)[0] or "file"
        fs = self._by_protocol.get(protocol)
        if fs is None:
            with self._lock:
                fs = self._by_protocol.get(protocol)
                if fs is None:
                    fs, path = url_to_fs(url, self.options)
                    self._by_protocol[protocol] = fs
                    return fs, path
        return fs, str(fs._strip_protocol(url))


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


def is_local(fs: Any) -> bool:
    return isinstance(fs, LocalFileSystem)


def ensure_parent(fs: Any, path: str) -> None:
    """Create the parent folder on a local disk; object stores have no folders to create."""
    if is_local(fs):
        os.makedirs(os.path.dirname(path), exist_ok=True)


def sync_file(fs: Any, path: str) -> None:
    """On a local disk, flush ``path``'s bytes to the device (fsync); nothing on an
    object store, where a PUT is durable once it is answered."""
    if is_local(fs):
        _fsync(path, os.O_RDONLY if os.name == "posix" else os.O_RDWR)


def sync_folders(fs: Any, root: str, folders: Iterable[str]) -> None:
    """On a local disk, fsync each folder and its parents up to ``root``: a new file's
    name is durable only once the folder holding it is (POSIX; elsewhere nothing)."""
    if not is_local(fs) or os.name != "posix":
        return
    top = os.path.normpath(root)
    todo: set[str] = set()
    for folder in folders:
        path = os.path.normpath(folder)
        while path not in todo:
            todo.add(path)
            parent = os.path.dirname(path)
            if path == top or parent == path or not path.startswith(top):
                break
            path = parent
    for path in sorted(todo, key=len, reverse=True):  # the deepest first
        # A folder not made yet (nothing written there) has nothing to make durable.
        with contextlib.suppress(FileNotFoundError):
            _fsync(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(fs: Any, path: str, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the new one, never half of it.

    Object stores publish a single PUT atomically. On a local disk we write a temporary
    file beside the target, fsync it, then rename it over the target; if the folder
    went meanwhile (another run cleared it), it is made again and the file written
    again.
    """
    if is_local(fs):
        _place_on_disk(fs, path, data, exclusive=False)
    else:
        fs.pipe_file(path, data)


def create_exclusive(fs: Any, path: str, data: bytes) -> None:
    """Create ``path`` holding ``data`` only if it does not exist yet, atomically:
    readers see no file or the whole one. ``FileExistsError`` when it exists.

    This is the one step two writers cannot both win: on a local disk a complete
    temporary file is hard-linked into place (``link`` fails if the name exists); on
    S3 a PUT with ``If-None-Match: *``, on GCS one with ``ifGenerationMatch=0``
    (fsspec's ``mode="create"``). A temporary file that vanished before its link (the
    writer that published first cleared the folder) is written again: the link then
    fails, as it should.

    On an object store a create can succeed and its answer be lost (a dropped
    connection, a read timeout); the client sends it again and the store answers 412,
    since the object now exists. The object then holds exactly ``data`` (callers write
    bytes no other writer would: a run id, a timestamp): that create was this one, and
    it succeeded. S3 answers 409 ``ConditionalRequestConflict`` to a conditional write
    that met another one in flight on the same key: the create is sent again (a few
    times), and the second answer says which won.
    """
    if is_local(fs):
        _place_on_disk(fs, path, data, exclusive=True)
        return
    try:
        _create_on_store(fs, path, data)
    except FileExistsError:
        try:
            found = bytes(fs.cat_file(path))
        except FileNotFoundError:
            found = None  # deleted meanwhile (a lock released): not this create's
        if found != data:
            raise
        # A retried create found its own first attempt.


def _place_on_disk(fs: Any, path: str, data: bytes, *, exclusive: bool) -> None:
    """Write a complete, fsync'd temporary file beside ``path``, then put it there:
    ``os.link`` when ``exclusive`` (``FileExistsError`` if taken), else ``os.replace``.

    When the temporary file or its folder vanished before it was placed (a writer that
    published first cleared the folder of what its manifest does not list), the folder
    is made and the file written again: for a link, the second try says who won.
    """
    directory = os.path.dirname(path)
    for attempt in range(_VANISHED_ATTEMPTS):
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            (os.link if exclusive else os.replace)(tmp, path)
        except FileNotFoundError:
            if attempt == _VANISHED_ATTEMPTS - 1:
                raise
            continue
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # a link's leftover; gone after a replace
        sync_folders(fs, directory, [directory])  # the new name itself
        return


# How often a create that met another conditional write in flight is sent again.
_CONFLICT_ATTEMPTS = 4


def _create_on_store(fs: Any, path: str, data: bytes) -> None:
    for attempt in range(_CONFLICT_ATTEMPTS):
        try:
            fs.pipe_file(path, data, mode="create")
            return
        except FileExistsError:
            raise
        except OSError as exc:
            if "ConditionalRequestConflict" not in _error_code(exc) or (
                attempt == _CONFLICT_ATTEMPTS - 1
            ):
                raise


def _error_code(exc: BaseException) -> str:
    """The store's error code behind an fsspec error (s3fs chains the botocore one)."""
    found = [str(exc)]
    cause = exc.__cause__
    while cause is not None:
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            found.append(str(response.get("Error", {}).get("Code", "")))
        found.append(str(cause))
        cause = cause.__cause__
    return " ".join(found)


def hash_file(
    fs: Any, path: str, *, keep_up_to: int = 0, max_bytes: int | None = None
) -> tuple[str, int, bytes | None]:
    """Stream a file once: (sha256 hex, size, the bytes if size <= ``keep_up_to``).

    Raises:
        FileTooLargeError: The file is larger than ``max_bytes`` (nothing more is read).
    """
    if keep_up_to > 0:
        # One ranged read answers existence, size, hash and content for a small file
        # (one GET on an object store, where open() would also send a HEAD first).
        limit = keep_up_to if max_bytes is None else min(keep_up_to, max_bytes)
        try:
            head = bytes(fs.cat_file(path, start=0, end=limit + 1))
        except FileNotFoundError:
            raise
        except (OSError, ValueError):
            head = None  # e.g. a store that refuses a range on an empty object
        if head is not None:
            if len(head) <= limit:
                return hashlib.sha256(head).hexdigest(), len(head), head
            if max_bytes is not None and limit == max_bytes:
                raise FileTooLargeError(f"larger than the {max_bytes}-byte limit")
    digest = hashlib.sha256()
    size = 0
    kept: list[bytes] | None = [] if keep_up_to > 0 else None
    with fs.open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise FileTooLargeError(f"larger than the {max_bytes}-byte limit")
            digest.update(chunk)
            if kept is not None:
                if size <= keep_up_to:
                    kept.append(chunk)
                else:
                    kept = None
    return digest.hexdigest(), size, (b"".join(kept) if kept is not None else None)


class FileTooLargeError(Exception):
    """Strictly private: a file over the configured size limit."""
