"""Seeded fault injection, observed with plain httpx (no retries), in process and over HTTP."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest

from modzy_retrain.sandbox import FaultConfig, Sandbox


def _outcome(client: httpx.Client, path: str = "/jobs/history") -> str:
    try:
        response = client.get(path)
    except httpx.TimeoutException:
        return "timeout"
    except httpx.RemoteProtocolError as exc:
        return "truncated" if "complete message body" in str(exc) else "dropped"
    except httpx.TransportError as exc:  # a closed socket may also surface as a read error
        return f"transport:{type(exc).__name__}"
    return str(response.status_code)


def _sequence(sb: Sandbox, client_of: Any, n: int = 200, **kwargs: Any) -> list[str]:
    with client_of(sb, **kwargs) as client:
        return [_outcome(client) for _ in range(n)]


MIXED = FaultConfig(
    error_rate=0.1,
    throttle_rate=0.1,
    drop_rate=0.1,
    truncate_rate=0.1,
    slow_rate=0.1,
    slow_ms=5000,
    fault_seed=3,
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_rate": -0.1},
        {"throttle_rate": 1.5},
        {"error_rate": 0.6, "drop_rate": 0.6},
        {"slow_ms": -1},
        {"retry_after": -1},
    ],
)
def test_fault_config_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        FaultConfig(**kwargs)


def test_no_faults_by_default(sb: Sandbox, client_of: Any) -> None:
    assert set(_sequence(sb, client_of, 50)) == {"200"}
    assert sb.fault_counts == Counter()


def test_faults_are_deterministic_by_seed(make_sb: Any, client_of: Any) -> None:
    a = _sequence(make_sb(seed=1, jobs=20, faults=MIXED), client_of, timeout=1.0)
    b = _sequence(make_sb(seed=1, jobs=20, faults=MIXED), client_of, timeout=1.0)
    assert a == b
    c = _sequence(
        make_sb(seed=1, jobs=20, faults=FaultConfig(**{**MIXED.__dict__, "fault_seed": 4})),
        client_of,
        timeout=1.0,
    )
    assert a != c
    counts = Counter(a)
    for outcome in ("500", "502", "503", "504"):
        assert counts[outcome] >= 1, outcome
    assert counts["429"] >= 10
    assert counts["dropped"] >= 10
    assert counts["truncated"] >= 10
    assert counts["timeout"] >= 10
    assert counts["200"] >= 60


def test_setting_faults_restarts_the_sequence(sb: Sandbox, client_of: Any) -> None:
    sb.faults = MIXED
    first = _sequence(sb, client_of, 40, timeout=1.0)
    sb.faults = MIXED
    assert _sequence(sb, client_of, 40, timeout=1.0) == first
    sb.faults = FaultConfig()
    assert set(_sequence(sb, client_of, 20)) == {"200"}


def test_error_faults_carry_modzy_error_body(make_sb: Any, client_of: Any) -> None:
    sb = make_sb(jobs=5, faults=FaultConfig(error_rate=1.0))
    with client_of(sb) as client:
        statuses = set()
        for _ in range(40):
            response = client.get("/models")
            statuses.add(response.status_code)
            body = response.json()
            assert body["statusCode"] == response.status_code
            assert body["message"]
            assert body["reportErrorUrl"]
    assert statuses == {500, 502, 503, 504}
    assert sb.fault_counts["error"] == 40
    assert {e.fault for e in sb.request_log} == {"error"}


def test_faulted_request_with_bad_encoding_is_counted(make_sb: Any, client_of: Any) -> None:
    sb = make_sb(jobs=5, faults=FaultConfig(error_rate=1.0))
    with client_of(sb) as client:
        assert client.get("/results/x/datasource/%FF").status_code >= 500
    assert sb.request_counts["GET <unmatched>"] == 1


def test_throttle_has_retry_after(make_sb: Any, client_of: Any) -> None:
    sb = make_sb(jobs=5, faults=FaultConfig(throttle_rate=1.0, retry_after=7))
    with client_of(sb) as client:
        response = client.get("/jobs/history")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["statusCode"] == 429


def test_faults_precede_auth(make_sb: Any) -> None:
    # A gateway throttles before the API looks at the key.
    sb = make_sb(jobs=5, faults=FaultConfig(throttle_rate=1.0))
    with httpx.Client(base_url=sb.base_url, transport=sb.transport()) as client:
        assert client.get("/models").status_code == 429


def test_drop_and_truncate_in_process(make_sb: Any, client_of: Any) -> None:
    sb = make_sb(jobs=5, faults=FaultConfig(drop_rate=1.0))
    with client_of(sb) as client, pytest.raises(httpx.RemoteProtocolError, match="disconnected"):
        client.get("/jobs/history")
    sb.faults = FaultConfig(truncate_rate=1.0)
    with (
        client_of(sb) as client,
        pytest.raises(
            httpx.RemoteProtocolError,
            match="peer closed connection without sending complete message body",
        ),
    ):
        client.get("/jobs/history")
    assert sb.fault_counts == Counter({"drop": 1, "truncate": 1})


def test_slow_in_process_never_sleeps(make_sb: Any, client_of: Any) -> None:
    sb = make_sb(jobs=5, faults=FaultConfig(slow_rate=1.0, slow_ms=60_000))
    started = time.perf_counter()
    with client_of(sb, timeout=5.0) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/jobs/history")
    # Under the read timeout: answered normally.
    with client_of(sb, timeout=120.0) as client:
        assert client.get("/jobs/history").status_code == 200
    with client_of(sb, timeout=None) as client:
        assert client.get("/jobs/history").status_code == 200
    assert time.perf_counter() - started < 2.0


def test_faults_only_on_api_routes(make_sb: Any) -> None:
    sb = make_sb(jobs=5, faults=FaultConfig(drop_rate=1.0))
    with httpx.Client(base_url="http://sandbox.modzy.invalid", transport=sb.transport()) as client:
        assert client.get("/health").status_code == 404
    assert sb.fault_counts == Counter()


@pytest.mark.anyio
async def test_async_transport_faults(make_sb: Any) -> None:
    sb = make_sb(jobs=5, faults=FaultConfig(truncate_rate=1.0))
    headers = {"Authorization": f"ApiKey {sb.api_key}"}
    async with httpx.AsyncClient(
        base_url=sb.base_url, transport=sb.async_transport(), headers=headers, timeout=1.0
    ) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/jobs/history")
        sb.faults = FaultConfig(drop_rate=1.0)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/jobs/history")
        sb.faults = FaultConfig(slow_rate=1.0, slow_ms=30_000)
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/jobs/history")
        sb.faults = FaultConfig(throttle_rate=1.0)
        assert (await client.get("/jobs/history")).status_code == 429


# -- over real loopback HTTP ---------------------------------------------------------


def _served_sequence(sb: Sandbox, n: int) -> list[str]:
    with (
        sb.serve() as server,
        httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"ApiKey {sb.api_key}"},
            timeout=httpx.Timeout(5.0, read=0.2),
        ) as client,
    ):
        return [_outcome(client) for _ in range(n)]


def test_faults_over_http_match_in_process(make_sb: Any, client_of: Any) -> None:
    config = FaultConfig(
        error_rate=0.15, throttle_rate=0.15, drop_rate=0.15, truncate_rate=0.15, fault_seed=11
    )
    served = _served_sequence(make_sb(jobs=10, faults=config), 60)
    in_process = _sequence(make_sb(jobs=10, faults=config), client_of, 60)
    assert served == in_process
    counts = Counter(served)
    assert counts["dropped"] >= 3
    assert counts["truncated"] >= 3
    assert counts["429"] >= 3
    assert counts["200"] >= 10


def test_over_http_each_fault_kind(make_sb: Any) -> None:
    sb = make_sb(jobs=5, faults=FaultConfig(throttle_rate=1.0, retry_after=3))
    with sb.serve() as server, httpx.Client(base_url=server.base_url) as client:
        response = client.get("/jobs/history")
        assert response.status_code == 429
        assert response.headers["retry-after"] == "3"
        sb.faults = FaultConfig(drop_rate=1.0)
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/jobs/history")
        sb.faults = FaultConfig(truncate_rate=1.0)
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            client.get("/jobs/history", headers={"Authorization": f"ApiKey {sb.api_key}"})
        # A slow answer over a real socket: the client's short read timeout fires while the
        # server waits (asynchronously, without blocking other connections).
        sb.faults = FaultConfig(slow_rate=1.0, slow_ms=2000)
        with pytest.raises(httpx.ReadTimeout):
            client.get("/jobs/history", timeout=httpx.Timeout(5.0, read=0.1))
        sb.faults = FaultConfig()
        assert client.get("/models", headers={"Authorization": f"ApiKey {sb.api_key}"}).is_success


def test_unavailable_results_answer_503_until_served_again(sb: Sandbox, client_of: Any) -> None:
    poison, other = [j.id for j in sb.jobs if j.status == "COMPLETED"][:2]
    name = sb.job(poison).inputs[0].name
    sb.unavailable_results = {poison}
    assert sb.unavailable_results == frozenset({poison})
    with client_of(sb) as client:
        for path in (f"/results/{poison}", f"/results/{poison}/datasource/{name}"):
            response = client.get(path)
            assert response.status_code == 503
            assert poison in response.json()["message"]
        assert client.get(f"/results/{other}").status_code == 200
        assert client.get(f"/jobs/{poison}").status_code == 200  # the job itself is there
        assert client.get(f"/results/{poison}", headers={"Authorization": ""}).status_code == 401
        sb.unavailable_results = set()
        assert client.get(f"/results/{poison}").status_code == 200
    assert sb.fault_counts == Counter()  # a knob, not a drawn fault
    with pytest.raises(ValueError, match="job ids"):
        sb.unavailable_results = {1}  # type: ignore[arg-type]
