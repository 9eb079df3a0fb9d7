"""What becomes of a workload when Batch says how its job is doing (:meth:`Core.job_seen`), when a
job turns out unknown or stuck, and when Airflow answers whether a failed job's task started
(:meth:`Core.start_checked`): watched on, reported, resubmitted, checked, or failed.

The rules (a job that FAILED after it started is checked against Airflow before any resubmit; a
task Airflow saw start is never resubmitted) are those the module docstring of :mod:`core.state`
lists. Pure: no I/O; the clock is the core's.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable

from airflow_aws_batch.core.entries import Entry, Phase, expires_before
from airflow_aws_batch.core.messages import (
    QUEUED_STATUSES,
    CheckStarted,
    JobView,
    Report,
    RunningState,
    Success,
    TaskEvent,
    Terminate,
    Track,
    Untrack,
)
from airflow_aws_batch.core.table import Rules


def job_seen(core: Rules, view: JobView) -> list[Report]:
    """:meth:`Core.job_seen`: what Batch says of a watched job now."""
    table = core.table
    entry = table.by_job.get(view.job_id)
    if entry is None:
        return []
    key = entry.key
    changed = (view.status, view.status_reason) != (entry.status, entry.status_reason)
    entry.status = view.status
    entry.status_reason = view.status_reason
    if view.started or view.status == "RUNNING":
        entry.started = True
        if entry.ti_id is None:
            entry.request = None  # cannot be checked, so never resubmitted from now on
    if view.status in QUEUED_STATUSES:
        table.set_phase(entry, Phase.SUBMITTED)
        if changed and view.status_reason:
            return [TaskEvent(key, f"aws_batch_job_{view.status.lower()}", view.reason())]
        return []
    if view.status == "RUNNING":
        first = entry.phase is not Phase.RUNNING
        table.set_phase(entry, Phase.RUNNING)
        # Said again, once: Airflow drops an executor event whose task instance row is locked
        # when it processes it (skip_locked), and the task's own start through the API server
        # locks that row at about the moment SubmitJob returns. The id would then never be saved.
        # (Adopted jobs had their id saved by the scheduler that submitted them, or are told
        # when adopted.)
        return [RunningState(key, view.job_id)] if first and not entry.adopted else []
    if view.status == "SUCCEEDED":
        table.forget(entry)
        # An adopted job that SUCCEEDED while its try is QUEUED is the job of an earlier queueing
        # of that try (a sensor's previous poke, the run before a deferral: adoption tells them
        # apart by creation time, within a clock allowance that a one-second poke interval beats)
        # or one whose task never started; Airflow 3.3 would read its SUCCESS as the task killed
        # externally and fail the try. Held back, the try stays queued: if no job runs it, Airflow
        # revokes and queues it again after task_queued_timeout. Our own submissions need no such
        # care: a key queued again replaces the old job, whose end is then never reported.
        moved_on = view.moved_on or (view.queued_again and entry.adopted)
        return [Success(key, view.job_id, moved_on=moved_on)]
    if view.status != "FAILED":
        # Not a Batch job status: keep watching, but say so instead of waiting in silence.
        if changed:
            return [TaskEvent(key, "aws_batch_job_unknown_status", f"{view.reason()} (unknown status)")]
        return []
    reason = view.reason()
    table.by_job.pop(view.job_id, None)
    table.outbox.append(Untrack(view.job_id))
    entry.job_id = None
    if entry.started:
        if entry.ti_id is None or entry.request is None:
            return table.fail(
                entry,
                f"{reason} after it started; Airflow's retries decide what happens next",
                job_id=view.job_id,
            )
        table.set_phase(entry, Phase.CHECKING)
        entry.failed_job_id = view.job_id
        entry.last_reason = reason
        request = table.packer.copy_of(entry.request)
        table.outbox.append(
            CheckStarted(
                key,
                str(uuid.UUID(bytes=entry.ti_id)),
                entry.try_number,
                job_queue=str(request.get("jobQueue", "")),
                job_name=str(request.get("jobName", "")),
                tags=tuple(sorted((str(k), str(v)) for k, v in (request.get("tags") or {}).items())),
                failed_job_id=view.job_id,
            )
        )
        return []
    if entry.request is None:
        return table.fail(
            entry,
            f"{reason} before it started; this adopted job's request could not be rebuilt to "
            "resubmit it, so Airflow's retries decide what happens next",
            job_id=view.job_id,
        )
    return retry_after_failure(core, entry, reason, view.job_id, "aws_batch_job_failed_before_start")


def start_checked(core: Rules, key: Hashable, seen: bool | None, winner: str | None = None) -> list[Report]:
    """:meth:`Core.start_checked`: the answer to ``key``'s :class:`CheckStarted`."""
    table = core.table
    entry = table.entries.get(key)
    if entry is None or entry.phase is not Phase.CHECKING:
        return []  # revoked (or the scheduler is shutting down) while the check ran
    job_id, reason = entry.failed_job_id, entry.last_reason
    entry.failed_job_id = None
    if seen and winner is not None and winner not in table.by_job:
        entry.job_id = winner
        entry.started = True
        entry.request = None  # the try has started: never resubmitted from now on
        table.by_job[winner] = entry
        table.set_phase(entry, Phase.RUNNING)
        table.outbox.append(Track(winner, None, entry.ti_id, entry.try_number))
        return [
            RunningState(key, winner),
            TaskEvent(
                key,
                "aws_batch_duplicate_start",
                f"{reason}: Batch job {winner}, another job of this try, started the task first; "
                "watching that one instead",
            ),
        ]
    if seen is not False:
        why = (
            "Airflow saw the task start, or no longer has it queued"
            if seen
            else "whether Airflow saw the task start could not be established"
        )
        return table.fail(
            entry,
            f"{reason} after it started ({why}); Airflow's retries decide what happens next",
            job_id=job_id,
        )
    return retry_after_failure(
        core,
        entry,
        f"{reason}; it started in Batch, but Airflow never saw the task start",
        job_id,
        "aws_batch_job_failed_before_task_start",
    )


