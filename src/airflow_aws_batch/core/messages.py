"""What the core and the edges exchange: job statuses and views in, commands for the I/O workers and
reports for Airflow out. Pure: no I/O, no Airflow types; workload keys are opaque hashables.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

QUEUED_STATUSES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE", "STARTING"})
ACTIVE_STATUSES = QUEUED_STATUSES | {"RUNNING"}
#: The tag naming one SubmitJob call; the lookup after an ambiguous call requires it.
SUBMISSION_TAG = "submission"


class SubmitOutcome(enum.Enum):
    """How one SubmitJob (or the lookup before it) ended."""

    OK = "ok"
    #: Throttled or credentials being refreshed: not an attempt, try again soon.
    WAIT = "wait"
    #: Definitely did not create a job (4xx, validation): an attempt.
    FAILED = "failed"
    #: May have created a job (5xx, timeout, connection reset): an attempt, and look before resubmitting.
    AMBIGUOUS = "ambiguous"
    #: Failed before any SubmitJob was sent, in a way that may pass (the workload store answered 5xx
    #: or throttled, or could not be reached, or its credentials expired): not an attempt, but
    #: backed off like one, growing while it lasts, so an outage costs neither attempts nor calls.
    STALLED = "stalled"


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff between attempts: ``base_s * 2 ** (attempt - 1)``, at most ``max_s``."""

    base_s: float = 2.0
    max_s: float = 120.0
    #: Delay before retrying a throttled call (not an attempt).
    wait_s: float = 0.5

    def delay(self, attempts: int) -> float:
        return float(min(self.max_s, self.base_s * (2 ** max(0, attempts - 1))))


#: Airflow's state of a task instance queued for a run (as ``started.tis_moved_on`` says it).
TI_QUEUED = "queued"


@dataclass(frozen=True, slots=True)
class JobView:
    """What the core needs from one DescribeJobs entry."""

    job_id: str
    status: str
    status_reason: str = ""
    started: bool = False
    exit_code: int | None = None
    container_reason: str = ""
    #: SUCCEEDED, and Airflow has already moved the job's try on to its next run (a reschedule-mode
    #: sensor's next poke, a deferral): see :class:`Success`.
    moved_on: bool = False
    #: SUCCEEDED, and Airflow has the job's try QUEUED again: for an adopted job, read as moved on
    #: (see :meth:`Core.job_seen`).
    queued_again: bool = False

    def reason(self) -> str:
        parts = [f"Batch job {self.job_id} {self.status}"]
        if self.status_reason:
            parts.append(f"statusReason: {self.status_reason}")
        if self.exit_code is not None:
            parts.append(f"exitCode: {self.exit_code}")
        if self.container_reason:
            parts.append(f"container reason: {self.container_reason}")
        return "; ".join(parts)


# Commands for the I/O workers.
@dataclass(frozen=True, slots=True)
class Submit:
    key: Hashable
    request: dict[str, Any]
    #: Set after an ambiguous attempt: look for a job with this request's name and tags created
    #: at or after this epoch-milliseconds time before submitting.
    lookup_after_ms: int | None = None
    #: Only look (the last attempt was ambiguous): report OK when found, FAILED when not.
    lookup_only: bool = False
    #: ``submission`` tags of the ambiguous calls whose job the lookup may find; any other job with
    #: this name and these task tags belongs to another submission and is never taken for this one.
    lookup_submissions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TerminateLookup:
    """Find the jobs that unresolved ambiguous SubmitJobs may have created, and terminate them."""

    job_queue: str
    job_name: str
    created_after_ms: int
    submissions: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Terminate:
    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CheckStarted:
    """Find out whether Airflow saw task instance ``ti_id`` (try ``try_number``) start.

    Answer with :meth:`Core.start_checked`: True (seen), False (certainly not seen), None (cannot tell).
    """

    key: Hashable
    ti_id: str
    try_number: int
    #: Where another job of the same try would be (the failed job's queue, name and task tags): a
    #: try that Airflow sees RUNNING after its tracked job failed may have been started by a duplicate
    #: job (two jobs of one try: the second start is refused by Airflow's execution API, HTTP 409).
    job_queue: str = ""
    job_name: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    failed_job_id: str = ""


@dataclass(frozen=True, slots=True)
class Track:
    job_id: str
    job_queue: str | None
    #: The task instance try the job runs (its id as 16 bytes), when known: the poller asks Airflow
    #: about it when the job SUCCEEDS (see :class:`Success`).
    ti_id: bytes | None = None
    try_number: int = 0
    #: Adopted by an id whose job was not read yet: the poller hands its first description to the
    #: executor to verify (see ``Core.adopt``) instead of reporting it.
    unconfirmed: bool = False


@dataclass(frozen=True, slots=True)
class Untrack:
    job_id: str


Command = Submit | Terminate | TerminateLookup | Track | Untrack | CheckStarted


# Reports for Airflow.
@dataclass(frozen=True, slots=True)
class RunningState:
    """The job exists: Airflow stores ``job_id`` as the task's ``external_executor_id``."""

    key: Hashable
    job_id: str


@dataclass(frozen=True, slots=True)
class Success:
    """The job SUCCEEDED. ``moved_on``: Airflow has already moved its try on (rescheduled for its next
    poke, deferred): the slot is freed but no event is sent, since Airflow 3.3 reads an executor's
    SUCCESS for a try back in SCHEDULED as the task killed externally and fails the try."""

    key: Hashable
    job_id: str
    moved_on: bool = False


@dataclass(frozen=True, slots=True)
class Fail:
    key: Hashable
    reason: str
    #: The Batch job that FAILED, and the workload's log file given to ``add``: the job's output
    #: may be the only trace of why (when Airflow's own task logging never began).
    job_id: str | None = None
    log_path: str | None = None


@dataclass(frozen=True, slots=True)
class TaskEvent:
    key: Hashable
    event: str
    extra: str


Report = RunningState | Success | Fail | TaskEvent
