"""JSON shapes of the Modzy API, rendered from the world (reference sections 3.3, 5.1, 5.2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ._catalogue import WorldModel
from ._content import explanation, render_input
from ._records import World, WorldInput, WorldJob, WorldUser

JSON = dict[str, Any]

REPORT_ERROR_URL = "https://sandbox.modzy.invalid/report-error"


def timestamp(dt: datetime) -> str:
    """Modzy's per-input timestamp style: milliseconds and a ``+0000`` offset."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


def epoch(dt: datetime | None) -> int:
    return 0 if dt is None else int(dt.timestamp())


def error_body(status: int, reason: str, message: str) -> JSON:
    return {
        "statusCode": status,
        "status": reason,
        "message": message,
        "reportErrorUrl": REPORT_ERROR_URL,
    }


def user_json(user: WorldUser) -> JSON:
    return {
        "identifier": user.identifier,
        "externalIdentifier": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "email": user.email,
        "status": "ACTIVE",
        "title": user.title,
        "accessKeys": [{"prefix": user.key_prefix, "isDefault": True}],
    }


def input_size(job: WorldJob, item: WorldInput) -> int:
    return len(render_input(job.model.kind, item.truth, item.content_seed))


def job_json(world: World, job: WorldJob) -> JSON:
    """The job object of ``GET /jobs/{id}`` and of each ``/jobs/history`` item."""
    body: JSON = {
        "jobIdentifier": job.id,
        "submittedBy": job.user.key_prefix,
        "accountIdentifier": world.account_identifier,
        "model": {"identifier": job.model.id, "version": job.version, "name": job.model.name},
        "status": job.status,
        "createdAt": timestamp(job.created_at),
        "updatedAt": timestamp(job.updated_at),
        "submittedAt": timestamp(job.submitted_at),
        "total": job.total,
        "pending": job.pending,
        "completed": job.completed,
        "failed": job.failed,
        "elapsedTime": job.elapsed_time,
        "queueTime": job.queue_time,
        "explain": job.explain,
        "user": user_json(job.user),
        "team": {"identifier": world.team_identifier},
        "jobInputs": [{"identifier": item.name} for item in job.inputs],
        "inputByteAmount": sum(input_size(job, item) for item in job.inputs),
        "hoursDeleteInput": 24,
        "imageClassificationModel": job.model.kind == "image",
    }
    if job.timeout is not None:
        body["timeout"] = job.timeout
    return body


def output_json(job: WorldJob, item: WorldInput) -> JSON:
    """The ``results.json`` output file of one successful input."""
    model = job.model
    predictions: list[JSON] = [
        {"class": label, "score": _score(model, score)} for label, score in item.predictions
    ]
    explained = (
        explanation(model.kind, item.truth, item.content_seed)
        if job.explain and model.explainable
        else None
    )
    return {
        "data": {
            "result": {"classPredictions": predictions},
            "explanation": explained,
            "drift": None,
        }
    }


def _score(model: WorldModel, score: float) -> float | str:
    # Chassis-built containers emit scores as strings ("0.93"); clients must coerce.
    return f"{score:.2f}" if model.scores_as_strings else score


def _timing(item: WorldInput) -> JSON:
    assert item.start_time is not None
    assert item.end_time is not None
    return {
        "engine": item.engine,
        "inputFetching": item.input_fetching,
        "outputUploading": None,
        "modelLatency": item.model_latency,
        "queueTime": item.queue_time,
        "startTime": timestamp(item.start_time),
        "updateTime": timestamp(item.end_time),
        "endTime": timestamp(item.end_time),
    }


def result_item_json(job: WorldJob, item: WorldInput, votes: tuple[int, int]) -> JSON:
    body: JSON = {"status": "SUCCESSFUL", **_timing(item)}
    body["results.json"] = output_json(job, item)
    body["voting"] = {"up": votes[0], "down": votes[1]}
    return body


