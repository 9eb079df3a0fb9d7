"""The executor's state machine: one entry per workload, driven by events, emitting commands and reports.

Life of a workload::

    pending --(due)--> submitting --(ok)--> submitted --(RUNNING seen)--> running --> done
       ^                  |  (failed / ambiguous, attempts left)    |                 |
       +------ backoff ---+-------------- FAILED before start ------+                 |
       |                                                                              | FAILED after start
       +---------------- Airflow never saw the task start <---- checking <------------+

Rules the core owns: :class:`Core` here takes workloads in (added, adopted, revoked) and hands due
submits out; what a SubmitJob answered is decided in :mod:`core.outcomes`, what Batch says of a job
and whether Airflow saw its task start in :mod:`core.status`, over the entries of :mod:`core.table`.

* Attempts are SubmitJob attempts counted per task: a submit error, a Batch job that FAILED before
  it started, and one that FAILED before Airflow saw its task start each use one. After
  ``max_attempts`` the task fails with the last reason.
* Throttling and expired credentials are not attempts: the workload just waits and tries again.
  Nor is a retryable failure before SubmitJob was sent (the workload store's): the workload backs
  off as after a failed attempt, until its token would expire before a job could start.
* A job that FAILED after it started in Batch (RUNNING seen, or ``startedAt`` set) may or may not
  have started its task: a container whose entrypoint dies reaches RUNNING without the task ever
  reaching Airflow. Such a workload moves to *checking* and the core emits :class:`CheckStarted`;
  the runtime asks Airflow's metadata DB and answers with :meth:`Core.start_checked`. Only a
  definite "Airflow never saw this try start" resubmits; "seen", "cannot tell", callbacks (no task
  instance) and adopted jobs without a request (array children) fail the task, and Airflow's own
  retries decide what happens next. A task Airflow saw start is never resubmitted.
* An adopted job (a previous scheduler's) resubmits like any other, its request rebuilt from what
  Batch says of the job; it counts as one attempt.
* A SubmitJob that failed ambiguously (5xx, timeout, connection reset, an answer without a job id)
  may have created the job, so the next attempt first looks the job up (by name, creation time,
  tags and the ambiguous calls' own ``submission`` tags) and only submits when nothing is found.
  Every SubmitJob carries a fresh ``submission`` tag: the job of an earlier attempt, of a resubmit
  or of an earlier poke of the same try carries the same name and task tags, but never this tag.
  A workload dropped while such a call is unresolved (revoked, failed, replaced) gets a
  :class:`TerminateLookup`, so the job the call may have created does not live on.
* A resubmit is not sent when the workload's token expires before it could start the task: the
  task fails with that reason instead of burning attempts on jobs that cannot start.
* ``stop_submitting()`` (scheduler shutdown) sends no further SubmitJob; what is in flight finishes.

Not supported here (on purpose): any clock but the injected one, any I/O, and any knowledge of
Airflow types; workload keys are opaque hashables.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable
from typing import Any

from airflow_aws_batch.core import outcomes, status
from airflow_aws_batch.core.entries import Entry, Phase, submission_ids
from airflow_aws_batch.core.messages import (
    SUBMISSION_TAG,
    BackoffPolicy,
    Command,
    JobView,
    Report,
    Submit,
    SubmitOutcome,
    Terminate,
    Track,
)
from airflow_aws_batch.core.table import Counts, EntryTable


class Core:
    """Bookkeeping for every workload the executor owns. Not thread-safe: one owner thread."""

    def __init__(
        self,
        *,
        max_attempts: int,
        clock: Callable[[], float],
        backoff: BackoffPolicy | None = None,
        new_submission: Callable[[], str] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.max_attempts = max_attempts
        self.clock = clock
        self.backoff = backoff or BackoffPolicy()
        self._new_submission = new_submission or submission_ids()
        self._submitting = True
        #: The entries and their indexes, which the transitions (here, in ``outcomes`` and in
        #: ``status``) read and change.
        self.table = EntryTable()

    # ----------------------------------------------------------------- queries
    def __contains__(self, key: Hashable) -> bool:
        return key in self.table.entries

    def __len__(self) -> int:
        return len(self.table.entries)

    def job_id(self, key: Hashable) -> str | None:
        entry = self.table.entries.get(key)
        return entry.job_id if entry else None

    def attempts(self, key: Hashable) -> int:
        """SubmitJob attempts counted so far for the workload (0 for a first submit, or unknown key)."""
        entry = self.table.entries.get(key)
        return entry.attempts if entry else 0

    def job_ids(self) -> list[str]:
        """Every job watched now (a copy)."""
        return list(self.table.by_job)

    def job_started(self, key: Hashable) -> bool:
        """Was the workload's current job seen started (RUNNING, or ``startedAt`` set)?"""
        entry = self.table.entries.get(key)
        return entry is not None and (entry.started or entry.phase is Phase.RUNNING)

    def tracks_job(self, job_id: str) -> bool:
        """Is ``job_id`` watched? A single dict lookup: other threads may ask, for an answer that may
        be a moment old (the sweep, which only needs to leave watched jobs alone)."""
        return job_id in self.table.by_job

    def counts(self) -> Counts:
        """Workloads per phase (kept up to date, not counted: the heartbeat asks every time)."""
        return self.table.counts()

    def in_flight(self) -> int:
        """SubmitJob calls sent whose outcome is not known yet."""
        return self.table.count(Phase.SUBMITTING)

    def stop_submitting(self) -> None:
        """Send no further SubmitJob (the scheduler is shutting down); in-flight calls still report."""
        self._submitting = False

    @property
    def submitting(self) -> bool:
        """Does the core still send SubmitJobs (False once :meth:`stop_submitting` was called)?"""
        return self._submitting

    def next_due(self) -> float | None:
        """Earliest time a pending entry becomes due, or None (a scan: not for every heartbeat)."""
        times = [e.next_at for e in self.table.entries.values() if e.phase is Phase.PENDING]
        return min(times) if times else None

    # ----------------------------------------------------------------- commands
    def commands(self, limit: int | None = None) -> list[Command]:
        """Drain queued commands plus up to ``limit`` due submits (each moves to submitting).

        Due submits go out in the order the workloads were added. The cost is that of the commands
        returned and of the entries that became due, not of the number of workloads tracked.
        """
        table = self.table
        out = table.drain()
        if not self._submitting:
            return out
        table.release_due(self.clock())
        submits = 0
        while limit is None or submits < limit:
            entry = table.pop_ready()
            if entry is None:
                break
            if entry.request is None:
                continue
            out.append(self.start_submit(entry))
            submits += 1
        return out

    def start_submit(self, entry: Entry) -> Submit:
        """``entry`` (pending, due) moves to submitting: its Submit command, with a new ``submission``."""
        self.table.set_phase(entry, Phase.SUBMITTING)
        entry.submission = self._new_submission()
        assert entry.request is not None
        request = self.table.packer.copy_of(entry.request)
        request["tags"] = {**request.get("tags", {}), SUBMISSION_TAG: entry.submission}
        return Submit(
            key=entry.key,
            request=request,
            lookup_after_ms=entry.lookup_after_ms,
            lookup_only=entry.lookup_after_ms is not None and entry.attempts >= self.max_attempts,
            lookup_submissions=entry.ambiguous,
        )

    def compact(self, limit: int) -> int:
        """Pack up to ``limit`` of the requests kept as given (oldest first); how many were packed.

        The owner calls it with what its loop can spare: memory per tracked job counts once a burst is
        over, and an entry's request is only read again for a resubmission or a lookup.
        """
        return self.table.compact(limit)

    @property
    def unpacked(self) -> int:
        """Entries (at most; some may be gone) whose request is not packed yet."""
        return len(self.table.unpacked)

    # ----------------------------------------------------------------- events
    def add(
        self,
        key: Hashable,
        request: dict[str, Any],
        log_path: str | None = None,
        *,
        ti_id: uuid.UUID | str | bytes | None = None,
        try_number: int = 0,
        expires_at: float | None = None,
    ) -> None:
        """A workload to run.

        ``ti_id`` and ``try_number`` name the task instance try, so that a job which FAILED after it
        started in Batch can be checked against Airflow; without them (callbacks) it never is.
        ``expires_at`` (the core's clock) is when the workload's token expires: no job submitted
        after that can start the task.

        A key already tracked is replaced: Airflow queues the same key (same try number) again when a
        deferred task resumes, a sensor in reschedule mode pokes again, or a task revoked as stuck
        in queued is rescheduled, often before Batch reports the old job's end. The old job is no
        longer watched: its end is not this workload's end.

        The core keeps ``request`` as given until :meth:`compact` packs it, and hands out copies of its
        top level: neither the caller nor whoever receives a command may change a nested member of a
        request in place (replace the member instead).
        """
        table = self.table
        # Packed later (compact): a burst's requests mostly go out in the heartbeat that takes them, and
        # packing them on the way in would be undone at once on the way out.
        entry = Entry(key, request, request.get("jobQueue"))
        table.unpacked.append(entry)
        entry.log_path = log_path
        entry.expires_at = expires_at
        if ti_id is not None:
            if isinstance(ti_id, bytes):  # a UUID's 16 bytes, as the intake thread passes it
                if len(ti_id) != 16:
                    raise ValueError(f"ti_id of {len(ti_id)} bytes, not a UUID's 16")
                entry.ti_id = ti_id
            else:
                entry.ti_id = (ti_id if isinstance(ti_id, uuid.UUID) else uuid.UUID(str(ti_id))).bytes
            entry.try_number = try_number
        entry.next_at = self.clock()
        old = table.entries.get(key)
        if old is not None:
            if old.phase is Phase.SUBMITTING:
                # The old workload's SubmitJob is in flight and its result carries only the key:
                # the new workload waits for it (see submit_result), and the old job is terminated.
                old.revoked = True
                table.requeued[key] = entry
                return
            # Not terminated: Airflow re-queues a key only after its try ran (a revoked one is gone
            # already), so the old job is ending, perhaps still shipping the task's logs; the poller
            # may simply not have seen it start.
            table.forget(old)
        table.store(entry)

    def adopt(
        self,
        key: Hashable,
        job_id: str,
        *,
        request: dict[str, Any] | None = None,
        started: bool = True,
        ti_id: uuid.UUID | str | bytes | None = None,
        try_number: int = 0,
        expires_at: float | None = None,
        unconfirmed: bool = False,
    ) -> None:
        """A job of a previous scheduler: watch it.

        With ``request`` (rebuilt from the job itself) it resubmits like any other: a job that FAILED
        before it started, or that started in Batch but whose try Airflow never saw start (``ti_id``
        and ``try_number`` name the try), is sent again within ``max_attempts``, the adopted job
        counting as one attempt. ``started``: the job was seen started already (``startedAt`` set).
        Without ``request`` (one cannot be rebuilt: an array child) its failure fails the task.

        ``unconfirmed``: the job was not read yet, so whether it is this try's is not known. Its
        :class:`Track` says so, and the owner verifies the job's first description before any of its
        views reach :meth:`job_seen`: then :meth:`confirm_adopted`, or :meth:`release`.
        """
        table = self.table
        if key in table.entries:
            return
        entry = Entry(key, request, request.get("jobQueue") if request else None)
        if request is not None:
            table.unpacked.append(entry)
        entry.phase = Phase.SUBMITTED
        entry.job_id = job_id
        entry.started = started
        entry.adopted = True
        entry.attempts = 1
        entry.expires_at = expires_at
        if ti_id is not None:
            entry.ti_id = ti_id if isinstance(ti_id, bytes) else _uuid(ti_id).bytes
            entry.try_number = try_number
        table.store(entry)
        table.by_job[job_id] = entry
        table.outbox.append(Track(job_id, None, entry.ti_id, entry.try_number, unconfirmed))

    def confirm_adopted(
        self,
        key: Hashable,
        job_id: str,
        *,
        request: dict[str, Any] | None,
        expires_at: float | None,
    ) -> bool:
        """The job adopted unconfirmed is this try's: what its description says to resubmit it, as
        :meth:`adopt` takes. False when the key no longer watches ``job_id`` (revoked meanwhile)."""
        entry = self.table.entries.get(key)
        if entry is None or entry.job_id != job_id:
            return False
        entry.request = request
        entry.expires_at = expires_at
        if request is not None:
            self.table.unpacked.append(entry)
        return True

    def release(self, key: Hashable) -> None:
        """Stop watching the workload's job without terminating it or reporting anything (a job
        adopted unconfirmed that turned out not to be this try's: the owner decides what follows)."""
        entry = self.table.entries.get(key)
        if entry is not None and entry.phase is not Phase.SUBMITTING:
            self.table.forget(entry, "Adopted job was not this try's")

    def submit_result(
        self,
        key: Hashable,
        outcome: SubmitOutcome,
        *,
        job_id: str | None = None,
        reason: str = "",
        sent_at_ms: int | None = None,
        found: bool = False,
        wait_s: float | None = None,
    ) -> list[Report]:
        """Outcome of a Submit command. ``found``: the lookup after an ambiguous attempt found the job.
        ``wait_s``: with WAIT, how long to wait (None: ``backoff.wait_s``)."""
        return outcomes.submit_result(
            self,
            key,
            outcome,
            job_id=job_id,
            reason=reason,
            sent_at_ms=sent_at_ms,
            found=found,
            wait_s=wait_s,
        )

    def job_seen(self, view: JobView) -> list[Report]:
        """What DescribeJobs says of a watched job now (see :mod:`core.status`)."""
        return status.job_seen(self, view)

    def start_checked(self, key: Hashable, seen: bool | None, winner: str | None = None) -> list[Report]:
        """Answer to :class:`CheckStarted`: did Airflow see the task start (None: cannot tell)?

        ``winner``: Airflow has the try RUNNING and another active job of the same try exists: the
        failed job lost the task's start to it (the execution API refuses a second start), so the
        task is running there. That job is watched instead, and nothing is failed.
        """
        return status.start_checked(self, key, seen, winner)

    def job_missing(self, job_id: str) -> list[Report]:
        """DescribeJobs no longer knows the job (deleted, expired, or a bad adopted id)."""
        return status.job_missing(self, job_id)

    def give_up(self, job_id: str, reason: str) -> list[Report]:
        """The tracked job ``job_id`` can never start (e.g. stuck for a misconfiguration): terminate
        it and fail its task with ``reason``, without resubmitting (a new job would be stuck too)."""
        return status.give_up(self, job_id, reason)

    def revoke(self, key: Hashable, reason: str = "Task revoked by Airflow") -> None:
        """Stop tracking the workload and terminate its job. Reports nothing (Airflow decides the state)."""
        entry = self.table.entries.get(key)
        if entry is None:
            return
        if entry.phase is Phase.SUBMITTING:
            entry.revoked = True  # the in-flight result will terminate the job
            self.table.requeued.pop(key, None)
            return
        if entry.job_id is not None:
            self.table.outbox.append(Terminate(entry.job_id, reason))
        self.table.forget(entry, reason)

    def terminate_all(self, reason: str) -> list[Terminate]:
        """Forget everything; return TerminateJob commands for every known job."""
        out = [Terminate(e.job_id, reason) for e in self.table.entries.values() if e.job_id is not None]
        self.table.clear()
        return out


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
