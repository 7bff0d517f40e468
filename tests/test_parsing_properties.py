"""Property-based tests: malformed API data parses, or raises this library's typed error.

Each parser is fed arbitrary JSON and near-valid bodies (real sandbox bodies with a few
mutations). The contract, from the hardening issue: the result is the typed model, or a
``ResultParseError`` naming the job (and the input, when one input is at fault), or, for
history, jobs and models, a ``ResponseValidationError``. Any other exception escaping a
parser fails these tests as it is.

Every test is derandomized (the same examples on every run, no example database) and
bounded in examples, so the file stays quick on a shared two-core machine.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from unittest import mock

import httpx
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import modzy_retrain._core.timestamps as time_module
from modzy_retrain import (
    InputFailure,
    InputResult,
    InternalServerError,
    Job,
    JobResults,
    ModelSummary,
    ModzyClient,
    ResponseValidationError,
    ResultParseError,
    RetryPolicy,
)
from modzy_retrain._client.calls import Call, job_results_body
from modzy_retrain._client.decoding import nested_deeper_than
from modzy_retrain._client.models import ModzyModel
from modzy_retrain._client.parsing import (
    parse_history_page,
    parse_input_failure,
    parse_input_result,
    parse_job,
    parse_job_results,
    parse_model,
    parse_models,
    parse_single_result,
)
from modzy_retrain._core.timestamps import parse_timestamp
from modzy_retrain._stages.records import job_metadata, records_from_results
from modzy_retrain.sandbox import Sandbox

UTC = timezone.utc
T = TypeVar("T")
JOB = "job-\u00e9\u00df-42"
PATH = "/results/job-42"


def props(examples: int) -> settings:
    # derandomize: the same examples every run (no flakiness, no .hypothesis database);
    # no deadline: the first examples pay for imports and pydantic's first calls.
    return settings(
        derandomize=True,
        database=None,
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- Real bodies, fetched once from the sandbox through the client --------------------


def _raw(path: str, params: dict[str, str] | None = None) -> Call[Any]:
    return Call("GET", path, lambda data: data, params=params)


def _sandbox_bodies() -> dict[str, Any]:
    sb = Sandbox(seed=21, jobs=40, inputs_per_job=3)
    finished = [j for j in sb.jobs if j.status in ("COMPLETED", "CANCELED", "TIMEDOUT")]
    with_failure = next(j for j in finished if any(i.status == "FAILED" for i in j.inputs))
    text_job = next(
        j
        for j in finished
        if j.model.kind == "text" and j.status == "COMPLETED" and j is not with_failure
    )
    running = next(
        j
        for j in sb.jobs
        if j.status == "IN_PROGRESS" and any(i.status == "SUCCESSFUL" for i in j.inputs)
    )
    failed_input = next(i for i in with_failure.inputs if i.status == "FAILED")
    ok_input = next(i for i in with_failure.inputs if i.status == "SUCCESSFUL")
    with ModzyClient(
        api_key=sb.api_key, base_url="http://sandbox.invalid", transport=sb.transport()
    ) as client:

        def single(job_id: str, name: str) -> Any:
            return client.call(_raw(f"/results/{job_id}/datasource/{name}"))

        return {
            "results": [
                client.call(job_results_body(j.id)) for j in (with_failure, text_job, running)
            ],
            "single": [
                single(with_failure.id, ok_input.name),
                single(with_failure.id, failed_input.name),
            ],
            "history": client.call(_raw("/jobs/history", {"page": "1", "per-page": "4"})),
            "job": client.call(_raw(f"/jobs/{with_failure.id}")),
            "models": client.call(_raw("/models")),
        }


BODIES = _sandbox_bodies()


# -- Strategies: arbitrary JSON, and near-valid mutations of real bodies --------------

# Keys the parsers look at (and Python/pydantic names that must stay plain data), so
# that arbitrary objects reach deep into the parsers rather than failing at the top.
KEYS = [
    *("jobIdentifier", "results", "failures", "finished", "total", "completed", "failed"),
    *("submittedAt", "elapsedTime", "invalid", "job_id", "input_name", "outputs"),
    *("status", "engine", "error", "voting", "up", "down", "startTime", "endTime"),
    *("updateTime", "modelLatency", "results.json", "results.wav", "data", "result"),
    *("classPredictions", "class", "label", "score", "confidence", "explanation", "drift"),
    *("predictions", "model", "identifier", "version", "name", "createdAt", "jobInputs"),
    *("user", "accessKeys", "prefix", "team", "modelId", "latestVersion", "versions"),
    *("job", "inputName", "__class__", "__dict__", "model_config", "model_fields", "top"),
]
ODD_STRINGS = [
    *("", " ", "\x00", "\t\n", "\u202e", "\ufeff", "\ud800", "\U0001f600", "\u0663"),
    *("nan", "NaN", "inf", "-Infinity", "1e400", "-1", "0.5", "true", "null", "0x10"),
    *("a" * 3000, "in/put 1", "..", "a.json", "SUCCESSFUL", "FAILED", "UP"),
]
ODD_TIMESTAMPS = [
    *("2021-07-20T01:40:11.187+0000", "2021-07-20T01:40:11.187+00:00", "2021-07-20"),
    *("2021-07-20T01:40:11.187Z", "2021-07-20T01:40:11.187z", "2021-07-20 01:40"),
    *("2021-07-20T01:40.5Z", "2021-07-20T24:00:00Z", "2021-02-30T00:00:00Z"),
    *("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0000-01-01T00:00Z"),
    *("2021-07-20T01:40:11+2400", "2021-07-20T01:40:11+99", "\u0662021-07-20T01:40:11Z"),
    *("2021-07-20T01:40:11.1234567890Z", "2021-07-20T01:40:11Z\n", "T01:40:11"),
    *(1626745211187, 1626745211.5, -1, 1e11, 1e15, 1e20, -1e20, 10**20, 10**400),
    *(math.inf, -math.inf, math.nan, True, False, 0, 0.0, -0.0),
]
BIG_INTS = [2**63, -(2**63) - 1, 2**64, 10**20, 10**400, -(10**400)]

keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.sampled_from(ODD_STRINGS))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(BIG_INTS),
    st.floats(),  # nan and both infinities included
    st.text(max_size=12),  # any code point but surrogates, control characters included
    st.sampled_from(ODD_STRINGS),
    st.sampled_from(ODD_TIMESTAMPS),
)
# st.recursive alone mostly draws containers; the scalars branch keeps bare values
# (a boolean score, a string vote) as likely as nested ones.
json_values = st.one_of(
    scalars,
    st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
        max_leaves=12,
    ),
)


def _objects(
    fields: dict[str, st.SearchStrategy[Any]],
    *,
    required: dict[str, st.SearchStrategy[Any]] | None = None,
    extra: int = 2,
) -> st.SearchStrategy[dict[str, Any]]:
    # The known keys (the optional ones maybe present), plus a few arbitrary ones.
    return st.builds(
        lambda known, other: {**other, **known},
        st.fixed_dictionaries(required or {}, optional=fields),
        st.dictionaries(keys, json_values, max_size=extra),
    )


def _mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Three times in four a plausible value, else anything: a body with every field
    # wrong fails at its first field, and the parser's deeper paths go untested.
    return st.integers(0, 3).flatmap(lambda i: json_values if i == 0 else valid)


counts = st.one_of(st.integers(0, 5), st.sampled_from(["3", "0", None]))
stamps = st.sampled_from(["2021-07-20T01:40:11.187+0000", "2021-07-20T01:40:11Z", 1626745211187])
scores = st.one_of(st.floats(0, 1), st.sampled_from(["0.93", "1", 0, 1]))
predictions_like = st.lists(
    _objects(
        {"row": json_values},
        required={
            "class": _mostly(st.one_of(st.text(max_size=6), st.integers(0, 9))),
            "score": _mostly(scores),
        },
        extra=1,
    ),
    min_size=1,
    max_size=4,
)
output_like = _mostly(
    _objects(
        {},
        required={
            "data": _objects(
                {
                    "classPredictions": predictions_like,
                    "explanation": json_values,
                    "drift": json_values,
                    "confidence": _mostly(scores),
                },
                required={
                    "result": _mostly(
                        st.one_of(
                            _objects({}, required={"classPredictions": predictions_like}, extra=1),
                            st.text(max_size=6),  # the legacy {"result": "six", ...}
                        )
                    )
                },
                extra=1,
            )
        },
        extra=1,
    )
)
input_like = _objects(
    {
        "status": _mostly(st.sampled_from(["SUCCESSFUL", "FAILED", "successful"])),
        "engine": _mostly(st.text(max_size=8)),
        "error": json_values,
        "startTime": _mostly(st.one_of(stamps, st.sampled_from(ODD_TIMESTAMPS))),
        "modelLatency": _mostly(counts),
        "results.json": output_like,
        "results.wav": _mostly(st.just("https://host/results.wav\n")),
        "voting": _mostly(_objects({"up": _mostly(counts), "down": _mostly(counts)}, extra=0)),
    },
    extra=1,
)
names = st.one_of(st.text(max_size=8), st.sampled_from(KEYS), st.sampled_from(ODD_STRINGS))
results_like = _objects(
    {
        "jobIdentifier": _mostly(st.just(JOB)),
        "finished": _mostly(st.booleans()),
        "total": _mostly(counts),
        "submittedAt": _mostly(st.one_of(stamps, st.sampled_from(ODD_TIMESTAMPS))),
        "results": _mostly(
            st.dictionaries(
                names, st.one_of(input_like, st.builds(lambda p, n: {n: p}, input_like, names))
            )
        ),
        "failures": _mostly(st.dictionaries(names, st.one_of(input_like, st.text(max_size=8)))),
    },
    extra=1,
)
job_like = _objects(
    {
        "status": _mostly(st.sampled_from(["COMPLETED", "completed", "IN_PROGRESS"])),
        "createdAt": _mostly(st.one_of(stamps, st.sampled_from(ODD_TIMESTAMPS))),
        "total": _mostly(counts),
        "jobInputs": _mostly(
            st.one_of(
                st.lists(_objects({"identifier": _mostly(st.text(max_size=6))}, extra=0)),
                _objects({"identifier": _mostly(st.lists(st.text(max_size=6)))}, extra=0),
            )
        ),
        "user": _mostly(
            _objects(
                {
                    "accessKeys": _mostly(
                        st.lists(_objects({}, required={"prefix": _mostly(st.text())}))
                    ),
                    "email": _mostly(st.text(max_size=8)),
                },
                extra=1,
            )
        ),
    },
    required={
        "jobIdentifier": _mostly(st.text(max_size=8)),
        "model": _mostly(
            _objects(
                {"version": _mostly(st.text(max_size=6))},
                required={"identifier": _mostly(st.text(max_size=6))},
                extra=1,
            )
        ),
    },
    extra=1,
)
model_like = _objects(
    {
        "latestVersion": _mostly(st.text(max_size=4)),
        "versions": _mostly(
            st.lists(
                st.one_of(
                    st.text(max_size=4),
                    _objects({}, required={"version": _mostly(st.text(max_size=4))}),
                )
            )
        ),
    },
    required={"modelId": _mostly(st.text(max_size=6))},
    extra=1,
)


def _replacements(value: Any) -> st.SearchStrategy[Any]:
    """What one value may become: another type, an edge value, or anything at all."""
    options: list[st.SearchStrategy[Any]] = [
        json_values,
        st.sampled_from([None, True, False, 0, -1, "", [], {}, math.nan, math.inf, -math.inf]),
        st.sampled_from(BIG_INTS),
        st.sampled_from(ODD_STRINGS),
        st.sampled_from(ODD_TIMESTAMPS),
        st.just([value]),
        st.just({"value": value}),
        st.just(str(value)[:100]),
    ]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        options += [st.just(-value - 1), st.just(str(value))]
        if abs(value) < 1e300:
            options.append(st.just(value + 0.5))
    if isinstance(value, str):
        options += [st.just(value * 40), st.just(value.upper()), st.just(value + "\x00")]
    if isinstance(value, dict):
        options += [st.just(list(value.values())), st.just(list(value.items()))]
    if isinstance(value, list):
        options += [st.just({str(i): v for i, v in enumerate(value)}), st.just(value[::-1])]
    return st.one_of(options)


def _mutate(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """One mutation somewhere in ``value`` (a copy: bodies are shared)."""
    # Never the whole body at once (the arbitrary-JSON tests do that): near-valid.
    descend = depth == 0 or (depth < 10 and draw(st.integers(0, 4)) > 0)
    if isinstance(value, dict) and value and descend:
        nested = [k for k, v in value.items() if isinstance(v, (dict, list)) and v]
        # Half the time into a container: a results body has a dozen envelope scalars
        # but the inputs, where most of the parsing is, sit under "results".
        into_nested = bool(nested) and draw(st.booleans())
        key = draw(st.sampled_from(nested if into_nested else list(value)))
        op = draw(st.sampled_from(["descend", "descend", "descend", "drop", "rename", "nest"]))
        new = dict(value)
        if op == "descend":
            new[key] = _mutate(draw, value[key], depth + 1)
        elif op == "drop":
            del new[key]
        elif op == "rename":
            new[draw(names)] = new.pop(key)
        else:  # the legacy double nesting, wherever it lands
            new[key] = {key: value[key]}
        return new
    if isinstance(value, list) and value and descend:
        index = draw(st.integers(0, len(value) - 1))
        op = draw(st.sampled_from(["descend", "descend", "drop", "duplicate"]))
        items = list(value)
        if op == "descend":
            items[index] = _mutate(draw, value[index], depth + 1)
        elif op == "drop":
            del items[index]
        else:
            items.insert(index, value[index])
        return items
    return draw(_replacements(value))


@st.composite
def near(draw: st.DrawFn, bases: list[Any]) -> Any:
    """A real body with one to four mutations."""
    value = draw(st.sampled_from(bases))
    for _ in range(draw(st.integers(1, 4))):
        value = _mutate(draw, value)
    return value


# -- What a parsed model must satisfy -------------------------------------------------


def _aware(value: datetime | None) -> None:
    if value is not None:
        assert value.tzinfo is not None
        value.astimezone(UTC)  # usable: in range once converted to UTC


_LONE_SURROGATE = re.compile(r"\\ud[89a-f][0-9a-f]{2}")


def _to_dict(model: ModzyModel) -> None:
    try:
        model.to_dict()
    except UnicodeEncodeError:
        # A known limit, outside the parser: a lone surrogate (decoded from a "\ud800"
        # escape) in an object key cannot be encoded by pydantic's JSON mode.
        assert _LONE_SURROGATE.search(repr(model.model_dump()))


def _same(a: BaseModel, b: BaseModel) -> None:
    # By repr of the plain dump: NaN compares equal to itself there, and lone
    # surrogates (valid in decoded JSON, not in UTF-8) need no encoding.
    assert repr(a.model_dump()) == repr(b.model_dump())


def _check_input(item: InputResult, name: str) -> None:
    assert (item.job_id, item.input_name) == (JOB, name)
    scores = [p.score for p in item.predictions]
    assert all(math.isfinite(s) for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert all(type(p.label) is str and type(p.score) is float for p in item.predictions)
    for count in (item.voting.up, item.voting.down):
        assert type(count) is int
        assert count >= 0
    for stamp in (item.start_time, item.update_time, item.end_time):
        _aware(stamp)
    repr(item)
    _to_dict(item)


def _check_failure(item: InputFailure, name: str) -> None:
    assert (item.job_id, item.input_name) == (JOB, name)
    assert item.error is None or isinstance(item.error, str)
    _aware(item.start_time)
    _aware(item.end_time)
    _to_dict(item)


def _check_job(job: Job) -> None:
    assert isinstance(job.job_id, str)
    assert isinstance(job.status, str)
    assert all(type(n) is str for n in job.input_names)
    for count in (job.total, job.pending, job.completed, job.failed):
        assert type(count) is int
    for stamp in (job.created_at, job.updated_at, job.submitted_at):
        _aware(stamp)
    repr(job)
    job_metadata(job)
    _to_dict(job)


def _check_result_error(err: ResultParseError, *, input_name: str | None) -> None:
    """The error names the job, and the input when one input is at fault."""
    assert err.job_id == JOB
    assert repr(JOB) in str(err)
    assert (err.method, err.path) == ("GET", PATH)
    assert err.errors
    assert all(isinstance(e, str) and e for e in err.errors)
    assert err.input_name == input_name
    if input_name is not None:
        assert repr(input_name) in str(err)


def _parse_results(data: Any, *, strict: bool) -> JobResults | ResultParseError:
    try:
        return parse_job_results(JOB, data, strict=strict, method="GET", path=PATH)
    except ResultParseError as err:
        return err


def _one_input(kind: str, name: str, payload: Any) -> InputResult | InputFailure:
    parse = parse_input_result if kind == "results" else parse_input_failure
    return parse(JOB, name, payload, method="GET", path=PATH)


def check_job_results(data: Any) -> None:
    """Both modes of ``parse_job_results`` keep the contract, and agree with each other."""
    strict = _parse_results(data, strict=True)
    lenient = _parse_results(data, strict=False)
    if isinstance(lenient, ResultParseError):
        # Only the envelope fails a lenient parse, and then a strict parse fails too.
        _check_result_error(lenient, input_name=None)
        assert isinstance(strict, ResultParseError)
        return
    raw = {kind: data[kind] for kind in ("results", "failures") if isinstance(data.get(kind), dict)}
    assert set(lenient.results) <= set(raw.get("results", {}))
    assert set(lenient.failures) <= set(raw.get("failures", {}))
    for reason in lenient.invalid.values():
        assert isinstance(reason, str)
        assert reason
    # Each input is judged on its own: the quarantined ones fail alone with a typed
    # error naming them, and the others parse alone exactly as they did together.
    for kind, entries in raw.items():
        parsed: dict[str, Any] = lenient.results if kind == "results" else lenient.failures
        for name, payload in entries.items():
            try:
                alone = _one_input(kind, name, payload)
            except ResultParseError as err:
                _check_result_error(err, input_name=name)
                assert name in lenient.invalid
                continue
            assert name in parsed
            _same(alone, parsed[name])
    for name, item in lenient.results.items():
        _check_input(item, name)
    for name, failure in lenient.failures.items():
        _check_failure(failure, name)
    _aware(lenient.submitted_at)
    repr(lenient)
    _to_dict(lenient)
    if lenient.invalid:
        # Strict mode refuses the job, naming one of the inputs that were set aside.
        assert isinstance(strict, ResultParseError)
        assert strict.input_name in lenient.invalid
        _check_result_error(strict, input_name=strict.input_name)
    else:
        assert isinstance(strict, JobResults)
        _same(strict, lenient)
    # The fetcher turns what parsed into records straight away: that must hold too.
    job = Job.model_validate({"jobIdentifier": JOB, "model": {"identifier": "m"}})
    records = records_from_results(job, lenient)
    assert [r.input_name for r in records] == list(lenient.results)


def check_input(parse: Callable[..., InputResult | InputFailure], name: str, payload: Any) -> None:
    item = _attempt(lambda: parse(JOB, name, payload, method="GET", path=PATH))
    if isinstance(item, ResponseValidationError):
        assert isinstance(item, ResultParseError)
        _check_result_error(item, input_name=name)
        return
    if isinstance(item, InputResult):
        _check_input(item, name)
    else:
        _check_failure(item, name)


def _attempt(parse: Callable[[], T]) -> T | ResponseValidationError:
    # The typed error is a result like any other; anything else propagates and fails.
    try:
        return parse()
    except ResponseValidationError as err:
        return err


def check_history(data: Any) -> None:
    jobs = _attempt(lambda: parse_history_page(data, method="GET", path="/jobs/history"))
    if isinstance(jobs, ResponseValidationError):
        assert (jobs.method, jobs.path) == ("GET", "/jobs/history")
        return
    for job in jobs:
        _check_job(job)


def check_job(data: Any) -> None:
    job = _attempt(lambda: parse_job(data, method="GET", path="/jobs/x"))
    if isinstance(job, ResponseValidationError):
        assert (job.method, job.path) == ("GET", "/jobs/x")
        job_id = data.get("jobIdentifier") if isinstance(data, dict) else None
        if isinstance(job_id, str) and job_id:
            assert repr(job_id) in str(job)
        return
    _check_job(job)


def check_models(data: Any) -> None:
    models = _attempt(lambda: parse_models(data, method="GET", path="/models"))
    if isinstance(models, ResponseValidationError):
        assert (models.method, models.path) == ("GET", "/models")
        return
    for model in models:
        assert isinstance(model, ModelSummary)
        assert isinstance(model.model_id, str)
        assert all(type(v) is str for v in model.versions)
        _to_dict(model)


# -- Arbitrary JSON -------------------------------------------------------------------


@props(300)
@given(st.one_of(json_values, results_like))
def test_job_results_from_arbitrary_json(data: Any) -> None:
    check_job_results(data)


@props(300)
@given(names, st.one_of(json_values, input_like))
def test_input_result_from_arbitrary_json(name: str, payload: Any) -> None:
    check_input(parse_input_result, name, payload)


@props(150)
@given(names, st.one_of(json_values, input_like))
def test_input_failure_from_arbitrary_json(name: str, payload: Any) -> None:
    check_input(parse_input_failure, name, payload)


@props(150)
@given(names, st.one_of(json_values, _objects({"result": output_like, "job": job_like})))
def test_single_result_from_arbitrary_json(name: str, data: Any) -> None:
    check_input(parse_single_result, name, data)


@props(200)
@given(st.one_of(json_values, job_like, st.lists(job_like, max_size=3)))
def test_history_and_jobs_from_arbitrary_json(data: Any) -> None:
    check_history(data)
    check_history({"data": data})
    check_job(data)


@props(100)
@given(st.one_of(json_values, st.lists(st.one_of(model_like, json_values), max_size=3)))
def test_models_from_arbitrary_json(data: Any) -> None:
    check_models(data)
    _attempt(lambda: parse_model(data, method="GET", path="/models/x"))


# -- Near-valid: real sandbox bodies, mutated -----------------------------------------


def test_the_sandbox_bodies_parse_as_they_are() -> None:
    # The mutations below start from bodies that are valid, and varied.
    for body in BODIES["results"]:
        parsed = parse_job_results(body["jobIdentifier"], body)
        assert parsed.results
        assert not parsed.invalid
    assert any(parse_job_results("j", b).failures for b in BODIES["results"])
    assert [parse_single_result("j", "a", b).status for b in BODIES["single"]] == [
        "SUCCESSFUL",
        "FAILED",
    ]
    assert len(parse_history_page(BODIES["history"])) == 4
    assert parse_job(BODIES["job"]).input_names
    assert parse_models(BODIES["models"])


@props(200)
@given(near(BODIES["results"]))
def test_job_results_near_valid(data: Any) -> None:
    check_job_results(data)


@props(120)
@given(st.data())
def test_one_bad_input_is_set_aside_and_the_rest_parses(data: st.DataObject) -> None:
    # One input of a valid body mutated: with strict=False every other input comes out
    # exactly as in the untouched body, and the mutated one parses or is quarantined.
    body = data.draw(st.sampled_from(BODIES["results"]))
    kind = data.draw(st.sampled_from(["results", "failures"]).filter(lambda k: body[k]))
    name = data.draw(st.sampled_from(sorted(body[kind])))
    bad = data.draw(near([body[kind][name]]))
    mutated = {**body, kind: {**body[kind], name: bad}}
    clean = parse_job_results(JOB, body)
    got = parse_job_results(JOB, mutated, strict=False, method="GET", path=PATH)
    for other in (*clean.results, *clean.failures):
        if other == name:
            continue
        before = clean.results.get(other) or clean.failures[other]
        after = got.results.get(other) or got.failures[other]
        _same(after, before)
    if name in got.invalid:
        assert got.invalid[name]
        with pytest.raises(ResultParseError) as info:
            parse_job_results(JOB, mutated, method="GET", path=PATH)
        _check_result_error(info.value, input_name=name)
    else:
        assert name in (got.results if kind == "results" else got.failures)
    check_job_results(mutated)


@props(120)
@given(names, near([body["results"][n] for body in BODIES["results"] for n in body["results"]]))
def test_input_result_near_valid(name: str, payload: Any) -> None:
    check_input(parse_input_result, name, payload)


@props(60)
@given(names, near(BODIES["single"]))
def test_single_result_near_valid(name: str, data: Any) -> None:
    check_input(parse_single_result, name, data)


@props(100)
@given(near([BODIES["history"], BODIES["job"]]))
def test_history_and_jobs_near_valid(data: Any) -> None:
    check_history(data)
    check_job(data)


@props(50)
@given(near([BODIES["models"]]))
def test_models_near_valid(data: Any) -> None:
    check_models(data)


@props(100)
@given(st.data())
def test_input_names_do_not_change_how_a_payload_parses(data: st.DataObject) -> None:
    # Any name, including one that collides with a key of the payload ("voting",
    # "results.json"...), gives the payload the same meaning; and the legacy double
    # nesting results[name][name] means the same as the payload itself.
    body = data.draw(st.sampled_from(BODIES["results"]))
    payload = body["results"][data.draw(st.sampled_from(sorted(body["results"])))]
    if data.draw(st.booleans()):
        payload = {k: v for k, v in payload.items() if k != "status"}
    name = data.draw(names)
    reference = parse_input_result(JOB, "neutral name", payload).model_dump(exclude={"input_name"})
    for form in (payload, {name: payload}):
        item = parse_input_result(JOB, name, form)
        assert item.input_name == name
        assert item.model_dump(exclude={"input_name"}) == reference


def _numeric(value: object) -> bool:
    # What a score or a count may be: a number, or text that reads as one.
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


@props(100)
@given(st.data())
def test_a_score_or_vote_that_is_not_a_number_is_refused(data: st.DataObject) -> None:
    # Booleans included: pydantic's lax mode would read true as 1.
    body = data.draw(st.sampled_from(BODIES["results"]))
    name = data.draw(st.sampled_from(sorted(body["results"])))
    payload = copy.deepcopy(body["results"][name])
    field = data.draw(st.sampled_from(["score", "up", "down"]))
    value = data.draw(json_values.filter(lambda v: not _numeric(v)))
    if field == "score":
        predictions = payload["results.json"]["data"]["result"]["classPredictions"]
        index = data.draw(st.integers(0, len(predictions) - 1))
        predictions[index]["score"] = value
        where = f"predictions.{index}.score"
    else:
        assume(value is not None)  # a null count means none
        payload["voting"][field] = value
        where = f"voting.{field}"
    mutated = {**body, "results": {**body["results"], name: payload}}
    with pytest.raises(ResultParseError) as info:
        parse_job_results(JOB, mutated, method="GET", path=PATH)
    _check_result_error(info.value, input_name=name)
    assert any(e.startswith(where) for e in info.value.errors), info.value.errors
    assert name in parse_job_results(JOB, mutated, strict=False).invalid


# -- Timestamps -----------------------------------------------------------------------

iso_like = st.from_regex(
    r"\A\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}([.,]\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?\Z"
)
timestamp_inputs = st.one_of(
    json_values,
    st.sampled_from(ODD_TIMESTAMPS),
    iso_like,
    iso_like.map(lambda s: f"  {s}\n"),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
)


def _parse_both_ways(value: object) -> tuple[object, object]:
    """The fast path (Python >= 3.11) and the portable one: a datetime or an exception."""
    out: list[object] = []
    for fast in (True, False):
        with mock.patch.object(time_module, "_FROMISOFORMAT_READS_ALL", fast):
            try:
                out.append(parse_timestamp(value))
            except ValueError as exc:
                out.append(exc)
    return out[0], out[1]


@props(250)
@given(timestamp_inputs)
def test_timestamps_parse_to_aware_datetimes_or_raise_value_error(value: object) -> None:
    fast, portable = _parse_both_ways(value)
    for parsed in (fast, portable):
        assert parsed is None or isinstance(parsed, (datetime, ValueError))
        if isinstance(parsed, datetime):
            _aware(parsed)
    # Both paths give the same answer, to the offset.
    if isinstance(fast, ValueError) or isinstance(portable, ValueError):
        assert type(fast) is type(portable), (fast, portable)
    else:
        assert fast == portable
        if isinstance(fast, datetime) and isinstance(portable, datetime):
            assert fast.utcoffset() == portable.utcoffset()


@props(100)
@given(
    # From 1974: epoch milliseconds before 1973-03-03 are below 1e11, read as seconds.
    st.datetimes(min_value=datetime(1974, 1, 1), max_value=datetime(2999, 12, 31)),
    st.sampled_from([0, 60, -300, 330, 5 * 60 + 45, -12 * 60, 14 * 60]),
)
def test_timestamps_round_trip_in_every_form_the_api_writes(when: datetime, minutes: int) -> None:
    offset = timezone(timedelta(minutes=minutes))
    dt = when.replace(microsecond=when.microsecond // 1000 * 1000, tzinfo=offset)
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}"
    forms: list[object] = [f"{base}{sign}{hh:02d}{mm:02d}", f"{base}{sign}{hh:02d}:{mm:02d}"]
    utc = dt.astimezone(UTC)
    utc_base = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}"
    epoch_ms = (utc - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    forms += [f"{utc_base}Z", f"{utc_base}z", utc_base, epoch_ms]
    for form in forms:
        fast, portable = _parse_both_ways(form)
        assert fast == portable == dt, form


@props(80)
@given(st.sampled_from(["startTime", "endTime", "updateTime"]), timestamp_inputs)
def test_bad_timestamps_in_a_result_are_typed_errors(field: str, value: object) -> None:
    payload = {"status": "SUCCESSFUL", field: value}
    check_input(parse_input_result, "in", payload)
    check_job({"jobIdentifier": "a", "model": {"identifier": "m"}, "createdAt": value})


# -- Bytes: bodies the client may fail to decode ---------------------------------------
#
# Everything above starts from decoded JSON. A body is bytes first: nested deeper than
# any recursive walk takes, an integer literal Python will not convert (more than 4,300
# digits), bytes that are not UTF-8, text cut short, garbage. Through the client, each
# must still be the typed model or the typed error.


def _nest(depth: int, inner: bytes, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + inner + b"]" * depth
    return b'{"a":' * depth + inner + b"}" * depth


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


real_bodies = st.sampled_from(
    [*BODIES["results"], *BODIES["single"], BODIES["history"], BODIES["job"], BODIES["models"]]
).map(_json_bytes)


@st.composite
def hostile_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["deep", "deep-in-body", "huge-int", "bad-utf8", "cut", "junk"]))
    if kind == "deep":
        depth = draw(st.integers(40, 3000))
        return _nest(
            depth,
            draw(st.sampled_from([b"1", b'"]]]"', b"[]", b"{}"])),
            draw(st.sampled_from(["list", "object"])),
        )
    body = draw(real_bodies)
    if kind == "deep-in-body":
        # A model's explanation nested past the limit, inside a real body.
        at = body.index(b"{") + 1
        nested = _nest(draw(st.integers(50, 2000)), b"0", draw(st.sampled_from(["list", "object"])))
        return body[:at] + b'"explanation": ' + nested + b"," + body[at:]
    if kind == "huge-int":
        digits = draw(st.integers(4000, 9000))
        at = body.index(b"{") + 1
        return body[:at] + b'"total": ' + b"7" * digits + b"," + body[at:]
    if kind == "bad-utf8":
        at = draw(st.integers(0, len(body)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]))
        return body[:at] + junk + body[at:]
    if kind == "cut":
        return body[: draw(st.integers(0, max(0, len(body) - 1)))]
    return draw(st.binary(max_size=64))


class _Served:
    """One client whose every answer is ``body`` (set per example)."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.client = ModzyClient(
            api_key="AbCdEfGhIj0123456789.ZyXwVuTsRq9876543210",
            base_url="https://modzy.invalid",
            transport=httpx.MockTransport(
                lambda request: httpx.Response(self.status, content=self.body)
            ),
            retry=RetryPolicy.disabled(),
        )


