"""Tolerant parsing of every result shape the reference documents."""

from __future__ import annotations

import pytest

from modzy_retrain import ResponseValidationError, ResultParseError
from modzy_retrain._client.parsing import (
    parse_history_page,
    parse_input_failure,
    parse_input_result,
    parse_job,
    parse_job_results,
    parse_single_result,
)

ENVELOPE = {
    "data": {
        "result": {
            "classPredictions": [
                {"class": "negative", "score": 0.52},
                {"class": "neutral", "score": 0.48},
                {"class": "positive", "score": 0.0},
            ]
        },
        "explanation": {"wordImportance": [{"index": 0, "word": "bad", "score": 0.3}]},
        "drift": None,
    }
}


def results_body(**inputs: object) -> dict[str, object]:
    return {
        "jobIdentifier": "job-1",
        "total": len(inputs),
        "completed": len(inputs),
        "failed": 0,
        "finished": True,
        "submittedByKey": "AbCdEfGhIj0123456789",
        "submittedAt": "2021-12-06T21:31:40.000+0000",
        "results": inputs,
        "failures": {},
    }


def test_current_generation_result() -> None:
    body = results_body(
        **{
            "my-input-1": {
                "status": "SUCCESSFUL",
                "engine": "model-batch-x",
                "modelLatency": 143,
                "startTime": "2021-12-06T21:31:40.545+0000",
                "results.json": ENVELOPE,
                "voting": {"up": 2, "down": 1},
                "someNewField": [1, 2],
            }
        }
    )
    parsed = parse_job_results("job-1", body)
    assert parsed.finished is True
    assert parsed.submitted_by_key == "AbCdEfGhIj0123456789"
    item = parsed.results["my-input-1"]
    assert item.job_id == "job-1"
    assert item.input_name == "my-input-1"
    assert item.top is not None
    assert (item.top.label, item.top.score) == ("negative", 0.52)
    assert [p.label for p in item.predictions] == ["negative", "neutral", "positive"]
    assert item.voting.up == 2
    assert item.voting.down == 1
    assert item.voting.net == 1
    assert item.explanation == ENVELOPE["data"]["explanation"]  # type: ignore[index]
    assert item.output == ENVELOPE
    # Unknown keys are kept, not dropped.
    assert item.model_extra is not None
    assert item.model_extra["someNewField"] == [1, 2]


def test_scores_as_strings_are_coerced_and_predictions_sorted() -> None:
    envelope = {
        "data": {
            "result": {
                "classPredictions": [
                    {"class": "ham", "score": "0.2", "row": 0},
                    {"class": "spam", "score": "0.8", "row": 0},
                ]
            }
        }
    }
    parsed = parse_job_results(
        "j", results_body(a={"status": "SUCCESSFUL", "results.json": envelope})
    )
    preds = parsed.results["a"].predictions
    assert [(p.label, p.score) for p in preds] == [("spam", 0.8), ("ham", 0.2)]


def test_missing_voting_means_no_votes() -> None:
    for voting in ({}, None):
        payload: dict[str, object] = {"status": "SUCCESSFUL", "results.json": ENVELOPE}
        if voting is not None:
            payload["voting"] = None
        parsed = parse_job_results("j", results_body(a=payload))
        assert parsed.results["a"].voting.total == 0


def test_legacy_double_nesting_is_unwrapped() -> None:
    body = results_body(
        a={"a": {"status": "SUCCESSFUL", "results.json": ENVELOPE, "voting": {"up": 1, "down": 0}}}
    )
    item = parse_job_results("j", body).results["a"]
    assert item.top is not None
    assert item.top.label == "negative"
    assert item.voting.up == 1


def test_legacy_non_envelope_output() -> None:
    body = results_body(
        a={"status": "SUCCESSFUL", "results.json": {"confidence": "3.2059302", "result": "six"}}
    )
    item = parse_job_results("j", body).results["a"]
    assert item.top is not None
    assert item.top.label == "six"
    assert item.top.score == pytest.approx(3.2059302)


def test_binary_outputs_are_urls_and_json_arrays_are_kept() -> None:
    body = results_body(
        a={
            "status": "SUCCESSFUL",
            "results.wav": "https://host/api/results/j/a/results.wav\n",
            "results.json": ["one", "two"],
        }
    )
    item = parse_job_results("j", body).results["a"]
    assert item.output_urls == {"results.wav": "https://host/api/results/j/a/results.wav"}
    assert item.output == ["one", "two"]
    assert item.predictions == []


