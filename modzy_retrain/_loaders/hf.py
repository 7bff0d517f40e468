"""``load_hf_dataset``: a dataset version as a Hugging Face ``datasets.DatasetDict``.

The selected samples are one Arrow table (``tables.py``). Its columns are put in the
storage types of their features (``label`` as int64 class ids for a ``ClassLabel``, the
image as Hugging Face's ``{bytes, path}`` struct), and each split becomes a
``datasets.Dataset`` over its slice of that table, in memory: no row is a Python object
on the way, and nothing is copied to Hugging Face's cache.

Images on a local disk are referenced by path, as Hugging Face's own ``imagefolder``
does (decoded when an item is read); images in an object store are read once, through
fsspec with the dataset's storage options, and held as bytes, since Hugging Face would
open a path there without those options. Texts are read and held as strings.

Each split gets a fingerprint of what it holds (the dataset, its version's run, the
model, states, split and input kind): Hugging Face would otherwise hash the whole table
to make one, which costs more than building it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from modzy_retrain._core.exceptions import DatasetError
from modzy_retrain._core.fs import url_to_fs
from modzy_retrain._version import __version__

from .inputs import Inputs, check_kind, locate, model_kind
from .select import Selection, select
from .tables import by_split, class_ids, imported, read_selected

if TYPE_CHECKING:
    import datasets

    from modzy_retrain._dataset.inputs import InputKind

WHAT = "load_hf_dataset"
EXTRA = "hf"
# What datasets.NamedSplit accepts; a split named otherwise is left unnamed.
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")


def _input_column(pa: Any, inputs: Inputs) -> Any:
    """The input column in its feature's storage type."""
    if inputs.kind == "text":
        return pa.array(
            [inputs.text(i, raw) for i, raw in enumerate(inputs.read_all())], pa.string()
        )
    storage = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if inputs.all_local:
        # Paths only: Hugging Face opens the file when an item is read.
        blanks = pa.nulls(len(inputs), pa.binary())
        return pa.StructArray.from_arrays([blanks, inputs.paths], fields=list(storage))
    images = [{"bytes": raw, "path": inputs.url(i)} for i, raw in enumerate(inputs.read_all())]
    return pa.array(images, storage)


def _fingerprint(selection: Selection, kind: str | None, split: str) -> str:
    manifest = selection.manifest
    what = [
        __version__,
        selection.url,
        manifest.version,
        manifest.run_id,
        selection.model_id,
        selection.states,
        kind,
        split,
    ]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]


def load_hf_dataset(
    url: str,
    *,
    model: str | None = None,
    version: str | None = None,
    states: Iterable[str] | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    input_kind: InputKind | None = None,
) -> datasets.DatasetDict:
    """Load a dataset version as a ``datasets.DatasetDict``, one split per manifest split.

    Each split's columns: the input (``image``: an ``Image()`` feature, or ``text``: a
    string), ``label`` (a ``ClassLabel`` whose names are the model's class list from
    the manifest: stable across versions; ``-1`` for a sample without a label), then
    the sample row's other columns (provenance: job, input, model, votes, rule,
    predictions, annotations, source, hash, split, file), typed.

    Args:
        url: The dataset's root (any fsspec URL).
        model: The model whose samples to load; needed when the dataset holds several.
        version: A versioned dataset's version (``"v0002"``); the latest by default.
        states: The label states to load; by default the trainable ones (``confirmed``,
            ``corrected``, ``labelled``). ``needs_label`` and ``conflict`` have no label.
        storage_options: fsspec options for ``url`` (and for sources in the same store).
        input_kind: ``"image"`` or ``"text"``, when the files' extensions do not say.

    Raises:
        ConfigurationError: No model named when the dataset holds several, an unknown
            model or label state (the message names the valid ones).
        LabelNotInClassListError: A sample's label is not in its model's class list.
        DatasetError: No dataset or version at ``url``, a missing input, a model
            without a class list.
        MissingDependencyError: ``datasets`` (or Pillow, for images) is not installed:
            ``pip install 'modzy-retrain[hf]'``.
    """
    kind = check_kind(input_kind)
    hf = imported("datasets", WHAT, EXTRA)
    pa = imported("pyarrow", WHAT, EXTRA)
    selection = select(
        url, model=model, version=version, states=states, storage_options=storage_options
    )
    fs, root = url_to_fs(url, storage_options)
    table = read_selected(fs, root, selection, WHAT, EXTRA)
    kind = model_kind(table, kind, selection)
    columns: dict[str, Any] = {}
    features: dict[str, Any] = {}
    if kind is not None:
        if kind in table.column_names:
            raise DatasetError(f"{selection.where}: its samples already have a {kind} column")
        if kind == "image":
            imported("PIL.Image", f"{WHAT} (images)", EXTRA)
        columns[kind] = _input_column(pa, locate(table, kind, selection, storage_options))
        features[kind] = hf.Image() if kind == "image" else hf.Value("string")
    columns["label"] = class_ids(table, selection)
    features["label"] = hf.ClassLabel(names=list(selection.classes))
    provenance = table.drop_columns(["label"])
    for name in provenance.column_names:
        columns[name] = provenance.column(name)
    typed = hf.Features({**features, **hf.Features.from_arrow_schema(provenance.schema)})
    whole = pa.table(columns).cast(typed.arrow_schema)
    info = hf.DatasetInfo(features=typed)
    return hf.DatasetDict(
        {
            name: hf.Dataset(
                part,
                info=info,
                split=hf.NamedSplit(name) if _SPLIT_NAME.match(name) else None,
                fingerprint=_fingerprint(selection, kind, name),
            )
            for name, part in by_split(whole, selection).items()
        }
    )
