"""The executor's state machine: one entry per workload, driven by events, emitting commands and reports.

Life of a workload::

    pending --(due)--> submitting --(ok)--> submitted --(RUNNING seen)--> running --> done
       ^                  |  (failed / ambiguous, attempts left)    |
       +------ backoff ---+-------------- FAILED before start ------+

Rules this module owns:

* Attempts are SubmitJob attempts counted per task: a submit error and a Batch job that FAILED
  before it started both use one. After ``max_attempts`` the task fails with the last reason.
* Throttling and expired credentials are not attempts: the workload just waits and tries again.
* A job that started (RUNNING seen, or ``startedAt`` set) is never resubmitted: its FAILED status
  fails the task and Airflow's own retries decide what happens next. Adopted jobs count as started.
* A SubmitJob that failed ambiguously (5xx, timeout, connection reset) may have created the job, so
  the next attempt first looks the job up (by name, creation time and tags) and only submits when
  nothing is found.

Not supported here (on purpose): any clock but the injected one, any I/O, and any knowledge of
Airflow types; workload keys are opaque hashables.
"""

from __future__ import annotations

import enum
import json
import zlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

QUEUED_STATUSES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE", "STARTING"})
# Lookups of an ambiguous submit accept jobs created this long before the call was sent, to absorb
# clock skew between this host and Batch.
LOOKUP_SLACK_MS = 60_000


class SubmitOutcome(enum.Enum):
    """How one SubmitJob (or the lookup before it) ended."""

    OK = "ok"
    #: Throttled or credentials being refreshed: not an attempt, try again soon.
    WAIT = "wait"
    #: Definitely did not create a job (4xx, validation): an attempt.
    FAILED = "failed"
    #: May have created a job (5xx, timeout, connection reset): an attempt, and look before resubmitting.
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff between attempts: ``base_s * 2 ** (attempt - 1)``, at most ``max_s``."""

    base_s: float = 2.0
    max_s: float = 120.0
    #: Delay before retrying a throttled call (not an attempt).
    wait_s: float = 0.5

    def delay(self, attempts: int) -> float:
        return float(min(self.max_s, self.base_s * (2 ** max(0, attempts - 1))))


@dataclass(frozen=True, slots=True)
class JobView:
    """What the core needs from one DescribeJobs entry."""

    job_id: str
    status: str
    status_reason: str = ""
    started: bool = False
    exit_code: int | None = None
    container_reason: str = ""

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


@dataclass(frozen=True, slots=True)
class Terminate:
    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Track:
    job_id: str
    job_queue: str | None


@dataclass(frozen=True, slots=True)
class Untrack:
    job_id: str


Command = Submit | Terminate | Track | Untrack


# Reports for Airflow.
@dataclass(frozen=True, slots=True)
class RunningState:
    """The job exists: Airflow stores ``job_id`` as the task's ``external_executor_id``."""

    key: Hashable
    job_id: str


@dataclass(frozen=True, slots=True)
class Success:
    key: Hashable
    job_id: str


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


class Phase(enum.Enum):
    PENDING = "pending"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    RUNNING = "running"


class _Entry:
    # Slots and a compressed request: the benchmark holds thousands of these.
    __slots__ = (
        "attempts",
        "job_id",
        "job_queue",
        "key",
        "last_reason",
        "log_path",
        "lookup_after_ms",
        "next_at",
        "phase",
        "request",
        "revoked",
        "started",
        "status",
        "status_reason",
    )

    def __init__(self, key: Hashable, request: bytes | None, job_queue: str | None) -> None:
        self.key = key
        self.request = request
        self.job_queue = job_queue
        self.phase = Phase.PENDING
        self.attempts = 0
        self.next_at = 0.0
        self.job_id: str | None = None
        self.status = ""
        self.status_reason = ""
        self.started = False
        self.revoked = False
        self.lookup_after_ms: int | None = None
        self.last_reason = ""
        self.log_path: str | None = None


def _pack(request: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(request, separators=(",", ":")).encode(), 1)


