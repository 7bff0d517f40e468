"""Turn decoded API JSON into typed models, or into this library's typed errors.

These are pure functions shared by the sync and async clients. Parsing a job's results
is where the real API was loosest, so it gets the most care: each input is parsed on
its own, and a failure names the job and the input it came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modzy_retrain._core.exceptions import ResponseValidationError, ResultParseError

from .models import InputFailure, InputResult, Job, JobResults, ModelSummary

# Per-input keys that are metadata, never output files, even if a future API version
# gives one a dot in its name.
_OUTPUT_KEY_EXCLUDE = frozenset({"voting", "status", "error", "engine"})
# The metadata keys of one input's result (both API generations): an object holding
# one of these, or an output file, is an input's result.
_INPUT_KEYS = frozenset(
    {
        *_OUTPUT_KEY_EXCLUDE,
        *("inputFetching", "outputUploading", "modelLatency", "queueTime", "elapsedTime"),
        *("startTime", "updateTime", "endTime"),
    }
)


def _describe(exc: ValidationError, *, prefix: str = "") -> tuple[str, ...]:
    # Field paths and messages only: input values could be large, and nothing in a
    # result body is ours to echo.
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in err["loc"])
        out.append(f"{prefix}{loc}: {err['msg']}" if loc or prefix else err["msg"])
    return tuple(out)


def _parse_error(
    job_id: str, input_name: str | None, errors: tuple[str, ...], *, method: str, path: str
) -> ResultParseError:
    # ``is not None``: an empty input name is still an input to name.
    where = (
        f"input {input_name!r} of job {job_id!r}" if input_name is not None else f"job {job_id!r}"
    )
    detail = "; ".join(errors[:5]) + (f" (+{len(errors) - 5} more)" if len(errors) > 5 else "")
    return ResultParseError(
        f"could not parse the result of {where}: {detail}",
        job_id=job_id,
        input_name=input_name,
        errors=errors,
        method=method,
        path=path,
    )


def undecodable_result(
    job_id: str, input_name: str | None, reason: str, *, method: str, path: str
) -> ResultParseError:
    """The error for a results body that is not JSON at all (``reason``: what it is)."""
    return _parse_error(job_id, input_name, (f"the body {reason}",), method=method, path=path)


def _not_an_object(
    job_id: str, input_name: str | None, value: object, method: str, path: str
) -> ResultParseError:
    return _parse_error(
        job_id,
        input_name,
        (f"expected an object, got {type(value).__name__}",),
        method=method,
        path=path,
    )


def _is_output_key(key: str) -> bool:
    # The Java SDK's rule: a key containing a dot names an output file (results.json,
    # results.wav...). Everything else is per-input metadata.
    return "." in key and key not in _OUTPUT_KEY_EXCLUDE


def _holds_input_keys(keys: Iterable[object]) -> bool:
    return any(isinstance(k, str) and (k in _INPUT_KEYS or _is_output_key(k)) for k in keys)


def _unnested(payload: Mapping[Any, Any], input_name: str) -> Mapping[Any, Any]:
    """Undo the legacy double nesting ``results[name][name]``.

    Only when the inner object is an input's result and nothing else in the payload
    is: input names are the user's, so an input may well be named like one of its own
    keys (``voting``, ``status``, ``results.json``), and its payload must then still
    mean what it says.
    """
    inner = payload.get(input_name)
    if not isinstance(inner, Mapping) or not _holds_input_keys(inner):
        return payload
    if _holds_input_keys(k for k in payload if k != input_name):
        return payload
    return inner


def _predictions(output: object) -> tuple[list[Any], Any, Any]:
    """Extract (raw predictions, explanation, drift) from a primary output.

    The predictions are validated (and sorted) with the rest of the input, in one
    pydantic call: see ``InputResult.predictions``.

    Raises:
        ValueError: The output claims to be a classification and isn't.
    """
    if not isinstance(output, Mapping):
        # A JSON array of strings, a bare string...: kept in ``outputs``, no predictions.
        return [], None, None
    data = output.get("data", output)
    if not isinstance(data, Mapping):
        return [], None, None
    explanation = data.get("explanation")
    drift = data.get("drift")
    result = data.get("result")
    raw: object
    if isinstance(result, Mapping) and "classPredictions" in result:
        raw = result["classPredictions"]
    elif "classPredictions" in data:
        raw = data["classPredictions"]
    elif isinstance(result, (str, int)) and not isinstance(result, bool):
        # Legacy, non-envelope classification: {"result": "six", "confidence": "3.2"}.
        confidence = data.get("confidence", data.get("score"))
        raw = [{"class": result, "score": confidence}] if confidence is not None else []
    else:
        return [], explanation, drift
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ValueError("classPredictions must be a list")
    return raw, explanation, drift


def parse_input_result(
    job_id: str, input_name: str, payload: object, *, method: str = "", path: str = ""
) -> InputResult:
    """Parse one entry of a job's ``results`` map."""
    if not isinstance(payload, Mapping):
        raise _not_an_object(job_id, input_name, payload, method, path)
    payload = _unnested(payload, input_name)
    fields: dict[str, Any] = {"job_id": job_id, "input_name": input_name}
    outputs: dict[str, Any] = {}
    for key, value in payload.items():
        if not isinstance(key, str):
            continue
        if _is_output_key(key):
            outputs[key] = value
        elif key not in ("job_id", "input_name", "outputs", "predictions"):
            fields[key] = value
    fields["outputs"] = outputs
    try:
        primary = outputs.get("results.json")
        if primary is None:
            primary = next((v for v in outputs.values() if not isinstance(v, str)), None)
        preds, explanation, drift = _predictions(primary)
        fields["predictions"] = preds
        fields["explanation"] = explanation
        fields["drift"] = drift
        return InputResult.model_validate(fields)
    except ValidationError as exc:
        raise _parse_error(job_id, input_name, _describe(exc), method=method, path=path) from None
    except (ValueError, TypeError) as exc:
        raise _parse_error(job_id, input_name, (str(exc),), method=method, path=path) from None


