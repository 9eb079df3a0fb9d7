"""The core's entries, indexed, counted and queued: what every transition of :mod:`core.state`,
:mod:`core.outcomes` and :mod:`core.status` reads and changes. Pure: no I/O, no clock.

Kept up to date on every change so that a heartbeat costs the same with 20 or 20,000 jobs tracked:
entries per phase, pending entries not due yet by (next_at, seq), and due ones by seq (the order of
``entries``, which is the order a scan would submit them in). Heap items left behind by a change are
skipped when they surface: an item counts only while it is its entry's ``due``.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from airflow_aws_batch.core.entries import Entry, Packer, Phase
from airflow_aws_batch.core.messages import (
    BackoffPolicy,
    Command,
    Fail,
    Report,
    TaskEvent,
    TerminateLookup,
    Untrack,
)


@dataclass
class Counts:
    pending: int = 0
    submitting: int = 0
    submitted: int = 0
    running: int = 0
    checking: int = 0


_PHASE_INDEX = {phase: index for index, phase in enumerate(Phase)}


class EntryTable:
    """Every entry of one :class:`~core.state.Core`, and the commands its transitions queued.
    Not thread-safe: the core's owner thread only (but see :meth:`Core.tracks_job`)."""

    def __init__(self) -> None:
        #: Every workload, by key, in insertion order.
        self.entries: dict[Hashable, Entry] = {}
        #: The entries whose job is watched, by job id.
        self.by_job: dict[str, Entry] = {}
        #: Commands queued by transitions, until the owner takes them (:meth:`drain`).
        self.outbox: list[Command] = []
        #: Workloads queued again while the old one's SubmitJob was in flight (see ``Core.add``).
        self.requeued: dict[Hashable, Entry] = {}
        self.packer = Packer()
        #: Entries whose request is kept as given, oldest first, until :meth:`compact` packs it.
        self.unpacked: deque[Entry] = deque()
        # Entries of ``entries`` per phase (index: ``_PHASE_INDEX``), and the heaps of pending entries
        # (see the module docstring).
        self._phase_counts = [0] * len(_PHASE_INDEX)
        self._next_seq = 0
        self._waiting: list[tuple[float, int, Entry]] = []
        self._ready: list[tuple[int, Entry]] = []

    # ----------------------------------------------------------------- counts
    def count(self, phase: Phase) -> int:
        return self._phase_counts[_PHASE_INDEX[phase]]

    def counts(self) -> Counts:
        n = self._phase_counts
        return Counts(
            pending=n[_PHASE_INDEX[Phase.PENDING]],
            submitting=n[_PHASE_INDEX[Phase.SUBMITTING]],
            submitted=n[_PHASE_INDEX[Phase.SUBMITTED]],
            running=n[_PHASE_INDEX[Phase.RUNNING]],
            checking=n[_PHASE_INDEX[Phase.CHECKING]],
        )

    # ----------------------------------------------------------------- due submits
    def release_due(self, now: float) -> None:
        """Move the pending entries due at ``now`` to the ready queue (by seq)."""
        waiting, ready = self._waiting, self._ready
        while waiting and waiting[0][0] <= now:
            item = heapq.heappop(waiting)
            entry = item[2]
            if entry.due is item:
                entry.due = due = (entry.seq, entry)
                heapq.heappush(ready, due)

    def pop_ready(self) -> Entry | None:
        """The due entry added first (no longer queued), or None when none is due."""
        ready = self._ready
        while ready:
            due = heapq.heappop(ready)
            entry = due[1]
            if entry.due is not due:
                continue
            entry.due = None
            return entry
        return None

    def drain(self) -> list[Command]:
        """The commands queued so far; the outbox starts empty again."""
        out, self.outbox = self.outbox, []
        return out

    def compact(self, limit: int) -> int:
        """Pack up to ``limit`` of the requests kept as given (oldest first); how many were packed."""
        packed = 0
        while self.unpacked and packed < limit:
            entry = self.unpacked.popleft()
            if isinstance(entry.request, dict) and self.entries.get(entry.key) is entry:
                entry.request = self.packer.pack(entry.request)
                packed += 1
        return packed

    def clear(self) -> None:
        """Forget every entry and every queued command."""
        self.entries.clear()
        self.by_job.clear()
        self.outbox.clear()
        self.requeued.clear()
        self._phase_counts = [0] * len(_PHASE_INDEX)
        self._waiting.clear()
        self._ready.clear()

    # ----------------------------------------------------------------- changes
    def store(self, entry: Entry) -> None:
        """Put ``entry`` in ``entries`` (its key not there), counted, and queued when pending."""
        self.entries[entry.key] = entry
        entry.seq = self._next_seq
        self._next_seq += 1
        self._phase_counts[_PHASE_INDEX[entry.phase]] += 1
        if entry.phase is Phase.PENDING:
            self._push(entry)

    def drop(self, entry: Entry) -> None:
        """Take ``entry`` out of ``entries`` and of the counts; its heap items become stale."""
        if self.entries.get(entry.key) is entry:
            del self.entries[entry.key]
            self._phase_counts[_PHASE_INDEX[entry.phase]] -= 1
        entry.due = None

    def set_phase(self, entry: Entry, phase: Phase) -> None:
        counts = self._phase_counts
        counts[_PHASE_INDEX[entry.phase]] -= 1
        counts[_PHASE_INDEX[phase]] += 1
        entry.phase = phase
        if phase is not Phase.PENDING:
            entry.due = None

    def schedule(self, entry: Entry, at: float) -> None:
        """``entry`` (in ``entries``) goes back to pending, due at ``at``."""
        self.set_phase(entry, Phase.PENDING)
        entry.next_at = at
        self._push(entry)

    def _push(self, entry: Entry) -> None:
        entry.due = item = (entry.next_at, entry.seq, entry)
        heapq.heappush(self._waiting, item)

    def forget(self, entry: Entry, reason: str = "Task no longer run by this Batch job") -> None:
        self.drop(entry)
        if entry.job_id is not None:
            self.by_job.pop(entry.job_id, None)
            self.outbox.append(Untrack(entry.job_id))
        self.terminate_unresolved(entry, reason)

    def terminate_unresolved(self, entry: Entry, reason: str) -> None:
        """The entry is dropped with ambiguous SubmitJobs unresolved: their jobs, if any, must not live on."""
        if not entry.ambiguous or entry.request is None or entry.lookup_after_ms is None:
            return
        request = self.packer.copy_of(entry.request)
        self.outbox.append(
            TerminateLookup(
                job_queue=str(request.get("jobQueue", "")),
                job_name=str(request.get("jobName", "")),
                created_after_ms=entry.lookup_after_ms,
                submissions=entry.ambiguous,
                reason=reason,
            )
        )
        entry.ambiguous = ()

    def fail(self, entry: Entry, reason: str, job_id: str | None = None) -> list[Report]:
        self.forget(entry, f"Task failed: {reason}"[:1024])
        return [
            TaskEvent(entry.key, "aws_batch_task_failed", reason),
            Fail(entry.key, reason, job_id=job_id, log_path=entry.log_path if job_id else None),
        ]


class Rules(Protocol):
    """What the transitions of :mod:`core.outcomes` and :mod:`core.status` take from the core: its
    table, its attempts and backoff, and its clock (:class:`~core.state.Core` is one)."""

    table: EntryTable
    max_attempts: int
    backoff: BackoffPolicy
    clock: Callable[[], float]