def test_failures_are_parsed_with_their_error() -> None:
    body = results_body()
    body["failures"] = {
        "bad": {"status": "FAILED", "error": "invalid image", "engine": "e"},
        "worse": "boom",
    }
    parsed = parse_job_results("j", body)
    assert parsed.failures["bad"].error == "invalid image"
    assert parsed.failures["worse"].error == "boom"
    assert parsed.failures["bad"].input_name == "bad"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (
            {
                "status": "SUCCESSFUL",
                "results.json": {"data": {"result": {"classPredictions": "x"}}},
            },
            "list",
        ),
        (
            {
                "status": "SUCCESSFUL",
                "results.json": {
                    "data": {"result": {"classPredictions": [{"class": "a", "score": "high"}]}}
                },
            },
            "score",
        ),
        (
            {
                "status": "SUCCESSFUL",
                "results.json": {"data": {"result": {"classPredictions": [{"score": 0.1}]}}},
            },
            "class",
        ),
        (
            {
                "status": "SUCCESSFUL",
                "results.json": {
                    "data": {"result": {"classPredictions": [{"class": "a", "score": "nan"}]}}
                },
            },
            "finite",
        ),
        ({"status": "SUCCESSFUL", "voting": {"up": -1, "down": 0}}, "voting"),
        ({"status": "SUCCESSFUL", "voting": {"up": "many"}}, "voting"),
        ({"status": "SUCCESSFUL", "startTime": "last tuesday"}, "startTime"),
        ("not an object", "object"),
    ],
)
def test_bad_input_raises_a_typed_error_naming_job_and_input(payload: object, needle: str) -> None:
    with pytest.raises(ResultParseError) as info:
        parse_job_results("job-42", results_body(**{"in/put 1": payload}))
    err = info.value
    assert err.job_id == "job-42"
    assert err.input_name == "in/put 1"
    assert "job-42" in str(err)
    assert "in/put 1" in str(err)
    assert needle in str(err)
    assert isinstance(err, ResponseValidationError)


def test_bad_envelope_names_the_job() -> None:
    with pytest.raises(ResultParseError) as info:
        parse_job_results("job-7", ["not", "an", "object"])
    assert info.value.job_id == "job-7"
    assert info.value.input_name is None
    with pytest.raises(ResultParseError):
        parse_job_results("job-7", {"results": ["a"]})
    with pytest.raises(ResultParseError):
        parse_job_results("job-7", {"finished": "perhaps"})


def test_single_input_route_shapes() -> None:
    edge = {
        "job": {"identifier": "j", "model": {"identifier": "m", "version": "1"}},
        "inputName": "a",
        "startTime": 0,
        "result": ENVELOPE,
        "voting": {"up": 3, "down": 0},
    }
    item = parse_single_result("j", "a", edge)
    assert item.voting.up == 3
    assert item.top is not None
    assert item.top.label == "negative"
    assert item.start_time is None
    keyed = dict(edge, result={"results.json": ENVELOPE})
    assert parse_single_result("j", "a", keyed).top == item.top


def test_job_shapes() -> None:
    job = parse_job(
        {
            "jobIdentifier": "14856eb1",
            "submittedBy": "AbCdEfGhIj0123456789",
            "model": {"identifier": "ed542963de", "version": "1.0.1", "name": "Sentiment Analysis"},
            "status": "completed",
            "createdAt": "2021-12-06T21:31:40.100+0000",
            "submittedAt": "2021-12-06T21:31:40.150+00:00",
            "total": 3,
            "completed": 2,
            "failed": 1,
            "pending": None,
            "jobInputs": [{"identifier": "my-input-1"}, {"identifier": "x"}],
            "hoursDeleteInput": 1,
        }
    )
    assert job.status == "COMPLETED"
    assert job.is_finished
    assert job.pending == 0
    assert job.input_names == ["my-input-1", "x"]
    assert job.model.name == "Sentiment Analysis"
    assert job.model_extra is not None
    assert job.model_extra["hoursDeleteInput"] == 1
    receipt = parse_job(
        {
            "jobIdentifier": "r",
            "model": {"identifier": "m", "version": "1"},
            "jobInputs": {"identifier": ["a", "b"]},
        }
    )
    assert receipt.input_names == ["a", "b"]
    assert receipt.status == "SUBMITTED"
    assert not receipt.is_finished


def test_history_page_shapes() -> None:
    item = {"jobIdentifier": "a", "model": {"identifier": "m", "version": "1"}}
    assert [j.job_id for j in parse_history_page([item])] == ["a"]
    # The Java SDK's unused wrapper class hints at an older {"data": [...]} envelope.
    assert [j.job_id for j in parse_history_page({"data": [item]})] == ["a"]
    with pytest.raises(ResponseValidationError, match="array"):
        parse_history_page({"jobs": []})
    with pytest.raises(ResponseValidationError, match="'broken'"):
        parse_history_page([{"jobIdentifier": "broken"}])


