"""What a sample's raw input is, and where its copy may be: pure, shared by the Label
Studio push and the training loaders.

The kind (image or text) comes from the file extension, the copy's first, else the
source's: a dataset records no media type, and the writer keeps the source's extension
on every copy (``layout.place``).
"""

from __future__ import annotations

import posixpath
from typing import Literal
from urllib.parse import urlsplit

InputKind = Literal["image", "text"]
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".svg"}
)
TEXT_EXTENSIONS = frozenset({".txt", ".text", ".md"})


def _extension(path: str | None) -> str:
    if not path:
        return ""
    return posixpath.splitext(urlsplit(path).path if "://" in path else path)[1].lower()


def kind_of(file: str | None, source_url: str | None) -> InputKind | None:
    """``image`` or ``text`` from the raw input's extension (the copy's, else the
    source's); ``None`` when neither says."""
    for candidate in (file, source_url):
        ext = _extension(candidate)
        if ext in IMAGE_EXTENSIONS:
            return "image"
        if ext in TEXT_EXTENSIONS:
            return "text"
    return None


def safe_relative(path: str) -> str | None:
    """``path`` normalised, if it stays inside the root it is relative to: a dataset's
    ``file`` is never followed out of the dataset."""
    normal = posixpath.normpath(path.replace("\\", "/"))
    if normal.startswith(("/", "../")) or normal in ("..", "."):
        return None
    return normal
