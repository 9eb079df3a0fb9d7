"""Task logs from CloudWatch: what the Batch job of one try printed, for the Airflow UI.

The job of the current try is ``ti.external_executor_id``. For an earlier try the job is found by
its name and its ``try_number`` tag on the task's job queue (jobs older than Batch's retention,
about 7 days, cannot be found). Streams come from ``attempts[].container.logStreamName`` (every
Batch attempt of the job, oldest first); the group is the job's ``awslogs-group`` log option, else
``/aws/batch/job``.

EKS jobs have no log stream: Batch sends a pod's output to no CloudWatch stream of its own, and its
DescribeJobs shapes name none (``eksAttempts`` carry pod and node names only). Their output is in the
cluster's logging (e.g. CloudWatch Container Insights with Fluent Bit), which this module does not
read; the messages say so and name the pods.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from airflow_aws_batch.aws.batch import BatchApi, BatchApiError
from airflow_aws_batch.aws.shapes import JobDetail
from airflow_aws_batch.config import ExecutorConfig
from airflow_aws_batch.submit import job_name_for

log = logging.getLogger(__name__)

# Batch keeps finished jobs about 7 days; look that far back for earlier tries.
LOOKBACK_MS = 8 * 24 * 3600 * 1000


def find_job(api: BatchApi, config: ExecutorConfig, ti: Any, try_number: int) -> JobDetail | None:
    job_id = getattr(ti, "external_executor_id", None)
    if job_id and try_number == getattr(ti, "try_number", try_number):
        details = api.describe_jobs([str(job_id)])
        if details:
            return details[0]
    queue = config.queue_map.get(getattr(ti, "queue", None) or "", config.job_queue)
    name = job_name_for(config.job_name, ti.dag_id, ti.task_id)
    tags = {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id,
        "try_number": str(try_number),
        "map_index": str(ti.map_index),
    }
    found = api.find_jobs(queue, name, int(time.time() * 1000) - LOOKBACK_MS, tags)
    return max(found, key=lambda j: j.created_at or 0) if found else None


def read_task_log(
    api: BatchApi, config: ExecutorConfig, ti: Any, try_number: int
) -> tuple[list[str], list[str]]:
    """``(messages, lines)`` as BaseExecutor.get_task_log expects; AWS errors become messages."""
    try:
        job = find_job(api, config, ti, try_number)
    except BatchApiError as exc:
        return [f"Could not find the AWS Batch job of try {try_number}: {exc}"], []
    if job is None:
        return [f"No AWS Batch job found for try {try_number}"], []
    messages = [f"AWS Batch job {job.job_id} ({job.status}) in queue {job.job_queue}"]
    if job.status_reason:
        messages.append(f"statusReason: {job.status_reason}")
    if job.is_eks:
        messages.append(eks_logs_message(job))
        return messages, []
    if not job.log_stream_names:
        messages.append("The job has no log stream yet (it has not started)")
        return messages, []
    lines: list[str] = []
    for stream in job.log_stream_names:
        messages.append(f"Reading CloudWatch Logs {job.log_group}/{stream}")
        try:
            lines.extend(api.get_log_lines(job.log_group, stream))
        except BatchApiError as exc:
            messages.append(f"Could not read {job.log_group}/{stream}: {exc.code}: {exc.message}")
    return messages, lines


def eks_logs_message(job: JobDetail) -> str:
    """Why an EKS job's output cannot be shown here, and where to look instead."""
    where = f" in namespace {job.pod_namespace}" if job.pod_namespace else ""
    pods = ", ".join(job.pod_names) if job.pod_names else "not created yet"
    return (
        "This is an AWS Batch on EKS job: Batch writes no CloudWatch log stream for EKS jobs, so the "
        f"executor cannot read its output. Pod(s){where}: {pods}. Read them with `kubectl logs` while "
        "the pod exists (Batch deletes pods soon after they end), or in the log destination of the "
        "cluster's logging (e.g. CloudWatch Container Insights: "
        "/aws/containerinsights/<cluster>/application)."
    )


def write_failure_log(
    api: BatchApi, job_id: str, log_path: str, reason: str, details: list[JobDetail] | None = None
) -> Path | None:
    """Copy the output of a FAILED job into the task's log file, when the task never wrote one.

    ``log_path`` is the workload's log file relative to ``[logging] base_log_folder``. Airflow's
    log reader shows that file for finished tasks without remote logs, so the UI says why the task
    never started. Written only when the file does not exist (the task's own logging never
    began). Runs on a background thread; never raises. Not supported: remote logging (the file
    stays on the scheduler's disk). ``details``: the job's DescribeJobs answer, when already read.
    """
    try:
        from airflow.configuration import conf

        path = Path(conf.get("logging", "base_log_folder")) / log_path
        if path.exists():
            return None
        if details is None:
            details = api.describe_jobs([job_id])
        lines: list[str] = []
        header = [f"AWS Batch job {job_id} FAILED and the task wrote no log: {reason}"]
        if details:
            job = details[0]
            if job.is_eks:
                header.append(eks_logs_message(job))
            for stream in job.log_stream_names:
                header.append(f"Output of CloudWatch Logs {job.log_group}/{stream}:")
                try:
                    lines.extend(api.get_log_lines(job.log_group, stream))
                except BatchApiError as exc:
                    header.append(f"Could not read {job.log_group}/{stream}: {exc}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x") as fh:
            for line in header:
                fh.write(json.dumps({"event": line, "level": "error", "logger": "airflow_aws_batch"}) + "\n")
            for line in lines:
                fh.write(_as_log_record(line) + "\n")
        return path
    except Exception:
        log.exception("Could not write the output of failed Batch job %s to the task log", job_id)
        return None


def _as_log_record(line: str) -> str:
    """The Task SDK prints JSON log records: keep those as they are, wrap anything else."""
    text = line.rstrip("\n")
    if text.startswith("{"):
        try:
            if isinstance(json.loads(text), dict):
                return text
        except ValueError:
            pass
    return json.dumps({"event": text, "logger": "aws_batch_job"})
