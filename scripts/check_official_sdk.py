"""Check the sandbox against Modzy's own Python SDK (modzy-sdk 0.11.6), unchanged.

The SDK goes into a throwaway virtualenv (never into the project); the sandbox runs over
loopback HTTP in this process; a probe script inside the throwaway venv uses the SDK the
way its README shows and reports what it saw as JSON, which is compared here with what the
sandbox's world says. Exits non-zero on any mismatch.

Needs network access to PyPI (not part of the test suite). Usage:

    .venv/bin/python scripts/check_official_sdk.py [--venv DIR] [--jobs N]

``--venv DIR`` keeps (and reuses) the SDK's virtualenv in DIR instead of a temp folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modzy_retrain.sandbox import Sandbox

SDK = "modzy-sdk==0.11.6"

# Runs inside the throwaway venv, with the official SDK; prints one JSON document.
PROBE = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime, timedelta
    from modzy import ApiClient
    from modzy.error import ApiError, ResultsError

    base_url, api_key, vote_job, vote_input = sys.argv[1:5]
    out = {}
    # The README's constructor; it probes GET /models and GET /models/requirements/account.
    client = ApiClient(base_url=base_url, api_key=api_key)
    out["hardware_options"] = sorted(client.models.hardware_config_options_lookup)

    models = client.models.get_all()
    out["models"] = sorted(m.modelId for m in models)
    out["model_names"] = sorted(client.models.get(m).name for m in models)
    out["versions"] = {
        m.modelId: [v.version for v in client.models.get_versions(m)] for m in models
    }
    out["latest"] = {
        m.modelId: client.models.get_version(m.modelId, m.latestVersion).version for m in models
    }
    out["by_name"] = client.models.get_by_name("Sentiment Analysis").modelId

    # History, paged by hand as the SDK fetches one page per call (default status="all").
    ids, page = [], 1
    while True:
        jobs = client.jobs.get_history(page=page, per_page=25)
        ids += [job.job_identifier for job in jobs]
        if len(jobs) < 25:
            break
        page += 1
    out["history"] = ids
    out["history_desc"] = [
        j.job_identifier for j in client.jobs.get_history(direction="desc", per_page=10000)
    ]
    prefix = api_key.split(".")[0]  # as the SDK's own tests derive the accessKey filter
    out["mine"] = [
        j.job_identifier for j in client.jobs.get_history(access_key=prefix, per_page=10000)
    ]
    out["terminated"] = [
        j.job_identifier for j in client.jobs.get_history(status="terminated", per_page=10000)
    ]
    out["pending"] = [
        j.job_identifier for j in client.jobs.get_history(status="pending", per_page=10000)
    ]
    out["sentiment"] = [
        j.job_identifier for j in client.jobs.get_history(model="sentiment", per_page=10000)
    ]
    out["user_a"] = [j.job_identifier for j in client.jobs.get_history(user="a", per_page=10000)]
    out["window"] = [
        j.job_identifier
        for j in client.jobs.get_history(
            start_date=datetime(2025, 2, 1), end_date=datetime(2025, 2, 15), per_page=10000
        )
    ]
    errors = {}
    for name, kwargs in {
        "end_without_start": {"end_date": datetime(2025, 2, 15)},
        "future_start": {"start_date": datetime.now() + timedelta(days=30)},
        "page_zero": {"page": 0},
    }.items():
        try:
            client.jobs.get_history(**kwargs)
            errors[name] = None
        except ApiError as exc:
            code = exc.response.status_code if exc.response is not None else None
            errors[name] = [code, str(exc)]
    out["errors"] = errors

    # Results of every terminated job: voting counts, top classes, failures.
    votes, tops, failures = {}, {}, {}
    for job_id in out["terminated"]:
        job = client.jobs.get(job_id)
        results = client.results.get(job)
        assert results.finished, job_id
        votes[job_id] = {
            n: [r["voting"]["up"], r["voting"]["down"]] for n, r in results["results"].items()
        }
        tops[job_id] = {}
        for n in results["results"]:
            output = results.get_source_outputs(n)["results.json"]
            tops[job_id][n] = output["data"]["result"]["classPredictions"][0]["class"]
        for name in results.get("failures", {}):
            try:
                results.get_source_outputs(name)
            except ResultsError as exc:
                failures.setdefault(job_id, {})[name] = str(exc)
    out["votes"], out["tops"], out["failures"] = votes, tops, failures

    # The vote routes through the SDK's raw HTTP client (no SDK wrapper exists for them).
    client.http.post(f"/results/{vote_job}/upvote/{vote_input}")
    out["vote_after_up"] = client.http.get(f"/results/{vote_job}/vote/{vote_input}")["vote"]
    client.http.post(f"/results/{vote_job}/downvote/{vote_input}")
    out["vote_after_down"] = client.http.get(f"/results/{vote_job}/vote/{vote_input}")["vote"]
    after = client.results.get(vote_job)["results"][vote_input]["voting"]
    out["voting_after"] = [after["up"], after["down"]]
    try:
        client.jobs.get("00000000-0000-4000-8000-000000000000")
        out["unknown_job"] = None
    except ApiError as exc:
        out["unknown_job"] = exc.response.status_code
    try:
        ApiClient(base_url=base_url, api_key=prefix + ".wrongwrongwrongwrong00")
        out["bad_key"] = None
    except Exception as exc:  # the SDK wraps a failed probe in ValueError
        out["bad_key"] = type(exc).__name__
    print(json.dumps(out))
    """
)


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _ensure_sdk(venv: Path) -> Path:
    python = _venv_python(venv)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run(
        [str(python), "-c", "import modzy; print(modzy.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0 or probe.stdout.strip() != "0.11.6":
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", SDK],
            capture_output=True,
            text=True,
            check=False,
        )
        if install.returncode != 0:
            print(install.stdout + install.stderr, file=sys.stderr)
            raise SystemExit(f"could not install {SDK} (PyPI unreachable?)")
    return python


def _expected(sb: Sandbox, vote_job: str, vote_input: str) -> dict[str, Any]:
    jobs = sorted(sb.jobs, key=lambda j: (j.created_at, j.id))
    prefix = sb.api_key.split(".")[0]
    terminated = [j for j in jobs if j.status in ("COMPLETED", "CANCELED", "TIMEDOUT")]
    # The probe's naive datetimes mean UTC to the sandbox.
    start = datetime(2025, 2, 1, tzinfo=timezone.utc)
    end = datetime(2025, 2, 15, tzinfo=timezone.utc)
    voted = sb.job(vote_job).input(vote_input)
    assert voted is not None
    return {
        "hardware_options": [-6, 1, 2, 3],
        "models": sorted(m.id for m in sb.models),
        "model_names": sorted(m.name for m in sb.models),
        "versions": {m.id: list(m.versions) for m in sb.models},
        "latest": {m.id: m.versions[-1] for m in sb.models},
        "by_name": next(m.id for m in sb.models if m.name == "Sentiment Analysis"),
        "history": [j.id for j in jobs],
        "history_desc": [j.id for j in reversed(jobs)],
        "mine": [j.id for j in jobs if j.user.key_prefix == prefix],
        "terminated": [j.id for j in terminated],
        "pending": [j.id for j in jobs if j.status in ("SUBMITTED", "IN_PROGRESS")],
        "sentiment": [j.id for j in jobs if j.model.name == "Sentiment Analysis"],
        "user_a": [
            j.id
            for j in jobs
            if any("a" in f.lower() for f in (j.user.first_name, j.user.last_name, j.user.email))
        ],
        "window": [j.id for j in jobs if start <= j.created_at <= end],
        "error_codes": {"end_without_start": 400, "future_start": 400, "page_zero": 400},
        "votes": {
            j.id: {i.name: [i.votes_up, i.votes_down] for i in j.inputs if i.status == "SUCCESSFUL"}
            for j in terminated
        },
        "tops": {
            j.id: {i.name: i.predicted for i in j.inputs if i.status == "SUCCESSFUL"}
            for j in terminated
        },
        "failures": {
            j.id: {i.name: i.error for i in j.inputs if i.status == "FAILED"}
            for j in terminated
            if any(i.status == "FAILED" for i in j.inputs)
        },
        "vote_after_up": "UP",
        "vote_after_down": "DOWN",
        # The probe's up-vote is replaced by its down-vote: one more "down" than the world had.
        "voting_after": [voted.votes_up, voted.votes_down + 1],
        "unknown_job": 404,
        "bad_key": "ValueError",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=None, help="reuse/keep the SDK venv here")
    parser.add_argument("--jobs", type=int, default=150, help="jobs in the sandbox world")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="modzy-sdk-check-") as tmp:
        venv = args.venv or Path(tmp) / "venv"
        print(f"installing {SDK} into {venv} ...", flush=True)
        python = _ensure_sdk(venv)
        probe_path = Path(tmp) / "probe.py"
        probe_path.write_text(PROBE)

        sb = Sandbox(seed=7, jobs=args.jobs, data_url="memory://official-sdk-check")
        vote_job, vote_input = next(
            (j.id, i.name)
            for j in sb.jobs
            if j.status == "COMPLETED"
            for i in j.inputs
            if i.status == "SUCCESSFUL" and i.name.isalnum()
        )
        expected = _expected(sb, vote_job, vote_input)
        with sb.serve() as server:
            run = subprocess.run(
                [str(python), str(probe_path), server.base_url, sb.api_key, vote_job, vote_input],
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
        if run.returncode != 0:
            print(run.stdout)
            print(run.stderr, file=sys.stderr)
            print("FAIL: the official SDK probe crashed")
            return 1
        seen = json.loads(run.stdout)

    problems = []
    for key, want in expected.items():
        if key == "error_codes":
            got_codes = {k: (v[0] if v else None) for k, v in seen["errors"].items()}
            if got_codes != want:
                problems.append(f"errors: expected {want}, got {seen['errors']}")
            continue
        if seen.get(key) != want:
            problems.append(f"{key}: expected {str(want)[:200]}, got {str(seen.get(key))[:200]}")

    n_results = sum(len(v) for v in seen["votes"].values())
    voted = sum(1 for v in seen["votes"].values() for up, down in v.values() if up or down)
    print(f"official SDK {SDK} against {server.base_url} (world seed 7, {args.jobs} jobs)")
    print(f"  models: {', '.join(seen['model_names'])}")
    print(
        f"  history: {len(seen['history'])} jobs over {-(-len(seen['history']) // 25)} pages; "
        f"mine={len(seen['mine'])} terminated={len(seen['terminated'])} "
        f"pending={len(seen['pending'])} sentiment={len(seen['sentiment'])} "
        f"window={len(seen['window'])}"
    )
    print(f"  history errors: { {k: v[0] if v else None for k, v in seen['errors'].items()} }")
    print(
        f"  results: {len(seen['votes'])} jobs, {n_results} successful inputs "
        f"({voted} with votes), {sum(len(v) for v in seen['failures'].values())} failures"
    )
    print(
        f"  vote routes: up->{seen['vote_after_up']} down->{seen['vote_after_down']} "
        f"voting={seen['voting_after']}; unknown job -> {seen['unknown_job']}; "
        f"bad key -> {seen['bad_key']}"
    )
    if problems:
        for problem in problems:
            print(f"MISMATCH {problem}")
        return 1
    print("OK: every check matched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