def failure_item_json(item: WorldInput) -> JSON:
    return {"status": "FAILED", **_timing(item), "error": item.error}


def results_json(world: World, job: WorldJob, votes: dict[str, tuple[int, int]]) -> JSON:
    """``GET /results/{jobId}``; ``votes`` maps input names to current (up, down) counts."""
    done = [item for item in job.inputs if item.status != "PENDING"]
    latencies = [item.model_latency for item in done]
    body: JSON = {
        "jobIdentifier": job.id,
        "accountIdentifier": world.account_identifier,
        "team": {"identifier": world.team_identifier},
        "total": job.total,
        "completed": job.completed,
        "failed": job.failed,
        # Finished once the job is terminal; partial results while it runs.
        "finished": job.status in ("COMPLETED", "CANCELED", "TIMEDOUT"),
        "submittedByKey": job.user.key_prefix,
        "explained": job.explain,
        "submittedAt": timestamp(job.submitted_at),
        "initialQueueTime": job.queue_time,
        "totalQueueTime": sum(item.queue_time for item in done),
        "averageModelLatency": round(sum(latencies) / len(latencies), 1) if latencies else 0.0,
        "totalModelLatency": float(sum(latencies)),
        "elapsedTime": job.elapsed_time,
        "inputSize": sum(input_size(job, item) for item in done),
        "results": {
            item.name: result_item_json(job, item, votes[item.name])
            for item in job.inputs
            if item.status == "SUCCESSFUL"
        },
        "failures": {
            item.name: failure_item_json(item) for item in job.inputs if item.status == "FAILED"
        },
    }
    if job.summarizing_at is not None:
        body["startingResultSummarizing"] = timestamp(job.summarizing_at)
        body["resultSummarizing"] = job.summarizing_ms
    return body


def single_result_json(
    world: World, job: WorldJob, item: WorldInput, votes: tuple[int, int]
) -> JSON:
    """``GET /results/{jobId}/datasource/{input}``: the Edge ``results.v1.Result`` shape."""
    done = [x for x in job.inputs if x.status != "PENDING"]
    latencies = [x.model_latency for x in done]
    body: JSON = {
        "job": {
            "identifier": job.id,
            "createdAt": epoch(job.created_at),
            "updatedAt": epoch(job.updated_at),
            "model": {"identifier": job.model.id, "version": job.version, "name": job.model.name},
            "user": {
                "identifier": job.user.identifier,
                "email": job.user.email,
                "name": f"{job.user.first_name} {job.user.last_name}",
            },
            "submittedBy": job.user.key_prefix,
            "team": {"identifier": world.team_identifier},
            "account": {"identifier": world.account_identifier},
            "tags": [],
            "totalInputCount": job.total,
            "completedInputCount": job.completed,
            "failedInputCount": job.failed,
            "submittedAt": epoch(job.submitted_at),
            "initialQueueTime": job.queue_time,
            "totalQueueTime": sum(x.queue_time for x in done),
            "averageModelLatency": (
                round(sum(latencies) / len(latencies), 1) if latencies else 0.0
            ),
            "resultSummaryStartedAt": epoch(job.summarizing_at),
            "inputSize": sum(input_size(job, x) for x in done),
            "finished": job.status in ("COMPLETED", "CANCELED", "TIMEDOUT"),
            "elapsedTime": job.elapsed_time,
            "resultSummarizingTime": job.summarizing_ms if job.summarizing_at else 0,
        },
        "inputName": item.name,
        "startTime": epoch(item.start_time),
        "updateTime": epoch(item.end_time),
        "endTime": epoch(item.end_time),
        "explained": job.explain,
        "engine": item.engine,
        "queueTime": item.queue_time,
        "inputFetchingTime": item.input_fetching,
        "outputUploadingTime": 0,
        "modelLatency": float(item.model_latency),
        "inputCompletedTime": epoch(item.end_time),
        "accessKey": job.user.key_prefix,
        "inputSize": input_size(job, item),
        "useLegacyDatasourceJSON": False,
    }
    if item.status == "SUCCESSFUL":
        body["status"] = "SUCCESSFUL"
        body["result"] = {"results.json": output_json(job, item)}
        body["voting"] = {"up": votes[0], "down": votes[1]}
    else:
        body["status"] = "FAILED"
        body["result"] = None
        body["error"] = item.error
    return body


