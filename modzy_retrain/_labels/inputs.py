"""Where an annotator sees a pushed sample's raw input from.

Images are shown from a URL Label Studio can serve, tried in this order:

1. the dataset's own copy (``file``, copy mode), when the dataset is a local folder
   under the server's local-files document root: ``/data/local-files/?d=<path under
   the root>`` (the push connects a local-files storage on the dataset's folder);
2. the dataset's own copy in a bucket: ``s3://bucket/<root>/<file>`` or
   ``gs://...``, which Label Studio serves through a cloud source storage connected
   to the project (its credentials are Label Studio's, not ours; the push connects
   an S3 one on ``bucket/<root>`` when given its settings);
3. the sample's ``source_url`` when it is ``http(s)://``, ``s3://`` or ``gs://``.

Texts are read (the copy first, else the source) and put in the task itself, which is
what Label Studio's ``<Text>`` expects. Paths come from the dataset only, never from
Label Studio.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import fsspec

from modzy_retrain._core.fs import is_local, join, url_to_fs
from modzy_retrain._dataset.inputs import safe_relative
from modzy_retrain._dataset.rows import PublishedSample

from .tasks import (
    SKIP_INPUT_MISSING,
    SKIP_NO_URL,
    SKIP_NOT_UTF8,
    SKIP_TEXT_TOO_LARGE,
    local_files_url,
)

MAX_TEXT_BYTES = 1_000_000
_CLOUD = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs"}
_SERVED_SOURCES = ("http", "https", "s3", "gs")


def _protocol(url: str) -> str:
    return fsspec.core.split_protocol(url)[0] or "file"


def is_s3(url: str) -> bool:
    """Whether ``url`` is in S3 (``s3://`` or ``s3a://``)."""
    return _CLOUD.get(_protocol(url)) == "s3"


class InputResolver:
    """Resolves the samples of one dataset to what a task shows."""

    def __init__(
        self,
        dataset_url: str,
        storage_options: Mapping[str, Any] | None,
        local_files_root: str | None,
    ) -> None:
        self.options = dict(storage_options or {})
        self.protocol = _protocol(dataset_url)
        self.fs, self.root = url_to_fs(dataset_url, self.options)
        # The dataset's folder, absolute, when Label Studio can serve it as local files.
        self.local_folder: str | None = None
        self._local_prefix = ""
        if local_files_root and is_local(self.fs):
            folder = os.path.realpath(self.root)
            relative = os.path.relpath(folder, os.path.realpath(local_files_root))
            # The server refuses a storage on the document root itself, or outside it.
            if relative != "." and not relative.startswith(".."):
                self.local_folder = folder
                self._local_prefix = relative.replace(os.sep, "/")
        # The dataset's bucket and folder in it, when its copies are s3:// URLs.
        self.s3_folder: tuple[str, str] | None = None
        if is_s3(dataset_url):
            bucket, _, prefix = self.root.strip("/").partition("/")
            self.s3_folder = (bucket, prefix)

    def in_s3_folder(self, url: str) -> bool:
        """Whether ``url`` is an ``s3://`` URL under the dataset's own folder."""
        if self.s3_folder is None:
            return False
        bucket, prefix = self.s3_folder
        folder = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return url.startswith(folder + "/")

    def image(self, sample: PublishedSample) -> tuple[str | None, str | None, bool]:
        """``(url, skip reason, served as local files)`` for an image sample."""
        relative = safe_relative(sample.file) if sample.file else None
        if relative is not None and self.local_folder is not None:
            return local_files_url(f"{self._local_prefix}/{relative}"), None, True
        if relative is not None and self.protocol in _CLOUD:
            return f"{_CLOUD[self.protocol]}://{join(self.root, relative)}", None, False
        source = sample.source_url
        if source and _protocol(source) in _SERVED_SOURCES:
            return source, None, False
        return None, SKIP_NO_URL, False

    def text(self, sample: PublishedSample) -> tuple[str | None, str | None]:
        """``(text, skip reason)`` for a text sample."""
        relative = safe_relative(sample.file) if sample.file else None
        try:
            if relative is not None:
                raw = self._read(self.fs, join(self.root, relative))
            elif sample.source_url:
                same = _protocol(sample.source_url) == self.protocol
                fs, path = url_to_fs(sample.source_url, self.options if same else None)
                raw = self._read(fs, path)
            else:
                return None, SKIP_INPUT_MISSING
        except (OSError, ValueError, ImportError):
            # Gone, unreadable, or a store whose fsspec backend is not installed.
            return None, SKIP_INPUT_MISSING
        if raw is None:
            return None, SKIP_TEXT_TOO_LARGE
        try:
            return raw.decode("utf-8"), None
        except UnicodeDecodeError:
            return None, SKIP_NOT_UTF8

    @staticmethod
    def _read(fs: Any, path: str) -> bytes | None:
        # One ranged read: a text over the limit is refused without reading it whole.
        data = bytes(fs.cat_file(path, start=0, end=MAX_TEXT_BYTES + 1))
        return None if len(data) > MAX_TEXT_BYTES else data
