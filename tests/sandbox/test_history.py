"""GET /jobs/history: paging, sorting, date windows and filters, edges included."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from modzy_retrain.sandbox import Sandbox

UTC = timezone.utc


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list)  # a bare array, no envelope
    return [job["jobIdentifier"] for job in body]


def _all(http: httpx.Client, **params: Any) -> list[str]:
    return _ids(http.get("/jobs/history", params={"per-page": 10000, **params}))


def _by_created(sb: Sandbox) -> list[str]:
    return [j.id for j in sorted(sb.jobs, key=lambda j: (j.created_at, j.id))]


def _bad(response: httpx.Response, fragment: str) -> None:
    assert response.status_code == 400
    assert fragment.lower() in response.json()["message"].lower()


# -- paging ------------------------------------------------------------------------


def test_defaults_first_page_of_ten_oldest_first(http: httpx.Client, shared_sb: Sandbox) -> None:
    assert _ids(http.get("/jobs/history")) == _by_created(shared_sb)[:10]


def test_pages_cover_everything_once(http: httpx.Client, shared_sb: Sandbox) -> None:
    seen: list[str] = []
    page = 1
    while True:
        chunk = _ids(http.get("/jobs/history", params={"page": page, "per-page": 33}))
        seen += chunk
        if len(chunk) < 33:
            break
        page += 1
    assert seen == _by_created(shared_sb)


def test_exact_multiple_of_page_size(make_sb: Any, client_of: Any) -> None:
    sb = make_sb(seed=2, jobs=30)
    with client_of(sb) as http:
        pages = [
            http.get("/jobs/history", params={"page": p, "per-page": 10}) for p in (1, 2, 3, 4)
        ]
    assert [len(p.json()) for p in pages] == [10, 10, 10, 0]
    assert "link" in pages[0].headers
    assert "link" in pages[1].headers
    assert "link" not in pages[2].headers  # a full last page: no next
    assert pages[3].json() == []


def test_beyond_last_page_is_empty(http: httpx.Client) -> None:
    assert _ids(http.get("/jobs/history", params={"page": 999})) == []


def test_empty_history(make_sb: Any, client_of: Any) -> None:
    with client_of(make_sb(jobs=0)) as http:
        response = http.get("/jobs/history")
        assert response.json() == []
        assert "link" not in response.headers


def test_link_header_points_to_next_page(http: httpx.Client) -> None:
    response = http.get("/jobs/history", params={"per-page": 5, "status": "all", "page": 2})
    link = response.headers["link"]
    assert link.endswith('; rel="next"')
    url = link[1 : link.index(">")]
    assert "page=3" in url
    assert "page=2" not in url
    assert "status=all" in url
    following = http.get(url)
    assert _ids(following) == _ids(http.get("/jobs/history", params={"per-page": 5, "page": 3}))


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"page": 0}, "numbered from 1"),
        ({"page": -1}, "numbered from 1"),
        ({"page": "two"}, "integer"),
        ({"per-page": 0}, "at least 1"),
        ({"per-page": 10001}, "at most 10000"),
        ({"per-page": "1.5"}, "integer"),
        ({"perPage": 100}, "per-page"),
        ({"sortBy": "status"}, "sort-by"),
    ],
)
def test_paging_validation(http: httpx.Client, params: dict[str, Any], fragment: str) -> None:
    _bad(http.get("/jobs/history", params=params), fragment)


def test_per_page_limit_is_accepted(http: httpx.Client, shared_sb: Sandbox) -> None:
    assert len(_ids(http.get("/jobs/history", params={"per-page": 10000}))) == len(shared_sb.jobs)


# -- sorting -----------------------------------------------------------------------


def test_desc_reverses(http: httpx.Client, shared_sb: Sandbox) -> None:
    assert _all(http, direction="DESC") == _by_created(shared_sb)[::-1]
    assert _all(http, direction="desc") == _by_created(shared_sb)[::-1]
    assert _all(http, direction="asc") == _by_created(shared_sb)


@pytest.mark.parametrize(
    ("key", "attr"),
    [
        ("identifier", lambda j: j.id),
        ("status", lambda j: j.status),
        ("updatedAt", lambda j: j.updated_at),
        ("submittedAt", lambda j: j.submitted_at),
        ("submittedBy", lambda j: j.user.key_prefix),
        ("total", lambda j: j.total),
        ("completed", lambda j: j.completed),
        ("fail", lambda j: j.failed),
        ("model", lambda j: (j.model.name, j.version)),
    ],
)
def test_sort_keys_with_stable_ties(
    http: httpx.Client, shared_sb: Sandbox, key: str, attr: Any
) -> None:
    expected = [j.id for j in sorted(shared_sb.jobs, key=lambda j: (attr(j), j.id))]
    assert _all(http, **{"sort-by": key}) == expected


def test_multi_key_sort(http: httpx.Client, shared_sb: Sandbox) -> None:
    expected = [j.id for j in sorted(shared_sb.jobs, key=lambda j: (j.status, j.created_at, j.id))]
    assert _all(http, **{"sort-by": "status,createdAt"}) == expected


def test_submitted_jobs_sort(http: httpx.Client, shared_sb: Sandbox) -> None:
    ids = _all(http, **{"sort-by": "submittedJobs"})
    assert sorted(ids) == sorted(j.id for j in shared_sb.jobs)


def test_ties_keep_pages_disjoint(http: httpx.Client, shared_sb: Sandbox) -> None:
    # Sorting on a key with many ties must still page deterministically.
    pages = [
        _ids(http.get("/jobs/history", params={"sort-by": "total", "per-page": 7, "page": p}))
        for p in range(1, 40)
    ]
    flat = [i for page in pages for i in page]
    assert len(flat) == len(set(flat)) == len(shared_sb.jobs)


def test_bad_sort_and_direction(http: httpx.Client) -> None:
    _bad(http.get("/jobs/history", params={"sort-by": "color"}), "sort-by")
    _bad(http.get("/jobs/history", params={"sort-by": "createdat"}), "sort-by")  # case-sensitive
    _bad(http.get("/jobs/history", params={"direction": "UP"}), "direction")


# -- dates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start",
    [
        "2025-02-01T00:00:00.000",  # Python SDK, naive
        "2025-02-01T00:00:00.000+00:00",  # Python SDK, aware
        "2025-02-01T00:00:00.000+0000",  # Go CLI
        "2025-02-01T00:00:00.000Z",  # JS toISOString
        "2025-02-01T00:00:00",
        "2025-02-01",
        "2025-02-01T01:00:00.000+01:00",
        "2025-01-31T19:00:00.000-0500",
    ],
)
def test_start_date_formats(http: httpx.Client, shared_sb: Sandbox, start: str) -> None:
    since = datetime(2025, 2, 1, tzinfo=UTC)
    expected = [j for j in _by_created(shared_sb) if shared_sb.job(j).created_at >= since]
    assert _all(http, startDate=start) == expected


def test_unencoded_plus_is_understood(shared_sb: Sandbox, client_of: Any) -> None:
    # A client that forgets to encode "+" sends a space; the offset still parses.
    with client_of(shared_sb) as http:
        raw = http.get("/jobs/history?per-page=10000&startDate=2025-02-01T00:00:00.000+00:00")
    since = datetime(2025, 2, 1, tzinfo=UTC)
    assert _ids(raw) == [j for j in _by_created(shared_sb) if shared_sb.job(j).created_at >= since]


def test_window_is_inclusive_on_created_at(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = shared_sb.jobs[50]
    stamp = job.created_at.isoformat(timespec="milliseconds")
    assert job.id in _all(http, startDate=stamp, endDate=stamp)
    assert _all(http, startDate=stamp, endDate=stamp) == [
        j.id for j in shared_sb.jobs if j.created_at == job.created_at
    ]
    later = (job.created_at + timedelta(milliseconds=1)).isoformat(timespec="milliseconds")
    assert job.id not in _all(http, startDate=later)


def test_end_before_start_is_empty(http: httpx.Client) -> None:
    assert _all(http, startDate="2025-02-10", endDate="2025-02-01") == []


def test_date_errors(http: httpx.Client) -> None:
    _bad(http.get("/jobs/history", params={"endDate": "2025-02-01"}), "requires startDate")
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat(timespec="milliseconds")
    _bad(http.get("/jobs/history", params={"startDate": future}), "future")
    for bad in ("yesterday", "2025-13-01", "2025-02-30T00:00:00", "2025/02/01", "2025-02-01T25:00"):
        _bad(http.get("/jobs/history", params={"startDate": bad}), "startDate")
    _bad(
        http.get("/jobs/history", params={"startDate": "2025-01-01", "endDate": "soon"}),
        "endDate",
    )


# -- filters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "statuses"),
    [
        ("all", {"SUBMITTED", "IN_PROGRESS", "COMPLETED", "CANCELED", "TIMEDOUT"}),
        ("ALL", {"SUBMITTED", "IN_PROGRESS", "COMPLETED", "CANCELED", "TIMEDOUT"}),
        ("pending", {"SUBMITTED", "IN_PROGRESS"}),
        ("terminated", {"COMPLETED", "CANCELED", "TIMEDOUT"}),
        ("TERMINATED_WITH_ERROR", {"TIMEDOUT"}),
        ("completed", {"COMPLETED"}),
        ("Canceled", {"CANCELED"}),
        ("timedout", {"TIMEDOUT"}),
        ("in_progress", {"IN_PROGRESS"}),
        ("submitted", {"SUBMITTED"}),
        ("error", set()),
        ("canceled,timedout", {"CANCELED", "TIMEDOUT"}),
    ],
)
def test_status_filter(
    http: httpx.Client, shared_sb: Sandbox, value: str, statuses: set[str]
) -> None:
    expected = [j for j in _by_created(shared_sb) if shared_sb.job(j).status in statuses]
    assert _all(http, status=value) == expected


def test_repeated_parameter_means_or(http: httpx.Client, shared_sb: Sandbox) -> None:
    both = _ids(http.get("/jobs/history?per-page=10000&status=canceled&status=timedout"))
    assert both == _all(http, status="canceled,timedout")


def test_bad_status(http: httpx.Client) -> None:
    _bad(http.get("/jobs/history", params={"status": "finished"}), "status")


def test_model_filter_is_fuzzy_or_exact_id(http: httpx.Client, shared_sb: Sandbox) -> None:
    sentiment = [
        j for j in _by_created(shared_sb) if shared_sb.job(j).model.name == "Sentiment Analysis"
    ]
    assert _all(http, model="Sentiment Analysis") == sentiment
    assert _all(http, model="sentiment") == sentiment
    assert _all(http, model="ed542963de") == sentiment
    assert _all(http, model="ed5429") == []  # ids match exactly, names by substring
    both = _all(http, model="sentiment,spam")
    assert set(both) == {
        j.id for j in shared_sb.jobs if j.model.name in ("Sentiment Analysis", "Spam Detection")
    }
    assert _all(http, model="image;classification") == [
        j for j in _by_created(shared_sb) if shared_sb.job(j).model.name == "Image Classification"
    ]
    assert _all(http, model="image;spam") == []  # ";" is AND


def test_user_filter_is_substring(http: httpx.Client, shared_sb: Sandbox) -> None:
    user = shared_sb.users[1]
    for term in (user.first_name, user.last_name.upper(), user.email, user.email.split("@")[0][2:]):
        ids = _all(http, user=term)
        assert ids
        for job_id in ids:
            job = shared_sb.job(job_id)
            fields = (job.user.first_name, job.user.last_name, job.user.email)
            assert any(term.lower() in f.lower() for f in fields)
    assert _all(http, user="a") == [
        j.id
        for j in sorted(shared_sb.jobs, key=lambda j: (j.created_at, j.id))
        if any("a" in f.lower() for f in (j.user.first_name, j.user.last_name, j.user.email))
    ]
    assert _all(http, user="nobody-like-this") == []


def test_access_key_filter_is_exact_prefix(http: httpx.Client, shared_sb: Sandbox) -> None:
    prefix = shared_sb.api_key.split(".")[0]
    mine = [j for j in _by_created(shared_sb) if shared_sb.job(j).user.key_prefix == prefix]
    assert mine
    assert _all(http, accessKey=prefix) == mine
    assert _all(http, accessKey=prefix[:10]) == []
    assert _all(http, accessKey=prefix.lower()) == [] or prefix == prefix.lower()
    other = shared_sb.users[2].key_prefix
    assert set(_all(http, accessKey=f"{prefix},{other}")) == {
        j.id for j in shared_sb.jobs if j.user.key_prefix in (prefix, other)
    }


def test_model_identifier_and_version_filters(http: httpx.Client, shared_sb: Sandbox) -> None:
    image = next(m for m in shared_sb.models if m.name == "Image Classification")
    by_id = _all(http, modelIdentifier=image.id)
    assert by_id == [j for j in _by_created(shared_sb) if shared_sb.job(j).model is image]
    old = _all(http, modelIdentifier=image.id, modelVersion="1.0.0")
    new = _all(http, modelIdentifier=image.id, modelVersion="1.1.0")
    assert old
    assert new
    assert sorted(old + new) == sorted(by_id)
    assert _all(http, modelVersion="1.1") == []


def test_filters_combine_with_and(http: httpx.Client, shared_sb: Sandbox) -> None:
    prefix = shared_sb.api_key.split(".")[0]
    ids = _all(
        http,
        accessKey=prefix,
        status="terminated",
        model="image",
        startDate="2025-01-15",
        endDate="2025-02-20T00:00:00Z",
    )
    lo, hi = datetime(2025, 1, 15, tzinfo=UTC), datetime(2025, 2, 20, tzinfo=UTC)
    expected = [
        j
        for j in _by_created(shared_sb)
        if shared_sb.job(j).user.key_prefix == prefix
        and shared_sb.job(j).status in ("COMPLETED", "CANCELED", "TIMEDOUT")
        and shared_sb.job(j).model.kind == "image"
        and lo <= shared_sb.job(j).created_at <= hi
    ]
    assert ids == expected
    assert ids


def test_unknown_filters_are_ignored(http: httpx.Client, shared_sb: Sandbox) -> None:
    assert _all(http, color="blue") == _by_created(shared_sb)
