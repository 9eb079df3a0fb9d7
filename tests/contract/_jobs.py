"""Reading and waiting on Batch jobs through a boto3 client, for the contract tests."""

from __future__ import annotations

import time
from typing import Any


def job_of(batch: Any, job_id: str) -> dict[str, Any]:
    (job,) = batch.describe_jobs(jobs=[job_id])["jobs"]
    return dict(job)


def wait_job(batch: Any, job_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
    """The job once it reaches ``status`` (an assertion names its last state when it does not)."""
    deadline = time.monotonic() + timeout
    job = job_of(batch, job_id)
    while job["status"] != status and time.monotonic() < deadline:
        time.sleep(0.1)
        job = job_of(batch, job_id)
    assert job["status"] == status, job
    return job


def end_all(batch: Any, job_queue: str) -> None:
    """Terminate every job of ``job_queue`` that has not ended."""
    for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"):
        for page in batch.get_paginator("list_jobs").paginate(jobQueue=job_queue, jobStatus=status):
            for job in page["jobSummaryList"]:
                batch.terminate_job(jobId=job["jobId"], reason="test cleanup")