def test_lenient_mode_sets_bad_inputs_aside() -> None:
    body = results_body(
        good={"status": "SUCCESSFUL", "results.json": ENVELOPE},
        bad={"status": "SUCCESSFUL", "voting": {"up": -3}},
    )
    body["failures"] = {"worse": 42}
    with pytest.raises(ResultParseError):
        parse_job_results("j", body)
    lenient = parse_job_results("j", body, strict=False)
    assert set(lenient.results) == {"good"}
    assert set(lenient.invalid) == {"bad", "worse"}
    assert "voting" in lenient.invalid["bad"]


@pytest.mark.parametrize(
    ("predictions", "expected"),
    [
        # Numeric class ids become text; scores may be strings; sorted by score.
        ([{"class": 3, "score": 0.5}, {"class": "b", "score": "0.9"}], [("b", 0.9), ("3", 0.5)]),
        ([{"class": True, "score": 0.5}], "predictions.0.class"),
        ([{"class": "a", "score": "inf"}], "non-finite score"),
        ([{"class": "a"}], "predictions.0.score: Field required"),
    ],
)
def test_class_predictions_are_validated_in_one_pass(
    predictions: list[dict[str, object]], expected: object
) -> None:
    payload = {
        "status": "SUCCESSFUL",
        "results.json": {"data": {"result": {"classPredictions": predictions}}},
    }
    if isinstance(expected, str):
        with pytest.raises(ResultParseError, match=expected) as info:
            parse_input_result("j", "in", payload)
        assert info.value.job_id == "j"
        assert info.value.input_name == "in"
    else:
        result = parse_input_result("j", "in", payload)
        assert [(p.label, p.score) for p in result.predictions] == expected


# Regressions from the malformed-data hardening (tests/test_parsing_properties.py).


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        # pydantic's lax mode read true as 1.0 and 1 vote: a score of 1 from a boolean.
        (
            {
                "results.json": {
                    "data": {"result": {"classPredictions": [{"class": "a", "score": True}]}}
                }
            },
            "predictions.0.score",
        ),
        ({"voting": {"up": True, "down": 0}}, "voting.up"),
        ({"voting": {"up": 0, "down": False}}, "voting.down"),
    ],
)
def test_booleans_are_not_scores_or_votes(payload: dict[str, object], where: str) -> None:
    with pytest.raises(ResultParseError, match=rf"{where}: Value error, expected a number"):
        parse_input_result("j", "in", {"status": "SUCCESSFUL", **payload})


def test_booleans_are_not_job_counts() -> None:
    with pytest.raises(ResponseValidationError, match="total: Value error, expected a number"):
        parse_job({"jobIdentifier": "a", "model": {"identifier": "m"}, "total": True})
    with pytest.raises(ResultParseError, match="completed"):
        parse_job_results("j", {"completed": False})


def test_an_empty_input_name_is_still_named() -> None:
    # The message said "the result of job 'j'" for the input named "".
    with pytest.raises(ResultParseError, match="of input '' of job 'job-1'") as info:
        parse_job_results("job-1", results_body(**{"": None}))
    assert info.value.input_name == ""


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        # No status, and the input is named like its own votes: it was taken for the
        # legacy double nesting, and its votes and output were lost.
        ("voting", {"voting": {"up": 2, "down": 0}, "results.json": ENVELOPE}),
        # Named like its output file: the output was unwrapped as if it were the input.
        ("results.json", {"results.json": ENVELOPE, "voting": {"up": 2}}),
        ("results.json", {"results.json": ENVELOPE}),
        # The legacy nesting of an input named "status" was refused (its status was an
        # object).
        (
            "status",
            {"status": {"status": "SUCCESSFUL", "results.json": ENVELOPE, "voting": {"up": 2}}},
        ),
    ],
)
def test_inputs_named_like_their_own_keys(name: str, payload: dict[str, object]) -> None:
    item = parse_job_results("j", results_body(**{name: payload})).results[name]
    assert item.top is not None
    assert item.top.label == "negative"
    assert item.output == ENVELOPE
    assert item.voting.up == (0 if payload.keys() == {"results.json"} else 2)


@pytest.mark.parametrize("identifier", [["a"], 42, {"id": "a"}, False])
def test_a_job_identifier_that_is_not_a_string_is_refused(identifier: object) -> None:
    # It was str()-ed: the job came back as "['a']".
    body = results_body()
    body["jobIdentifier"] = identifier
    with pytest.raises(ResultParseError, match="jobIdentifier: expected a string") as info:
        parse_job_results("job-1", body, strict=False)
    assert (info.value.job_id, info.value.input_name) == ("job-1", None)


def test_an_error_that_cannot_be_made_text_is_a_typed_error() -> None:
    # str() refuses an int of more than 4300 digits; the ValueError escaped.
    with pytest.raises(ResultParseError, match="4300") as info:
        parse_input_failure("j", "in", {"error": [10**5000]})
    assert info.value.input_name == "in"
