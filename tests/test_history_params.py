"""History query validation happens before any request."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from modzy_retrain import InvalidQueryError
from modzy_retrain._client.history import build_history_params

UTC = timezone.utc
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_defaults() -> None:
    assert build_history_params(now=NOW) == {"status": "ALL", "per-page": "100"}


def test_every_filter_is_sent_under_the_documented_key() -> None:
    params = build_history_params(
        start=datetime(2025, 1, 1, tzinfo=UTC),
        end=datetime(2025, 2, 1, 12, tzinfo=timezone(timedelta(hours=1))),
        model="Sentiment",
        model_id=["abc", "def"],
        model_version="1.0.0",
        user="jane",
        access_key="AbCdEfGhIj0123456789",
        status="terminated",
        sort_by=["submittedAt", "identifier"],
        direction="desc",
        page_size=250,
        now=NOW,
    )
    assert params == {
        "startDate": "2025-01-01T00:00:00.000Z",
        "endDate": "2025-02-01T11:00:00.000Z",
        "model": "Sentiment",
        "modelIdentifier": "abc,def",
        "modelVersion": "1.0.0",
        "user": "jane",
        "accessKey": "AbCdEfGhIj0123456789",
        "status": "TERMINATED",
        "sort-by": "submittedAt,identifier",
        "direction": "DESC",
        "per-page": "250",
    }


def test_a_full_key_given_as_access_key_filter_is_cut_to_its_prefix() -> None:
    params = build_history_params(access_key="AbCdEfGhIj.SECRETSECRETSECRET", now=NOW)
    assert params["accessKey"] == "AbCdEfGhIj"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"end": datetime(2025, 1, 1, tzinfo=UTC)}, "without start"),
        ({"start": NOW + timedelta(seconds=1)}, "future"),
        (
            {"start": datetime(2025, 1, 2, tzinfo=UTC), "end": datetime(2025, 1, 1, tzinfo=UTC)},
            "before start",
        ),
        ({"start": datetime(2025, 1, 1)}, "timezone-aware"),
        ({"start": "2025-01-01"}, "datetime"),
        ({"status": "FINISHED"}, "unknown status"),
        ({"sort_by": "createdat"}, "unknown sort key"),
        ({"direction": "UP"}, "direction"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 1001}, "page_size"),
        ({"model": ""}, "non-empty"),
        ({"user": "a,b"}, "OR"),
    ],
)
def test_invalid_queries_are_refused(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidQueryError, match=needle):
        build_history_params(now=NOW, **kwargs)  # type: ignore[arg-type]
