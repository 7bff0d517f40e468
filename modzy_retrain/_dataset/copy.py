"""Copying a raw input into a dataset, checked against the hash it was resolved with.

Data files are named by their content (``data/<sha256[:2]>/<sha256><ext>``), so a copy
whose bytes do not hash to that name is removed and reported, never published. These
run on worker threads: one call per file, nothing shared but the filesystems.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from modzy_retrain._core.fs import CHUNK, FileSystems, ensure_parent, hash_file, sync_file


@dataclass(frozen=True)
class CopyFailure:
    """Why an input was not copied.

    Attributes:
        kind: ``missing`` (the source vanished) or ``changed`` (its bytes differ from
            the hash it was resolved with).
        detail: A human-readable explanation.
    """

    kind: Literal["missing", "changed"]
    detail: str


def already_copied(fs: Any, target: str, size: int, sha256: str | None = None) -> bool:
    """Whether ``target`` holds a finished copy of these bytes.

    Args:
        sha256: Check the bytes too (a killed run's leftover: the right size is no
            proof, a torn or unflushed write has it). ``None``: the size is enough (a
            file a published version lists, checked by ``verify_dataset``).
    """
    try:
        if int(fs.info(target)["size"]) != size:
            return False
        if sha256 is None:
            return True
        found, _, _ = hash_file(fs, target)
    except (FileNotFoundError, KeyError, ValueError):
        return False
    if found != sha256:
        return False
    sync_file(fs, target)  # what a killed run left may be in the page cache only
    return True


def stream_copy(sources: FileSystems, source_url: str, fs: Any, target: str) -> str:
    """Copy ``source_url`` to ``target`` a chunk at a time; the sha256 of what was copied."""
    src_fs, src_path = sources.resolve(source_url)
    digest = hashlib.sha256()
    ensure_parent(fs, target)
    with src_fs.open(src_path, "rb") as src, fs.open(target, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
    sync_file(fs, target)
    return digest.hexdigest()


def copy_input(
    fs: Any,
    target: str,
    *,
    sha256: str,
    size: int,
    payload: bytes | None,
    source_url: str,
    sources: FileSystems,
    reuse: bool,
    verify: bool = True,
) -> CopyFailure | None:
    """Copy one input to ``target`` (``None``: done). On a local disk the copy is
    fsync'd before this returns (its folder is the caller's: ``sync_folders``).

    Args:
        payload: The input's bytes, when they were read already (written as they are).
        reuse: A finished copy may already be there (a previous version's, or a killed
            run's): keep it rather than write it again.
        verify: Keep a file found there only if its bytes hash to ``sha256`` (a killed
            run's); ``False``: its size is enough (a published version's file).
    """
    # Bytes a previous version (or a killed run) already wrote stay as they are:
    # published versions share data/ and are never modified.
    if reuse and already_copied(fs, target, size, sha256 if verify else None):
        return None
    if payload is not None:
        if hashlib.sha256(payload).hexdigest() != sha256:
            return CopyFailure("changed", "bytes differ from the resolved hash")
        ensure_parent(fs, target)
        fs.pipe_file(target, payload)
        sync_file(fs, target)
        return None
    try:
        digest = stream_copy(sources, source_url, fs, target)
    except FileNotFoundError:
        return CopyFailure("missing", f"{source_url} vanished before the copy")
    if digest != sha256:
        fs.rm_file(target)
        return CopyFailure("changed", f"{source_url} changed after it was resolved")
    return None
