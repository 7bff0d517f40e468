"""The feedback report's numbers, checked against the manifests they come from, and its
HTML: valid, self-contained, every value from the dataset shown as text."""

from __future__ import annotations

import base64
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import html5lib
import pytest

from modzy_retrain import (
    ConfigurationError,
    DatasetError,
    FeedbackReport,
    Manifest,
    MissingDependencyError,
    feedback_report,
    list_versions,
    load_manifest,
    read_samples,
)
from modzy_retrain._report.figures import choose_period, period_start, wilson, z_score
from modzy_retrain.sandbox import Sandbox

from .conftest import EPOCH, run_build

Feedback = tuple[Sandbox, str]


@pytest.fixture(scope="module")
def report(feedback: Feedback) -> FeedbackReport:
    return feedback_report(feedback[1])


@pytest.fixture(scope="module")
def page(report: FeedbackReport) -> str:
    return report.to_html()


def manifests(url: str) -> list[Manifest]:
    return [load_manifest(url, version=v) for v in list_versions(url)]


def counts(rows: Any) -> Counter[str]:
    out: Counter[str] = Counter()
    for r in rows:
        out.update(inputs=r.inputs, up=r.up_voted, down=r.down_voted, both=r.both)
    return out


# -- the numbers behind each chart ----------------------------------------------------


def test_the_votes_over_time_by_version_and_by_class_are_the_manifests_tallies(
    feedback: Feedback, report: FeedbackReport
) -> None:
    latest = load_manifest(feedback[1])
    assert latest.tallies is not None
    totals = latest.tallies.totals
    assert {m.model_id for m in report.models} == {t.model_id for t in totals}
    z = z_score(0.95)
    for model in report.models:
        mine = [t for t in totals if t.model_id == model.model_id]
        assert counts([model.total]) == counts(mine)
        assert model.jobs == sum(t.jobs for t in mine)
        # Per model version, over the whole history.
        for v in model.versions:
            rows = [t for t in mine if t.model_version == v.model_version]
            assert counts([v]) == counts(rows)
            assert v.jobs == sum(t.jobs for t in rows)
            assert (v.first_day, v.last_day) == (min(t.day for t in rows), max(t.day for t in rows))
            assert (v.low, v.high) == pytest.approx(wilson(v.down_voted, v.inputs, z))
        assert {v.model_version for v in model.versions} == {t.model_version for t in mine}
        # The chart over time: every day of the tallies in exactly one point.
        assert counts(model.over_time) == counts(mine)
        for point in model.over_time:
            rows = [
                t
                for t in mine
                if t.model_version == point.model_version
                and period_start(t.day, report.period) == point.period
            ]
            assert counts([point]) == counts(rows)
            assert point.share == pytest.approx(point.down_voted / point.inputs)
            assert point.low <= point.share <= point.high
        # Per predicted class, most often down-voted first.
        per_class: dict[str, Counter[str]] = {}
        for t in mine:
            for label, c in t.predicted.items():
                per_class.setdefault(label, Counter()).update(counts([c]))
        assert {c.label: counts([c]) for c in model.classes} == per_class
        downs = [c.down_voted for c in model.classes]
        assert downs == sorted(downs, reverse=True)
    # The sandbox's image model is more accurate in 1.1.0: users down-vote it less.
    image = next(m for m in report.models if m.model_name == "Image Classification")
    by_version = {v.model_version: v for v in image.versions}
    assert by_version["1.1.0"].share < by_version["1.0.0"].share


def test_the_confusions_are_the_samples_a_correction_or_a_person_labelled(
    feedback: Feedback, report: FeedbackReport
) -> None:
    url = feedback[1]
    latest = load_manifest(url)
    expected: dict[str, Counter[tuple[str, str]]] = {}
    for s in read_samples(url):
        if s.label_state in ("corrected", "labelled") and s.label and s.predicted_label:
            expected.setdefault(s.model_id, Counter())[(s.predicted_label, s.label)] += 1
    recorded = {
        model: Counter({(p, label): n for p, row in rows.items() for label, n in row.items()})
        for model, rows in latest.counts.confusions.items()
    }
    assert recorded == expected
    labelled = {s.model_id for s in read_samples(url) if s.label_state == "labelled"}
    assert labelled, "the label file's human labels are in the confusions"
    for model in report.models:
        matrix = model.confusion
        shown = Counter(
            {
                (p, label): matrix.counts[i][j]
                for i, p in enumerate(matrix.classes)
                for j, label in enumerate(matrix.classes)
                if matrix.counts[i][j]
            }
        )
        assert shown == expected.get(model.model_id, Counter())
        assert matrix.samples == sum(shown.values())
        flagged = [(p.predicted, p.label, p.count) for p in matrix.pairs]
        assert flagged == sorted(
            ((p, label, n) for (p, label), n in shown.items() if p != label),
            key=lambda x: (-x[2], x[0], x[1]),
        )


