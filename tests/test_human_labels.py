"""Human labels: several annotators' rows for one input, aggregated by a policy."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from modzy_retrain import (
    Annotation,
    ClassPrediction,
    ConfigurationError,
    DownVoted,
    HumanLabel,
    LabelAggregation,
    LabelPolicy,
    Majority,
    PredictionRecord,
    TrustedAnnotator,
    Unanimous,
    VoteFilter,
    Voting,
    Weighted,
    load_label_file,
)
from modzy_retrain._dataset.human import (
    annotation_row,
    combine,
    decided_row,
    from_row,
    is_human,
    rule_sources,
)


def notes(*pairs: str) -> list[Annotation]:
    """``"ann:label"`` pairs as annotations (``":label"``: no annotator)."""
    out = []
    for pair in pairs:
        who, label = pair.split(":")
        out.append(Annotation(label, who or None))
    return out


def rec(name: str = "a", up: int = 0, down: int = 0) -> PredictionRecord:
    return PredictionRecord(
        job_id="j",
        input_name=name,
        model_id="m",
        model_version="1",
        job_status="COMPLETED",
        predictions=(
            ClassPrediction(label="cat", score=0.7),
            ClassPrediction(label="dog", score=0.3),
        ),
        voting=Voting(up=up, down=down),
    )


def test_a_single_row_gives_its_label() -> None:
    for policy in (Majority(), Unanimous(), TrustedAnnotator("ann"), Weighted({"bo": 2})):
        human = policy.aggregate(notes("al:dog"))
        assert (human.label, human.candidates) == ("dog", ()), policy
        assert human.annotations == (Annotation("dog", "al"),)


def test_majority_with_a_minimum_agreement() -> None:
    assert Majority().aggregate(notes("a:dog", "b:dog", "c:cat")).label == "dog"
    # A tie at the top is a disagreement, whatever the share.
    tied = Majority().aggregate(notes("a:dog", "b:cat"))
    assert (tied.label, tied.candidates) == (None, ("cat", "dog"))
    # 2 of 3 is not 3 of 4.
    strict = Majority(min_agreement=0.75)
    assert strict.aggregate(notes("a:dog", "b:dog", "c:cat")).label is None
    assert strict.aggregate(notes("a:dog", "b:dog", "c:dog", "d:cat")).label == "dog"
    # A plurality below half is not a majority by default.
    assert Majority().aggregate(notes("a:dog", "b:dog", "c:cat", "d:fox", "e:owl")).label is None
    assert (
        Majority(0.4).aggregate(notes("a:dog", "b:dog", "c:cat", "d:fox", "e:owl")).label == "dog"
    )


def test_unanimous() -> None:
    assert Unanimous().aggregate(notes("a:dog", "b:dog", ":dog")).label == "dog"
    split = Unanimous().aggregate(notes("a:dog", "b:dog", "c:cat"))
    assert (split.label, split.candidates) == (None, ("dog", "cat"))


def test_a_trusted_annotator_wins() -> None:
    trusted = TrustedAnnotator("lead")
    # The others are ignored when the trusted annotator labelled the input.
    assert trusted.aggregate(notes("a:dog", "b:dog", "lead:cat")).label == "cat"
    # Without it, the fallback decides (Majority by default).
    assert trusted.aggregate(notes("a:dog", "b:dog", "c:cat")).label == "dog"
    assert TrustedAnnotator("lead", fallback=Unanimous()).aggregate(
        notes("a:dog", "b:cat")
    ).candidates == ("cat", "dog")
    # The trusted annotator contradicting itself is a disagreement.
    assert trusted.aggregate(notes("lead:dog", "lead:cat", "a:dog")).label is None


def test_weighted() -> None:
    weighted = Weighted({"expert": 3, "novice": 0.5})
    # 3 for cat against 0.5 + 1 (an unknown annotator counts the default) for dog.
    assert weighted.aggregate(notes("expert:cat", "novice:dog", "other:dog")).label == "cat"
    assert weighted.weight(None) == weighted.weight("other") == 1.0
    # Weight 0 ignores the unknown annotators; nobody left with weight: no label.
    only_known = Weighted({"expert": 1}, default=0)
    assert only_known.aggregate(notes("expert:cat", "x:dog", "y:dog")).label == "cat"
    assert only_known.aggregate(notes("x:dog")).label is None
    # Equal weight on two labels is a tie.
    assert (
        Weighted({"a": 2, "b": 1, "c": 1}).aggregate(notes("a:cat", "b:dog", "c:dog")).label is None
    )


def test_a_subclass_decides_its_own_way() -> None:
    class FirstRowWins(LabelAggregation):
        def decide(self, annotations: tuple[Annotation, ...]) -> str | None:
            return annotations[0].label

    human = FirstRowWins().aggregate(notes("a:cat", "b:dog"), source="label-studio")
    assert human == HumanLabel("cat", tuple(notes("a:cat", "b:dog")), (), "label-studio")
    assert repr(FirstRowWins()) == "FirstRowWins()"
    decision = LabelPolicy(labels={("j", "a"): human}).label(rec())
    assert (decision.state, decision.rule) == ("labelled", "human:label-studio")


@pytest.mark.parametrize(
    "make",
    [
        lambda: Majority(0),
        lambda: Majority(1.5),
        lambda: Majority(True),  # type: ignore[arg-type]
        lambda: TrustedAnnotator(""),
        lambda: TrustedAnnotator("lead", fallback=Majority),  # type: ignore[arg-type]
        lambda: Weighted({"a": -1}),
        lambda: Weighted({"a": "heavy"}),  # type: ignore[dict-item]
        lambda: Weighted({"a": 1}, default=float("inf")),
        lambda: Weighted(["a"]),  # type: ignore[arg-type]
        lambda: Weighted({}, min_agreement=0),
        lambda: Majority().aggregate([]),
    ],
)
def test_invalid_arguments_are_configuration_errors(make: object) -> None:
    with pytest.raises(ConfigurationError):
        make()  # type: ignore[operator]


def test_a_human_label_wins_over_the_votes() -> None:
    agreed = Majority().aggregate(notes("a:dog", "b:dog"))
    decision = LabelPolicy(labels={("j", "a"): agreed}).label(rec(up=5))
    assert (decision.label, decision.state, decision.rule) == (
        "dog",
        "labelled",
        "human:label-file",
    )
    assert decision.annotations == tuple(notes("a:dog", "b:dog"))
    # Annotators who disagree: a conflict, each one's choice kept, whatever the votes.
    split = Majority().aggregate(notes("a:dog", "b:cat"))
    decision = LabelPolicy(labels={("j", "a"): split}).label(rec(up=5))
    assert (decision.label, decision.state, decision.rule) == (
        None,
        "conflict",
        "human:label-file:conflict",
    )
    assert decision.candidates == ("cat", "dog")
    assert decision.annotations == tuple(notes("a:dog", "b:cat"))
    # A plain label is one unnamed annotator's.
    plain = LabelPolicy(labels={("j", "a"): "cat"}).label(rec())
    assert (plain.label, plain.state, plain.annotations) == (
        "cat",
        "labelled",
        (Annotation("cat"),),
    )


LABELS_CSV = """job_id,input_name,label,annotator
j,a,dog,al
j,b,cat,al
j,a,dog,bo
j,b,dog,bo
j,a,cat,cy
j,c,fox,
"""


def test_label_files_read_every_row(tmp_path: Path) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(LABELS_CSV)
    labels = load_label_file(str(csv_file))
    # The rows of one input are gathered wherever they are in the file, not last-row-wins.
    assert labels[("j", "a")] == HumanLabel("dog", tuple(notes("al:dog", "bo:dog", "cy:cat")))
    assert labels[("j", "b")] == HumanLabel(None, tuple(notes("al:cat", "bo:dog")), ("cat", "dog"))
    assert labels[("j", "c")].annotations == (Annotation("fox", None),)
    assert load_label_file(str(csv_file), aggregation=Unanimous())[("j", "a")].label is None
    trusted = load_label_file(str(csv_file), aggregation=TrustedAnnotator("bo"))
    assert (trusted[("j", "a")].label, trusted[("j", "b")].label) == ("dog", "dog")

    jsonl = tmp_path / "labels.jsonl"
    rows = [
        {"job_id": "j", "input_name": "a", "label": "dog", "annotator": "al"},
        {"job_id": "j", "input_name": "a", "label": "cat", "annotator": "bo"},
    ]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    weighted = load_label_file(str(jsonl), aggregation=Weighted({"bo": 2}))
    assert weighted[("j", "a")].label == "cat"
    with pytest.raises(ConfigurationError, match="LabelAggregation"):
        load_label_file(str(jsonl), aggregation="majority")  # type: ignore[arg-type]


def test_vote_filter_aggregates_the_label_file(tmp_path: Path) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(LABELS_CSV)
    stage = VoteFilter(DownVoted(), label_file=str(csv_file))
    samples = list(stage([rec("a", up=3), rec("b"), rec("c"), rec("d", down=1)]))
    assert [(s.input_name, s.label, s.label_state, s.rule) for s in samples] == [
        ("a", "dog", "labelled", "human:label-file"),
        ("b", None, "conflict", "human:label-file:conflict"),
        ("c", "fox", "labelled", "human:label-file"),
        ("d", "dog", "corrected", "down-voted:binary-flip"),
    ]
    assert samples[1].annotations == tuple(notes("al:cat", "bo:dog"))
    assert samples[1].candidates == ("cat", "dog")
    assert samples[3].annotations == ()
    unanimous = VoteFilter(label_file=str(csv_file), aggregation=Unanimous())
    assert [s.label_state for s in unanimous([rec("a")])] == ["conflict"]
    assert unanimous.describe()["aggregation"] == "Unanimous()"
    with pytest.raises(ConfigurationError, match="label_file"):
        VoteFilter(aggregation=Majority())


# -- sources combined, and read back from a written row ------------------------------


def test_rules_name_their_sources() -> None:
    assert rule_sources("human:label-file") == ("label-file",)
    assert rule_sources("human:label-file+label-studio:conflict") == ("label-file", "label-studio")
    assert rule_sources("down-voted:binary-flip") == ()
    assert is_human("human:label-studio:conflict")
    assert not is_human("up-voted")
    assert not is_human(None)


def test_one_source_is_kept_as_it_is() -> None:
    studio = HumanLabel("cat", (Annotation("cat", "3"),), (), "label-studio")
    assert combine([studio]) is studio
    with pytest.raises(ConfigurationError):
        combine([])


def test_sources_that_agree_give_one_label_with_every_annotation() -> None:
    at = datetime(2026, 11, 30, tzinfo=timezone.utc)
    studio = HumanLabel("cat", (Annotation("cat", "3", at=at),), (), "label-studio")
    file = HumanLabel("cat", (Annotation("cat", "al"),), (), "label-file")
    both = combine([studio, file])
    assert (both.label, both.state, both.rule) == (
        "cat",
        "labelled",
        "human:label-file+label-studio",
    )
    assert [(a.annotator, a.source) for a in both.annotations] == [
        ("al", "label-file"),
        ("3", "label-studio"),
    ]


def test_sources_that_disagree_are_a_conflict_listing_both() -> None:
    studio = HumanLabel("cat", (Annotation("cat", "3"),), (), "label-studio")
    file = HumanLabel("dog", (Annotation("dog", "al"),), (), "label-file")
    both = combine([studio, file])
    assert (both.label, both.state) == (None, "conflict")
    assert both.rule == "human:label-file+label-studio:conflict"
    assert both.candidates == ("dog", "cat")
    # One source in conflict is enough: its candidates join the other's label.
    torn = HumanLabel(None, notes("1:cat", "2:fox"), ("cat", "fox"), "label-studio")
    assert combine([torn, file]).candidates == ("dog", "cat", "fox")


def test_a_row_gives_back_each_source() -> None:
    at = datetime(2026, 11, 30, 10, tzinfo=timezone.utc)
    studio = HumanLabel("cat", (Annotation("cat", "3", at=at),), (), "label-studio")
    file = HumanLabel("dog", (Annotation("dog", "al"), Annotation("dog", "bo")), (), "label-file")
    base = {"job_id": "j", "input_name": "a", "label": None, "label_state": "needs_label"}
    row = decided_row(base, combine([studio, file]))
    assert row["annotations"][0] == {
        "annotator": "al",
        "label": "dog",
        "source": "label-file",
        "at": None,
    }
    assert row["annotations"][2]["at"] == at.isoformat()
    back = from_row(json.loads(json.dumps(row)))
    assert back["label-studio"].label == "cat"
    assert back["label-studio"].annotations[0].at == at
    assert back["label-file"].label == "dog"
    # One source: exactly as written, its conflict and candidates too.
    single = decided_row(
        base, HumanLabel(None, notes("1:cat", "2:fox"), ("cat", "fox"), "label-studio")
    )
    (only,) = from_row(single).values()
    assert (only.label, only.candidates, only.source) == (None, ("cat", "fox"), "label-studio")
    # Rows written before annotations named their source: the rule's source.
    old = {
        "rule": "human:label-file",
        "label": "dog",
        "label_state": "labelled",
        "annotations": [{"annotator": "al", "label": "dog"}],
    }
    assert from_row(old)["label-file"].sourced()[0].source == "label-file"
    assert from_row({"rule": "up-voted"}) == {}
    assert annotation_row(Annotation("x"), "label-file")["source"] == "label-file"
