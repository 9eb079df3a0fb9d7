"""A task's priority_weight decides its start order on a fair-share Batch queue.

The session stack has a second compute environment of one vCPU behind the fair-share queue
``airflow-fair`` (Airflow queue ``fair``, see conftest). A job submitted from outside holds that one
slot while ten low-priority tasks and then one high-priority task wait in RUNNABLE; when it ends,
Batch (here localbatch) must start the high one first. The order is read from localbatch's job records.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack import JOB_DEFINITION, wait_until

from .conftest import E2E, FAIR_JOB_QUEUE, FAIR_SHARE

pytestmark = pytest.mark.e2e

LOW_TASKS = 10


def _runnable(e2e: E2E, dag_id: str, count: int) -> list[dict[str, Any]]:
    def probe() -> tuple[bool, Any]:
        jobs = e2e.stack.batch.jobs_for(dag_id, job_queue=FAIR_JOB_QUEUE)
        runnable = [job for job in jobs if job["status"] == "RUNNABLE"]
        return len(runnable) == count, [(job["jobName"], job["status"]) for job in jobs]

    wait_until(f"{count} jobs of {dag_id} to wait in RUNNABLE", probe, timeout=120, interval=0.5)
    return e2e.stack.batch.jobs_for(dag_id, job_queue=FAIR_JOB_QUEUE)


def test_a_high_priority_task_queued_after_ten_low_ones_starts_before_them(e2e: E2E) -> None:
    e2e.need_batch()
    stack = e2e.stack
    blocker = stack.batch.batch.submit_job(
        jobName="fair-blocker",
        jobQueue=FAIR_JOB_QUEUE,
        jobDefinition=JOB_DEFINITION,
        shareIdentifier=FAIR_SHARE,
        containerOverrides={"command": ["sleep", "600"]},
    )["jobId"]
    wait_until(
        "the blocker to hold the queue's only vCPU",
        lambda: ((status := stack.batch.describe([blocker])[0]["status"]) == "RUNNING", status),
        timeout=60,
        interval=0.5,
    )
    try:
        low_run = stack.airflow.trigger("e2e_fair_low")
        _runnable(e2e, "e2e_fair_low", LOW_TASKS)
        high_run = stack.airflow.trigger("e2e_fair_high")
        _runnable(e2e, "e2e_fair_high", 1)
    finally:
        stack.batch.batch.terminate_job(jobId=blocker, reason="e2e: the slot is free")

    assert stack.airflow.wait_for_run("e2e_fair_low", low_run, timeout=300)["state"] == "success"
    assert stack.airflow.wait_for_run("e2e_fair_high", high_run, timeout=120)["state"] == "success"
    jobs = [
        *stack.batch.jobs_for("e2e_fair_low", run_id=low_run, job_queue=FAIR_JOB_QUEUE),
        *stack.batch.jobs_for("e2e_fair_high", run_id=high_run, job_queue=FAIR_JOB_QUEUE),
    ]
    order = [
        (job["tags"]["task_id"], job.get("schedulingPriority"), job.get("shareIdentifier"), job["startedAt"])
        for job in sorted(jobs, key=lambda job: (job["startedAt"], job["createdAt"]))
    ]
    assert len(order) == LOW_TASKS + 1, json.dumps(order)
    # Submitted last, started first: Batch ordered the share by schedulingPriority (priority_weight).
    assert order[0][:3] == ("high", 100, FAIR_SHARE), json.dumps(order)
    assert {row[1:3] for row in order[1:]} == {(1, FAIR_SHARE)}, json.dumps(order)
    high = next(job for job in jobs if job["tags"]["task_id"] == "high")
    assert high["createdAt"] > max(job["createdAt"] for job in jobs if job is not high)