def test_each_versions_states_splits_and_changes_are_its_manifests(
    feedback: Feedback, report: FeedbackReport
) -> None:
    every = manifests(feedback[1])
    assert [v.version for v in report.versions] == [m.version for m in every]
    for summary, manifest in zip(report.versions, every, strict=True):
        assert summary.by_label_state == manifest.counts.by_label_state
        assert summary.by_split == manifest.counts.by_split
        assert summary.samples == manifest.counts.samples
        assert manifest.changes is not None
        assert (summary.added, summary.relabelled, summary.retracted, summary.carried) == (
            manifest.changes.added,
            manifest.changes.relabelled,
            manifest.changes.retracted,
            manifest.changes.carried,
        )
        assert manifest.tallies is not None
        assert summary.jobs_tallied == manifest.tallies.jobs
    last = report.versions[-1]
    assert last.relabelled > 0
    assert last.retracted > 0  # the votes changed between the second build and the third


def test_an_earlier_version_is_reported_as_it_was(feedback: Feedback) -> None:
    first = feedback_report(feedback[1], version="v0001", period="day")
    assert first.version == "v0001"
    assert [v.version for v in first.versions] == ["v0001"]
    assert first.period == "day"
    tallies = load_manifest(feedback[1], version="v0001").tallies
    assert tallies is not None
    assert sum(m.total.inputs for m in first.models) == sum(t.inputs for t in tallies.totals)
    with pytest.raises(DatasetError, match="no published version v0009"):
        feedback_report(feedback[1], version="v0009")
    with pytest.raises(ConfigurationError, match="period"):
        feedback_report(feedback[1], period="fortnight")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="confidence"):
        feedback_report(feedback[1], confidence=1.5)


def test_an_unversioned_dataset_has_one_version_of_its_own(tmp_path: Path) -> None:
    from modzy_retrain import (
        AnyVotes,
        DatasetWriter,
        JobHistoryQuery,
        LineageResolver,
        ModzyClient,
        ResultFetcher,
        VoteFilter,
    )

    sb = Sandbox(seed=2, jobs=30, data_url=str(tmp_path / "in"))
    with ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport()) as c:
        (
            JobHistoryQuery(c)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sb.input_templates)
            | DatasetWriter(str(tmp_path / "ds"), mode="reference")
        ).run()
    flat = feedback_report(str(tmp_path / "ds"))
    assert flat.version is None
    assert len(flat.versions) == 1
    assert flat.versions[0].added == flat.versions[0].samples
    assert sum(m.jobs for m in flat.models) > 0


def test_a_dataset_written_before_tallies_says_so(tmp_path: Path) -> None:
    sb = Sandbox(seed=3, jobs=30, data_url=str(tmp_path / "in"))
    sb.write_inputs()
    run_build(sb, tmp_path / "ds", start=EPOCH)
    path = tmp_path / "ds" / "v0001" / "manifest.json"
    path.write_text(re.sub(r',\s*"tallies": \{.*\}\s*\}\s*$', "\n}", path.read_text(), flags=re.S))
    old = feedback_report(str(tmp_path / "ds"))
    assert old.notes
    assert "before vote tallies" in old.notes[0]
    assert all(m.total.inputs == 0 for m in old.models)
    assert "before vote tallies" in old.to_html()


def test_the_wilson_interval_and_the_periods() -> None:
    z = z_score(0.95)
    assert z == pytest.approx(1.959964, abs=1e-6)
    assert wilson(0, 0, z) == (0.0, 1.0)
    low, high = wilson(0, 10, z)
    assert low == 0.0
    assert high == pytest.approx(0.27753, abs=1e-5)
    assert wilson(5, 10, z) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson(10, 10, z)[1] == 1.0
    wed = date(2025, 1, 15)
    assert period_start(wed, "day") == wed
    assert period_start(wed, "week") == date(2025, 1, 13)  # a Monday
    assert period_start(wed, "month") == date(2025, 1, 1)
    assert choose_period([date(2025, 1, 1), date(2025, 1, 31)]) == "day"
    assert choose_period([date(2025, 1, 1), date(2025, 3, 1)]) == "week"
    assert choose_period([date(2025, 1, 1), date(2026, 1, 1)]) == "month"


