"""``to_pandas``: a dataset version's samples of one model as a ``pandas.DataFrame``.

The same selection as every loader (``select.py``), the same Arrow table
(``tables.py``), converted by pyarrow in one step; ``label`` becomes a categorical
over the model's class list, so its codes are the class ids (``label_id``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from modzy_retrain._core.exceptions import ConfigurationError
from modzy_retrain._core.fs import url_to_fs

from .inputs import check_kind, locate, model_kind
from .select import select
from .tables import class_ids, imported, read_selected

if TYPE_CHECKING:
    import pandas

    from modzy_retrain._dataset.inputs import InputKind

WHAT = "to_pandas"
EXTRA = "pandas"


def to_pandas(
    url: str,
    *,
    model: str | None = None,
    version: str | None = None,
    states: Iterable[str] | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    inputs: bool = False,
    input_kind: InputKind | None = None,
) -> pandas.DataFrame:
    """Load a dataset version's samples of one model as a ``pandas.DataFrame``.

    Columns: with ``inputs=True`` first the input (``text``: a string, or ``image``:
    the file's bytes), then ``label`` (a categorical whose categories are the model's
    class list from the manifest, in order: stable across versions), ``label_id`` (its
    class id, ``label.cat.codes``: ``-1`` for a sample without a label), then the sample
    row's other columns, ``split`` among them. The filters are ``load_hf_dataset``'s.

    Args:
        url: The dataset's root (any fsspec URL).
        model: The model whose samples to load; needed when the dataset holds several.
        version: A versioned dataset's version; the latest by default.
        states: The label states to load; by default the trainable ones.
        storage_options: fsspec options for ``url`` (and for sources in the same store).
        inputs: Read each sample's raw input into the frame (default: rows only).
        input_kind: ``"image"`` or ``"text"``, when the files' extensions do not say.

    Raises:
        ConfigurationError, LabelNotInClassListError, DatasetError: As
            ``load_hf_dataset``.
        MissingDependencyError: pandas or pyarrow is not installed:
            ``pip install 'modzy-retrain[pandas]'``.
    """
    kind = check_kind(input_kind)
    if not isinstance(inputs, bool):
        raise ConfigurationError("to_pandas(inputs=...): must be True or False")
    pd = imported("pandas", WHAT, EXTRA)
    imported("pyarrow", WHAT, EXTRA)
    selection = select(
        url, model=model, version=version, states=states, storage_options=storage_options
    )
    fs, root = url_to_fs(url, storage_options)
    table = read_selected(fs, root, selection, WHAT, EXTRA)
    ids = class_ids(table, selection).to_numpy(zero_copy_only=False)
    rest = table.drop_columns(["label"]).to_pandas()
    frame = pd.DataFrame(index=rest.index)
    kind = model_kind(table, kind, selection) if inputs else None
    if kind is not None:
        found = locate(table, kind, selection, storage_options)
        raw = list(found.read_all())
        frame[kind] = [found.text(i, r) for i, r in enumerate(raw)] if kind == "text" else raw
    frame["label"] = pd.Categorical.from_codes(ids, categories=list(selection.classes))
    frame["label_id"] = ids
    return pd.concat([frame, rest], axis=1)
