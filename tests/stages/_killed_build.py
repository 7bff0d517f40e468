"""A build run as a subprocess by test_crash.py, with a SIGKILL planted at one point.

The kill is planted by patching (no hooks in the library itself):
``python _killed_build.py POINT AFTER DATA_URL OUT END SEED JOBS START``.
"""

import json
import os
import signal
import sys
from datetime import datetime

from modzy_retrain import (
    AnyVotes,
    DatasetWriter,
    JobHistoryQuery,
    LineageResolver,
    ModzyClient,
    ResultFetcher,
    ResultJournal,
    VoteFilter,
    load_checkpoint,
)
from modzy_retrain._dataset import publish as _publish
from modzy_retrain.sandbox import Sandbox

point, after, data_url, out, end = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
seed, jobs = int(sys.argv[6]), int(sys.argv[7])
sb = Sandbox(seed=seed, jobs=jobs, data_url=data_url)
calls = [0]


def tick():
    calls[0] += 1
    if calls[0] >= after:
        os.kill(os.getpid(), signal.SIGKILL)


if point == "fetch":
    original = ResultFetcher._fetch

    def _fetch(self, job):
        tick()
        return original(self, job)

    ResultFetcher._fetch = _fetch
elif point == "write":
    original_s = DatasetWriter.serialize

    def serialize(self, sample):
        tick()
        return original_s(self, sample)

    DatasetWriter.serialize = serialize
elif point == "manifest":
    original_c = _publish.create_exclusive

    def create_exclusive(fs, path, data):
        if path.endswith("manifest.json"):
            tick()
        return original_c(fs, path, data)

    _publish.create_exclusive = create_exclusive
elif point == "pointer":
    original_w = _publish.atomic_write

    def atomic_write(fs, path, data):
        if path.endswith("_latest.json"):
            tick()
        return original_w(fs, path, data)

    _publish.atomic_write = atomic_write

with ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport()) as c:
    since = load_checkpoint(out)
    journal = ResultJournal(out, after=since.version if since else None)
    journal.load()
    query = JobHistoryQuery(
        c,
        start=None if since else datetime.fromisoformat(sys.argv[8]),
        end=datetime.fromisoformat(end) if end != "-" else None,
        since=since,
    )
    (
        query
        | ResultFetcher(c, journal=journal)
        | VoteFilter(AnyVotes())
        | LineageResolver(templates=sb.input_templates)
        | DatasetWriter(out, versioned=True, journal=journal)
    ).run()
counts = {"results_requests": sb.request_counts["GET /results/{jobId}"], "reused": journal.reused}
sys.stdout.write(json.dumps(counts) + "\n")
