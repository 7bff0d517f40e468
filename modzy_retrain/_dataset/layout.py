"""Where a dataset's files go: splits, safe names, and the paths of each format.

Pure functions of plain values (no I/O), so a sample's place in a dataset depends on
nothing but the sample and the writer's settings.

Layouts (``format``):

- ``jsonl`` (default): ``samples.jsonl``, one row per sample with its provenance; in
  ``copy`` mode the raw inputs go to ``data/<sha256[:2]>/<sha256><ext>``.
- ``csv``: ``samples.csv``, the same columns (lists and objects JSON-encoded).
- ``parquet``: ``samples.parquet`` (the ``parquet`` extra), the same columns, typed
  (see ``rows.py``).
- ``imagefolder``: ``<split>/<label folder>/<name>`` plus ``<split>/metadata.jsonl``,
  the layout Hugging Face ``datasets`` loads as ``imagefolder``; samples without a
  label go to ``unlabeled/`` (with its own ``metadata.jsonl``), outside every split.
  Each label has one folder (:class:`LabelFolders`), distinct from every other
  label's even on a case-blind file system; the metadata rows hold the exact label.

A versioned dataset puts each version's tables under ``v0001/``, ``v0002/``...; the
data files are shared by every version (named by their content, never rewritten).
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal

from .manifest import DatasetFormat
from .rows import FILE_NAME

DEFAULT_SPLITS: Mapping[str, float] = {"train": 0.8, "validation": 0.2}
UNLABELED_DIR = "unlabeled"
# The sample table of each tabular format; imagefolder has one per split instead.
SAMPLE_TABLES: Mapping[str, str] = {
    "jsonl": "samples.jsonl",
    "csv": "samples.csv",
    "parquet": "samples.parquet",
}
# What a ``group_by`` template may use.
GROUP_FIELDS = frozenset({"job_id", "input_name", "model_id", "model_version", "label", "sha256"})

_WINDOWS_RESERVED = (
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)
_EXT = re.compile(r"^\.[A-Za-z0-9]{1,10}$")
# A file or folder name's UTF-8 bytes at most (file systems take 255): room is left for
# a hash and an extension after it.
MAX_NAME_BYTES = 180
# Names a label's folder never takes as they are: Hugging Face's metadata files (a
# folder so named beside a split's metadata.jsonl would be a clash).
RESERVED_FOLDERS = frozenset({"metadata.jsonl", "metadata.csv", "metadata.parquet"})
# How a folder name with a label's hash ends: a plain name never ends so.
_HASHED = re.compile(r"-[0-9a-f]{10}$")


def assign_split(key: str, splits: Mapping[str, float]) -> str:
    """The split of a group key: a stable hash mapped onto the cumulative ratios."""
    point = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64
    edge = 0.0
    name = ""
    for name, ratio in splits.items():
        edge += ratio
        if point < edge:
            return name
    return name  # rounding: the last split takes the remainder


def safe_component(text: str, *, limit: int = 100) -> str:
    """A file or directory name that is safe on every OS and store, readable if possible:
    at most ``limit`` characters and :data:`MAX_NAME_BYTES` bytes, no trailing dot or
    space, no reserved Windows name."""
    text = unicodedata.normalize("NFKC", text)
    out = "".join(
        ch if (ch.isalnum() or ch in " -_.") and unicodedata.category(ch)[0] != "C" else "_"
        for ch in text
    ).strip(" .")
    out = out[:limit]
    while len(out.encode("utf-8")) > MAX_NAME_BYTES:
        out = out[:-1]
    out = out.rstrip(" .") or "_"  # a cut may end on a dot or a space
    if out.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        out = "_" + out
    return out


class LabelFolders:
    """The folder of each label in an image-folder dataset, one per label for a write.

    A label that is a safe folder name of its own (and no reserved one) is its own
    folder, readable. Otherwise, or when that name is already another label's on a
    case-blind file system (``Cat`` after ``cat``), the folder is the safe name and the
    first 10 hex digits of the exact label's sha256 (``cat_-4f5d...`` for ``cat?``),
    which no plain folder name ends with. Folders whose name would start with ``__``
    (which Hugging Face skips) lose an underscore. Memory grows with the labels only.
    """

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}
        self._taken: dict[str, str] = {}  # case-folded folder -> its label

    def folder(self, label: str) -> str:
        """The label's folder (the same one each time)."""
        found = self._folders.get(label)
        if found is not None:
            return found
        clean = safe_component(label)
        if clean.startswith("__"):
            clean = "_" + clean.lstrip("_")
        plain = clean == label and clean.lower() not in RESERVED_FOLDERS
        digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()
        names = [clean] if plain and not _HASHED.search(clean) else []
        names += [f"{clean}-{digest[:n]}" for n in (10, 20, 64)]
        name = next(n for n in names if n.casefold() not in self._taken)
        self._taken[name.casefold()] = label
        self._folders[label] = name
        return name


def extension(url: str | None) -> str:
    """The lower-cased extension of a URL's last segment, or ``""`` if it has no sane one."""
    if not url:
        return ""
    if "://" in url and not url.startswith(("file://", "local://", "memory://")):
        url = url.split("#", 1)[0].split("?", 1)[0]  # a URL's query names no extension
    base = url.rsplit("/", 1)[-1]
    ext = "." + base.rsplit(".", 1)[-1] if "." in base else ""
    return ext.lower() if _EXT.match(ext) else ""


def template_fields(template: str) -> set[str]:
    """The fields a ``str.format`` template names (raises ``ValueError`` if malformed)."""
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def canonical_table(format: DatasetFormat, prefix: str) -> str | None:
    """The JSONL table a versioned CSV or Parquet dataset keeps beside its own, for the
    next version to merge from (``None``: the sample table is JSONL already)."""
    return prefix + SAMPLE_TABLES["jsonl"] if format != "jsonl" else None


def place(
    format: DatasetFormat,
    mode: Literal["copy", "reference"],
    *,
    prefix: str,
    input_name: str,
    label: str | None,
    split: str,
    sha256: str | None,
    source_url: str | None,
    folders: LabelFolders | None = None,
) -> tuple[str | None, str]:
    """``(data path, sample table)`` of one sample, relative to the dataset's root.

    The data path is where its raw input goes (``None`` in ``reference`` mode).
    ``folders``: an image folder's label folders, one for the whole write (a new one
    keeps each label distinct from those placed with it only).
    """
    if format == "imagefolder":
        assert sha256 is not None  # imagefolder is copy mode only
        base = safe_component(input_name, limit=80) + "-" + sha256[:10] + extension(source_url)
        if label is None:
            return f"{UNLABELED_DIR}/{base}", f"{UNLABELED_DIR}/metadata.jsonl"
        folder = safe_component(split)
        label_folder = (folders or LabelFolders()).folder(label)
        return f"{folder}/{label_folder}/{base}", f"{folder}/metadata.jsonl"
    table = prefix + SAMPLE_TABLES[format]
    if mode != "copy":
        return None, table
    assert sha256 is not None  # copy mode needs resolved inputs
    return f"data/{sha256[:2]}/{sha256}{extension(source_url)}", table


def imagefolder_row(data_path: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """An imagefolder metadata row: the file's name first, relative to the metadata
    file's folder, as Hugging Face expects."""
    return {FILE_NAME: data_path.split("/", 1)[1], **row}