def model_summary_json(model: WorldModel) -> JSON:
    """An item of ``GET /models`` (JS ``Model``; the Python SDK test reads these keys)."""
    return {
        "modelId": model.id,
        "latestVersion": model.latest_version,
        "versions": list(model.versions),
    }


def model_json(model: WorldModel, last_active: datetime) -> JSON:
    """``GET /models/{id}`` (JS ``GetModelByIdResponse``)."""
    return {
        "modelId": model.id,
        "latestVersion": model.latest_version,
        "latestActiveVersion": model.latest_version,
        "versions": list(model.versions),
        "author": model.author,
        "name": model.name,
        "description": model.description,
        "permalink": model.name.lower().replace(" ", "-"),
        "features": [],
        "isActive": True,
        "isRecommended": False,
        "isCommercial": False,
        "tags": [],
        "images": [],
        "snapshotImages": [],
        "lastActiveDateTime": timestamp(last_active),
        "visibility": {"scope": "ALL"},
    }


def model_version_json(model: WorldModel, version: str, released: datetime) -> JSON:
    """``GET /models/{id}/versions/{v}`` (JS ``GetModelDetailsResponse``)."""
    return {
        "version": version,
        "createdAt": timestamp(released),
        "updatedAt": timestamp(released),
        "inputValidationSchema": "",
        "createdBy": "sandbox@example.com",
        "timeout": {"status": 60000, "run": 600000},
        "requirement": _requirement(1, 0, "1000m", "2Gi"),
        "containerImage": {
            "uploadStatus": "SUCCESS",
            "loadStatus": "SUCCESS",
            "uploadPercentage": 100,
            "loadPercentage": 100,
            "containerImageSize": 512000000,
            "registryHost": "registry.sandbox.modzy.invalid",
            "repositoryNamespace": "sandbox",
            "repositoryName": model.id,
        },
        "inputs": [
            {
                "name": model.input_filename,
                "acceptedMediaTypes": model.media_type,
                "maximumSize": 1000000,
                "description": "The item to classify",
            }
        ],
        "outputs": [
            {
                "name": "results.json",
                "mediaType": "application/json",
                "maximumSize": 1000000,
                "description": "classPredictions sorted by score, descending",
            }
        ],
        "statistics": [],
        "isActive": True,
        "longDescription": model.description,
        "technicalDetails": "Classes: " + ", ".join(model.classes),
        "isAvailable": True,
        "sourceType": "EXTERNAL",
        "versionHistory": "",
        "status": "ACTIVE",
        "performanceSummary": "",
        "model": {"modelId": model.id, "name": model.name, "author": model.author},
        "processing": {"minimumParallelCapacity": 0, "maximumParallelCapacity": 1},
    }


def _requirement(requirement_id: int, gpus: int, cpu: str, memory: str) -> JSON:
    return {
        "requirementId": requirement_id,
        "gpuUnits": gpus,
        "cpuAmount": cpu,
        "memoryAmount": memory,
    }


# Hardware options of the account; the official SDK reads these when it connects.
REQUIREMENTS: list[JSON] = [
    {**_requirement(1, 0, "1000m", "2Gi"), "status": "ACTIVE"},
    {**_requirement(2, 0, "2000m", "4Gi"), "status": "ACTIVE"},
    {**_requirement(3, 0, "4000m", "8Gi"), "status": "ACTIVE"},
    {**_requirement(-6, 1, "4000m", "16Gi"), "status": "ACTIVE"},
    {**_requirement(5, 0, "8000m", "32Gi"), "status": "INACTIVE"},
]
