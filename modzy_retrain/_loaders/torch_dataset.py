"""The PyTorch dataset class. This module imports ``torch``: only ``load_torch_dataset``
imports it, when called, so that ``import modzy_retrain`` never does.

The class lives at module level, not inside the factory, so that a ``DataLoader``
whose workers are spawned (macOS, Windows) can pickle it by name.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import torch.utils.data

from modzy_retrain._core.exceptions import DatasetError

from .inputs import Inputs


class SampleDataset(torch.utils.data.Dataset[tuple[Any, Any]]):
    """A dataset version's samples of one model (one split, or all) for PyTorch.

    ``dataset[i]`` is ``(input, class id)``: the input decoded (an image as a
    ``PIL.Image.Image``, a text as ``str``), read when the item is; the class id is the
    label's index in the model's class list (``-1``: no label), each passed through
    ``transform`` / ``target_transform`` when given.

    Attributes:
        classes: The model's class list: ``classes[i]`` is class id ``i``.
        class_to_idx: Each class's id.
        targets: Every sample's class id, in order (for samplers and class weights).
        kind: ``"image"`` or ``"text"``.
    """

    def __init__(
        self,
        inputs: Inputs,
        targets: Sequence[int],
        classes: Sequence[str],
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        self._inputs = inputs
        self.targets = list(targets)
        self.classes = list(classes)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.kind = inputs.kind
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} samples")
        index %= len(self)
        raw = self._inputs.read(index)
        value = self._inputs.text(index, raw) if self.kind == "text" else self._image(index, raw)
        target: Any = self.targets[index]
        if self.transform is not None:
            value = self.transform(value)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return value, target

    def _image(self, index: int, raw: bytes) -> Any:
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(io.BytesIO(raw))
            image.load()  # decoded now: the bytes go, no lazy handle is left open
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(
                f"{self._inputs.where}: the input of sample {self._inputs.key(index)} is "
                f"not an image Pillow reads ({exc})"
            ) from None
        return image

    def __repr__(self) -> str:
        return f"SampleDataset({len(self)} {self.kind} samples, {len(self.classes)} classes)"
