"""Each API call as a pure description: method, path, query and how to parse the body.

The sync and async clients execute these the same way; only their I/O loop differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from modzy_retrain._core.exceptions import InvalidQueryError, ResponseValidationError

from . import parsing
from .models import (
    InputResult,
    Job,
    JobResults,
    ModelSummary,
    ModelVersion,
    VoteValue,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the parser for its (decoded JSON, or raw bytes) body.

    ``undecodable`` makes the typed error for a body that is not JSON (given the
    reason); by default a :class:`ResponseValidationError`.
    """

    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, str] | None = None
    raw: bool = False
    undecodable: Callable[[str], ResponseValidationError] | None = None


def segment(name: str, value: str) -> str:
    """Percent-encode one path segment (input names are user-defined: any UTF-8 text)."""
    if not isinstance(value, str) or value == "":
        raise InvalidQueryError(f"{name} must be a non-empty string")
    return quote(value, safe="")


def job_details(job_id: str) -> Call[Job]:
    path = f"/jobs/{segment('job_id', job_id)}"
    return Call("GET", path, lambda data: parsing.parse_job(data, method="GET", path=path))


def history_page(
    params: dict[str, str], page: int, *, strict: bool = True
) -> Call[tuple[list[Job], list[parsing.InvalidJob]]]:
    path = "/jobs/history"
    return Call(
        "GET",
        path,
        lambda data: parsing.parse_history_items(data, method="GET", path=path, strict=strict),
        params={**params, "page": str(page)},
    )


def _undecodable_result(
    job_id: str, input_name: str | None, path: str
) -> Callable[[str], ResponseValidationError]:
    # A results body that is not JSON is that job's unparseable result: the fetcher
    # quarantines it like any other, rather than take it for an outage.
    return lambda reason: parsing.undecodable_result(
        job_id, input_name, reason, method="GET", path=path
    )


def job_results(job_id: str, *, strict: bool = True) -> Call[JobResults]:
    path = f"/results/{segment('job_id', job_id)}"
    return Call(
        "GET",
        path,
        lambda data: parsing.parse_job_results(
            job_id, data, method="GET", path=path, strict=strict
        ),
        undecodable=_undecodable_result(job_id, None, path),
    )


def job_results_body(job_id: str) -> Call[Any]:
    """The results of a job as decoded JSON (to journal before parsing)."""
    path = f"/results/{segment('job_id', job_id)}"
    return Call("GET", path, lambda data: data, undecodable=_undecodable_result(job_id, None, path))


def input_result(job_id: str, input_name: str) -> Call[InputResult]:
    path = f"/results/{segment('job_id', job_id)}/datasource/{segment('input_name', input_name)}"
    return Call(
        "GET",
        path,
        lambda data: parsing.parse_single_result(job_id, input_name, data, method="GET", path=path),
        undecodable=_undecodable_result(job_id, input_name, path),
    )


def output_file(job_id: str, input_name: str, output_name: str) -> Call[bytes]:
    path = (
        f"/results/{segment('job_id', job_id)}/datasource/{segment('input_name', input_name)}"
        f"/output/{segment('output_name', output_name)}"
    )
    return Call("GET", path, lambda data: bytes(data), raw=True)


def _ignore(_data: Any) -> None:
    return None


def vote(job_id: str, input_name: str, direction: str) -> Call[None]:
    path = f"/results/{segment('job_id', job_id)}/{direction}/{segment('input_name', input_name)}"
    return Call("POST", path, _ignore)


def reset_vote(job_id: str, input_name: str) -> Call[None]:
    path = f"/results/{segment('job_id', job_id)}/vote/{segment('input_name', input_name)}"
    return Call("DELETE", path, _ignore)


def _parse_vote(data: Any, path: str) -> VoteValue:
    value = data.get("vote") if isinstance(data, dict) else None
    if value in (None, "", 0, "0"):
        return "NO_VOTES"
    # The Edge enum may arrive by number: NO_VOTES=0, UP=1, DOWN=2.
    value = {1: "UP", 2: "DOWN", "1": "UP", "2": "DOWN"}.get(value, value)
    if isinstance(value, str) and value.upper() in ("NO_VOTES", "UP", "DOWN"):
        upper: VoteValue = value.upper()  # type: ignore[assignment]
        return upper
    raise ResponseValidationError(f"unexpected vote value from GET {path}", method="GET", path=path)


def get_vote(job_id: str, input_name: str) -> Call[VoteValue]:
    path = f"/results/{segment('job_id', job_id)}/vote/{segment('input_name', input_name)}"
    return Call("GET", path, lambda data: _parse_vote(data, path))


def models_list() -> Call[list[ModelSummary]]:
    path = "/models"
    return Call("GET", path, lambda data: parsing.parse_models(data, method="GET", path=path))


def model_details(model_id: str) -> Call[ModelSummary]:
    path = f"/models/{segment('model_id', model_id)}"
    return Call("GET", path, lambda data: parsing.parse_model(data, method="GET", path=path))


def _parse_versions(data: Any, path: str) -> list[ModelVersion]:
    if not isinstance(data, list):
        raise ResponseValidationError(
            f"expected a JSON array of versions from GET {path}", method="GET", path=path
        )
    try:
        return [
            ModelVersion.model_validate(v if isinstance(v, dict) else {"version": v}) for v in data
        ]
    except ValueError as exc:
        raise ResponseValidationError(
            f"could not parse the versions from GET {path}: {exc.__class__.__name__}",
            method="GET",
            path=path,
        ) from None


def model_versions(model_id: str) -> Call[list[ModelVersion]]:
    path = f"/models/{segment('model_id', model_id)}/versions"
    return Call("GET", path, lambda data: _parse_versions(data, path))
