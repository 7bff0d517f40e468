"""The sandbox world: determinism, models, statuses, labels, votes and raw files."""

from __future__ import annotations

import re
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fsspec
import pytest

from modzy_retrain.sandbox import Sandbox
from modzy_retrain.sandbox._png import decode_rgb

UTC = timezone.utc
KEY = re.compile(r"^[A-Za-z0-9]{20}\.[A-Za-z0-9]{20}$")


def _snapshot(sb: Sandbox) -> list[Any]:
    return [
        (
            j.id,
            j.status,
            j.model.id,
            j.version,
            j.created_at,
            j.user.access_key,
            *((i.name, i.truth, i.predictions, i.votes_up, i.votes_down) for i in j.inputs),
        )
        for j in sb.jobs
    ]


def test_same_seed_same_world(make_sb: Any) -> None:
    a, b = make_sb(seed=5, jobs=80), make_sb(seed=5, jobs=80)
    assert _snapshot(a) == _snapshot(b)
    assert a.api_key == b.api_key
    assert a.missing_inputs == b.missing_inputs
    assert a.duplicate_inputs == b.duplicate_inputs


def test_different_seed_different_world(make_sb: Any) -> None:
    assert _snapshot(make_sb(seed=5, jobs=80)) != _snapshot(make_sb(seed=6, jobs=80))
    assert make_sb(seed=5).api_key != make_sb(seed=6).api_key


def test_world_ignores_global_random_state(make_sb: Any) -> None:
    import random

    random.seed(1)
    a = _snapshot(make_sb(seed=3, jobs=30))
    random.seed(2)
    assert _snapshot(make_sb(seed=3, jobs=30)) == a


def test_api_key_shape_and_users(shared_sb: Sandbox) -> None:
    assert KEY.match(shared_sb.api_key)
    assert len(shared_sb.users) >= 3
    assert shared_sb.users[0].access_key == shared_sb.api_key
    assert len({u.key_prefix for u in shared_sb.users}) == len(shared_sb.users)
    submitters = Counter(j.user.key_prefix for j in shared_sb.jobs)
    assert len(submitters) == len(shared_sb.users)  # jobs come from every user


def test_given_api_key_joins_without_changing_the_world(make_sb: Any) -> None:
    key = "AbCdEfGhIj0123456789.ZyXwVuTsRq9876543210"
    default, custom = make_sb(seed=2, jobs=40), make_sb(seed=2, jobs=40, api_key=key)
    assert custom.api_key == key
    assert custom.users[0].key_prefix == "AbCdEfGhIj0123456789"
    assert [j.id for j in default.jobs] == [j.id for j in custom.jobs]
    assert any(j.user.access_key == key for j in custom.jobs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"jobs": -1},
        {"inputs_per_job": 0},
        {"latency_ms": -1.0},
        {"api_key": "no-dot-here"},
        {"api_key": ".body"},
        {"start": datetime(2025, 3, 1, tzinfo=UTC), "end": datetime(2025, 1, 1, tzinfo=UTC)},
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        Sandbox(**kwargs)


def test_three_models(shared_sb: Sandbox) -> None:
    by_name = {m.name: m for m in shared_sb.models}
    assert set(by_name) >= {"Image Classification", "Spam Detection", "Sentiment Analysis"}
    for model in shared_sb.models:
        assert re.fullmatch(r"[a-z0-9]{10}", model.id)
    image = by_name["Image Classification"]
    assert image.versions == ("1.0.0", "1.1.0")
    assert len(image.classes) == 8
    assert image.kind == "image"
    assert by_name["Spam Detection"].classes == ("spam", "ham")
    assert by_name["Spam Detection"].scores_as_strings
    assert by_name["Sentiment Analysis"].classes == ("negative", "neutral", "positive")
    used = Counter((j.model.name, j.version) for j in shared_sb.jobs)
    assert used[("Image Classification", "1.0.0")]
    assert used[("Image Classification", "1.1.0")]


def test_jobs_span_the_window_in_order(shared_sb: Sandbox) -> None:
    jobs = shared_sb.jobs
    assert len(jobs) == 200
    assert all(j.total == 4 for j in jobs)
    assert [j.created_at for j in jobs] == sorted(j.created_at for j in jobs)
    assert datetime(2025, 1, 1, tzinfo=UTC) <= jobs[0].created_at
    assert jobs[-1].created_at < datetime(2025, 3, 1, tzinfo=UTC)
    assert len({j.id for j in jobs}) == len(jobs)
    for job in jobs:
        assert job.created_at <= job.submitted_at <= job.updated_at or job.status == "SUBMITTED"


