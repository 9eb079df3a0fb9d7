"""boto3 access to a running localbatch: jobs by Airflow task, and the fault admin endpoint."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import httpx
from botocore.config import Config

REGION = "us-east-1"
#: ListJobs without a status returns only RUNNING jobs, so listing everything means asking per status.
FINAL_STATUSES = ("SUCCEEDED", "FAILED")
JOB_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")


class LocalBatch:
    """A boto3 Batch client and a Logs client pointed at localbatch, plus its admin endpoints."""

    def __init__(self, endpoint_url: str, job_queue: str = "airflow-jobs", config: Config | None = None):
        """``config``: botocore client config, e.g. more retries for a caller that meets injected faults."""
        self.endpoint_url = endpoint_url.rstrip("/")
        self.job_queue = job_queue
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        self.batch: Any = session.client("batch", endpoint_url=self.endpoint_url, config=config)
        self.logs: Any = session.client("logs", endpoint_url=self.endpoint_url, config=config)

    # --- jobs -----------------------------------------------------------------------------------

    def job_ids(self, job_queue: str | None = None) -> list[str]:
        ids: list[str] = []
        queue = job_queue or self.job_queue
        paginator = self.batch.get_paginator("list_jobs")
        for status in JOB_STATUSES:
            for page in paginator.paginate(jobQueue=queue, jobStatus=status):
                ids.extend(summary["jobId"] for summary in page["jobSummaryList"])
        return ids

    def describe(self, job_ids: list[str]) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = []
        for start in range(0, len(job_ids), 100):
            jobs.extend(self.batch.describe_jobs(jobs=job_ids[start : start + 100])["jobs"])
        return sorted(jobs, key=lambda job: job.get("createdAt", 0))

    def all_jobs(self, job_queue: str | None = None) -> list[dict[str, Any]]:
        """Every job of the queue, described, oldest first."""
        return self.describe(self.job_ids(job_queue))

    def jobs_for(
        self,
        dag_id: str,
        task_id: str | None = None,
        run_id: str | None = None,
        map_index: int | None = None,
        job_queue: str | None = None,
    ) -> list[dict[str, Any]]:
        """Jobs whose tags (set by the executor) match, oldest first."""
        wanted = {"dag_id": dag_id, "task_id": task_id, "run_id": run_id}
        if map_index is not None:
            wanted["map_index"] = str(map_index)
        return [
            job
            for job in self.all_jobs(job_queue)
            if all(value is None or job.get("tags", {}).get(key) == value for key, value in wanted.items())
        ]

    def wait_final(
        self,
        dag_id: str,
        task_id: str | None = None,
        run_id: str | None = None,
        *,
        timeout: float = 60.0,
    ) -> list[dict[str, Any]]:
        """``jobs_for`` once every matching job is SUCCEEDED or FAILED.

        Airflow may record a task's success before its job's process has exited, so a job can still
        read RUNNING for a moment after the task is done.
        """
        from devstack.airflow_api import wait_until

        def probe() -> tuple[bool, Any]:
            jobs = self.jobs_for(dag_id, task_id, run_id)
            pending = [(j["jobName"], j["status"]) for j in jobs if j["status"] not in FINAL_STATUSES]
            return not pending, pending or jobs

        jobs: list[dict[str, Any]] = wait_until(f"Batch jobs of {dag_id} to finish", probe, timeout)
        return jobs

    def log_lines(self, job: Mapping[str, Any]) -> Iterator[str]:
        """The CloudWatch Logs lines of every attempt of ``job``."""
        streams = [a.get("container", {}).get("logStreamName") for a in job.get("attempts", [])]
        streams.append(job.get("container", {}).get("logStreamName"))
        seen: set[str] = set()
        for stream in streams:
            if not stream or stream in seen:
                continue
            seen.add(stream)
            args = {"logGroupName": "/aws/batch/job", "logStreamName": stream, "startFromHead": True}
            token = None
            while True:
                page = self.logs.get_log_events(**args, **({"nextToken": token} if token else {}))
                yield from (event["message"] for event in page["events"])
                if not page["events"] or page.get("nextForwardToken") == token:
                    break
                token = page.get("nextForwardToken")

    # --- admin endpoints (not AWS) --------------------------------------------------------------

    def set_faults(self, faults: Mapping[str, Any]) -> None:
        """Replace localbatch's fault configuration (``PUT /_localbatch/faults``)."""
        response = httpx.put(f"{self.endpoint_url}/_localbatch/faults", json=dict(faults), timeout=10)
        response.raise_for_status()

    def faults(self) -> dict[str, Any]:
        response = httpx.get(f"{self.endpoint_url}/_localbatch/faults", timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def reset_stats(self) -> None:
        """Zero localbatch's request counters (``DELETE /_localbatch/stats``)."""
        response = httpx.delete(f"{self.endpoint_url}/_localbatch/stats", timeout=10)
        response.raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.endpoint_url}/_localbatch/stats", timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result
