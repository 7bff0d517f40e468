"""to_pandas with the real pandas, load_torch_dataset with the real torch: the same
selection as load_hf_dataset, the class list as categories and class ids."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from modzy_retrain import (
    ConfigurationError,
    MissingDependencyError,
    load_hf_dataset,
    load_manifest,
    load_torch_dataset,
    to_pandas,
)
from modzy_retrain.sandbox import Sandbox

from .conftest import Build, model_of, synthetic, write


def test_to_pandas_label_is_a_categorical_over_the_class_list(world: Sandbox, built: Build) -> None:
    url = built("parquet", "copy")
    image = model_of(world, "image")
    classes = load_manifest(url).classes[image]
    frame = to_pandas(url, model=image)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns[:2]) == ["label", "label_id"]
    assert list(frame["label"].cat.categories) == classes
    assert (frame["label"].cat.codes == frame["label_id"]).all()
    assert frame["label_id"].dtype == "int64"
    assert set(frame["label_state"]) <= {"confirmed", "corrected", "labelled"}
    assert str(frame["submitted_at"].dtype) == "datetime64[us, UTC]"
    # The same rows, and the same ids, as load_hf_dataset gives.
    hf = load_hf_dataset(url, model=image)
    want = sorted((r["job_id"], r["input_name"], r["label"]) for p in hf.values() for r in p)
    got = sorted(zip(frame["job_id"], frame["input_name"], frame["label_id"], strict=True))
    assert got == want
    # Without a label: NaN, code -1.
    every = to_pandas(url, model=image, states=["confirmed", "needs_label"])
    unlabelled = every[every["label_state"] == "needs_label"]
    assert len(unlabelled) > 0
    assert unlabelled["label"].isna().all()
    assert (unlabelled["label_id"] == -1).all()


def test_to_pandas_reads_inputs_when_asked(world: Sandbox, built: Build) -> None:
    url = built("jsonl", "reference")
    spam = model_of(world, "text", "Spam Detection")
    frame = to_pandas(url, model=spam, inputs=True)
    assert frame.columns[0] == "text"
    for _, row in frame.iterrows():
        assert row["text"] == world.input_bytes(row["job_id"], row["input_name"]).decode()
    image = model_of(world, "image")
    pictures = to_pandas(url, model=image, inputs=True)
    first = pictures.iloc[0]
    assert first["image"] == world.input_bytes(first["job_id"], first["input_name"])
    assert "image" not in to_pandas(url, model=image).columns
    with pytest.raises(ConfigurationError, match="inputs"):
        to_pandas(url, model=image, inputs="yes")  # type: ignore[arg-type]


def test_the_torch_dataset_gives_decoded_inputs_and_class_ids(world: Sandbox, built: Build) -> None:
    url = built("imagefolder", "copy")
    image = model_of(world, "image")
    classes = load_manifest(url).classes[image]
    train = load_torch_dataset(url, split="train", model=image)
    assert isinstance(train, torch.utils.data.Dataset)
    hf = load_hf_dataset(url, model=image)["train"]
    assert len(train) == len(hf) > 0
    assert train.classes == classes
    assert train.class_to_idx == {name: i for i, name in enumerate(classes)}
    assert train.targets == hf["label"]
    for i in range(len(train)):
        picture, target = train[i]
        assert isinstance(picture, Image.Image)
        assert target == hf[i]["label"]
        raw = world.input_bytes(hf[i]["job_id"], hf[i]["input_name"])
        assert picture.tobytes() == Image.open(io.BytesIO(raw)).tobytes()
    assert train[-1][1] == train.targets[-1]
    with pytest.raises(IndexError):
        train[len(train)]
    every = load_torch_dataset(url, split=None, model=image)
    assert len(every) == sum(len(p) for p in load_hf_dataset(url, model=image).values())
    with pytest.raises(ConfigurationError, match=r"no split 'test'.*train, validation"):
        load_torch_dataset(url, split="test", model=image)


def to_tensor(picture: Image.Image) -> torch.Tensor:
    pixels = torch.frombuffer(bytearray(picture.convert("RGB").tobytes()), dtype=torch.uint8)
    return pixels.reshape(picture.height, picture.width, 3).permute(2, 0, 1).float() / 255


def test_transforms_and_a_data_loader(world: Sandbox, built: Build) -> None:
    url = built("parquet", "copy")
    image = model_of(world, "image")
    train = load_torch_dataset(
        url,
        split="train",
        model=image,
        transform=to_tensor,
        target_transform=lambda i: torch.tensor(i),
    )
    pictures, targets = next(iter(DataLoader(train, batch_size=4, shuffle=False)))
    assert pictures.shape == (4, 3, 16, 16)
    assert targets.tolist() == train.targets[:4]
    # Picklable (a DataLoader's spawned workers get it so), the hooks aside.
    plain = load_torch_dataset(url, split="train", model=image)
    copy = pickle.loads(pickle.dumps(plain))
    assert type(copy).__module__ == "modzy_retrain._loaders.torch_dataset"
    assert copy[0][1] == plain[0][1]
    assert copy[0][0].tobytes() == plain[0][0].tobytes()


def test_a_text_model_in_torch(world: Sandbox, built: Build) -> None:
    url = built("csv", "copy")
    spam = model_of(world, "text", "Spam Detection")
    data = load_torch_dataset(url, split="validation", model=spam)
    text, target = data[0]
    assert isinstance(text, str)
    assert data.classes[target] in ("spam", "ham")


def test_missing_extras_name_theirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = str(tmp_path / "ds")
    write(url, synthetic(tmp_path / "in", [("a", "dog", "confirmed")]))
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r"to_pandas needs pandas.*\[pandas\]"):
        to_pandas(url)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"needs torch.*\[torch\]"):
        load_torch_dataset(url, split="train")


def test_extras_are_imported_by_the_loaders_not_by_the_package(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    write(url, synthetic(tmp_path / "in", [("a", "dog", "confirmed")]))
    code = f"""
import sys
import modzy_retrain
extras = ("datasets", "pandas", "torch", "pyarrow")
assert not [m for m in extras if m in sys.modules]
modzy_retrain.load_hf_dataset({url!r})
modzy_retrain.to_pandas({url!r})
modzy_retrain.load_torch_dataset({url!r}, split=None)
assert [m for m in extras if m in sys.modules] == list(extras)
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
