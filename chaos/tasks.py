"""What every chaos task runs: sleep 1-4 s and record each execution of its code, outside the executor.

Imported by the generated DAG file in the dag-processor and in every task process (the stack puts the
repository on their ``PYTHONPATH``), so it imports nothing heavy and nothing from Airflow.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Environment variable naming the directory the records go to (set on the Batch job definition).
RECORD_DIR_ENV = "CHAOS_RECORD_DIR"
RECORD_FILE = "executions.jsonl"
#: A killed execution is known to have been alive until its last beat, so this bounds how much of an
#: overlap with it can go unseen.
BEAT_S = 0.5
MIN_SLEEP_S, MAX_SLEEP_S = 1.0, 4.0
#: ``outcome`` of an ``end`` record: the try's code is over / it deferred / it asked to be rescheduled.
DONE, DEFER, RESCHEDULE = "done", "defer", "reschedule"


def sleep_seconds(seed: int, map_index: int) -> float:
    """1-4 s, the same for a (seed, map index) on every try and every machine (no ``hash()``: salted)."""
    digest = hashlib.sha256(f"{seed}:{map_index}".encode()).digest()
    span_ms = int((MAX_SLEEP_S - MIN_SLEEP_S) * 1000)
    return MIN_SLEEP_S + (int.from_bytes(digest[:4], "big") % (span_ms + 1)) / 1000


def append_record(directory: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line with a single ``write`` on an ``O_APPEND`` descriptor.

    O_APPEND moves to the end and writes in one step, so lines of concurrent writers never interleave
    or overwrite each other (a short line is written whole by one call on a local file system).
    """
    line = (json.dumps(dict(record), sort_keys=True) + "\n").encode()
    fd = os.open(directory / RECORD_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
    finally:
        os.close(fd)
    if written != len(line):
        raise OSError(f"short write of an execution record: {written} of {len(line)} bytes")


def run_task(index: int, context: Mapping[str, Any]) -> None:
    """The body of the mapped task: ``start``, a ``beat`` every BEAT_S while sleeping, ``end``."""
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    record_execution(context, sleep_seconds(int(conf.get("seed", 0)), index))


def record_execution(
    context: Mapping[str, Any], seconds: float, *, phase: str = "", outcome: str = DONE
) -> None:
    """Record one execution of a task's code: ``start``, a ``beat`` every BEAT_S for ``seconds``, ``end``.

    ``phase`` tells apart the executions one try legitimately has: a deferring task's ``execute`` and
    each ``resume``, a reschedule-mode sensor's ``poke <n>`` (empty for a task that runs once a try).
    ``outcome`` (on ``end``): :data:`DONE` when the task's code is over for this try, else what it
    hands back to Airflow (:data:`DEFER`, :data:`RESCHEDULE`).
    """
    ti = context["ti"]
    directory = Path(os.environ[RECORD_DIR_ENV])
    start = time.time()
    base = {
        "ti_id": str(ti.id),
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id,
        "map_index": ti.map_index,
        "try_number": ti.try_number,
        "pid": os.getpid(),
        # Which Batch job ran this code: tells the job that did the work from one that never ran it.
        "job_id": os.environ.get("AWS_BATCH_JOB_ID"),
        "start": start,
    }
    if phase:
        base["phase"] = phase
    append_record(directory, {**base, "event": "start", "t": start})
    deadline = start + seconds
    while (left := deadline - time.time()) > 0:
        time.sleep(min(BEAT_S, left))
        append_record(directory, {**base, "event": "beat", "t": time.time()})
    end = time.time()
    append_record(directory, {**base, "event": "end", "t": end, "end": end, "outcome": outcome})
