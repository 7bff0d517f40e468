"""A build's trigger against a real Dagster webserver: the materialization it reports,
and the run it launches, read back through Dagster's GraphQL API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modzy_retrain import BuildSettings, build, load_manifest
from modzy_retrain._cli.main import main
from modzy_retrain._cli.settings import TriggerSettings
from modzy_retrain._triggers.fire import TriggerActions, fire
from modzy_retrain._triggers.payload import idempotency_key
from modzy_retrain._triggers.presets import DagsterAction
from modzy_retrain.sandbox import Sandbox

from .conftest import LOCATION, DagsterServer

# The first test of a session may install Dagster (about 30 s, longer on a cold cache).
pytestmark = pytest.mark.timeout(600)

MATERIALIZATIONS = """
query Materializations($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(limit: 10) {
        description
        tags { key value }
        metadataEntries {
          label
          ... on TextMetadataEntry { text }
          ... on IntMetadataEntry { intValue }
          ... on JsonMetadataEntry { jsonString }
        }
      }
    }
  }
}"""
RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId jobName status runConfigYaml tags { key value } } }
  }
}"""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    sb = Sandbox(seed=5, jobs=40, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    return sb


def _metadata(entry: dict[str, object]) -> object:
    if "jsonString" in entry:
        return json.loads(str(entry["jsonString"]))
    return entry.get("text", entry.get("intValue"))


def test_a_build_reports_a_materialization_with_the_version_s_metadata(
    dagster: DagsterServer,
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "ds"
    with sandbox.serve() as server:
        argv = ["build", "--base-url", server.base_url, "--out", str(out), "--quiet"]
        argv += [
            a for m, t in sandbox.input_templates.items() for a in ("--input-template", f"{m}={t}")
        ]
        argv += ["--trigger", "dagster:retraining/sentiment"]
        monkeypatch.setenv("MODZY_API_KEY", sandbox.api_key)
        monkeypatch.setenv("DAGSTER_URL", dagster.url)
        assert main(argv) == 0
        assert main(argv) == 3  # nothing new, and v0001 is not reported twice
    assert (
        "trigger for v0001: fired, ok (dagster:retraining/sentiment: 200)"
        in capsys.readouterr().out
    )
    data = dagster.graphql(MATERIALIZATIONS, path=["retraining", "sentiment"])
    (materialization,) = data["assetOrError"]["assetMaterializations"]
    metadata = {e["label"]: _metadata(e) for e in materialization["metadataEntries"]}
    manifest = load_manifest(str(out))
    assert manifest.trigger is not None
    assert manifest.changes is not None
    assert metadata["dataset_url"] == str(out)
    assert metadata["version"] == "v0001"
    assert metadata["added"] == manifest.changes.added
    assert metadata["relabelled"] == 0
    assert metadata["new_samples"] == manifest.trigger.new
    assert metadata["new_by_label"] == manifest.trigger.new_by_label
    assert metadata["idempotency_key"] == idempotency_key(str(out), "v0001")
    tags = {t["key"]: t["value"] for t in materialization["tags"]}
    assert tags["dagster/data_version"] == "v0001"
    assert materialization["description"] == f"modzy_retrain v0001 of {out}"


def test_a_build_launches_a_job_run_once(
    dagster: DagsterServer, sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    action = DagsterAction(
        job="retrain",
        location=LOCATION,
        run_config={
            "ops": {"train": {"config": {"version": "{version}", "dataset_url": "{dataset_url}"}}}
        },
    )
    settings = BuildSettings(
        base_url=sandbox.base_url,
        input_templates=sandbox.input_templates,
        out=str(out),
        trigger=TriggerSettings(actions=[action]),
    )
    env = {"MODZY_API_KEY": sandbox.api_key, "DAGSTER_URL": dagster.url}
    result = build(settings, environ=env, transport=sandbox.transport(), trigger_sleep=[].append)
    assert result.exit_code == 0, result.firing
    key = idempotency_key(str(out), "v0001")
    tag = {"key": "modzy_retrain/idempotency_key", "value": key}
    (run,) = dagster.graphql(RUNS, filter={"tags": [tag]})["runsOrError"]["results"]
    assert run["jobName"] == "retrain"
    assert run["status"] == "QUEUED"  # no daemon here: queued is what a trigger does
    assert "v0001" in run["runConfigYaml"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["modzy_retrain/version"] == "v0001"
    assert tags["modzy_retrain/dataset_url"] == str(out)
    assert result.firing is not None
    assert result.firing.outcomes[0].detail == f"run {run['runId']}"
    # A repeat delivery (its record lost) finds the run by its key and launches none.
    shutil.rmtree(out / "_triggers")
    again = fire(
        str(out),
        load_manifest(str(out)),
        TriggerActions(actions=(action,)).prepare(env),
        sleep=[].append,
    )
    assert again.outcomes[0].detail == f"run {run['runId']} existed"
    assert len(dagster.graphql(RUNS, filter={"tags": [tag]})["runsOrError"]["results"]) == 1
    # A job Dagster does not have: refused, naming what to check.
    shutil.rmtree(out / "_triggers")
    missing = action.model_copy(update={"job": "nope"})
    lost = fire(
        str(out),
        load_manifest(str(out)),
        TriggerActions(actions=(missing,)).prepare(env),
        sleep=[].append,
    )
    assert not lost.ok
    assert "no job nope in code location defs.py" in lost.outcomes[0].detail


def test_the_server_started_within_its_budget(dagster: DagsterServer) -> None:
    # Measured: about 5 s on this machine; the deadline is far above.
    assert dagster.started_in < 60, dagster.started_in
