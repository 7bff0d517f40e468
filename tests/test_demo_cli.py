"""`modzy-retrain demo`: the whole chain on the sandbox, from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from modzy_retrain import load_manifest, verify_dataset
from modzy_retrain._cli.main import main


def test_demo_writes_a_verified_dataset_and_prints_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "retrain-demo"
    assert main(["demo", "--out", str(out), "--jobs", "60", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "sandbox: http://127.0.0.1:" in text
    for model in ("Image Classification", "Spam Detection", "Sentiment Analysis"):
        assert model in text
    assert "reconciled:" in text
    assert "(ok)" in text
    assert verify_dataset(str(out)) == []
    assert load_manifest(str(out)).counts.samples > 0
    # Running it again replaces the previous demo dataset.
    assert main(["demo", "--out", str(out), "--jobs", "30", "--format", "imagefolder"]) == 0
    assert load_manifest(str(out)).format == "imagefolder"
    assert verify_dataset(str(out)) == []


def test_demo_can_keep_its_raw_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "inputs"
    assert (
        main(
            [
                "demo",
                "--out",
                f"memory://demo-{tmp_path.name}",
                "--jobs",
                "20",
                "--inputs-url",
                str(inputs),
            ]
        )
        == 0
    )
    assert any(inputs.rglob("*.txt"))
    assert "temporary" not in capsys.readouterr().out


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert "modzy-retrain" in capsys.readouterr().out
