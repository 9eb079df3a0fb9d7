"""A task failed with its Batch job: say why in the task's own log, and count the cause.

When the job FAILED after it started (it reached RUNNING: the host went away, the container ran out
of memory, the attempt timed out, or the task itself failed), the last line of the task's log file
names the cause (see :mod:`airflow_aws_batch.core.causes`) with Batch's reason and the job id, and
``aws_batch_executor.job_failures.<cause>`` is incremented. A job that never started gets its output
copied by :func:`airflow_aws_batch.logs.write_failure_log`, as before; that is not counted here.

The line goes to the task's log file under ``[logging] base_log_folder`` on the scheduler's host, the
same file ``write_failure_log`` writes: where the task ran on the same disk (localbatch, a shared
volume) it follows the task's own lines. Not supported: appending to remote logs (S3, CloudWatch);
there the metric and the task's event log still carry the cause.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from airflow_aws_batch.aws.batch import BatchApi
from airflow_aws_batch.aws.shapes import JobDetail
from airflow_aws_batch.core.causes import Cause, Stuck, classify, failure_line
from airflow_aws_batch.logs import write_failure_log

log = logging.getLogger(__name__)

#: Appended to the metric prefix, then the cause: ``aws_batch_executor.job_failures.spot_reclaim``.
METRIC = "job_failures"


def cause_of(job: JobDetail) -> Cause | None:
    """The cause of ``job``'s failure, None when it never started (its task cannot have run)."""
    if job.status != "FAILED" or not job.started_at:
        return None
    return classify(job.status_reason, job.container_reason, job.exit_code)


def record_failure(
    api: BatchApi,
    job_id: str,
    log_path: str | None,
    reason: str,
    count: Callable[[Cause], None],
) -> Cause | None:
    """Runs on a background thread once a task failed with job ``job_id``; never raises."""
    try:
        details = api.describe_jobs([job_id])
    except Exception:
        log.warning("Could not describe failed Batch job %s to name its cause", job_id, exc_info=True)
        details = None
    job = details[0] if details else None
    cause = cause_of(job) if job is not None else None
    if cause is not None:
        try:
            count(cause)
        except Exception:
            log.debug("metrics failed", exc_info=True)
    if not log_path:
        return cause
    write_failure_log(api, job_id, log_path, reason, details=details)
    if cause is not None and job is not None:
        _append(log_path, failure_line(job_id, cause, job.status_reason, job.container_reason, job.exit_code))
    return cause


def _append(log_path: str, line: str) -> None:
    try:
        from airflow.configuration import conf

        path = Path(conf.get("logging", "base_log_folder")) / log_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fh.write(json.dumps({"event": line, "level": "error", "logger": "airflow_aws_batch"}) + "\n")
    except Exception:
        log.exception("Could not write the cause of failed Batch job to %s", log_path)


def stuck_reason(stuck: Stuck) -> str:
    """Why the task of a job stuck in RUNNABLE fails: Batch's reason first."""
    return (
        f"{stuck.reason} (Batch job {stuck.job_id} waited in RUNNABLE with this reason for "
        f"{stuck.waited_s:.0f}s, past misconfiguration_grace_seconds: no compute environment of its "
        "queue can run it; the job is terminated)"
    )