# -- the page ---------------------------------------------------------------------------

# Elements that load something, or run something: none may be in the page.
LOADING = {"script", "link", "iframe", "frame", "object", "embed", "base", "audio", "video"}
URL_ATTRIBUTES = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background"}
NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def parsed(text: str) -> Any:
    """The page as the WHATWG parser reads it; a parse error (invalid HTML) raises."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(text)


def tables(tree: Any) -> dict[str, list[list[list[str]]]]:
    out: dict[str, list[list[list[str]]]] = {}
    for table in tree.iter("table"):
        rows = [
            ["".join(cell.itertext()) for cell in row if cell.tag in ("td", "th")]
            for row in table.iter("tr")
        ]
        out.setdefault(table.get("data-chart"), []).append(rows)
    return out


def svgs(tree: Any) -> list[ET.Element]:
    out = []
    for img in tree.iter("img"):
        src = img.get("src")
        assert src.startswith("data:image/svg+xml;base64,")
        out.append(ET.fromstring(base64.b64decode(src.split(",", 1)[1])))
    return out


def charts_expected(report: FeedbackReport) -> int:
    # Per model: over time, the classes, and the confusions when it has some; then the
    # versions' states and splits, and their changes.
    return sum(2 + bool(m.confusion.samples) for m in report.models) + 2


def test_the_page_is_valid_html_and_self_contained(report: FeedbackReport, page: str) -> None:
    tree = parsed(page)
    assert page.startswith("<!DOCTYPE html>")
    assert tree.find("head/title") is not None
    assert tree.find("head/meta").get("charset") == "utf-8"
    assert tree.find("head/style") is not None
    assert list(tree.find("body").iter("style")) == []  # its style is in its head
    ids = [e.get("id") for e in tree.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    for element in tree.iter():
        assert element.tag not in LOADING, element.tag
        for name, value in element.attrib.items():
            if name in URL_ATTRIBUTES:
                assert value.startswith(("#", "data:")), (element.tag, name, value[:80])
    # No address anywhere in the page's text, and none in a style.
    assert re.findall(r"(?i)\b(?:https?|ftp|wss?):|//[a-z0-9.-]+\.[a-z]", page) == []
    assert "url(" not in page
    assert "@import" not in page
    charts = svgs(tree)
    assert len(charts) == charts_expected(report)
    for svg in charts:
        assert svg.tag == "{http://www.w3.org/2000/svg}svg"
        for element in svg.iter():
            assert element.tag.rsplit("}", 1)[-1] not in {"script", "image", "foreignObject"}
            for name, value in element.attrib.items():
                if name.endswith("href"):
                    assert value.startswith("#"), value  # only its own definitions
        text = ET.tostring(svg, encoding="unicode")
        assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= NAMESPACES


def test_the_pages_tables_show_the_reports_numbers(report: FeedbackReport, page: str) -> None:
    shown = tables(parsed(page))
    assert len(shown["versions"]) == len(report.models)
    for model, table in zip(report.models, shown["versions"], strict=True):
        assert [row[:5] for row in table[1:]] == [
            [v.model_version, str(v.jobs), str(v.inputs), str(v.up_voted), str(v.down_voted)]
            for v in model.versions
        ]
        assert [row[6] for row in table[1:]] == [f"{v.share:.1%}" for v in model.versions]
    for model, table in zip(report.models, shown["over-time"], strict=True):
        assert len(table) - 1 == len(model.over_time)
        assert sum(int(row[3]) for row in table[1:]) == model.total.inputs
    for model, table in zip(report.models, shown["classes"], strict=True):
        assert [(row[0], int(row[3])) for row in table[1:]] == [
            (c.label, c.down_voted) for c in model.classes
        ]
    pairs = [m for m in report.models if m.confusion.samples]
    for model, table in zip(pairs, shown["pairs"], strict=True):
        assert [(row[0], row[1], int(row[2])) for row in table[1:]] == [
            (p.predicted, p.label, p.count) for p in model.confusion.pairs[:20]
        ]
    (summary,) = shown["versions-summary"]
    assert [row[0] for row in summary[1:]] == [v.version for v in report.versions]
    added = summary[0].index("added")
    assert [int(row[added]) for row in summary[1:]] == [v.added for v in report.versions]


def test_values_from_the_dataset_are_shown_as_text(tmp_path: Path) -> None:
    sb = Sandbox(seed=5, jobs=40, data_url=str(tmp_path / "in"))
    sb.write_inputs()
    hostile = [
        "<script>alert(1)</script>",
        '"><img src=http://evil.example/x.png>',
        "$\\frac{1}{0}$ -->",
        "\u202eevil\x1b[2J",
        "x" * 300,
    ]
    # A label file selects its inputs whatever their votes.
    voted = [
        (j.id, i.name)
        for j in sb.jobs
        if j.model.kind == "image" and j.status == "COMPLETED"
        for i in j.inputs
        if i.status == "SUCCESSFUL"
    ]
    labels = tmp_path / "labels.csv"
    rows = [f'{job},{name},"{text.replace(chr(34), chr(34) * 2)}"' for (job, name), text in zip(
        voted, hostile, strict=False)]  # fmt: skip
    labels.write_text("job_id,input_name,label\n" + "\n".join(rows) + "\n")
    url = tmp_path / "ds"
    run_build(sb, url, start=EPOCH, label_file=str(labels), allow_new_classes=True)
    made = feedback_report(str(url))
    text = made.to_html()
    tree = parsed(text)
    assert not any(e.tag in LOADING for e in tree.iter())
    assert all(e.get("src", "").startswith("data:") for e in tree.iter("img"))
    cells = {c for t in tables(tree)["pairs"] for row in t for c in row}
    # Each shown as it is; what HTML cannot hold, or what would reorder the text, escaped.
    shown = [h.replace("\u202e", "\\u202e").replace("\x1b", "\\x1b") for h in hostile]
    assert {h for h in shown if h in cells} == set(shown)
    assert "<script>alert" not in text
    assert len(svgs(tree)) >= 4  # the charts were drawn ($ is no math, long labels cut)
    assert "\x1b" not in str(made)  # the text summary escapes what a terminal acts on


def test_without_matplotlib_the_notebook_shows_the_tables_and_the_page_names_the_extra(
    report: FeedbackReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    inline = report._repr_html_()
    assert "pip install &#x27;modzy-retrain[report]&#x27;" in inline
    assert "<img" not in inline
    assert 'data-chart="versions"' in inline
    parsed(f"<!DOCTYPE html><html><head><title>t</title></head><body>{inline}</body></html>")
    with pytest.raises(MissingDependencyError, match=r"pip install 'modzy-retrain\[report\]'"):
        report.to_html()


def test_in_a_notebook_the_report_displays_inline_with_its_charts(report: FeedbackReport) -> None:
    inline = report._repr_html_()
    assert inline.startswith('<div class="mr-report">')
    assert inline.count("<img") == charts_expected(report)
    assert "Feedback report" in inline
    assert str(report).startswith(f"feedback report: {report.dataset} {report.version}")


def test_the_charts_draw_what_the_data_leaves_them() -> None:
    from modzy_retrain import ClassShare, DownVoteShare, ModelFeedback, VersionShare
    from modzy_retrain._report import charts
    from modzy_retrain._report.figures import confusion_matrix

    counts = {"inputs": 10, "up_voted": 1, "down_voted": 2, "both": 0}
    share = {**counts, "share": 0.2, "low": 0.05, "high": 0.5}
    long = "1.0.0-" + "x" * 40  # two versions whose names are cut to the same text
    versions = [
        VersionShare(model_version=long + end, jobs=1, first_day=None, last_day=None, **share)
        for end in "ab"
    ]
    model = ModelFeedback(
        model_id="m",
        model_name=None,
        total=DownVoteShare(**share),
        jobs=2,
        versions=versions,
        over_time=[],  # no job with a day: nothing over time, no legend (no warning)
        classes=[ClassShare(label="$x^2$ {", **share)],  # no math mode
        confusion=confusion_matrix({"a": {"b": 1, "a": 2}}, ["b", "a"]),
    )
    assert model.confusion.classes == ["b", "a"]
    assert model.confusion.counts == [[0, 0], [1, 2]]
    for svg in (
        charts.share_chart(model, "week"),
        charts.classes_chart(model),
        charts.confusion_chart(model),
    ):
        assert svg is not None
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # The same report gives the same bytes (no date, salted ids).
    assert charts.classes_chart(model) == charts.classes_chart(model)
