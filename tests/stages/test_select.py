"""Selectors, the label policy and the VoteFilter stage."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import pytest

from modzy_retrain import (
    Annotation,
    AnyVotes,
    ClassPrediction,
    ConfigurationError,
    ConflictingVotes,
    DownShare,
    DownVoted,
    Everything,
    LabelPolicy,
    MinVotes,
    NetScore,
    PredictedIn,
    PredictionRecord,
    TopScoreBelow,
    UpVoted,
    VoteFilter,
    Voting,
    load_label_file,
    selector_by_name,
)


def rec(
    up: int = 0,
    down: int = 0,
    preds: tuple[tuple[str, float], ...] = (("cat", 0.7), ("dog", 0.2), ("fish", 0.1)),
    name: str = "a",
    model: str = "m",
) -> PredictionRecord:
    return PredictionRecord(
        job_id="j",
        input_name=name,
        model_id=model,
        model_version="1",
        job_status="COMPLETED",
        predictions=tuple(ClassPrediction(label=c, score=s) for c, s in preds),
        voting=Voting(up=up, down=down),
    )


BINARY = (("spam", 0.9), ("ham", 0.1))


@pytest.mark.parametrize(
    ("selector", "votes", "expected"),
    [
        (DownVoted(), [(0, 0), (0, 1), (1, 1), (1, 2), (2, 1)], [False, True, False, True, False]),
        (UpVoted(), [(0, 0), (1, 0), (1, 1), (3, 1)], [False, True, False, True]),
        (AnyVotes(), [(0, 0), (1, 0), (0, 1)], [False, True, True]),
        (ConflictingVotes(), [(1, 0), (1, 1), (3, 1), (0, 2)], [False, True, True, False]),
        (MinVotes(2), [(1, 0), (1, 1), (0, 3)], [False, True, True]),
        (NetScore(at_least=1), [(1, 0), (1, 1), (3, 1)], [True, False, True]),
        (NetScore(at_most=-1), [(0, 1), (1, 1), (1, 3)], [True, False, True]),
        (DownShare(0.5), [(0, 0), (1, 1), (2, 1), (0, 1)], [False, True, False, True]),
        (Everything(), [(0, 0)], [True]),
    ],
)
def test_vote_selectors(
    selector: object, votes: list[tuple[int, int]], expected: list[bool]
) -> None:
    assert [selector(rec(u, d)) for u, d in votes] == expected  # type: ignore[operator]


def test_prediction_selectors() -> None:
    assert TopScoreBelow(0.8)(rec())
    assert not TopScoreBelow(0.5)(rec())
    assert not TopScoreBelow(0.5)(rec(preds=()))
    assert PredictedIn({"cat", "cow"})(rec())
    assert not PredictedIn(["dog"])(rec())


def test_selectors_compose() -> None:
    rule = (DownVoted() & MinVotes(2)) | (UpVoted() & ~TopScoreBelow(0.5))
    assert rule(rec(0, 2))
    assert not rule(rec(0, 1))
    assert rule(rec(1, 0))
    assert not rule(rec(1, 0, preds=(("cat", 0.4),)))
    assert repr(rule) == "((DownVoted & MinVotes(2)) | (UpVoted & ~TopScoreBelow(0.5)))"


def test_selectors_by_name() -> None:
    assert isinstance(selector_by_name("down-voted"), DownVoted)
    with pytest.raises(ConfigurationError, match="down-voted"):
        selector_by_name("downvoted")


@pytest.mark.parametrize(
    ("record", "label", "state", "rule", "candidates"),
    [
        (rec(2, 0), "cat", "confirmed", "up-voted", ()),
        (rec(3, 1), "cat", "confirmed", "up-voted", ()),
        (rec(0, 1, BINARY), "ham", "corrected", "down-voted:binary-flip", ()),
        (rec(0, 2), None, "needs_label", "down-voted:needs-label", ("dog",)),
        (rec(1, 3, BINARY), "ham", "corrected", "down-voted:binary-flip", ()),
        (rec(2, 1), None, "conflict", "conflict", ("cat", "dog")),
        (rec(1, 1, BINARY), None, "conflict", "conflict", ("spam", "ham")),
        (rec(0, 0), None, "needs_label", "unvoted", ("cat", "dog")),
        (rec(0, 1, preds=()), None, "needs_label", "down-voted:needs-label", ()),
    ],
)
def test_label_policy_rules(
    record: PredictionRecord, label: str | None, state: str, rule: str, candidates: tuple[str, ...]
) -> None:
    decision = LabelPolicy().label(record)
    assert (decision.label, decision.state, decision.rule, decision.candidates) == (
        label,
        state,
        rule,
        candidates,
    )


def test_binary_is_known_from_the_class_list_too() -> None:
    # A top-1 output of a binary model: the class list says what the other class is.
    record = rec(0, 1, preds=(("spam", 0.9),))
    assert LabelPolicy().label(record).state == "needs_label"
    decision = LabelPolicy(classes={"m": ["spam", "ham"]}).label(record)
    assert (decision.label, decision.state) == ("ham", "corrected")


def test_min_agreement_is_configurable() -> None:
    assert LabelPolicy(min_agreement=0.6).label(rec(2, 1)).state == "confirmed"
    with pytest.raises(ConfigurationError):
        LabelPolicy(min_agreement=0.3)


def test_label_files(tmp_path: Path) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("job_id,input_name,label\nj,a,dog\nj,b,cat\n")
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text(json.dumps({"job_id": "j", "input_name": "a", "label": "dog"}) + "\n\n")
    loaded = load_label_file(str(csv_file))
    assert {key: human.label for key, human in loaded.items()} == {
        ("j", "a"): "dog",
        ("j", "b"): "cat",
    }
    assert loaded[("j", "a")].annotations == (Annotation("dog"),)
    assert load_label_file(f"file://{jsonl}")[("j", "a")].label == "dog"
    bad = tmp_path / "bad.csv"
    bad.write_text("job,input_name,label\n")
    with pytest.raises(ConfigurationError, match="job_id"):
        load_label_file(str(bad))
    worse = tmp_path / "worse.jsonl"
    worse.write_text("{not json\n")
    with pytest.raises(ConfigurationError, match="line 1"):
        load_label_file(str(worse))
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_label_file(str(tmp_path / "nope.csv"))
    with pytest.raises(ConfigurationError, match=r"\.csv or \.jsonl"):
        load_label_file(str(tmp_path / "labels.txt"))

    stage = VoteFilter(DownVoted(), label_file=str(csv_file))
    # "b" has no votes, but the label file labels it: selected, and labelled by a human
    # whether or not the label equals the prediction.
    samples = list(stage([rec(0, 0, name="a"), rec(0, 0, name="b"), rec(0, 0, name="c")]))
    assert [(s.input_name, s.label, s.label_state, s.rule) for s in samples] == [
        ("a", "dog", "labelled", "human:label-file"),
        ("b", "cat", "labelled", "human:label-file"),
    ]


def test_vote_filter_reports_what_it_leaves_out() -> None:
    records = [rec(0, 1, name="a"), rec(0, 0, name="b"), rec(1, 0, name="c")]
    it = VoteFilter(DownVoted())(records)
    assert [s.input_name for s in it] == ["a"]
    stats = it.report.stages["select"]
    assert (stats.items_in, stats.items_out) == (3, 1)
    assert it.report.drop_counts[("select", "not_selected")] == 2
    assert {d.input_name for d in it.report.drops} == {"b", "c"}


def test_vote_filter_is_lazy() -> None:
    seen: list[str] = []

    def source() -> object:
        for n in range(1000):
            seen.append(str(n))
            yield rec(0, 1, name=str(n))

    first = list(islice(VoteFilter()(source()), 3))  # type: ignore[arg-type]
    assert [s.input_name for s in first] == ["0", "1", "2"]
    assert len(seen) == 3


def test_subclass_hook_select() -> None:
    class OnlyCats(VoteFilter):
        def select(self, record: PredictionRecord) -> bool:
            return record.predicted_label == "cat"

    out = list(OnlyCats()([rec(0, 0), rec(0, 0, preds=(("dog", 0.9),))]))
    assert len(out) == 1
    assert out[0].rule == "unvoted"


def test_subclass_label_policy() -> None:
    class TrustDownVotes(LabelPolicy):
        def label(self, record: PredictionRecord):  # type: ignore[no-untyped-def]
            decision = super().label(record)
            if decision.state == "needs_label" and record.runner_up:
                return type(decision)(record.runner_up, "corrected", "runner-up", ())
            return decision

    out = list(VoteFilter(policy=TrustDownVotes())([rec(0, 2)]))
    assert (out[0].label, out[0].rule) == ("dog", "runner-up")
