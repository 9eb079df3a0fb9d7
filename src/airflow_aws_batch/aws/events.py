"""Batch's job state change events, as EventBridge delivers them to an SQS queue: parsed, and put in
order. Pure: the receiving is elsewhere.

An event's ``detail`` is the job's DescribeJobs entry at the change, so it parses into the same
:class:`JobDetail` the poller gets. EventBridge delivers at least once, in no promised order, and
stamps ``time`` to the second only; what orders two events of one job is the job's own progress:
how many attempts have ended, then how far the current attempt has come. A job Batch retries goes
from RUNNING back to RUNNABLE, but with one more ended attempt, so its order still grows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from airflow_aws_batch.aws.shapes import JobDetail

SOURCE = "aws.batch"
DETAIL_TYPE = "Batch Job State Change"

#: How far a job has come within its current attempt. SUCCEEDED and FAILED end the job.
_PROGRESS = {
    "SUBMITTED": 0,
    "PENDING": 1,
    "RUNNABLE": 2,
    "STARTING": 3,
    "RUNNING": 4,
    "SUCCEEDED": 5,
    "FAILED": 5,
}
ENDED = frozenset({"SUCCEEDED", "FAILED"})
_STEPS = 8


class EventError(ValueError):
    """A message that is not a job state change event we can read; the text says what is wrong."""


@dataclass(frozen=True, slots=True)
class StateChange:
    detail: JobDetail
    #: Compares two changes of one job: the later one is the greater (see :func:`order_of`).
    order: int
    event_id: str

    @property
    def job_id(self) -> str:
        return self.detail.job_id


def order_of(raw_detail: dict[str, Any], status: str) -> int:
    """Ended attempts, then progress within the current one, as one number (kept per tracked job, so
    an int rather than a tuple)."""
    attempts = len(raw_detail.get("attempts") or raw_detail.get("eksAttempts") or ())
    if status in ENDED:
        # An ended job's last attempt is in its list already; nothing comes after it.
        attempts += 1
    return attempts * _STEPS + _PROGRESS.get(status, 0)


def parse_event(body: str | bytes) -> StateChange | None:
    """The change an SQS message's body holds; None for an event of another kind (a rule that also
    matches e.g. "Batch Job Queue Blocked"). Raises :class:`EventError` for a body that is no event."""
    try:
        event = json.loads(body)
    except ValueError as err:
        raise EventError(f"message body is not JSON: {err}") from None
    if not isinstance(event, dict):
        raise EventError(f"message body is a JSON {type(event).__name__}, not an event object")
    if event.get("source") != SOURCE or event.get("detail-type") != DETAIL_TYPE:
        return None
    detail = event.get("detail")
    if not isinstance(detail, dict) or not isinstance(detail.get("jobId"), str):
        raise EventError(f"event {event.get('id')!r} has no detail.jobId")
    status = detail.get("status")
    if status not in _PROGRESS:
        raise EventError(f"event {event.get('id')!r} for job {detail['jobId']}: unknown status {status!r}")
    return StateChange(
        detail=JobDetail.parse(detail),
        order=order_of(detail, status),
        event_id=str(event.get("id", "")),
    )


#: The order of a job nothing is known of yet.
UNKNOWN = -1


def is_newer(change: StateChange, known: int) -> bool:
    """Whether ``change`` moves its job forward from ``known`` (the order of the last change taken,
    :data:`UNKNOWN` for none). A duplicate or an older change is not: a job never moves back."""
    return change.order > known