def parse_input_failure(
    job_id: str, input_name: str, payload: object, *, method: str = "", path: str = ""
) -> InputFailure:
    """Parse one entry of a job's ``failures`` map."""
    if isinstance(payload, str):
        # Some generations give just the error text.
        payload = {"error": payload}
    if not isinstance(payload, Mapping):
        raise _not_an_object(job_id, input_name, payload, method, path)
    payload = _unnested(payload, input_name)
    fields = {k: v for k, v in payload.items() if isinstance(k, str) and not _is_output_key(k)}
    fields.update(job_id=job_id, input_name=input_name)
    try:
        if fields.get("error") is not None and not isinstance(fields["error"], str):
            # Inside the try: str() itself refuses an int of more than 4300 digits.
            fields["error"] = str(fields["error"])
        return InputFailure.model_validate(fields)
    except ValidationError as exc:
        raise _parse_error(job_id, input_name, _describe(exc), method=method, path=path) from None
    except ValueError as exc:
        raise _parse_error(job_id, input_name, (str(exc),), method=method, path=path) from None


def parse_job_results(
    job_id: str, data: object, *, method: str = "", path: str = "", strict: bool = True
) -> JobResults:
    """Parse ``GET /results/{job_id}`` into :class:`JobResults`.

    With ``strict=False`` an input whose result cannot be parsed is set aside in
    ``JobResults.invalid`` (input name -> reason) instead of failing the whole job;
    an unparseable envelope still raises.
    """
    if not isinstance(data, Mapping):
        raise _not_an_object(job_id, None, data, method, path)
    results_raw = data.get("results") or {}
    failures_raw = data.get("failures") or {}
    if not isinstance(results_raw, Mapping) or not isinstance(failures_raw, Mapping):
        raise _parse_error(
            job_id,
            None,
            ("results and failures must be objects keyed by input name",),
            method=method,
            path=path,
        )
    identifier = data.get("jobIdentifier")
    if identifier is not None and not isinstance(identifier, str):
        # Not str()-ed into an identifier: [1] would have become the job "[1]".
        raise _parse_error(
            job_id,
            None,
            (f"jobIdentifier: expected a string, got {type(identifier).__name__}",),
            method=method,
            path=path,
        )
    results: dict[str, InputResult] = {}
    failures: dict[str, InputFailure] = {}
    invalid: dict[str, str] = {}
    for name, payload in results_raw.items():
        try:
            results[str(name)] = parse_input_result(
                job_id, str(name), payload, method=method, path=path
            )
        except ResultParseError as exc:
            if strict:
                raise
            invalid[str(name)] = "; ".join(exc.errors) or str(exc)
    for name, payload in failures_raw.items():
        try:
            failures[str(name)] = parse_input_failure(
                job_id, str(name), payload, method=method, path=path
            )
        except ResultParseError as exc:
            if strict:
                raise
            invalid[str(name)] = "; ".join(exc.errors) or str(exc)
    envelope: dict[str, Any] = {
        k: v for k, v in data.items() if k not in ("results", "failures", "jobIdentifier")
    }
    # Already-parsed inputs pass through pydantic as they are (it does not revalidate
    # instances), so per-input errors keep naming their input.
    envelope.update(
        job_id=identifier or job_id,
        results=results,
        failures=failures,
        invalid=invalid,
    )
    try:
        return JobResults.model_validate(envelope)
    except ValidationError as exc:
        raise _parse_error(job_id, None, _describe(exc), method=method, path=path) from None


