"""Where a dag run's time goes, per task: medians of the phases between queueing and being reported.

Sources, all read after the run: the task instances (``queued_when``, ``start_date``, ``end_date``, from
Airflow's REST API), the scheduler's log (the time it received each task's final executor event) and,
for Batch executors, localbatch's jobs (``createdAt``, ``startedAt``, ``stoppedAt``), matched to task
instances through the workload in the job's command.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

# 2026-11-25T20:28:49.805966Z [info     ] Received executor event with state success for task instance
# TaskInstanceKey(dag_id='d', task_id='t', run_id='r', try_number=1, map_index=-1)
_EVENT = re.compile(
    r"^(?P<ts>\S+) .*Received executor event with state (?:success|failed) for task instance "
    r"TaskInstanceKey\(dag_id='(?P<dag>[^']+)', task_id='(?P<task>[^']+)', run_id='(?P<run>[^']+)'"
)


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def reported_at(scheduler_log: Path, dag_id: str, run_id: str) -> dict[str, float]:
    """task_id -> when the scheduler received its final executor event (the last one, if several)."""
    found: dict[str, float] = {}
    try:
        lines = scheduler_log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return found
    for line in lines:
        match = _EVENT.match(line)
        if match and match["dag"] == dag_id and match["run"] == run_id:
            when = _epoch(match["ts"])
            if when is not None:
                found[match["task"]] = when
    return found


def job_times(jobs: Iterable[Mapping[str, Any]], dag_id: str, run_id: str) -> dict[str, dict[str, float]]:
    """task_id -> the job's created/started/stopped times (s), for jobs running this run's tasks."""
    found: dict[str, dict[str, float]] = {}
    for job in jobs:
        command = job.get("container", {}).get("command") or []
        try:
            ti = json.loads(command[command.index("--json-string") + 1])["ti"]
        except (ValueError, IndexError, KeyError, TypeError):
            continue
        if ti.get("dag_id") != dag_id or ti.get("run_id") != run_id:
            continue
        found[ti["task_id"]] = {
            name: job[key] / 1000
            for name, key in (("created", "createdAt"), ("started", "startedAt"), ("stopped", "stoppedAt"))
            if job.get(key)
        }
    return found


def phases(
    task_instances: Iterable[Mapping[str, Any]],
    reported: Mapping[str, float],
    jobs: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, float]:
    """Median seconds of each phase over the tasks that have both ends of it."""
    samples: dict[str, list[float]] = {}

    def add(name: str, start: float | None, end: float | None) -> None:
        if start is not None and end is not None:
            samples.setdefault(name, []).append(end - start)

    for ti in task_instances:
        task_id = ti["task_id"]
        queued, started, ended = (_epoch(ti.get(k)) for k in ("queued_when", "start_date", "end_date"))
        report = reported.get(task_id)
        add("queued_to_task_start_s", queued, started)
        add("task_run_s", started, ended)
        add("task_end_to_reported_s", ended, report)
        add("queued_to_reported_s", queued, report)
        job = (jobs or {}).get(task_id)
        if job:
            add("queued_to_job_created_s", queued, job.get("created"))
            add("job_created_to_started_s", job.get("created"), job.get("started"))
            add("job_started_to_task_start_s", job.get("started"), started)
            add("task_end_to_job_stopped_s", ended, job.get("stopped"))
            add("job_stopped_to_reported_s", job.get("stopped"), report)
    return {name: round(statistics.median(values), 3) for name, values in sorted(samples.items())}