def test_statuses(shared_sb: Sandbox) -> None:
    statuses = Counter(j.status for j in shared_sb.jobs)
    assert statuses["COMPLETED"] > 0.8 * len(shared_sb.jobs)
    assert statuses["CANCELED"] >= 1
    assert statuses["TIMEDOUT"] >= 1
    assert statuses["IN_PROGRESS"] >= 1
    assert statuses["SUBMITTED"] >= 1
    # The unfinished jobs are the most recent ones.
    tail = [j.status for j in shared_sb.jobs[-(statuses["IN_PROGRESS"] + statuses["SUBMITTED"]) :]]
    assert set(tail) == {"IN_PROGRESS", "SUBMITTED"}
    for job in shared_sb.jobs:
        assert job.completed + job.failed + job.pending == job.total
        if job.status == "COMPLETED":
            assert job.pending == 0
        if job.status == "SUBMITTED":
            assert job.pending == job.total
        if job.status in ("CANCELED", "TIMEDOUT", "IN_PROGRESS"):
            assert job.pending >= 1  # partial


def test_failed_inputs_have_errors(shared_sb: Sandbox) -> None:
    failed = [i for j in shared_sb.jobs for i in j.inputs if i.status == "FAILED"]
    assert failed
    assert all(i.error and not i.predictions for i in failed)


def test_wrong_predictions_and_ground_truth(shared_sb: Sandbox) -> None:
    ok = [(j, i) for j in shared_sb.jobs for i in j.inputs if i.status == "SUCCESSFUL"]
    wrong = [(j, i) for j, i in ok if not i.correct]
    assert 0.15 <= len(wrong) / len(ok) <= 0.3
    for job, item in ok:
        assert shared_sb.ground_truth(job.id, item.name) == item.truth
        assert item.truth in job.model.classes
        scores = [s for _, s in item.predictions]
        assert scores == sorted(scores, reverse=True)
        assert len(item.predictions) == job.model.top_k
        if job.model.name == "Spam Detection" and not item.correct:
            # Binary: the other class is the truth, by construction.
            assert item.predictions[1][0] == item.truth
    multi = [i for j, i in wrong if len(j.model.classes) > 2]
    runner_up = sum(1 for i in multi if i.predictions[1][0] == i.truth)
    assert 0.4 < runner_up / len(multi) < 0.95  # often, not always


def test_ground_truth_unknown_input(shared_sb: Sandbox) -> None:
    with pytest.raises(KeyError):
        shared_sb.ground_truth(shared_sb.jobs[0].id, "no-such-input")
    with pytest.raises(KeyError):
        shared_sb.ground_truth("no-such-job", "0001")


def test_vote_distribution(make_sb: Any) -> None:
    sb = make_sb(seed=0, jobs=600)
    ok = [i for j in sb.jobs for i in j.inputs if i.status == "SUCCESSFUL"]
    unvoted = sum(1 for i in ok if not i.votes_up and not i.votes_down) / len(ok)
    assert 0.55 <= unvoted <= 0.75
    both = [i for i in ok if i.votes_up and i.votes_down]
    assert both
    up_only = [i for i in ok if i.votes_up and not i.votes_down]
    down_only = [i for i in ok if i.votes_down and not i.votes_up]
    # Votes follow correctness, with noise.
    assert sum(i.correct for i in up_only) / len(up_only) > 0.85
    assert sum(not i.correct for i in down_only) / len(down_only) > 0.6
    assert any(not i.correct for i in up_only)
    assert any(i.correct for i in down_only)
    assert all(
        i.votes_up == i.votes_down == 0
        for j in sb.jobs
        for i in j.inputs
        if i.status != "SUCCESSFUL"
    )


def test_input_naming_conventions(shared_sb: Sandbox) -> None:
    for job in shared_sb.jobs:
        names = [i.name for i in job.inputs]
        assert len(set(names)) == len(names)
        for name in names:
            if job.model.name == "Image Classification":
                assert re.fullmatch(rf"cam\d\d_{job.submitted_at:%Y%m%d}_\d{{6}}", name)
            elif job.model.name == "Spam Detection":
                assert name.startswith("msg-")
                assert "/" not in name
            else:
                assert re.fullmatch(r"\d{4}", name)
    hostile = [i.name for j in shared_sb.jobs for i in j.inputs if " " in i.name]
    assert hostile, "some user-defined names carry spaces and other reserved characters"


def test_input_templates_resolve_with_record_fields(shared_sb: Sandbox) -> None:
    templates = shared_sb.input_templates
    assert set(templates) == {m.id for m in shared_sb.models}
    for template in templates.values():
        assert template.startswith(shared_sb.data_url + "/")
    job = next(j for j in shared_sb.jobs if j.model.name == "Image Classification")
    url = templates[job.model.id].format(
        job_id=job.id,
        input_name=job.inputs[0].name,
        model_id=job.model.id,
        model_version=job.version,
        submitted_at=job.submitted_at,
    )
    assert url == shared_sb.input_url(job.id, job.inputs[0].name)
    assert url.endswith(f"/images/{job.submitted_at:%Y/%m/%d}/{job.inputs[0].name}.png")


