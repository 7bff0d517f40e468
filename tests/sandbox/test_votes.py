"""The vote routes: one vote per key per input, replacement, reset, and their errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from modzy_retrain.sandbox import Sandbox


def _target(sb: Sandbox) -> tuple[str, str, int, int]:
    for job in sb.jobs:
        if job.status != "COMPLETED":
            continue
        for item in job.inputs:
            if item.status == "SUCCESSFUL" and item.votes_up and item.votes_down:
                return job.id, item.name, item.votes_up, item.votes_down
    raise LookupError("no input with both votes")


def _voting(client: httpx.Client, job_id: str, name: str) -> tuple[int, int]:
    voting = client.get(f"/results/{job_id}").json()["results"][name]["voting"]
    return voting["up"], voting["down"]


def _vote(client: httpx.Client, job_id: str, name: str) -> str:
    response = client.get(f"/results/{job_id}/vote/{quote(name, safe='')}")
    assert response.status_code == 200
    vote: str = response.json()["vote"]
    return vote


def test_up_then_down_replaces(sb: Sandbox, client_of: Any) -> None:
    job_id, name, up, down = _target(sb)
    with client_of(sb) as client:
        assert _vote(client, job_id, name) == "NO_VOTES"
        assert _voting(client, job_id, name) == (up, down)

        response = client.post(f"/results/{job_id}/upvote/{name}")
        assert response.status_code == 200
        assert response.json() == {}
        assert _vote(client, job_id, name) == "UP"
        assert _voting(client, job_id, name) == (up + 1, down)

        client.post(f"/results/{job_id}/upvote/{name}")  # the same vote again: still one
        assert _voting(client, job_id, name) == (up + 1, down)

        client.post(f"/results/{job_id}/downvote/{name}")
        assert _vote(client, job_id, name) == "DOWN"
        assert _voting(client, job_id, name) == (up, down + 1)
    assert sb.votes(job_id, name) == (up, down + 1)


def test_votes_are_per_key(sb: Sandbox, client_of: Any) -> None:
    job_id, name, up, down = _target(sb)
    with client_of(sb) as mine, client_of(sb, key=sb.users[1].access_key) as theirs:
        mine.post(f"/results/{job_id}/upvote/{name}")
        theirs.post(f"/results/{job_id}/downvote/{name}")
        assert _vote(mine, job_id, name) == "UP"
        assert _vote(theirs, job_id, name) == "DOWN"
        assert _voting(mine, job_id, name) == (up + 1, down + 1)
        single = mine.get(f"/results/{job_id}/datasource/{name}").json()["voting"]
        assert single == {"up": up + 1, "down": down + 1}


def test_delete_resets_every_vote(sb: Sandbox, client_of: Any) -> None:
    job_id, name, _, _ = _target(sb)
    with client_of(sb) as mine, client_of(sb, key=sb.users[1].access_key) as theirs:
        mine.post(f"/results/{job_id}/upvote/{name}")
        theirs.post(f"/results/{job_id}/upvote/{name}")
        response = theirs.delete(f"/results/{job_id}/vote/{name}")
        assert response.status_code == 200
        assert _voting(mine, job_id, name) == (0, 0)
        assert _vote(mine, job_id, name) == "NO_VOTES"
        assert _vote(theirs, job_id, name) == "NO_VOTES"
        mine.post(f"/results/{job_id}/downvote/{name}")
        assert _voting(mine, job_id, name) == (0, 1)


def test_votes_do_not_leak_between_sandboxes(make_sb: Any, client_of: Any) -> None:
    a, b = make_sb(seed=1, jobs=60), make_sb(seed=1, jobs=60)
    job_id, name, up, down = _target(a)
    with client_of(a) as client:
        client.post(f"/results/{job_id}/upvote/{name}")
    assert a.votes(job_id, name) == (up + 1, down)
    assert b.votes(job_id, name) == (up, down)


def test_other_inputs_untouched(sb: Sandbox, client_of: Any) -> None:
    job_id, name, _, _ = _target(sb)
    job = sb.job(job_id)
    before = {i.name: (i.votes_up, i.votes_down) for i in job.inputs if i.status == "SUCCESSFUL"}
    with client_of(sb) as client:
        client.post(f"/results/{job_id}/downvote/{name}")
        after = client.get(f"/results/{job_id}").json()["results"]
    for other, counts in before.items():
        if other != name:
            assert (after[other]["voting"]["up"], after[other]["voting"]["down"]) == counts


@pytest.mark.parametrize("action", ["upvote", "downvote"])
def test_vote_errors(sb: Sandbox, client_of: Any, action: str) -> None:
    failed = next((j, i) for j in sb.jobs for i in j.inputs if i.status == "FAILED")
    pending = next((j, i) for j in sb.jobs for i in j.inputs if i.status == "PENDING")
    with client_of(sb) as client:
        for job, item in (failed, pending):
            response = client.post(f"/results/{job.id}/{action}/{quote(item.name, safe='')}")
            assert response.status_code == 404
            assert response.json()["statusCode"] == 404
        assert client.post(f"/results/{sb.jobs[0].id}/{action}/nope").status_code == 404
        assert client.post(f"/results/unknown-job/{action}/0001").status_code == 404
        assert client.get(f"/results/{sb.jobs[0].id}/vote/nope").status_code == 404
        assert client.delete(f"/results/{sb.jobs[0].id}/vote/nope").status_code == 404
    assert sb.request_counts[f"POST /results/{{jobId}}/{action}/{{inputName}}"] == 4


def test_votes_need_auth(sb: Sandbox) -> None:
    job_id, name, up, down = _target(sb)
    with httpx.Client(base_url=sb.base_url, transport=sb.transport()) as client:
        assert client.post(f"/results/{job_id}/upvote/{name}").status_code == 401
    assert sb.votes(job_id, name) == (up, down)
