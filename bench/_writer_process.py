"""One writer of ``bench/_writers.py`` as its own process: ``python _writer_process.py
KIND INDEX JOB_FILE`` (the round's job as JSON); prints its outcome as JSON.

It imports everything, then waits for the round's common start time, so that the
eight writers of a round really start at once.
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _writers import run_writer

kind, index = sys.argv[1], int(sys.argv[2])
job = json.loads(Path(sys.argv[3]).read_text())
time.sleep(max(0.0, job["start_at"] - time.time()))
outcome = run_writer(kind, index, job)
sys.stdout.write(json.dumps(dataclasses.asdict(outcome)) + "\n")
