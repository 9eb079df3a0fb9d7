"""The executor's state machine: one entry per workload, driven by events, emitting commands and reports.

Life of a workload::

    pending --(due)--> submitting --(ok)--> submitted --(RUNNING seen)--> running --> done
       ^                  |  (failed / ambiguous, attempts left)    |                 |
       +------ backoff ---+-------------- FAILED before start ------+                 |
       |                                                                              | FAILED after start
       +---------------- Airflow never saw the task start <---- checking <------------+

Rules this module owns:

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

import enum
import heapq
import itertools
import pickle
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

QUEUED_STATUSES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE", "STARTING"})
ACTIVE_STATUSES = QUEUED_STATUSES | {"RUNNING"}
#: The tag naming one SubmitJob call; the lookup after an ambiguous call requires it.
SUBMISSION_TAG = "submission"
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


class Phase(enum.Enum):
    PENDING = "pending"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    RUNNING = "running"
    #: The job FAILED after it started in Batch; waiting to learn whether Airflow saw the task start.
    CHECKING = "checking"


_T = TypeVar("_T")


class _Rare(Generic[_T]):
    """An attribute of :class:`_Entry` that most entries leave at its default all their life (a
    failure being checked, ambiguous SubmitJob calls, stalls, a revoke): kept in the entry's side
    dict, created when a value other than the default is set and dropped when all are back to it,
    so that the thousands of entries of a busy scheduler do not each carry a slot for it."""

    __slots__ = ("_default", "_name")

    def __init__(self, default: _T) -> None:
        self._default = default
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, entry: _Entry | None, owner: type | None = None) -> _T:
        if entry is None or entry.rare is None:
            return self._default
        value: _T = entry.rare.get(self._name, self._default)
        return value

    def __set__(self, entry: _Entry, value: _T) -> None:
        rare = entry.rare
        if value == self._default:
            if rare is not None:
                rare.pop(self._name, None)
                if not rare:
                    entry.rare = None
        elif rare is None:
            entry.rare = {self._name: value}
        else:
            rare[self._name] = value


class _Entry:
    # Slots and a compressed request: a scheduler may hold thousands of these.
    __slots__ = (
        "adopted",
        "attempts",
        "due",
        "expires_at",
        "job_id",
        "job_queue",
        "key",
        "log_path",
        "next_at",
        "phase",
        "rare",
        "request",
        "seq",
        "started",
        "status",
        "status_reason",
        "submission",
        "ti_id",
        "try_number",
    )

    #: Set on a revoke while the SubmitJob is in flight: its result terminates the job.
    revoked: _Rare[bool] = _Rare(False)
    #: STALLED outcomes in a row (each waits longer); reset when a SubmitJob is answered.
    stalls: _Rare[int] = _Rare(0)
    #: Set after an ambiguous SubmitJob: look for its job created at or after this (epoch ms).
    lookup_after_ms: _Rare[int | None] = _Rare(None)
    #: The last SubmitJob error, or the reason of the failure being checked.
    last_reason: _Rare[str] = _Rare("")
    #: The job whose failure is being checked (no longer tracked, so not in ``job_id``).
    failed_job_id: _Rare[str | None] = _Rare(None)
    #: The ``submission`` tags of unresolved ambiguous SubmitJob calls.
    ambiguous: _Rare[tuple[str, ...]] = _Rare(())

    def __init__(self, key: Hashable, request: bytes | dict[str, Any] | None, job_queue: str | None) -> None:
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
        #: The current job is a previous scheduler's (its id was saved, or is said on adoption).
        self.adopted = False
        #: The values of the ``_Rare`` attributes set to other than their default; None: none is.
        self.rare: dict[str, Any] | None = None
        self.log_path: str | None = None
        #: The task instance's id as 16 bytes (a UUID), None when Airflow's view cannot be checked.
        self.ti_id: bytes | None = None
        self.try_number = 0
        #: The ``submission`` tag of the SubmitJob in flight.
        self.submission = ""
        #: When the workload's token expires (the core's clock); None when unknown.
        self.expires_at: float | None = None
        #: Position in ``Core._entries`` (insertion order), which is the order due submits go out in.
        self.seq = 0
        #: The one heap item of ``Core`` that stands for this pending entry; older items are stale.
        self.due: tuple[Any, ...] | None = None


_WINDOW_BITS = 12
_WINDOW = 1 << _WINDOW_BITS


def _submission_ids() -> Callable[[], str]:
    """Submission ids: 32 hex digits, a random half per core and a counter. As unique as uuid4's
    across schedulers and restarts, without a system call per SubmitJob (a burst needs thousands)."""
    prefix = uuid.uuid4().hex[:16]
    counter = itertools.count()
    return lambda: f"{prefix}{next(counter):016x}"


class _Packer:
    """Requests kept compressed, with the first one as zlib's preset dictionary.

    A request is mostly its command (or its stored workload): the workload JSON with a signed token,
    which zlib alone barely shrinks. What one task's request shares with another's (option names, DAG
    and run ids, the token's header, the job definition) compresses away against the first request.
    Pickled, not JSON: these bytes never leave the process, and pickling costs a fraction of encoding.
    """

    __slots__ = ("_zdict",)

    def __init__(self) -> None:
        self._zdict: bytes | None = None

    def pack(self, request: dict[str, Any]) -> bytes:
        raw = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        if self._zdict is None:
            self._zdict = raw[-_WINDOW:]  # only the last window's worth of a dictionary counts
        # Raw deflate with a small window: a heartbeat packs dozens of these, and a compressor with
        # zlib's default 32 KiB window costs several times as much to set up.
        packer = zlib.compressobj(6, zlib.DEFLATED, -_WINDOW_BITS, 4, zdict=self._zdict)
        return packer.compress(raw) + packer.flush()

    def unpack(self, blob: bytes) -> dict[str, Any]:
        assert self._zdict is not None
        unpacker = zlib.decompressobj(-_WINDOW_BITS, zdict=self._zdict)
        result: dict[str, Any] = pickle.loads(unpacker.decompress(blob) + unpacker.flush())
        return result

    def copy_of(self, stored: bytes | dict[str, Any]) -> dict[str, Any]:
        """A request of one's own: unpacked, or a new top level over a request not packed yet (whose
        nested members nobody changes in place: see :meth:`Core.add`)."""
        return self.unpack(stored) if isinstance(stored, bytes) else dict(stored)


@dataclass
class Counts:
    pending: int = 0
    submitting: int = 0
    submitted: int = 0
    running: int = 0
    checking: int = 0


_PHASE_INDEX = {phase: index for index, phase in enumerate(Phase)}


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
        self._new_submission = new_submission or _submission_ids()
        self._submitting = True
        self._entries: dict[Hashable, _Entry] = {}
        self._packer = _Packer()
        #: Entries whose request is kept as given, oldest first, until :meth:`compact` packs it.
        self._unpacked: deque[_Entry] = deque()
        self._by_job: dict[str, _Entry] = {}
        self._outbox: list[Command] = []
        #: Workloads queued again while the old one's SubmitJob was in flight (see ``add``).
        self._requeued: dict[Hashable, _Entry] = {}
        # Kept up to date on every change so that a heartbeat costs the same with 20 or 20,000 jobs
        # tracked: entries of ``_entries`` per phase (index: ``_PHASE_INDEX``), pending entries not
        # due yet by (next_at, seq), and due ones by seq (the order of ``_entries``, which is the
        # order a scan would submit them in). Heap items left behind by a change are skipped when
        # they surface: an item counts only while it is its entry's ``due``.
        self._phase_counts = [0] * len(_PHASE_INDEX)
        self._next_seq = 0
        self._waiting: list[tuple[float, int, _Entry]] = []
        self._ready: list[tuple[int, _Entry]] = []

    # ----------------------------------------------------------------- queries
    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def job_id(self, key: Hashable) -> str | None:
        entry = self._entries.get(key)
        return entry.job_id if entry else None

    def attempts(self, key: Hashable) -> int:
        """SubmitJob attempts counted so far for the workload (0 for a first submit, or unknown key)."""
        entry = self._entries.get(key)
        return entry.attempts if entry else 0

    def job_ids(self) -> list[str]:
        """Every job watched now (a copy)."""
        return list(self._by_job)

    def job_started(self, key: Hashable) -> bool:
        """Was the workload's current job seen started (RUNNING, or ``startedAt`` set)?"""
        entry = self._entries.get(key)
        return entry is not None and (entry.started or entry.phase is Phase.RUNNING)

    def tracks_job(self, job_id: str) -> bool:
        """Is ``job_id`` watched? A single dict lookup: other threads may ask, for an answer that may
        be a moment old (the sweep, which only needs to leave watched jobs alone)."""
        return job_id in self._by_job

    def counts(self) -> Counts:
        """Workloads per phase (kept up to date, not counted: the heartbeat asks every time)."""
        n = self._phase_counts
        return Counts(
            pending=n[_PHASE_INDEX[Phase.PENDING]],
            submitting=n[_PHASE_INDEX[Phase.SUBMITTING]],
            submitted=n[_PHASE_INDEX[Phase.SUBMITTED]],
            running=n[_PHASE_INDEX[Phase.RUNNING]],
            checking=n[_PHASE_INDEX[Phase.CHECKING]],
        )

    def in_flight(self) -> int:
        """SubmitJob calls sent whose outcome is not known yet."""
        return self._phase_counts[_PHASE_INDEX[Phase.SUBMITTING]]

    def stop_submitting(self) -> None:
        """Send no further SubmitJob (the scheduler is shutting down); in-flight calls still report."""
        self._submitting = False

    def next_due(self) -> float | None:
        """Earliest time a pending entry becomes due, or None (a scan: not for every heartbeat)."""
        times = [e.next_at for e in self._entries.values() if e.phase is Phase.PENDING]
        return min(times) if times else None

    # ----------------------------------------------------------------- commands
    def commands(self, limit: int | None = None) -> list[Command]:
        """Drain queued commands plus up to ``limit`` due submits (each moves to submitting).

        Due submits go out in the order the workloads were added. The cost is that of the commands
        returned and of the entries that became due, not of the number of workloads tracked.
        """
        out, self._outbox = self._outbox, []
        if not self._submitting:
            return out
        now = self.clock()
        waiting, ready = self._waiting, self._ready
        while waiting and waiting[0][0] <= now:
            item = heapq.heappop(waiting)
            entry = item[2]
            if entry.due is item:
                entry.due = due = (entry.seq, entry)
                heapq.heappush(ready, due)
        submits = 0
        while ready:
            if limit is not None and submits >= limit:
                break
            due = heapq.heappop(ready)
            entry = due[1]
            if entry.due is not due:
                continue
            entry.due = None
            if entry.request is None:
                continue
            self._set_phase(entry, Phase.SUBMITTING)
            entry.submission = self._new_submission()
            request = self._packer.copy_of(entry.request)
            request["tags"] = {**request.get("tags", {}), SUBMISSION_TAG: entry.submission}
            out.append(
                Submit(
                    key=entry.key,
                    request=request,
                    lookup_after_ms=entry.lookup_after_ms,
                    lookup_only=entry.lookup_after_ms is not None and entry.attempts >= self.max_attempts,
                    lookup_submissions=entry.ambiguous,
                )
            )
            submits += 1
        return out

    def compact(self, limit: int) -> int:
        """Pack up to ``limit`` of the requests kept as given (oldest first); how many were packed.

        The owner calls it with what its loop can spare: memory per tracked job counts once a burst is
        over, and an entry's request is only read again for a resubmission or a lookup.
        """
        packed = 0
        while self._unpacked and packed < limit:
            entry = self._unpacked.popleft()
            if isinstance(entry.request, dict) and self._entries.get(entry.key) is entry:
                entry.request = self._packer.pack(entry.request)
                packed += 1
        return packed

    @property
    def unpacked(self) -> int:
        """Entries (at most; some may be gone) whose request is not packed yet."""
        return len(self._unpacked)

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
        # Packed later (compact): a burst's requests mostly go out in the heartbeat that takes them, and
        # packing them on the way in would be undone at once on the way out.
        entry = _Entry(key, request, request.get("jobQueue"))
        self._unpacked.append(entry)
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
        old = self._entries.get(key)
        if old is not None:
            if old.phase is Phase.SUBMITTING:
                # The old workload's SubmitJob is in flight and its result carries only the key:
                # the new workload waits for it (see submit_result), and the old job is terminated.
                old.revoked = True
                self._requeued[key] = entry
                return
            # Not terminated: Airflow re-queues a key only after its try ran (a revoked one is gone
            # already), so the old job is ending, perhaps still shipping the task's logs; the poller
            # may simply not have seen it start.
            self._forget(old)
        self._store(entry)

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
        if key in self._entries:
            return
        entry = _Entry(key, request, request.get("jobQueue") if request else None)
        if request is not None:
            self._unpacked.append(entry)
        entry.phase = Phase.SUBMITTED
        entry.job_id = job_id
        entry.started = started
        entry.adopted = True
        entry.attempts = 1
        entry.expires_at = expires_at
        if ti_id is not None:
            entry.ti_id = ti_id if isinstance(ti_id, bytes) else _uuid(ti_id).bytes
            entry.try_number = try_number
        self._store(entry)
        self._by_job[job_id] = entry
        self._outbox.append(Track(job_id, None, entry.ti_id, entry.try_number, unconfirmed))

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
        entry = self._entries.get(key)
        if entry is None or entry.job_id != job_id:
            return False
        entry.request = request
        entry.expires_at = expires_at
        if request is not None:
            self._unpacked.append(entry)
        return True

    def release(self, key: Hashable) -> None:
        """Stop watching the workload's job without terminating it or reporting anything (a job
        adopted unconfirmed that turned out not to be this try's: the owner decides what follows)."""
        entry = self._entries.get(key)
        if entry is not None and entry.phase is not Phase.SUBMITTING:
            self._forget(entry, "Adopted job was not this try's")

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
        entry = self._entries.get(key)
        if entry is None or entry.phase is not Phase.SUBMITTING:
            if outcome is SubmitOutcome.OK and job_id:
                # Revoked or finished while the call was in flight: the job must not live on.
                self._outbox.append(Terminate(job_id, "Task revoked by Airflow before its job was submitted"))
            return []
        if entry.revoked:
            self._drop(entry)
            reason_revoked = "Task revoked by Airflow while its job was submitted"
            if outcome is SubmitOutcome.OK and job_id:
                self._outbox.append(Terminate(job_id, reason_revoked))
            elif outcome is SubmitOutcome.AMBIGUOUS:
                entry.ambiguous += (entry.submission,)
                entry.lookup_after_ms = _lookup_floor(entry.lookup_after_ms, sent_at_ms)
            self._terminate_unresolved(entry, reason_revoked)
            requeued = self._requeued.pop(key, None)
            if requeued is not None:
                requeued.next_at = self.clock()
                self._store(requeued)
            return []
        now = self.clock()
        # Kept only while the call is in flight or unresolved (``ambiguous``): thousands of entries.
        submission, entry.submission = entry.submission, ""
        if outcome is SubmitOutcome.OK:
            if not job_id:
                raise ValueError("SubmitOutcome.OK needs a job_id")
            if not found:  # a found job's attempt was counted when it turned ambiguous
                entry.attempts += 1
            self._set_phase(entry, Phase.SUBMITTED)
            entry.job_id = job_id
            entry.adopted = False
            entry.stalls = 0
            entry.lookup_after_ms = None
            entry.ambiguous = ()
            entry.status = "SUBMITTED"
            entry.status_reason = ""
            self._by_job[job_id] = entry
            self._outbox.append(Track(job_id, entry.job_queue, entry.ti_id, entry.try_number))
            reports: list[Report] = [RunningState(key, job_id)]
            if found:
                reports.append(
                    TaskEvent(
                        key, "aws_batch_job_found", f"Batch job {job_id} found after an ambiguous submit"
                    )
                )
            return reports
        if outcome is SubmitOutcome.WAIT:
            self._schedule(entry, now + (self.backoff.wait_s if wait_s is None else wait_s))
            return []
        if outcome is SubmitOutcome.STALLED:
            entry.stalls += 1
            delay = self.backoff.delay(entry.stalls)
            expired = self._expires_before(entry, now + delay)
            if expired:
                return self._fail(entry, f"{reason or outcome.value}; {expired}")
            self._schedule(entry, now + delay)
            return [
                TaskEvent(
                    key,
                    "aws_batch_submit_stalled",
                    f"{reason or outcome.value}; trying again in {delay:.0f}s (not counted as a "
                    f"SubmitJob attempt: {entry.attempts} of {self.max_attempts} used)",
                )
            ]
        entry.stalls = 0
        # FAILED or AMBIGUOUS: both count.
        if not (entry.lookup_after_ms is not None and entry.attempts >= self.max_attempts):
            entry.attempts += 1
        entry.last_reason = reason or outcome.value
        if outcome is SubmitOutcome.AMBIGUOUS:
            entry.ambiguous += (submission,)
            entry.lookup_after_ms = _lookup_floor(entry.lookup_after_ms, sent_at_ms)
            self._schedule(entry, now + self.backoff.delay(entry.attempts))
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
        delay = self.backoff.delay(entry.attempts)
        expired = self._expires_before(entry, now + delay)
        if expired:
            return self._fail(entry, f"SubmitJob failed: {entry.last_reason}; {expired}")
        self._schedule(entry, now + delay)
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
            if entry.ti_id is None:
                entry.request = None  # cannot be checked, so never resubmitted from now on
        if view.status in QUEUED_STATUSES:
            self._set_phase(entry, Phase.SUBMITTED)
            if changed and view.status_reason:
                return [TaskEvent(key, f"aws_batch_job_{view.status.lower()}", view.reason())]
            return []
        if view.status == "RUNNING":
            first = entry.phase is not Phase.RUNNING
            self._set_phase(entry, Phase.RUNNING)
            # Said again, once: Airflow drops an executor event whose task instance row is locked
            # when it processes it (skip_locked), and the task's own start through the API server
            # locks that row at about the moment SubmitJob returns. The id would then never be saved.
            # (Adopted jobs had their id saved by the scheduler that submitted them, or are told
            # when adopted.)
            return [RunningState(key, view.job_id)] if first and not entry.adopted else []
        if view.status == "SUCCEEDED":
            self._forget(entry)
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
        self._by_job.pop(view.job_id, None)
        self._outbox.append(Untrack(view.job_id))
        entry.job_id = None
        if entry.started:
            if entry.ti_id is None or entry.request is None:
                return self._fail(
                    entry,
                    f"{reason} after it started; Airflow's retries decide what happens next",
                    job_id=view.job_id,
                )
            self._set_phase(entry, Phase.CHECKING)
            entry.failed_job_id = view.job_id
            entry.last_reason = reason
            request = self._packer.copy_of(entry.request)
            self._outbox.append(
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
            return self._fail(
                entry,
                f"{reason} before it started; this adopted job's request could not be rebuilt to "
                "resubmit it, so Airflow's retries decide what happens next",
                job_id=view.job_id,
            )
        return self._retry_after_failure(entry, reason, view.job_id, "aws_batch_job_failed_before_start")

    def start_checked(self, key: Hashable, seen: bool | None, winner: str | None = None) -> list[Report]:
        """Answer to :class:`CheckStarted`: did Airflow see the task start (None: cannot tell)?

        ``winner``: Airflow has the try RUNNING and another active job of the same try exists: the
        failed job lost the task's start to it (the execution API refuses a second start), so the
        task is running there. That job is watched instead, and nothing is failed.
        """
        entry = self._entries.get(key)
        if entry is None or entry.phase is not Phase.CHECKING:
            return []  # revoked (or the scheduler is shutting down) while the check ran
        job_id, reason = entry.failed_job_id, entry.last_reason
        entry.failed_job_id = None
        if seen and winner is not None and winner not in self._by_job:
            entry.job_id = winner
            entry.started = True
            entry.request = None  # the try has started: never resubmitted from now on
            self._by_job[winner] = entry
            self._set_phase(entry, Phase.RUNNING)
            self._outbox.append(Track(winner, None, entry.ti_id, entry.try_number))
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
            return self._fail(
                entry,
                f"{reason} after it started ({why}); Airflow's retries decide what happens next",
                job_id=job_id,
            )
        return self._retry_after_failure(
            entry,
            f"{reason}; it started in Batch, but Airflow never saw the task start",
            job_id,
            "aws_batch_job_failed_before_task_start",
        )

    def _retry_after_failure(
        self, entry: _Entry, reason: str, job_id: str | None, event: str
    ) -> list[Report]:
        """The job failed and its task never started: resubmit after backoff, or fail when out of attempts."""
        entry.last_reason = reason
        if entry.attempts >= self.max_attempts:
            return self._fail(
                entry,
                f"{reason}; no submit attempts left ({entry.attempts} of {self.max_attempts})",
                job_id=job_id,
            )
        delay = self.backoff.delay(entry.attempts)
        expired = self._expires_before(entry, self.clock() + delay)
        if expired:
            return self._fail(entry, f"{reason}; {expired}", job_id=job_id)
        entry.started = False
        self._schedule(entry, self.clock() + delay)
        return [
            TaskEvent(
                entry.key,
                event,
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

    def give_up(self, job_id: str, reason: str) -> list[Report]:
        """The tracked job ``job_id`` can never start (e.g. stuck for a misconfiguration): terminate
        it and fail its task with ``reason``, without resubmitting (a new job would be stuck too)."""
        entry = self._by_job.get(job_id)
        if entry is None or entry.phase is not Phase.SUBMITTED:
            return []
        self._outbox.append(Terminate(job_id, f"Task failed: {reason}"[:1024]))
        return self._fail(entry, reason)

    def revoke(self, key: Hashable, reason: str = "Task revoked by Airflow") -> None:
        """Stop tracking the workload and terminate its job. Reports nothing (Airflow decides the state)."""
        entry = self._entries.get(key)
        if entry is None:
            return
        if entry.phase is Phase.SUBMITTING:
            entry.revoked = True  # the in-flight result will terminate the job
            self._requeued.pop(key, None)
            return
        if entry.job_id is not None:
            self._outbox.append(Terminate(entry.job_id, reason))
        self._forget(entry, reason)

    def terminate_all(self, reason: str) -> list[Terminate]:
        """Forget everything; return TerminateJob commands for every known job."""
        out = [Terminate(e.job_id, reason) for e in self._entries.values() if e.job_id is not None]
        self._entries.clear()
        self._by_job.clear()
        self._outbox.clear()
        self._requeued.clear()
        self._phase_counts = [0] * len(_PHASE_INDEX)
        self._waiting.clear()
        self._ready.clear()
        return out

    # ----------------------------------------------------------------- helpers
    def _store(self, entry: _Entry) -> None:
        """Put ``entry`` in ``_entries`` (its key not there), counted, and queued when pending."""
        self._entries[entry.key] = entry
        entry.seq = self._next_seq
        self._next_seq += 1
        self._phase_counts[_PHASE_INDEX[entry.phase]] += 1
        if entry.phase is Phase.PENDING:
            self._push(entry)

    def _drop(self, entry: _Entry) -> None:
        """Take ``entry`` out of ``_entries`` and of the counts; its heap items become stale."""
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
            self._phase_counts[_PHASE_INDEX[entry.phase]] -= 1
        entry.due = None

    def _set_phase(self, entry: _Entry, phase: Phase) -> None:
        counts = self._phase_counts
        counts[_PHASE_INDEX[entry.phase]] -= 1
        counts[_PHASE_INDEX[phase]] += 1
        entry.phase = phase
        if phase is not Phase.PENDING:
            entry.due = None

    def _schedule(self, entry: _Entry, at: float) -> None:
        """``entry`` (in ``_entries``) goes back to pending, due at ``at``."""
        self._set_phase(entry, Phase.PENDING)
        entry.next_at = at
        self._push(entry)

    def _push(self, entry: _Entry) -> None:
        entry.due = item = (entry.next_at, entry.seq, entry)
        heapq.heappush(self._waiting, item)

    def _forget(self, entry: _Entry, reason: str = "Task no longer run by this Batch job") -> None:
        self._drop(entry)
        if entry.job_id is not None:
            self._by_job.pop(entry.job_id, None)
            self._outbox.append(Untrack(entry.job_id))
        self._terminate_unresolved(entry, reason)

    def _terminate_unresolved(self, entry: _Entry, reason: str) -> None:
        """The entry is dropped with ambiguous SubmitJobs unresolved: their jobs, if any, must not live on."""
        if not entry.ambiguous or entry.request is None or entry.lookup_after_ms is None:
            return
        request = self._packer.copy_of(entry.request)
        self._outbox.append(
            TerminateLookup(
                job_queue=str(request.get("jobQueue", "")),
                job_name=str(request.get("jobName", "")),
                created_after_ms=entry.lookup_after_ms,
                submissions=entry.ambiguous,
                reason=reason,
            )
        )
        entry.ambiguous = ()

    def _expires_before(self, entry: _Entry, at: float) -> str:
        """Why a resubmit at ``at`` is pointless (the workload's token has expired by then), or ''."""
        if entry.expires_at is None or at < entry.expires_at:
            return ""
        left = entry.expires_at - self.clock()
        when = f"expired {-left:.0f}s ago" if left <= 0 else f"expires in {left:.0f}s"
        return (
            f"not resubmitted: the workload's token {when}, before a new job could start the task "
            "([scheduler] task_queued_timeout); Airflow's retries decide what happens next"
        )

    def _fail(self, entry: _Entry, reason: str, job_id: str | None = None) -> list[Report]:
        self._forget(entry, f"Task failed: {reason}"[:1024])
        return [
            TaskEvent(entry.key, "aws_batch_task_failed", reason),
            Fail(entry.key, reason, job_id=job_id, log_path=entry.log_path if job_id else None),
        ]


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _lookup_floor(current: int | None, sent_at_ms: int | None) -> int:
    """Earliest creation time a lookup accepts after an ambiguous call sent at ``sent_at_ms``."""
    floor = (sent_at_ms if sent_at_ms is not None else 0) - LOOKUP_SLACK_MS
    return floor if current is None else min(current, floor)
