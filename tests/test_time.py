from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

import modzy_retrain._core.timestamps as time_module
from modzy_retrain._core.timestamps import format_query_timestamp, parse_timestamp

UTC = timezone.utc
EXPECTED = datetime(2021, 7, 20, 1, 40, 11, 187000, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2021-07-20T01:40:11.187+0000",
        "2021-07-20T01:40:11.187+00:00",
        "2021-07-20T01:40:11.187Z",
        "2021-07-20T01:40:11.187",  # naive: the Java SDK's form, taken as UTC
        "2021-07-20T03:40:11.187+0200",
        "2021-07-19T20:40:11.187-05:00",
        "2021-07-20T01:40:11.187000Z",
        "2021-07-20T01:40:11.187123456Z",  # nanoseconds are cut to microseconds
    ],
)
def test_every_offset_style_parses_to_the_same_instant(text: str) -> None:
    parsed = parse_timestamp(text)
    assert parsed is not None
    assert parsed.tzinfo is not None
    assert abs(parsed - EXPECTED) < timedelta(microseconds=200)


def test_epochs_and_empties() -> None:
    assert parse_timestamp(None) is None
    assert parse_timestamp("") is None
    assert parse_timestamp(0) is None
    assert parse_timestamp(1626745211) == datetime(2021, 7, 20, 1, 40, 11, tzinfo=UTC)
    assert parse_timestamp(1626745211187) == EXPECTED


@pytest.mark.parametrize(
    "bad",
    ["yesterday", "2021-13-01T00:00:00Z", "2021-07-20", "\u0662021-07-20T01:40:11Z", True, [1]],
)
def test_garbage_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"timestamp|month"):
        parse_timestamp(bad)


def test_query_format_is_utc_millis_with_z() -> None:
    local = datetime(2021, 8, 13, 9, 28, 3, 831999, tzinfo=timezone(timedelta(hours=2)))
    assert format_query_timestamp(local) == "2021-08-13T07:28:03.831Z"


@pytest.mark.parametrize(
    "text",
    [
        "2021-07-20T01:40:11.187+0000",
        "2021-07-20T01:40:11.187+00:00",
        "2021-07-20T01:40:11.187Z",
        "2021-07-20t01:40:11.187z".replace("t", "T"),
        "2021-07-20 01:40:11",
        "2021-07-20T01:40",
        "2021-07-20T01:40:11.1+05",
        "2021-07-20T01:40:11,5-0330",
        "2021-07-20T01:40:11.123456789Z",
        "  2021-07-20T01:40:11.187Z ",
    ],
)
def test_the_fast_path_gives_what_the_portable_path_gives(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = parse_timestamp(text)
    monkeypatch.setattr(time_module, "_FROMISOFORMAT_READS_ALL", False)
    portable = parse_timestamp(text)
    assert fast == portable
    assert fast is not None
    assert portable is not None
    assert fast.utcoffset() == portable.utcoffset()


# Regressions found by the property tests (tests/test_parsing_properties.py).


@pytest.mark.parametrize(
    "epoch",
    [math.inf, -math.inf, math.nan, 1e20, -1e300, 10**20, 10**400],
    ids=["inf", "-inf", "nan", "1e20", "-1e300", "10**20", "10**400"],
)
def test_epochs_out_of_range_are_value_errors(epoch: float) -> None:
    # Were OverflowError ("timestamp out of range for platform time_t", "integer
    # division result too large for a float") or OSError (errno 75), which pydantic
    # does not turn into a validation error: they escaped the parsers.
    with pytest.raises(ValueError, match="out of range"):
        parse_timestamp(epoch)


def test_epoch_milliseconds_are_exact() -> None:
    # fromtimestamp(ms / 1000) gave 2243-01-01T00:00:00.000999.
    assert parse_timestamp(8615030400001) == datetime(2243, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)
    assert parse_timestamp(-86400) == datetime(1969, 12, 31, tzinfo=UTC)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_instants_outside_the_utc_range_are_refused(
    value: object, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were returned, and raised OverflowError when later compared or converted to UTC.
    monkeypatch.setattr(time_module, "_FROMISOFORMAT_READS_ALL", fast)
    with pytest.raises(ValueError, match="out of range"):
        parse_timestamp(value)
    assert parse_timestamp("0001-01-01T00:00:00Z") == datetime(1, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("text", ["2021-07-20T01:40.5Z", "2021-07-20T01:40:11.1234567890Z"])
def test_a_fraction_needs_seconds_and_at_most_nanoseconds(
    text: str, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "01:40.5" (half a minute, in ISO 8601) was read as 01:40:00.5.
    monkeypatch.setattr(time_module, "_FROMISOFORMAT_READS_ALL", fast)
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_timestamp(text)
