"""``load_torch_dataset``: a dataset version's samples as a ``torch.utils.data.Dataset``.

A factory: it imports ``torch`` (through ``torch_dataset.py``) only when called. The
selection and the table are every loader's (``select.py``, ``tables.py``); the dataset
keeps each sample's location and class id, and reads an input when its item is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from modzy_retrain._core.exceptions import ConfigurationError
from modzy_retrain._core.fs import url_to_fs

from .inputs import check_kind, locate, model_kind
from .select import select
from .tables import by_split, class_ids, imported, read_selected

if TYPE_CHECKING:
    from modzy_retrain._dataset.inputs import InputKind

    from .torch_dataset import SampleDataset

WHAT = "load_torch_dataset"
EXTRA = "torch"


def load_torch_dataset(
    url: str,
    *,
    split: str | None,
    model: str | None = None,
    version: str | None = None,
    states: Iterable[str] | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    transform: Callable[[Any], Any] | None = None,
    target_transform: Callable[[int], Any] | None = None,
    input_kind: InputKind | None = None,
) -> SampleDataset:
    """Load one split of a dataset version as a ``torch.utils.data.Dataset``.

    ``dataset[i]`` is ``(input, class id)``: the raw input read and decoded when the
    item is (an image as a ``PIL.Image.Image``, a text as ``str``), then passed through
    ``transform``; the class id is the label's index in the model's class list from
    the manifest (stable across versions; ``-1`` for a sample without a label), then
    passed through ``target_transform``. ``dataset.classes``, ``class_to_idx`` and
    ``targets`` are there as in torchvision's folder datasets.

    Args:
        url: The dataset's root (any fsspec URL).
        split: The split to load (``"train"``); ``None`` for every split together.
        model: The model whose samples to load; needed when the dataset holds several.
        version: A versioned dataset's version; the latest by default.
        states: The label states to load; by default the trainable ones.
        storage_options: fsspec options for ``url`` (and for sources in the same store).
        transform: Applied to each decoded input (torchvision transforms, a tokenizer).
        target_transform: Applied to each class id.
        input_kind: ``"image"`` or ``"text"``, when the files' extensions do not say.

    Raises:
        ConfigurationError: An unknown split; otherwise as ``load_hf_dataset``.
        LabelNotInClassListError, DatasetError: As ``load_hf_dataset``.
        MissingDependencyError: torch (or Pillow, for images) is not installed:
            ``pip install 'modzy-retrain[torch]'``.
    """
    kind = check_kind(input_kind)
    if split is not None and not isinstance(split, str):
        raise ConfigurationError(f"split: a split name (text) or None, not {split!r}")
    imported("torch", WHAT, EXTRA)
    imported("pyarrow", WHAT, EXTRA)
    from .torch_dataset import SampleDataset

    selection = select(
        url, model=model, version=version, states=states, storage_options=storage_options
    )
    fs, root = url_to_fs(url, storage_options)
    table = read_selected(fs, root, selection, WHAT, EXTRA)
    targets = class_ids(table, selection).to_pylist()  # checked in every split, as others do
    if split is not None:
        splits = by_split(table, selection)
        if split not in splits:
            raise ConfigurationError(
                f"split: {selection.where} has no split {split!r}; its splits: {', '.join(splits)}"
            )
        table = splits[split]
        targets = class_ids(table, selection).to_pylist()
    kind = model_kind(table, kind, selection) or "text"  # no samples: nothing to decode
    if kind == "image":
        imported("PIL.Image", f"{WHAT} (images)", EXTRA)
    inputs = locate(table, kind, selection, storage_options)
    return SampleDataset(inputs, targets, selection.classes, transform, target_transform)
