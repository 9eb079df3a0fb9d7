"""A running localbatch over HTTP: its Batch and Logs APIs (boto3), jobs by Airflow task, admin endpoints."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
from botocore.config import Config

from devstack.clients import REGION, TESTING_CREDENTIALS, aws_client
from devstack.procs import StackError

__all__ = ["FINAL_STATUSES", "JOB_STATUSES", "LocalBatch"]

#: ListJobs without a status returns only RUNNING jobs, so listing everything means asking per status.
FINAL_STATUSES = ("SUCCEEDED", "FAILED")
JOB_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
#: An upper bound only: a localbatch holding thousands of jobs on a loaded machine answers in seconds.
ADMIN_TIMEOUT_S = 60.0


class LocalBatch:
    """boto3 Batch and Logs clients pointed at localbatch, plus its admin endpoints (``/_localbatch/``)."""

    def __init__(
        self,
        url: str,
        job_queue: str = "airflow-jobs",
        config: Config | None = None,
        *,
        credentials: Mapping[str, str] = TESTING_CREDENTIALS,
        admin_token: str | None = None,
    ):
        """``config``: botocore client config, e.g. more retries for a caller that meets injected faults.

        ``credentials``: the keys the server verifies signatures with (``aws_access_key_id``,
        ``aws_secret_access_key``). ``admin_token``: the bearer token of its admin routes (the
        ``admin-token`` file of its data dir).
        """
        self._url: str | None = url.rstrip("/")
        self.job_queue = job_queue
        self.config = config
        self.credentials = dict(credentials)
        self.admin_token = admin_token
        self._clients: dict[str, Any] = {}

    @property
    def url(self) -> str:
        if self._url is None:
            raise StackError("localbatch has not been started")
        return self._url

    def _moved(self, url: str | None) -> None:
        """Point at ``url`` from now on; clients of the old address are dropped."""
        self._url = url.rstrip("/") if url else None
        self._clients.clear()

    def client(self, service: str, config: Config | None = None) -> Any:
        """A new boto3 client of ``service`` (``batch``, ``logs``, ``sts``) at this localbatch."""
        return aws_client(service, self.url, config=config or self.config, credentials=self.credentials)

    def aws_env(self) -> dict[str, str]:
        """The environment variables that give a child process (Airflow, a CLI) this object's keys."""
        return {
            "AWS_ACCESS_KEY_ID": self.credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.credentials["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def airflow_connection(self) -> str:
        """``AIRFLOW_CONN_AWS_DEFAULT``'s value: this localbatch's URL and keys."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": self.credentials["aws_access_key_id"],
                "password": self.credentials["aws_secret_access_key"],
                "extra": {"endpoint_url": self.url, "region_name": REGION},
            }
        )

    @property
    def batch(self) -> Any:
        """The Batch client of this object, built on first use."""
        if "batch" not in self._clients:
            self._clients["batch"] = self.client("batch")
        return self._clients["batch"]

    @property
    def logs(self) -> Any:
        """The CloudWatch Logs client of this object, built on first use."""
        if "logs" not in self._clients:
            self._clients["logs"] = self.client("logs")
        return self._clients["logs"]

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

    # --- status events (EventBridge + SQS) ------------------------------------------------------

    def subscribe_status_events(self, name: str, job_queue: str | None = None) -> str:
        """An SQS queue ``name`` and an EventBridge rule of the same name sending it the "Batch Job
        State Change" events of ``job_queue`` (default: this object's), as ``airflow aws-batch render
        --status-events`` makes them; the queue's URL, for the executor's ``status_events``.

        Both persist across a restart of localbatch (its data dir).
        """
        sqs, events = self.client("sqs"), self.client("events")
        url: str = sqs.create_queue(QueueName=name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        queue = job_queue or self.job_queue
        job_queue_arn = self.batch.describe_job_queues(jobQueues=[queue])["jobQueues"][0]["jobQueueArn"]
        pattern = {
            "source": ["aws.batch"],
            "detail-type": ["Batch Job State Change"],
            "detail": {"jobQueue": [job_queue_arn]},
        }
        events.put_rule(Name=name, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, Targets=[{"Id": "scheduler", "Arn": attributes["QueueArn"]}])
        return url

    # --- admin endpoints (not AWS) --------------------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """``method`` on ``/_localbatch/<path>``, the answer as it came (error answers included)."""
        if self.admin_token is None:
            raise StackError("no admin token for this localbatch (the admin-token file of its data dir)")
        # A connection per call: a pooled one would outlive a restart of the server.
        return httpx.request(
            method,
            f"{self.url}/_localbatch/{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=ADMIN_TIMEOUT_S,
        )

    def _admin_ok(self, method: str, path: str, body: Any = None) -> Any:
        response = self.admin(method, path, body)
        response.raise_for_status()
        return response.json() if response.content else None

    def set_faults(self, faults: Mapping[str, Any]) -> None:
        """Replace localbatch's fault configuration (``PUT /_localbatch/faults``)."""
        self._admin_ok("PUT", "faults", dict(faults))

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._admin_ok("GET", "faults")
        return result

    def reset_stats(self) -> None:
        """Zero localbatch's request counters (``DELETE /_localbatch/stats``)."""
        self._admin_ok("DELETE", "stats")

    def stats(self) -> dict[str, Any]:
        """Request counters per operation: ``{"operations": {"SubmitJob": {"requests": ...}, ...}}``."""
        result: dict[str, Any] = self._admin_ok("GET", "stats")
        return result

    def health(self) -> dict[str, Any]:
        """``GET /_localbatch/health``: job counts, and the status events' (``events``: emitted,
        delivered, dropped, duplicated, delayed, reordered, undeliverable; since this start)."""
        result: dict[str, Any] = self._admin_ok("GET", "health")
        return result

    def submit_requests(self) -> list[str]:
        """Bodies of localbatch's latest SubmitJob calls as sent (``GET /_localbatch/requests/SubmitJob``)."""
        return list(self._admin_ok("GET", "requests/SubmitJob")["requests"])

    def finish_simulated(self, job_ids: Sequence[str], exit_code: int | None = None) -> list[dict[str, Any]]:
        """End simulated jobs now (``POST /_localbatch/simulate/finish``); returns the jobs it ended."""
        body: dict[str, Any] = {"job_ids": list(job_ids)}
        if exit_code is not None:
            body["exit_code"] = exit_code
        finished: list[dict[str, Any]] = self._admin_ok("POST", "simulate/finish", body)["finished"]
        return finished