def retry_after_failure(
    core: Rules, entry: Entry, reason: str, job_id: str | None, event: str
) -> list[Report]:
    """The job failed and its task never started: resubmit after backoff, or fail when out of attempts."""
    table = core.table
    entry.last_reason = reason
    if entry.attempts >= core.max_attempts:
        return table.fail(
            entry,
            f"{reason}; no submit attempts left ({entry.attempts} of {core.max_attempts})",
            job_id=job_id,
        )
    delay = core.backoff.delay(entry.attempts)
    expired = expires_before(entry, core.clock() + delay, core.clock)
    if expired:
        return table.fail(entry, f"{reason}; {expired}", job_id=job_id)
    entry.started = False
    table.schedule(entry, core.clock() + delay)
    return [
        TaskEvent(
            entry.key,
            event,
            f"{reason}; resubmitting in {delay:.0f}s (attempt {entry.attempts + 1} of {core.max_attempts})",
        )
    ]


def job_missing(core: Rules, job_id: str) -> list[Report]:
    """:meth:`Core.job_missing`: DescribeJobs no longer knows the job."""
    table = core.table
    entry = table.by_job.get(job_id)
    if entry is None:
        return []
    table.by_job.pop(job_id, None)
    table.outbox.append(Untrack(job_id))
    return table.fail(entry, f"Batch job {job_id} is unknown to DescribeJobs")


def give_up(core: Rules, job_id: str, reason: str) -> list[Report]:
    """:meth:`Core.give_up`: the tracked job ``job_id`` can never start."""
    table = core.table
    entry = table.by_job.get(job_id)
    if entry is None or entry.phase is not Phase.SUBMITTED:
        return []
    table.outbox.append(Terminate(job_id, f"Task failed: {reason}"[:1024]))
    return table.fail(entry, reason)