def _unpack(blob: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(zlib.decompress(blob))
    return result


@dataclass
class Counts:
    pending: int = 0
    submitting: int = 0
    submitted: int = 0
    running: int = 0
    by_phase: dict[str, int] = field(default_factory=dict)


class Core:
    """Bookkeeping for every workload the executor owns. Not thread-safe: one owner thread."""

    def __init__(
        self,
        *,
        max_attempts: int,
        clock: Callable[[], float],
        backoff: BackoffPolicy | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.max_attempts = max_attempts
        self.clock = clock
        self.backoff = backoff or BackoffPolicy()
        self._entries: dict[Hashable, _Entry] = {}
        self._by_job: dict[str, _Entry] = {}
        self._outbox: list[Command] = []

    # ----------------------------------------------------------------- queries
    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def job_id(self, key: Hashable) -> str | None:
        entry = self._entries.get(key)
        return entry.job_id if entry else None

    def counts(self) -> Counts:
        counts = Counts()
        for entry in self._entries.values():
            if entry.phase is Phase.PENDING:
                counts.pending += 1
            elif entry.phase is Phase.SUBMITTING:
                counts.submitting += 1
            elif entry.phase is Phase.SUBMITTED:
                counts.submitted += 1
            else:
                counts.running += 1
        return counts

    def next_due(self) -> float | None:
        """Earliest time a pending entry becomes due, or None."""
        times = [e.next_at for e in self._entries.values() if e.phase is Phase.PENDING]
        return min(times) if times else None

    # ----------------------------------------------------------------- commands
    def commands(self, limit: int | None = None) -> list[Command]:
        """Drain queued commands plus up to ``limit`` due submits (each moves to submitting)."""
        out, self._outbox = self._outbox, []
        now = self.clock()
        submits = 0
        for entry in self._entries.values():
            if limit is not None and submits >= limit:
                break
            if entry.phase is not Phase.PENDING or entry.next_at > now or entry.request is None:
                continue
            entry.phase = Phase.SUBMITTING
            out.append(
                Submit(
                    key=entry.key,
                    request=_unpack(entry.request),
                    lookup_after_ms=entry.lookup_after_ms,
                    lookup_only=entry.lookup_after_ms is not None and entry.attempts >= self.max_attempts,
                )
            )
            submits += 1
        return out

    # ----------------------------------------------------------------- events
    def add(self, key: Hashable, request: dict[str, Any], log_path: str | None = None) -> None:
        """A workload to run. A key already tracked is ignored (Airflow re-queues only new try numbers)."""
        if key in self._entries:
            return
        entry = _Entry(key, _pack(request), request.get("jobQueue"))
        entry.log_path = log_path
        entry.next_at = self.clock()
        self._entries[key] = entry

    def adopt(self, key: Hashable, job_id: str) -> None:
        """A live job of a previous scheduler: watch it, never resubmit it."""
        if key in self._entries:
            return
        entry = _Entry(key, None, None)
        entry.phase = Phase.SUBMITTED
        entry.job_id = job_id
        entry.started = True
        self._entries[key] = entry
        self._by_job[job_id] = entry
        self._outbox.append(Track(job_id, None))

    def submit_result(
        self,
        key: Hashable,
        outcome: SubmitOutcome,
        *,
        job_id: str | None = None,
        reason: str = "",
        sent_at_ms: int | None = None,
        found: bool = False,
    ) -> list[Report]:
        """Outcome of a Submit command. ``found``: the lookup after an ambiguous attempt found the job."""
        entry = self._entries.get(key)
        if entry is None or entry.phase is not Phase.SUBMITTING:
            if outcome is SubmitOutcome.OK and job_id:
                # Revoked or finished while the call was in flight: the job must not live on.
                self._outbox.append(Terminate(job_id, "Task revoked by Airflow before its job was submitted"))
            return []
        if entry.revoked:
            del self._entries[key]
            if outcome is SubmitOutcome.OK and job_id:
                self._outbox.append(Terminate(job_id, "Task revoked by Airflow while its job was submitted"))
            return []
        now = self.clock()
        if outcome is SubmitOutcome.OK:
            if not job_id:
                raise ValueError("SubmitOutcome.OK needs a job_id")
            if not found:  # a found job's attempt was counted when it turned ambiguous
                entry.attempts += 1
            entry.phase = Phase.SUBMITTED
            entry.job_id = job_id
            entry.lookup_after_ms = None
            entry.status = "SUBMITTED"
            entry.status_reason = ""
            self._by_job[job_id] = entry
            self._outbox.append(Track(job_id, entry.job_queue))
            reports: list[Report] = [RunningState(key, job_id)]
            if found:
                reports.append(
                    TaskEvent(
                        key, "aws_batch_job_found", f"Batch job {job_id} found after an ambiguous submit"
                    )
                )
            return reports
        if outcome is SubmitOutcome.WAIT:
            entry.phase = Phase.PENDING
            entry.next_at = now + self.backoff.wait_s
            return []
        # FAILED or AMBIGUOUS: both count.
        if not (entry.lookup_after_ms is not None and entry.attempts >= self.max_attempts):
            entry.attempts += 1
        entry.last_reason = reason or outcome.value
        if outcome is SubmitOutcome.AMBIGUOUS:
            sent = sent_at_ms if sent_at_ms is not None else 0
            floor = sent - LOOKUP_SLACK_MS
            entry.lookup_after_ms = (
                floor if entry.lookup_after_ms is None else min(entry.lookup_after_ms, floor)
            )
            entry.phase = Phase.PENDING
            entry.next_at = now + self.backoff.delay(entry.attempts)
            return [
                TaskEvent(
                    key,
                    "aws_batch_submit_ambiguous",
                    f"SubmitJob attempt {entry.attempts} of {self.max_attempts} may have failed "
                    f"({entry.last_reason}); looking for the job before trying again",
                )
            ]
        if entry.attempts >= self.max_attempts:
            return self._fail(
                entry, f"SubmitJob failed {entry.attempts} times; last error: {entry.last_reason}"
            )
        entry.phase = Phase.PENDING
        delay = self.backoff.delay(entry.attempts)
        entry.next_at = now + delay
        return [
            TaskEvent(
                key,
                "aws_batch_submit_failed",
                f"SubmitJob attempt {entry.attempts} of {self.max_attempts} failed: {entry.last_reason}; "
                f"retrying in {delay:.0f}s",
            )
        ]

    def job_seen(self, view: JobView) -> list[Report]:
        entry = self._by_job.get(view.job_id)
        if entry is None:
            return []
        key = entry.key
        changed = (view.status, view.status_reason) != (entry.status, entry.status_reason)
        entry.status = view.status
        entry.status_reason = view.status_reason
        if view.started or view.status == "RUNNING":
            entry.started = True
            entry.request = None  # never resubmitted from now on
        if view.status in QUEUED_STATUSES:
            entry.phase = Phase.SUBMITTED
            if changed and view.status_reason:
                return [TaskEvent(key, f"aws_batch_job_{view.status.lower()}", view.reason())]
            return []
        if view.status == "RUNNING":
            entry.phase = Phase.RUNNING
            return []
        if view.status == "SUCCEEDED":
            self._forget(entry)
            return [Success(key, view.job_id)]
        if view.status != "FAILED":
            return []
        reason = view.reason()
        self._by_job.pop(view.job_id, None)
        self._outbox.append(Untrack(view.job_id))
        entry.job_id = None
        if entry.started or entry.request is None:
            return self._fail(
                entry,
                f"{reason} after it started; Airflow's retries decide what happens next",
                job_id=view.job_id,
            )
        entry.last_reason = reason
        if entry.attempts >= self.max_attempts:
            return self._fail(
                entry,
                f"{reason}; no submit attempts left ({entry.attempts} of {self.max_attempts})",
                job_id=view.job_id,
            )
        delay = self.backoff.delay(entry.attempts)
        entry.phase = Phase.PENDING
        entry.next_at = self.clock() + delay
        return [
            TaskEvent(
                key,
                "aws_batch_job_failed_before_start",
                f"{reason}; resubmitting in {delay:.0f}s "
                f"(attempt {entry.attempts + 1} of {self.max_attempts})",
            )
        ]

    def job_missing(self, job_id: str) -> list[Report]:
        """DescribeJobs no longer knows the job (deleted, expired, or a bad adopted id)."""
        entry = self._by_job.get(job_id)
        if entry is None:
            return []
        self._by_job.pop(job_id, None)
        self._outbox.append(Untrack(job_id))
        return self._fail(entry, f"Batch job {job_id} is unknown to DescribeJobs")

    def revoke(self, key: Hashable, reason: str = "Task revoked by Airflow") -> None:
        """Stop tracking the workload and terminate its job. Reports nothing (Airflow decides the state)."""
        entry = self._entries.get(key)
        if entry is None:
            return
        if entry.phase is Phase.SUBMITTING:
            entry.revoked = True  # the in-flight result will terminate the job
            return
        if entry.job_id is not None:
            self._outbox.append(Terminate(entry.job_id, reason))
        self._forget(entry)

    def terminate_all(self, reason: str) -> list[Terminate]:
        """Forget everything; return TerminateJob commands for every known job."""
        out = [Terminate(e.job_id, reason) for e in self._entries.values() if e.job_id is not None]
        self._entries.clear()
        self._by_job.clear()
        self._outbox.clear()
        return out

    # ----------------------------------------------------------------- helpers
    def _forget(self, entry: _Entry) -> None:
        self._entries.pop(entry.key, None)
        if entry.job_id is not None:
            self._by_job.pop(entry.job_id, None)
            self._outbox.append(Untrack(entry.job_id))

    def _fail(self, entry: _Entry, reason: str, job_id: str | None = None) -> list[Report]:
        self._forget(entry)
        return [
            TaskEvent(entry.key, "aws_batch_task_failed", reason),
            Fail(entry.key, reason, job_id=job_id, log_path=entry.log_path if job_id else None),
        ]
