"""What becomes of a workload when its SubmitJob (or the lookup before it) answers: tracked, waiting,
backed off, looked up again after an ambiguous call, or failed (:meth:`Core.submit_result`).

The rules (attempts, throttling, stalls, ambiguous calls, expired tokens) are those the module
docstring of :mod:`core.state` lists. Pure: no I/O; the clock is the core's.
"""

from __future__ import annotations

from collections.abc import Hashable

from airflow_aws_batch.core.entries import Phase, expires_before
from airflow_aws_batch.core.messages import (
    Report,
    RunningState,
    SubmitOutcome,
    TaskEvent,
    Terminate,
    Track,
)
from airflow_aws_batch.core.table import Rules

# Lookups of an ambiguous submit accept jobs created this long before the call was sent, to absorb
# clock skew between this host and Batch.
LOOKUP_SLACK_MS = 60_000


def submit_result(
    core: Rules,
    key: Hashable,
    outcome: SubmitOutcome,
    *,
    job_id: str | None = None,
    reason: str = "",
    sent_at_ms: int | None = None,
    found: bool = False,
    wait_s: float | None = None,
) -> list[Report]:
    """:meth:`Core.submit_result`: the outcome of ``core``'s Submit command for ``key``."""
    table = core.table
    entry = table.entries.get(key)
    if entry is None or entry.phase is not Phase.SUBMITTING:
        if outcome is SubmitOutcome.OK and job_id:
            # Revoked or finished while the call was in flight: the job must not live on.
            table.outbox.append(Terminate(job_id, "Task revoked by Airflow before its job was submitted"))
        return []
    if entry.revoked:
        table.drop(entry)
        reason_revoked = "Task revoked by Airflow while its job was submitted"
        if outcome is SubmitOutcome.OK and job_id:
            table.outbox.append(Terminate(job_id, reason_revoked))
        elif outcome is SubmitOutcome.AMBIGUOUS:
            entry.ambiguous += (entry.submission,)
            entry.lookup_after_ms = _lookup_floor(entry.lookup_after_ms, sent_at_ms)
        table.terminate_unresolved(entry, reason_revoked)
        requeued = table.requeued.pop(key, None)
        if requeued is not None:
            requeued.next_at = core.clock()
            table.store(requeued)
        return []
    now = core.clock()
    # Kept only while the call is in flight or unresolved (``ambiguous``): thousands of entries.
    submission, entry.submission = entry.submission, ""
    if outcome is SubmitOutcome.OK:
        if not job_id:
            raise ValueError("SubmitOutcome.OK needs a job_id")
        if not found:  # a found job's attempt was counted when it turned ambiguous
            entry.attempts += 1
        table.set_phase(entry, Phase.SUBMITTED)
        entry.job_id = job_id
        entry.adopted = False
        entry.stalls = 0
        entry.lookup_after_ms = None
        entry.ambiguous = ()
        entry.status = "SUBMITTED"
        entry.status_reason = ""
        table.by_job[job_id] = entry
        table.outbox.append(Track(job_id, entry.job_queue, entry.ti_id, entry.try_number))
        reports: list[Report] = [RunningState(key, job_id)]
        if found:
            reports.append(
                TaskEvent(key, "aws_batch_job_found", f"Batch job {job_id} found after an ambiguous submit")
            )
        return reports
    if outcome is SubmitOutcome.WAIT:
        table.schedule(entry, now + (core.backoff.wait_s if wait_s is None else wait_s))
        return []
    if outcome is SubmitOutcome.STALLED:
        entry.stalls += 1
        delay = core.backoff.delay(entry.stalls)
        expired = expires_before(entry, now + delay, core.clock)
        if expired:
            return table.fail(entry, f"{reason or outcome.value}; {expired}")
        table.schedule(entry, now + delay)
        return [
            TaskEvent(
                key,
                "aws_batch_submit_stalled",
                f"{reason or outcome.value}; trying again in {delay:.0f}s (not counted as a "
                f"SubmitJob attempt: {entry.attempts} of {core.max_attempts} used)",
            )
        ]
    entry.stalls = 0
    # FAILED or AMBIGUOUS: both count.
    if not (entry.lookup_after_ms is not None and entry.attempts >= core.max_attempts):
        entry.attempts += 1
    entry.last_reason = reason or outcome.value
    if outcome is SubmitOutcome.AMBIGUOUS:
        entry.ambiguous += (submission,)
        entry.lookup_after_ms = _lookup_floor(entry.lookup_after_ms, sent_at_ms)
        table.schedule(entry, now + core.backoff.delay(entry.attempts))
        return [
            TaskEvent(
                key,
                "aws_batch_submit_ambiguous",
                f"SubmitJob attempt {entry.attempts} of {core.max_attempts} may have failed "
                f"({entry.last_reason}); looking for the job before trying again",
            )
        ]
    if entry.attempts >= core.max_attempts:
        return table.fail(entry, f"SubmitJob failed {entry.attempts} times; last error: {entry.last_reason}")
    delay = core.backoff.delay(entry.attempts)
    expired = expires_before(entry, now + delay, core.clock)
    if expired:
        return table.fail(entry, f"SubmitJob failed: {entry.last_reason}; {expired}")
    table.schedule(entry, now + delay)
    return [
        TaskEvent(
            key,
            "aws_batch_submit_failed",
            f"SubmitJob attempt {entry.attempts} of {core.max_attempts} failed: {entry.last_reason}; "
            f"retrying in {delay:.0f}s",
        )
    ]


def _lookup_floor(current: int | None, sent_at_ms: int | None) -> int:
    """Earliest creation time a lookup accepts after an ambiguous call sent at ``sent_at_ms``."""
    floor = (sent_at_ms if sent_at_ms is not None else 0) - LOOKUP_SLACK_MS
    return floor if current is None else min(current, floor)