def parse_single_result(
    job_id: str, input_name: str, data: object, *, method: str = "", path: str = ""
) -> InputResult:
    """Parse the single-input route (``GET /results/{job}/datasource/{input}``).

    Its shape (from the Edge API) puts the outputs under ``result`` and the job summary
    under ``job``; we return the same :class:`InputResult` as the per-job route.
    """
    if not isinstance(data, Mapping):
        raise _not_an_object(job_id, input_name, data, method, path)
    payload: dict[str, Any] = {
        k: v for k, v in data.items() if k not in ("job", "result", "inputName")
    }
    result = data.get("result")
    if isinstance(result, Mapping) and any(_is_output_key(str(k)) for k in result):
        payload.update({str(k): v for k, v in result.items()})
    elif result is not None:
        payload["results.json"] = result
    payload.setdefault("status", "SUCCESSFUL")
    return parse_input_result(job_id, input_name, payload, method=method, path=path)


def parse_job(data: object, *, method: str = "", path: str = "") -> Job:
    """Parse one job object (history item or job details)."""
    try:
        return Job.model_validate(data)
    except ValidationError as exc:
        job_id = data.get("jobIdentifier") if isinstance(data, Mapping) else None
        what = f"job {job_id!r}" if isinstance(job_id, str) and job_id else "a job object"
        raise ResponseValidationError(
            f"could not parse {what} from {method} {path}: " + "; ".join(_describe(exc)[:5]),
            method=method,
            path=path,
        ) from None


@dataclass(frozen=True)
class InvalidJob:
    """A history item that could not be parsed, set aside by a lenient pager.

    Attributes:
        index: Its position on the page (0-based).
        job_id: Its ``jobIdentifier`` when that much was readable, else ``None``.
        reason: What was wrong (field paths and problems).
        inputs: Its input count when readable (``total``), else 0.
    """

    index: int
    job_id: str | None
    reason: str
    inputs: int = 0


def parse_history_items(
    data: object, *, method: str = "", path: str = "", strict: bool = True
) -> tuple[list[Job], list[InvalidJob]]:
    """Parse a history page into its jobs and, with ``strict=False``, the items set aside.

    A bare JSON array (or the legacy ``{"data": [...]}``). With ``strict=True`` the first
    unparseable item raises; otherwise it is returned in the second list with its reason
    and the rest of the page still parses. A page that is not an array always raises.
    """
    if isinstance(data, Mapping) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ResponseValidationError(
            f"expected a JSON array of jobs from {method} {path}, got {type(data).__name__}",
            method=method,
            path=path,
        )
    jobs: list[Job] = []
    invalid: list[InvalidJob] = []
    for index, item in enumerate(data):
        try:
            jobs.append(parse_job(item, method=method, path=path))
        except ResponseValidationError as exc:
            if strict:
                raise
            job_id = item.get("jobIdentifier") if isinstance(item, Mapping) else None
            total = item.get("total") if isinstance(item, Mapping) else None
            inputs = total if type(total) is int and total > 0 else 0
            invalid.append(
                InvalidJob(index, job_id if isinstance(job_id, str) else None, str(exc), inputs)
            )
    return jobs, invalid


def parse_history_page(data: object, *, method: str = "", path: str = "") -> list[Job]:
    """Parse a history page strictly: every item must be a job."""
    return parse_history_items(data, method=method, path=path)[0]


def parse_models(data: object, *, method: str = "", path: str = "") -> list[ModelSummary]:
    """Parse ``GET /models``."""
    if not isinstance(data, list):
        raise ResponseValidationError(
            f"expected a JSON array of models from {method} {path}", method=method, path=path
        )
    return [parse_model(item, method=method, path=path) for item in data]


def parse_model(data: object, *, method: str = "", path: str = "") -> ModelSummary:
    try:
        return ModelSummary.model_validate(data)
    except ValidationError as exc:
        raise ResponseValidationError(
            f"could not parse a model from {method} {path}: " + "; ".join(_describe(exc)[:5]),
            method=method,
            path=path,
        ) from None