def test_braces_in_data_url_survive_format(tmp_path: Path) -> None:
    folder = tmp_path / "odd{name}"
    sb = Sandbox(seed=0, jobs=3, data_url=str(folder))
    job = sb.jobs[0]
    assert sb.input_url(job.id, job.inputs[0].name).startswith(str(folder) + "/")


def _check_files(sb: Sandbox) -> None:
    sb.write_inputs()
    missing = set(sb.missing_inputs)
    assert missing
    fs, _ = fsspec.core.url_to_fs(sb.data_url)
    for job in sb.jobs:
        for item in job.inputs:
            url = sb.input_url(job.id, item.name)
            _, path = fsspec.core.url_to_fs(url)
            if (job.id, item.name) in missing:
                assert not fs.exists(path)
                continue
            data = fs.cat_file(path)
            assert data == sb.input_bytes(job.id, item.name)
            if job.model.kind == "image":
                width, height, pixels = decode_rgb(data)
                assert (width, height, len(pixels)) == (16, 16, 16 * 16 * 3)
            else:
                assert data.decode("utf-8")


def test_files_exist_at_templates_memory(make_sb: Any) -> None:
    _check_files(make_sb(seed=4, jobs=60))


def test_files_exist_at_templates_local(tmp_path: Path) -> None:
    sb = Sandbox(seed=4, jobs=60, data_url=str(tmp_path / "inputs"))
    _check_files(sb)
    written = [p for p in (tmp_path / "inputs").rglob("*") if p.is_file()]
    assert len(written) == 60 * 4 - len(sb.missing_inputs)


def test_write_inputs_is_idempotent(make_sb: Any) -> None:
    sb = make_sb(seed=4, jobs=10)
    sb.write_inputs()
    fs, root = fsspec.core.url_to_fs(sb.data_url)
    before = sorted(fs.find(root))
    sb.write_inputs()
    assert sorted(fs.find(root)) == before


def test_default_data_url_is_a_temp_folder() -> None:
    sb = Sandbox(seed=0, jobs=5)
    folder = Path(sb.data_url)
    assert folder.is_dir()
    sb.write_inputs()
    assert any(folder.rglob("*.png")) or any(folder.rglob("*.txt"))
    del sb
    import gc

    gc.collect()
    assert not folder.exists()  # owned temp folder removed with the sandbox


def test_duplicate_inputs_share_bytes(shared_sb: Sandbox) -> None:
    assert shared_sb.duplicate_inputs
    contents: Counter[bytes] = Counter()
    for job in shared_sb.jobs:
        for item in job.inputs:
            contents[shared_sb.input_bytes(job.id, item.name)] += 1
    for first, second in shared_sb.duplicate_inputs:
        assert first.job_id != second.job_id
        assert shared_sb.input_bytes(*first) == shared_sb.input_bytes(*second)
        assert shared_sb.ground_truth(*first) == shared_sb.ground_truth(*second)
    # Identical contents occur only where planted.
    assert sum(n - 1 for n in contents.values()) == len(shared_sb.duplicate_inputs)


def test_contents_follow_the_true_label(shared_sb: Sandbox) -> None:
    for job in shared_sb.jobs:
        if job.model.name != "Sentiment Analysis":
            continue
        for item in job.inputs:
            text = shared_sb.input_bytes(job.id, item.name).decode()
            if item.truth == "positive":
                assert re.search(r"love|Excellent|Best", text)
            if item.truth == "negative":
                assert re.search(r"Terrible|disappointed|Worst", text)


def test_large_world_writes_quickly(tmp_path: Path) -> None:
    import time

    sb = Sandbox(seed=9, jobs=1000, data_url=str(tmp_path / "big"))
    started = time.perf_counter()
    sb.write_inputs()
    assert time.perf_counter() - started < 20  # ~1 s on an idle 2-core machine
    assert sum(1 for p in (tmp_path / "big").rglob("*") if p.is_file()) == 4000 - len(
        sb.missing_inputs
    )


def test_empty_world(make_sb: Any) -> None:
    sb = make_sb(jobs=0)
    assert sb.jobs == ()
    assert sb.missing_inputs == ()
    sb.write_inputs()


def test_another_sandbox_writing_the_same_inputs_never_shows_a_half_written_one(
    tmp_path: Path,
) -> None:
    """Several processes each make the same sandbox over one folder (a load test's
    writers: each ``transport()`` writes the inputs): while one writes them, a reader
    reads each input whole, never truncated (a build would hash an empty file)."""
    Sandbox(seed=4, jobs=3, data_url=str(tmp_path)).write_inputs()
    paths = [p for p in sorted(tmp_path.rglob("*")) if p.is_file()]
    whole = {p: p.read_bytes() for p in paths}
    seen: list[bool] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.extend(p.read_bytes() == whole[p] for p in paths)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(40):
            Sandbox(seed=4, jobs=3, data_url=str(tmp_path)).write_inputs()
    finally:
        stop.set()
        reader.join()
    assert seen
    assert all(seen), f"{seen.count(False)} of {len(seen)} reads saw a half-written input"