SERVED = _Served()


def _through_client(body: bytes, status: int = 200) -> None:
    SERVED.body, SERVED.status = body, status
    client = SERVED.client
    for strict in (True, False):
        got = _attempt(lambda strict=strict: client.results.retrieve(JOB, strict=strict))
        if isinstance(got, ResponseValidationError):
            assert isinstance(got, ResultParseError)
            assert got.job_id == JOB
            assert got.errors
            assert repr(JOB) in str(got)
    single = _attempt(lambda: client.results.retrieve_input(JOB, "in"))
    if isinstance(single, ResponseValidationError):
        assert isinstance(single, ResultParseError)
        assert single.job_id == JOB
    for call in (
        lambda: list(client.jobs.history().page(1)),
        lambda: client.jobs.history(strict=False).page(1),
        lambda: client.jobs.retrieve("x"),
        client.models.list,
    ):
        outcome = _attempt(call)
        if isinstance(outcome, ResponseValidationError):
            assert not isinstance(outcome, ResultParseError)


@props(150)
@given(hostile_bytes())
def test_hostile_bytes_through_the_client_are_typed(body: bytes) -> None:
    _through_client(body)


@props(60)
@given(st.one_of(hostile_bytes(), real_bodies))
def test_hostile_error_bodies_keep_their_status(body: bytes) -> None:
    SERVED.body, SERVED.status = body, 500
    with pytest.raises(InternalServerError) as info:
        SERVED.client.models.list()
    assert info.value.status_code == 500


@props(100)
@given(json_values.map(_json_bytes), st.integers(0, 12))
def test_arbitrary_json_text_through_the_client_is_typed(body: bytes, depth: int) -> None:
    # Valid JSON, wrapped a few levels deep (well within the limit): decodes, then
    # parses or is refused exactly as the decoded value would be.
    _through_client(_nest(depth, body, "list") if depth else body)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


bracket_text = st.text(alphabet='[]{}"\\ab', max_size=6)
nested_values = st.recursive(
    st.one_of(st.integers(), bracket_text, st.none()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(bracket_text, inner, max_size=3),
    max_leaves=40,
)


@props(300)
@given(nested_values, st.integers(0, 8))
@example("[", 0)  # a bracket in a string, at limit 0 (found by this test)
def test_the_depth_check_agrees_with_the_decoded_depth(value: Any, limit: int) -> None:
    # Strings full of brackets, quotes and backslashes are text, not nesting.
    for text in (
        json.dumps(value),
        json.dumps(value, indent=1),
        json.dumps(value, ensure_ascii=False),
    ):
        assert nested_deeper_than(text.encode(), limit) == (_depth(value) > limit)
