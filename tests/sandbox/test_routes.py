"""Every route of the in-process API, including the error answers."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from modzy_retrain.sandbox import Request, Sandbox

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _assert_error(response: httpx.Response, status: int, fragment: str = "") -> None:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"statusCode", "status", "message", "reportErrorUrl"}
    assert body["statusCode"] == status
    assert body["message"]
    assert fragment.lower() in body["message"].lower()


def _seg(value: str) -> str:
    return quote(value, safe="")


def _job(sb: Sandbox, status: str = "COMPLETED", **where: Any) -> Any:
    for job in sb.jobs:
        if job.status == status and all(getattr(job.model, k, None) == v for k, v in where.items()):
            return job
    raise LookupError(status)


# -- authentication ----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer something"},
        {"Authorization": "ApiKey"},
        {"Authorization": "ApiKey AbCdEfGhIj0123456789.ZyXwVuTsRq9876543210"},
    ],
)
def test_401_without_a_valid_key(shared_sb: Sandbox, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=shared_sb.base_url, transport=shared_sb.transport()) as client:
        for path in ("/models", "/jobs/history", f"/results/{shared_sb.jobs[0].id}", "/nope"):
            _assert_error(client.get(path, headers=headers), 401)


def test_prefix_alone_is_not_a_key(shared_sb: Sandbox, client_of: Any) -> None:
    with client_of(shared_sb, key=shared_sb.users[0].key_prefix) as client:
        _assert_error(client.get("/models"), 401)


def test_every_users_key_authenticates(shared_sb: Sandbox, client_of: Any) -> None:
    for user in shared_sb.users:
        with client_of(shared_sb, key=user.access_key) as client:
            assert client.get("/jobs/history").status_code == 200


def test_scheme_is_case_insensitive(shared_sb: Sandbox) -> None:
    with httpx.Client(base_url=shared_sb.base_url, transport=shared_sb.transport()) as client:
        response = client.get("/models", headers={"Authorization": f"apikey {shared_sb.api_key}"})
        assert response.status_code == 200


def test_paths_outside_api_are_404_without_auth(shared_sb: Sandbox) -> None:
    transport = shared_sb.transport()
    with httpx.Client(base_url="http://sandbox.modzy.invalid", transport=transport) as client:
        _assert_error(client.get("/models"), 404)
        _assert_error(client.get("/"), 404)


def test_unknown_api_path_is_404(http: httpx.Client) -> None:
    _assert_error(http.get("/nope"), 404, "no such resource")
    _assert_error(http.get("/jobs/history/extra/segments"), 404)
    _assert_error(http.get("/results/a/b/c/d/e/f/g"), 404)


# -- models ------------------------------------------------------------------------


def test_models_list_shape(http: httpx.Client, shared_sb: Sandbox) -> None:
    response = http.get("/models")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    models = response.json()
    assert [m["modelId"] for m in models] == [m.id for m in shared_sb.models]
    for item, model in zip(models, shared_sb.models, strict=True):
        assert item == {
            "modelId": model.id,
            "latestVersion": model.versions[-1],
            "versions": list(model.versions),
        }


def test_models_list_filters(http: httpx.Client) -> None:
    names = http.get("/models", params={"name": "sentiment"}).json()
    assert [m["modelId"] for m in names] == ["ed542963de"]
    assert http.get("/models", params={"modelId": "ed542963de"}).json()[0]["modelId"] == (
        "ed542963de"
    )
    assert len(http.get("/models", params={"per-page": 1, "page": 2}).json()) == 1


def test_model_details(http: httpx.Client, shared_sb: Sandbox) -> None:
    model = shared_sb.models[0]
    body = http.get(f"/models/{model.id}").json()
    assert body["modelId"] == model.id
    assert body["name"] == model.name
    assert body["latestVersion"] == model.versions[-1]
    assert body["versions"] == list(model.versions)
    assert TS.match(body["lastActiveDateTime"])
    versions = http.get(f"/models/{model.id}/versions").json()
    assert versions == [{"version": v} for v in model.versions]
    version = http.get(f"/models/{model.id}/versions/{model.versions[0]}").json()
    assert version["version"] == model.versions[0]
    assert version["inputs"][0]["name"] == model.input_filename
    assert version["outputs"][0]["name"] == "results.json"
    assert version["requirement"]["cpuAmount"].endswith("m")


def test_model_404s(http: httpx.Client) -> None:
    _assert_error(http.get("/models/notamodel"), 404, "notamodel")
    _assert_error(http.get("/models/notamodel/versions"), 404)
    _assert_error(http.get("/models/ed542963de/versions/9.9.9"), 404, "9.9.9")


def test_account_requirements(http: httpx.Client) -> None:
    items = http.get("/models/requirements/account").json()
    assert items
    for item in items:
        assert {"requirementId", "status", "cpuAmount", "memoryAmount"} <= set(item)
        assert re.fullmatch(r"\d+m", item["cpuAmount"])
        assert re.fullmatch(r"\d+Gi", item["memoryAmount"])
    assert any(item["status"] == "ACTIVE" for item in items)


def test_jobs_features(http: httpx.Client) -> None:
    assert http.get("/jobs/features").json()["inputChunkMaximumSize"] == "1M"


# -- jobs --------------------------------------------------------------------------


def test_job_details_shape(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = _job(shared_sb)
    body = http.get(f"/jobs/{job.id}").json()
    assert UUID.match(body["jobIdentifier"])
    assert body["jobIdentifier"] == job.id
    assert body["submittedBy"] == job.user.key_prefix
    assert body["model"] == {
        "identifier": job.model.id,
        "version": job.version,
        "name": job.model.name,
    }
    assert body["status"] == "COMPLETED"
    for key in ("createdAt", "updatedAt", "submittedAt"):
        assert TS.match(body[key])
    assert (body["total"], body["pending"], body["completed"], body["failed"]) == (
        job.total,
        job.pending,
        job.completed,
        job.failed,
    )
    assert body["user"]["firstName"] == job.user.first_name
    assert body["user"]["email"] == job.user.email
    assert body["user"]["accessKeys"] == [{"prefix": job.user.key_prefix, "isDefault": True}]
    assert body["team"]["identifier"]
    assert body["jobInputs"] == [{"identifier": i.name} for i in job.inputs]
    assert isinstance(body["explain"], bool)
    assert isinstance(body["elapsedTime"], int)
    assert isinstance(body["queueTime"], int)
    assert body["inputByteAmount"] > 0
    assert body["accountIdentifier"]


def test_unknown_job_is_404(http: httpx.Client) -> None:
    _assert_error(http.get("/jobs/00000000-0000-4000-8000-000000000000"), 404, "not found")


# -- results -----------------------------------------------------------------------


def test_results_shape(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = next(j for j in shared_sb.jobs if j.status == "COMPLETED" and j.failed)
    body = http.get(f"/results/{job.id}").json()
    for key in (
        "jobIdentifier",
        "accountIdentifier",
        "team",
        "total",
        "completed",
        "failed",
        "finished",
        "submittedByKey",
        "explained",
        "submittedAt",
        "initialQueueTime",
        "totalQueueTime",
        "averageModelLatency",
        "totalModelLatency",
        "elapsedTime",
        "startingResultSummarizing",
        "resultSummarizing",
        "inputSize",
        "results",
        "failures",
    ):
        assert key in body, key
    assert body["finished"] is True
    assert body["submittedByKey"] == job.user.key_prefix
    assert set(body["results"]) == {i.name for i in job.inputs if i.status == "SUCCESSFUL"}
    assert set(body["failures"]) == {i.name for i in job.inputs if i.status == "FAILED"}
    for name, item in body["results"].items():
        assert item["status"] == "SUCCESSFUL"
        for key in ("startTime", "updateTime", "endTime"):
            assert TS.match(item[key])
        assert {"engine", "inputFetching", "outputUploading", "modelLatency", "queueTime"} <= set(
            item
        )
        data = item["results.json"]["data"]
        assert set(data) == {"result", "explanation", "drift"}
        predictions = data["result"]["classPredictions"]
        world = job.input(name)
        assert world is not None
        assert [p["class"] for p in predictions] == [c for c, _ in world.predictions]
        assert item["voting"] == {"up": world.votes_up, "down": world.votes_down}
    for failure in body["failures"].values():
        assert failure["status"] == "FAILED"
        assert failure["error"]
        assert "results.json" not in failure


def test_image_predictions_top5_rounded(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = _job(shared_sb, name="Image Classification")
    body = http.get(f"/results/{job.id}").json()
    for item in body["results"].values():
        predictions = item["results.json"]["data"]["result"]["classPredictions"]
        assert len(predictions) == 5
        scores = [p["score"] for p in predictions]
        assert scores == sorted(scores, reverse=True)
        assert all(isinstance(s, float) and round(s, 3) == s for s in scores)


def test_chassis_model_scores_are_strings(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = _job(shared_sb, name="Spam Detection")
    body = http.get(f"/results/{job.id}").json()
    for item in body["results"].values():
        predictions = item["results.json"]["data"]["result"]["classPredictions"]
        assert {p["class"] for p in predictions} == {"spam", "ham"}
        assert all(isinstance(p["score"], str) for p in predictions)
        assert float(predictions[0]["score"]) >= float(predictions[1]["score"])


def test_sentiment_emits_all_three_classes(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = _job(shared_sb, name="Sentiment Analysis")
    body = http.get(f"/results/{job.id}").json()
    for item in body["results"].values():
        predictions = item["results.json"]["data"]["result"]["classPredictions"]
        assert {p["class"] for p in predictions} == {"negative", "neutral", "positive"}


def test_explanations(http: httpx.Client, shared_sb: Sandbox) -> None:
    image = next(j for j in shared_sb.jobs if j.explain and j.model.kind == "image" and j.completed)
    body = http.get(f"/results/{image.id}").json()
    assert body["explained"] is True
    explanation = next(iter(body["results"].values()))["results.json"]["data"]["explanation"]
    assert explanation["dimensions"] == {"height": 16, "width": 16}
    runs = explanation["maskRLE"][0]
    assert sum(runs) == 16 * 16
    assert sum(runs[1::2]) > 0  # odd runs are the ones of the mask
    text = next(
        j
        for j in shared_sb.jobs
        if j.explain and j.model.name == "Sentiment Analysis" and j.completed
    )
    body = http.get(f"/results/{text.id}").json()
    words = next(iter(body["results"].values()))["results.json"]["data"]["explanation"]
    importance = words["wordImportance"]
    assert 1 <= len(importance) <= 3
    assert all({"index", "word", "score"} == set(w) for w in importance)
    plain = next(j for j in shared_sb.jobs if not j.explain and j.completed)
    body = http.get(f"/results/{plain.id}").json()
    assert body["explained"] is False
    assert next(iter(body["results"].values()))["results.json"]["data"]["explanation"] is None


def test_partial_results(http: httpx.Client, shared_sb: Sandbox) -> None:
    running = _job(shared_sb, "IN_PROGRESS")
    body = http.get(f"/results/{running.id}").json()
    assert body["finished"] is False
    assert len(body["results"]) + len(body["failures"]) < running.total
    assert "startingResultSummarizing" not in body
    for status in ("CANCELED", "TIMEDOUT"):
        job = _job(shared_sb, status)
        body = http.get(f"/results/{job.id}").json()
        assert body["finished"] is True
        assert len(body["results"]) + len(body["failures"]) < job.total


def test_submitted_job_has_no_results_yet(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = _job(shared_sb, "SUBMITTED")
    assert http.get(f"/jobs/{job.id}").json()["status"] == "SUBMITTED"
    _assert_error(http.get(f"/results/{job.id}"), 404, "not available yet")


def test_unknown_results_404(http: httpx.Client, shared_sb: Sandbox) -> None:
    _assert_error(http.get("/results/00000000-0000-4000-8000-000000000000"), 404)
    job = _job(shared_sb)
    _assert_error(http.get(f"/results/{job.id}/datasource/nope"), 404, "nope")
    _assert_error(http.get(f"/results/{job.id}/nope/results.json"), 404)
    name = job.inputs[0].name
    _assert_error(http.get(f"/results/{job.id}/datasource/{_seg(name)}/output/x.wav"), 404)


def test_single_result_edge_shape(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = _job(shared_sb)
    item = next(i for i in job.inputs if i.status == "SUCCESSFUL")
    body = http.get(f"/results/{job.id}/datasource/{_seg(item.name)}").json()
    assert body["inputName"] == item.name
    assert body["job"]["identifier"] == job.id
    assert body["job"]["model"]["identifier"] == job.model.id
    assert body["job"]["totalInputCount"] == job.total
    assert body["accessKey"] == job.user.key_prefix
    assert body["voting"] == {"up": item.votes_up, "down": item.votes_down}
    predictions = body["result"]["results.json"]["data"]["result"]["classPredictions"]
    assert predictions[0]["class"] == item.predicted


def test_single_result_of_failed_input(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = next(j for j in shared_sb.jobs if j.failed)
    item = next(i for i in job.inputs if i.status == "FAILED")
    body = http.get(f"/results/{job.id}/datasource/{_seg(item.name)}").json()
    assert body["status"] == "FAILED"
    assert body["error"] == item.error
    assert body["result"] is None
    _assert_error(http.get(f"/results/{job.id}/{_seg(item.name)}/results.json"), 404, "failed")


def test_pending_input_has_no_single_result(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = _job(shared_sb, "IN_PROGRESS")
    item = next(i for i in job.inputs if i.status == "PENDING")
    _assert_error(http.get(f"/results/{job.id}/datasource/{_seg(item.name)}"), 404, "no result")


def test_output_routes_return_raw_results_json(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = _job(shared_sb)
    item = next(i for i in job.inputs if i.status == "SUCCESSFUL")
    full = http.get(f"/results/{job.id}").json()["results"][item.name]["results.json"]
    a = http.get(f"/results/{job.id}/datasource/{_seg(item.name)}/output/results.json")
    b = http.get(f"/results/{job.id}/{_seg(item.name)}/results.json")
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json() == full


def test_percent_encoded_input_names(http: httpx.Client, shared_sb: Sandbox) -> None:
    job, item = next(
        (j, i)
        for j in shared_sb.jobs
        if j.status == "COMPLETED"
        for i in j.inputs
        if " " in i.name and i.status == "SUCCESSFUL"
    )
    assert "#" in item.name
    assert "%" in item.name
    body = http.get(f"/results/{job.id}/datasource/{_seg(item.name)}").json()
    assert body["inputName"] == item.name
    vote = http.get(f"/results/{job.id}/vote/{_seg(item.name)}")
    assert vote.json() == {"vote": "NO_VOTES"}


def test_encoded_slash_stays_in_its_segment(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = _job(shared_sb)
    # "a/b" is not an input; what matters is that it is looked up as one name (404 naming
    # it), rather than splitting into two segments and matching another route.
    response = http.get(f"/results/{job.id}/datasource/{_seg('a/b')}")
    _assert_error(response, 404, "'a/b'")


def test_bad_percent_encoding_is_400(http: httpx.Client, shared_sb: Sandbox) -> None:
    job = _job(shared_sb)
    _assert_error(http.get(f"/results/{job.id}/datasource/%FF%FE"), 400, "percent-encoded")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/models", "GET"),
        ("DELETE", "/jobs/history", "GET"),
        ("PUT", "/results/{job}", "GET"),
        ("GET", "/results/{job}/upvote/{input}", "POST"),
        ("DELETE", "/results/{job}/downvote/{input}", "POST"),
        ("POST", "/results/{job}/vote/{input}", "DELETE, GET"),
        ("PATCH", "/jobs/{job}", "GET"),
    ],
)
def test_wrong_method_is_405(
    http: httpx.Client, shared_sb: Sandbox, method: str, path: str, allowed: str
) -> None:
    job = _job(shared_sb)
    url = path.format(job=job.id, input=_seg(job.inputs[0].name))
    response = http.request(method, url)
    _assert_error(response, 405, method)
    assert response.headers["allow"] == allowed


def test_trailing_slash_tolerated(http: httpx.Client) -> None:
    assert http.get("/models/").status_code == 200


def test_handle_is_pure_and_uncounted(make_sb: Any) -> None:
    sb = make_sb(seed=3, jobs=5)
    request = Request("GET", "/api/models", {"authorization": f"ApiKey {sb.api_key}"})
    first, second = sb.handle(request), sb.handle(request)
    assert first == second
    assert first.status == 200
    assert sb.request_total == 0


def test_request_counts_and_log(sb: Sandbox, client_of: Any) -> None:
    with client_of(sb) as client:
        client.get("/jobs/history")
        client.get("/jobs/history", params={"page": 2})
        client.get(f"/results/{sb.jobs[0].id}")
        client.get("/nope")
    assert sb.request_counts["GET /jobs/history"] == 2
    assert sb.request_counts["GET /results/{jobId}"] == 1
    assert sb.request_counts["GET <unmatched>"] == 1
    assert sb.request_total == 4
    assert [e.status for e in sb.request_log] == [200, 200, 200, 404]
    assert sb.request_log[1].target == "/api/jobs/history?page=2"
    sb.reset_stats()
    assert sb.request_total == 0
    assert list(sb.request_log) == []


@pytest.mark.anyio
async def test_async_transport(shared_sb: Sandbox) -> None:
    headers = {"Authorization": f"ApiKey {shared_sb.api_key}"}
    async with httpx.AsyncClient(
        base_url=shared_sb.base_url, transport=shared_sb.async_transport(), headers=headers
    ) as client:
        response = await client.get("/jobs/history", params={"per-page": 3})
        assert response.status_code == 200
        assert len(response.json()) == 3
        missing = await client.get("/jobs/nope")
        assert missing.status_code == 404


def test_in_process_latency_sleeps_only_when_asked(
    make_sb: Any, client_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr("modzy_retrain.sandbox._transport.time.sleep", slept.append)
    sb = make_sb(jobs=5)
    with client_of(sb) as client:
        client.get("/models")
        assert slept == []
        sb.latency_ms = 50
        client.get("/models")
        assert slept == [0.05]
    with pytest.raises(ValueError, match="latency_ms"):
        sb.latency_ms = -1


@pytest.mark.anyio
async def test_async_latency_uses_asyncio_sleep(
    make_sb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("modzy_retrain.sandbox._transport.asyncio.sleep", fake_sleep)
    sb = make_sb(jobs=5, latency_ms=20)
    headers = {"Authorization": f"ApiKey {sb.api_key}"}
    async with httpx.AsyncClient(
        base_url=sb.base_url, transport=sb.async_transport(), headers=headers
    ) as client:
        assert (await client.get("/models")).status_code == 200
    assert slept == [0.02]


def test_public_names_report_the_public_module() -> None:
    import modzy_retrain.sandbox as public

    for name in public.__all__:
        obj = getattr(public, name)
        if isinstance(obj, type):
            assert obj.__module__ == "modzy_retrain.sandbox", name
