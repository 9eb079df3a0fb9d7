"""The executor's threads: submit workers, one poller, one terminator, one intake.

The intake thread builds the SubmitJob requests of a burst of queued workloads (about 30 us each,
pure CPU), so that the heartbeat which takes the burst in only hands it over (see :class:`Accepted`).

The terminator thread sees each termination through: a TerminateJob that fails is tried again with
backoff for as long as Batch fails, and a job is described again after Batch accepted it, until it
is seen ended or gone. It also runs rare chores: copying a failed job's output into the task log,
asking Airflow's metadata DB whether it saw a task start (:class:`CheckStarted`), the orphan sweep.

The scheduler thread never calls AWS: it puts commands on queues and reads results from one
queue (:attr:`Runtime.results`). Every network call happens on a thread started here.

Polling strategy (bounded by ``status_calls_per_second``): jobs not yet RUNNING are described
directly (DescribeJobs, <= 100 ids a call). Jobs seen RUNNING are watched through
``ListJobs(jobQueue, jobStatus=RUNNING)`` pages of 1,000 when there are many of them: a job that
drops out of that list is described once to learn how it ended. With 5,000 running jobs a full
cycle costs about 5 calls instead of 50.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_aws_batch.aws.batch import DESCRIBE_MAX_IDS, BatchApi, BatchApiError, ErrorKind, JobDetail
from airflow_aws_batch.aws.ratelimit import TokenBucket
from airflow_aws_batch.core.arrays import SubmitArray, child_job_id
from airflow_aws_batch.core.messages import (
    ACTIVE_STATUSES,
    SUBMISSION_TAG,
    TI_QUEUED,
    CheckStarted,
    JobView,
    Submit,
    SubmitOutcome,
    Terminate,
    TerminateLookup,
    Track,
    Untrack,
)
from airflow_aws_batch.core.ownership import DEPLOYMENT_TAG
from airflow_aws_batch.workloads import (
    PENDING_KEY,
    StoreError,
    WorkloadStore,
    place_workloads,
)

if TYPE_CHECKING:
    from airflow_aws_batch.lost import Awaited, Resolution

log = logging.getLogger(__name__)

# A job DescribeJobs does not know is reported missing only after this long: Batch is eventually
# consistent right after SubmitJob.
MISSING_GRACE_S = 60.0
# Above this many RUNNING jobs, ListJobs pages are cheaper than describing each of them.
LIST_RUNNING_THRESHOLD = 200
# After Batch accepts a TerminateJob, the job is described this long after to see it ended (a running
# container gets its stop signal and a grace period first); one still active is terminated again.
TERMINATE_CHECK_S = 30.0
# Checks due within this long are made together with those due now: terminations accepted a moment
# apart share their DescribeJobs.
TERMINATE_CHECK_WINDOW_S = 5.0


@dataclass(slots=True)
class _Ending:
    """A termination under way on the terminator thread: retried until its job is seen ended or gone."""

    cmd: Terminate | TerminateLookup
    #: Calls that failed in a row (Batch unreachable, throttled, 5xx): the next waits longer.
    failures: int = 0
    #: Batch accepted the TerminateJob: the next visit checks that the job ended.
    accepted: bool = False


@dataclass(frozen=True, slots=True)
class SubmitDone:
    key: Any
    outcome: SubmitOutcome
    job_id: str | None = None
    reason: str = ""
    sent_at_ms: int | None = None
    found: bool = False
    #: WAIT only: how long to wait before the next try (None: the core's usual short wait).
    wait_s: float | None = None


@dataclass(frozen=True, slots=True)
class JobsSeen:
    views: list[JobView]


@dataclass(frozen=True, slots=True)
class JobsMissing:
    job_ids: list[str]


@dataclass(frozen=True, slots=True)
class AdoptedSeen:
    """The first description of jobs adopted unconfirmed (:attr:`Track.unconfirmed`), for the executor
    to verify before any view of them reaches the core; ``missing``: ids DescribeJobs did not know."""

    seen: list[tuple[JobDetail, JobView]]
    missing: list[str]


@dataclass(frozen=True, slots=True)
class LostResolved:
    """What the lookup by tags decided for task instances adopted whose saved job was not their
    submission (an ``adoption.Resolution``; None when the lookup failed, with ``error``)."""

    lost: list[Awaited]
    resolution: Resolution | None
    error: str


@dataclass(frozen=True, slots=True)
class StartChecked:
    """Answer to a :class:`CheckStarted`: True seen, False certainly not seen, None cannot tell."""

    key: Any
    seen: bool | None
    #: Another active job of the same try, when Airflow has the try RUNNING: it started the task.
    winner: str | None = None


#: ``(ti_id, try_number) -> seen``; True, False, or None when it cannot tell. May do I/O; may raise.
StartChecker = Callable[[str, int], "bool | None"]
#: ``[(ti_id, try_number)] -> the ti_ids whose try Airflow has moved on to its next run``. May do I/O;
#: may raise.
#: ``(ti_id, try_number)`` of succeeded jobs -> the state of those whose task instance is, on the same
#: try, moved on or queued again (``started.tis_moved_on``).
MovedOnChecker = Callable[[list[tuple[str, int]]], "Mapping[str, str]"]
#: ``(ti_id, try_number) -> is that try RUNNING in Airflow's DB now``. May do I/O; may raise.
RunningChecker = Callable[[str, int], bool]


@dataclass(frozen=True, slots=True)
class ArrayRef:
    """Where the job of one child of an array SubmitJob whose answer was lost would be."""

    job_queue: str
    job_name: str
    #: The array call's ``submission`` tag.
    submission: str
    index: int
    #: The array's tags (without ``submission``), which every child carries.
    tags: tuple[tuple[str, str], ...]
    #: When the array's SubmitJob was sent (epoch milliseconds, this host's clock).
    sent_at_ms: int = 0


class ArrayLookupOpen(Exception):
    """The lookup for an array whose answer was lost found nothing yet, too soon to take that for
    "no array": its children wait (no SubmitJob alone) until ``until_ms`` (epoch milliseconds)."""

    def __init__(self, submission: str, until_ms: int) -> None:
        super().__init__(f"the lookup for the array of submission {submission} stays open until {until_ms}")
        self.until_ms = until_ms


@dataclass(frozen=True, slots=True)
class Accepted:
    """A queued workload taken in: its SubmitJob request, or why none could be built (``request`` None).

    ``seq`` tells this hand-over from a later one of the same key: Airflow may queue a key again, or
    revoke it, while its request is being built.
    """

    key: Any
    seq: int
    request: dict[str, Any] | None = None
    log_path: str | None = None
    ti_id: bytes | None = None
    try_number: int = 0
    #: When the workload's token expires (monotonic clock); None when unknown.
    expires_at: float | None = None
    #: Why there is no request, and the task event that says so.
    error: str = ""
    event: str = ""
    #: The request's array grouping key, computed here rather than on the scheduler thread.
    group: bytes | None = None


#: Read from the terminator's queue when it timed out: time to run the terminations that are due.
_due: Callable[[], object] = lambda: None  # noqa: E731

#: Builds the :class:`Accepted` of ``(key, seq, workload)``; runs on the intake thread.
Build = Callable[[Any, int, Any], Accepted]

Result = SubmitDone | JobsSeen | JobsMissing | AdoptedSeen | LostResolved | StartChecked | Accepted


def kept_of_duplicates(found: list[JobDetail]) -> JobDetail:
    """Of several jobs of one try, the one to keep: the earliest started that is still active (it may
    be running the task: the execution API lets only the first start through), else the newest
    (listings come oldest first: ties go last)."""
    started = [job for job in found if job.started_at and job.status in ACTIVE_STATUSES]
    if started:
        return min(started, key=lambda job: job.started_at or 0)
    return max(reversed(found), key=lambda job: job.created_at or 0)


class _Watched:
    """The poller's record of one tracked job: one object instead of a tuple in each of several
    dicts keyed by the job id (a scheduler may track 20,000 jobs; each dict would hold its own
    entry and, for the status, a second copy of the id parsed from DescribeJobs)."""

    __slots__ = ("job_queue", "since", "status", "status_reason", "ti_id", "try_number")

    def __init__(self, job_queue: str | None, since: float) -> None:
        #: None for an adopted job until a description says its queue.
        self.job_queue = job_queue
        #: When the job was tracked (the runtime's clock): DescribeJobs may not know a new job yet.
        self.since = since
        #: The status and reason last reported (None until the first): only changes are reported.
        self.status: str | None = None
        self.status_reason = ""
        #: The task instance try the job runs (its id as 16 bytes), when the poller checks it.
        self.ti_id: bytes | None = None
        self.try_number = 0


class Runtime:
    """Owns the threads. ``start()`` once; ``stop()`` joins them."""

    #: Delay before a termination is tried again after a failed call: doubling from the first, at
    #: most the second, for as long as Batch fails (an outage does not end it; ``stop()`` does).
    terminate_retry_s = (0.5, 60.0)
    #: How long after an array's SubmitJob was sent a lookup that finds no array is final. Until
    #: then the call may still create it (Batch may take it in up to the client's 30 s read timeout
    #: after it was sent) or ListJobs may not list it yet; a child resubmitted alone meanwhile would
    #: run its try beside the array's child. Found, the lookup is final at once.
    array_lookup_settle_s = 45.0

    def __init__(
        self,
        api: BatchApi,
        *,
        status_api: BatchApi | None = None,
        submit_rate: float,
        status_calls_per_second: float,
        submit_threads: int = 8,
        poll_interval_s: float = 1.0,
        start_checker: StartChecker | None = None,
        prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        store: WorkloadStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        moved_on_checker: MovedOnChecker | None = None,
        running_checker: RunningChecker | None = None,
    ) -> None:
        # SubmitJob goes through ``submit_api`` (no botocore retries: it is not idempotent);
        # everything else through ``api``.
        self.submit_api = api
        self.api = status_api or api
        self.submit_limiter = TokenBucket(submit_rate)
        self.status_limiter = TokenBucket(status_calls_per_second, 1.0)
        self.submit_threads = submit_threads
        self.poll_interval_s = poll_interval_s
        self.results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self._submit_q: queue.SimpleQueue[Submit | SubmitArray | None] = queue.SimpleQueue()
        # The terminator thread also runs rare background chores (e.g. copying a failed job's output).
        self._terminate_q: queue.SimpleQueue[Terminate | TerminateLookup | Callable[[], object] | None] = (
            queue.SimpleQueue()
        )
        self._poll_inbox: queue.SimpleQueue[Track | Untrack] = queue.SimpleQueue()
        self._intake_q: queue.SimpleQueue[tuple[list[tuple[Any, int, Any]], Build] | None] = (
            queue.SimpleQueue()
        )
        self._stop = threading.Event()
        #: Set by :meth:`stop_submitting`: no SubmitJob (nor lookup before one) goes out any more.
        self._submits_stopped = threading.Event()
        #: Cleared while the scheduler heartbeats (:meth:`hold`): the intake thread waits between two
        #: builds, submit threads before their next SubmitJob and the poller before its next call,
        #: instead of taking the GIL from the heartbeat (CPython hands it over every 5 ms).
        self._open = threading.Event()
        self._open.set()
        self._wake_poller = threading.Event()
        self._threads: list[threading.Thread] = []
        self._start_checker = start_checker
        self._running_checker = running_checker
        #: Finishes a request before it is sent, on the submit thread (it may do status calls, e.g.
        #: read its job queue's kind): BatchApiError means try again later, ValueError fails the attempt.
        self._prepare = prepare
        #: Children of array SubmitJobs whose answer was lost, by the ``submission`` tag their own
        #: Submit carried (the core knows only that one); and what the lookup of each such array found
        #: (its parent id, or None for nothing, once final), so that its N children cost one lookup;
        #: and, for a lookup that found nothing too early to be final, when to look again.
        self._array_refs: dict[str, ArrayRef] = {}
        self._array_found: dict[str, str | None] = {}
        self._array_open: dict[str, int] = {}
        self._array_lock = threading.Lock()
        #: Where workloads go just before SubmitJob (``workload_store``); None: in the command.
        self._store = store
        self._clock = clock
        #: Terminations under way, by when each is next tried (terminator thread only).
        self._endings: list[tuple[float, int, _Ending]] = []
        self._ending_seq = itertools.count()
        # Poller state, touched only by the poller thread.
        self._tracked: dict[str, _Watched] = {}
        #: Job queue names as first seen, so that each adopted job's record shares one string.
        self._queue_names: dict[str, str] = {}
        self._moved_on_checker = moved_on_checker
        self._moved_on_failed = False
        #: Tracked jobs adopted unconfirmed whose first description is not reported yet (empty but
        #: for a while after a large adoption).
        self._unconfirmed: set[str] = set()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for i in range(self.submit_threads):
            self._spawn(self._submit_loop, f"aws-batch-submit-{i}")
        self._spawn(self._poll_loop, "aws-batch-poller")
        self._spawn(self._terminate_loop, "aws-batch-terminator")
        self._spawn(self._intake_loop, "aws-batch-intake")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake_poller.set()
        self._open.set()
        for _ in range(self.submit_threads):
            self._submit_q.put(None)
        self._terminate_q.put(None)
        self._intake_q.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    # ------------------------------------------------------------ inputs (any thread)
    def report(self, result: Result) -> None:
        """Hand ``result`` to the scheduler thread, which takes it from :attr:`results`."""
        self.results.put(result)

    def submit(self, cmd: Submit | SubmitArray) -> None:
        self._submit_q.put(cmd)

    def stop_submitting(self) -> list[Submit | SubmitArray]:
        """Send no further SubmitJob: a submit thread waiting for the limiter gives its command back
        (a WAIT result), and the commands no thread has taken yet are returned, never sent. Calls
        already on the wire finish and report as usual."""
        self._submits_stopped.set()
        drained: list[Submit | SubmitArray] = []
        while True:
            try:
                cmd = self._submit_q.get_nowait()
            except queue.Empty:
                return drained
            if cmd is None:  # stop() ran first: leave the threads their sentinel
                self._submit_q.put(None)
                return drained
            drained.append(cmd)

    def terminate(self, cmd: Terminate | TerminateLookup) -> None:
        self._terminate_q.put(cmd)

    def run_later(self, chore: Callable[[], object]) -> None:
        """Run ``chore`` on the terminator thread (it may do I/O; exceptions are logged)."""
        self._terminate_q.put(chore)

    def intake(self, items: list[tuple[Any, int, Any]], build: Build) -> None:
        """Report ``build(key, seq, workload)`` of each item, in order, built on the intake thread."""
        self._intake_q.put((items, build))

    def hold(self) -> None:
        """Keep the threads from starting new work until :meth:`release` (work under way goes on)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def check_started(self, cmd: CheckStarted) -> None:
        """Answer ``cmd`` with a :class:`StartChecked` result, asked on the terminator thread."""

        def answer() -> None:
            seen = self._ask_started(cmd)
            self.report(StartChecked(cmd.key, seen, self._find_winner(cmd) if seen else None))

        self._terminate_q.put(answer)

    def _ask_started(self, cmd: CheckStarted) -> bool | None:
        if self._start_checker is None:
            return None
        try:
            return self._start_checker(cmd.ti_id, cmd.try_number)
        except Exception:
            # Not knowing is an answer: the core then fails the task rather than risk running it twice.
            log.warning(
                "Could not check whether Airflow saw task instance %s start", cmd.ti_id, exc_info=True
            )
            return None

    def _find_winner(self, cmd: CheckStarted) -> str | None:
        """The active job of ``cmd``'s try that started its task, when the tracked one failed after
        its start while Airflow has the try RUNNING; None when there is none or it cannot be told.

        Two jobs of one try exist when a lookup after an ambiguous SubmitJob missed the first (or
        adoption found both): both start, the execution API lets one start the task and refuses the
        other (HTTP 409), which exits failed. Of several candidates the earliest started is the one
        that most likely won. A task that crashed (out of memory, killed) also leaves its try
        RUNNING: with no other active job of the try, it fails as before.
        """
        if self._running_checker is None or not cmd.job_queue or not cmd.job_name:
            return None
        try:
            if not self._running_checker(cmd.ti_id, cmd.try_number):
                return None
        except Exception:
            log.warning("Could not read whether task instance %s is running", cmd.ti_id, exc_info=True)
            return None
        if not self._status_call():
            return None
        tags = {k: v for k, v in cmd.tags if k != SUBMISSION_TAG}
        try:
            found = self.api.find_jobs(cmd.job_queue, cmd.job_name, 0, tags)
        except BatchApiError as exc:
            log.info("Looking for another job of the try of %s failed (%s)", cmd.failed_job_id, exc)
            return None
        started = [
            job
            for job in found
            if job.job_id != cmd.failed_job_id and job.status == "RUNNING" and job.started_at
        ]
        if not started:
            return None
        return min(started, key=lambda job: job.started_at or 0).job_id

    def track(self, cmd: Track | Untrack) -> None:
        self._poll_inbox.put(cmd)
        # An array's answer tracks thousands of children at once; setting a set Event takes a lock.
        if isinstance(cmd, Track) and not self._wake_poller.is_set():
            self._wake_poller.set()

    # ------------------------------------------------------------ intake
    def _intake_loop(self) -> None:
        while True:
            batch = self._intake_q.get()
            if batch is None or self._stop.is_set():
                return
            items, build = batch
            for key, seq, workload in items:
                self._open.wait()
                if self._stop.is_set():
                    return
                try:
                    result = build(key, seq, workload)
                except Exception as exc:  # the task is failed, not left queued forever
                    log.exception("Unexpected error taking in %s", key)
                    result = Accepted(
                        key, seq, error=f"unexpected error: {exc}", event="aws_batch_submit_failed"
                    )
                self.report(result)

    # ------------------------------------------------------------ submit workers
    def _submit_loop(self) -> None:
        while True:
            cmd = self._submit_q.get()
            self._open.wait()
            if cmd is None or self._stop.is_set():
                return
            if self._submits_stopped.is_set():
                for key in cmd.keys if isinstance(cmd, SubmitArray) else (cmd.key,):
                    self.report(SubmitDone(key, SubmitOutcome.WAIT, reason="executor stopping"))
                continue
            if isinstance(cmd, SubmitArray):
                try:
                    results = self._submit_array(cmd)
                except Exception as exc:  # never lose a workload to a bug in this loop
                    log.exception("Unexpected error submitting an array of %d", len(cmd.keys))
                    reason = f"unexpected error: {exc}"
                    results = [SubmitDone(key, SubmitOutcome.FAILED, reason=reason) for key in cmd.keys]
                for result in results:
                    self.report(result)
                continue
            try:
                self.report(self._submit_one(cmd))
            except Exception as exc:  # never lose a workload to a bug in this loop
                log.exception("Unexpected error submitting %s", cmd.key)
                self.report(SubmitDone(cmd.key, SubmitOutcome.FAILED, reason=f"unexpected error: {exc}"))

    def _submit_one(self, cmd: Submit) -> SubmitDone:
        request = cmd.request
        if cmd.lookup_after_ms is not None:
            try:
                child = self._find_array_child(cmd.lookup_submissions, cmd.lookup_after_ms)
            except BatchApiError as exc:
                return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason=str(exc))
            except ArrayLookupOpen as exc:
                # Not alone while the array may exist: every child gets its child id if it does.
                wait_s = max(0.0, exc.until_ms / 1000 - time.time())
                return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason=str(exc), wait_s=wait_s)
            if child is not None:
                return SubmitDone(cmd.key, SubmitOutcome.OK, job_id=child, found=True)
            try:
                self.status_limiter.acquire()
                found = self._find_submitted(
                    request["jobQueue"],
                    request["jobName"],
                    cmd.lookup_after_ms,
                    cmd.lookup_submissions,
                    task_tags=request.get("tags") or {},
                )
            except BatchApiError as exc:
                # Nothing was submitted: not an attempt, look again shortly.
                return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason=str(exc))
            if found:
                # Two ambiguous calls may both have created a job: keep one and end the other, so
                # that the try is one job.
                kept = kept_of_duplicates(found)
                for job in found:
                    if job is not kept and job.status in ACTIVE_STATUSES:
                        self.terminate(Terminate(job.job_id, "Duplicate of an ambiguous SubmitJob"))
                return SubmitDone(cmd.key, SubmitOutcome.OK, job_id=kept.job_id, found=True)
            if cmd.lookup_only:
                return SubmitDone(
                    cmd.key,
                    SubmitOutcome.FAILED,
                    reason="no job was created by the last, ambiguous SubmitJob",
                )
        if self._prepare is not None:
            try:
                request = self._prepare(request)
            except BatchApiError as exc:
                if exc.kind is ErrorKind.CLIENT:
                    return SubmitDone(cmd.key, SubmitOutcome.FAILED, reason=f"{exc.code}: {exc.message}")
                return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason=str(exc))
            except ValueError as exc:
                return SubmitDone(cmd.key, SubmitOutcome.FAILED, reason=str(exc))
        self.submit_limiter.acquire()
        if self._stop.is_set() or self._submits_stopped.is_set():
            # Stopped while waiting for the limiter: a job created now would outlive terminate(), or
            # be one that end() can no longer hand over.
            return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason="executor stopping")
        # Written as late as possible, and afresh for every attempt: an earlier attempt's object may
        # have been read and deleted by its job already.
        try:
            stored = self._place_workloads(request)
        except StoreError as exc:
            # One that may pass (5xx, throttling, no connection, expired credentials) backs off
            # without counting; any other counts as an attempt, like a refused SubmitJob: a missing
            # bucket or permission fails the task after max_submit_job_attempts with this reason in
            # its event log.
            outcome = SubmitOutcome.STALLED if exc.retryable else SubmitOutcome.FAILED
            return SubmitDone(cmd.key, outcome, reason=f"workload store: {exc}")
        sent_at_ms = int(time.time() * 1000)
        try:
            job_id = self.submit_api.submit_job(request)
        except BatchApiError as exc:
            if exc.kind is ErrorKind.AMBIGUOUS:
                # Its job may exist and read the object: kept.
                return SubmitDone(
                    cmd.key,
                    SubmitOutcome.AMBIGUOUS,
                    reason=f"{exc.code}: {exc.message}",
                    sent_at_ms=sent_at_ms,
                )
            # No job was created: nobody will read the object (the next attempt writes its own).
            self._discard(stored)
            if exc.kind is ErrorKind.THROTTLED:
                # Slow every submit thread down together, not just this one.
                self.submit_limiter.penalize(0.2)
                return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason=str(exc))
            if exc.kind is ErrorKind.CREDENTIALS:
                log.warning("AWS credentials rejected (%s); reloading them before the next call", exc.code)
                return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason=str(exc))
            return SubmitDone(cmd.key, SubmitOutcome.FAILED, reason=f"{exc.code}: {exc.message}")
        return SubmitDone(cmd.key, SubmitOutcome.OK, job_id=job_id)

    def _submit_array(self, cmd: SubmitArray) -> list[SubmitDone]:
        """One SubmitJob for every child of ``cmd``; one result per child, in index order."""
        keys = cmd.keys

        def every(outcome: SubmitOutcome, reason: str, sent_at_ms: int | None = None) -> list[SubmitDone]:
            return [SubmitDone(key, outcome, reason=reason, sent_at_ms=sent_at_ms) for key in keys]

        request = dict(cmd.request)
        if self._prepare is not None:
            try:
                request = self._prepare(request)
            except BatchApiError as exc:
                if exc.kind is ErrorKind.CLIENT:
                    return every(SubmitOutcome.FAILED, f"{exc.code}: {exc.message}")
                return every(SubmitOutcome.WAIT, str(exc))
            except ValueError as exc:
                return every(SubmitOutcome.FAILED, str(exc))
        if self._store is None:
            return every(SubmitOutcome.FAILED, "array jobs need a workload store (workload_store)")
        self.submit_limiter.acquire()
        if self._stop.is_set() or self._submits_stopped.is_set():
            return every(SubmitOutcome.WAIT, "executor stopping")
        tags = request.get("tags") or {}
        name = "/".join(
            (
                str(tags.get(DEPLOYMENT_TAG) or "default"),
                str(request.get("jobName") or "array"),
                cmd.submission,
            )
        )
        try:
            # Written after the limiter, like a single job's: one object, child i's workload at index i;
            # the launcher's command goes where the request's command is (container or EKS pod).
            request[PENDING_KEY] = list(cmd.workloads)
            url = place_workloads(request, self._store, name)
        except StoreError as exc:
            # Retryable (throttled, 5xx): the children back off together and may form an array again.
            # Otherwise an attempt of every child, whose next attempts go out alone.
            outcome = SubmitOutcome.STALLED if exc.retryable else SubmitOutcome.FAILED
            return every(outcome, f"workload store: {exc}")
        request["arrayProperties"] = {"size": len(keys)}
        sent_at_ms = int(time.time() * 1000)
        try:
            parent = self.submit_api.submit_job(request)
        except BatchApiError as exc:
            if exc.kind is not ErrorKind.AMBIGUOUS:
                # No job was created: nobody will read the object.
                self._discard(url)
            if exc.kind is ErrorKind.THROTTLED:
                self.submit_limiter.penalize(0.2)
                return every(SubmitOutcome.WAIT, str(exc))
            if exc.kind is ErrorKind.CREDENTIALS:
                log.warning("AWS credentials rejected (%s); reloading them before the next call", exc.code)
                return every(SubmitOutcome.WAIT, str(exc))
            if exc.kind is ErrorKind.CLIENT:
                return every(SubmitOutcome.FAILED, f"{exc.code}: {exc.message}")
            shared = tuple(sorted((k, v) for k, v in tags.items() if k != SUBMISSION_TAG))
            with self._array_lock:
                for index, submission in enumerate(cmd.submissions):
                    self._array_refs[submission] = ArrayRef(
                        str(request["jobQueue"]),
                        str(request["jobName"]),
                        cmd.submission,
                        index,
                        shared,
                        sent_at_ms,
                    )
            reason = f"{exc.code}: {exc.message} (array of {len(keys)})"
            return every(SubmitOutcome.AMBIGUOUS, reason, sent_at_ms)
        return [
            SubmitDone(key, SubmitOutcome.OK, job_id=child_job_id(parent, index))
            for index, key in enumerate(keys)
        ]

    def _array_refs_of(self, submissions: tuple[str, ...]) -> list[ArrayRef]:
        with self._array_lock:
            return [self._array_refs[s] for s in submissions if s in self._array_refs]

    def _find_array_child(self, submissions: tuple[str, ...], created_after_ms: int) -> str | None:
        """The child job that an array SubmitJob with a lost answer created for this workload, or None
        when the lookup for that array is final and found none.

        Raises :class:`BatchApiError` when Batch cannot be read, and :class:`ArrayLookupOpen` when
        nothing was found but too soon after the call to be final (see
        :attr:`array_lookup_settle_s`): nothing is resolved then.
        """
        for ref in self._array_refs_of(submissions):
            now_ms = int(time.time() * 1000)
            with self._array_lock:
                known = ref.submission in self._array_found
                parent = self._array_found.get(ref.submission)
                open_until = self._array_open.get(ref.submission)
            if not known and open_until is not None and now_ms < open_until:
                raise ArrayLookupOpen(ref.submission, open_until)
            if not known:
                self.status_limiter.acquire()
                looked_at_ms = int(time.time() * 1000)
                found = self.api.find_jobs(
                    ref.job_queue,
                    ref.job_name,
                    created_after_ms,
                    dict(ref.tags),
                    any_of=(SUBMISSION_TAG, frozenset({ref.submission})),
                )
                parent = found[0].job_id if found else None
                final_at = ref.sent_at_ms + int(self.array_lookup_settle_s * 1000)
                with self._array_lock:
                    if parent is None and looked_at_ms < final_at:
                        # Not final: no child goes out alone before the lookup at ``final_at``.
                        if ref.submission not in self._array_found:
                            self._array_open[ref.submission] = final_at
                            raise ArrayLookupOpen(ref.submission, final_at)
                    else:
                        self._array_open.pop(ref.submission, None)
                        self._array_found.setdefault(ref.submission, parent)
                    parent = self._array_found[ref.submission]
            if parent is not None:
                return child_job_id(parent, ref.index)
        return None

    def _place_workloads(self, request: dict[str, Any]) -> str | None:
        """Write the request's workloads to the store and point its command there; the object's URL."""
        if PENDING_KEY not in request:
            return None
        if self._store is None:
            request.pop(PENDING_KEY)
            raise StoreError("the request waits for a workload store, but none is configured")
        tags = request.get("tags") or {}
        # Unique per SubmitJob call (the submission tag); deployment and job name make it readable.
        name = "/".join(
            (
                str(tags.get(DEPLOYMENT_TAG) or "default"),
                str(request.get("jobName") or "job"),
                str(tags.get(SUBMISSION_TAG) or uuid.uuid4().hex),
            )
        )
        return place_workloads(request, self._store, name)

    def _discard(self, url: str | None) -> None:
        if url is None or self._store is None:
            return
        try:
            self._store.delete(url)
        except (StoreError, ValueError) as exc:
            log.info("Could not delete the unused workload object %s (%s); it expires", url, exc)

    def _find_submitted(
        self,
        job_queue: str,
        job_name: str,
        created_after_ms: int,
        submissions: tuple[str, ...],
        task_tags: dict[str, str] | None = None,
    ) -> list[JobDetail]:
        """The jobs created by the SubmitJob calls tagged ``submissions`` (and nothing else)."""
        tags = {k: v for k, v in (task_tags or {}).items() if k != SUBMISSION_TAG}
        return self.api.find_jobs(
            job_queue, job_name, created_after_ms, tags, any_of=(SUBMISSION_TAG, frozenset(submissions))
        )

    def terminate_lookup(self, cmd: TerminateLookup) -> bool:
        """Look up what the unresolved ambiguous SubmitJobs of ``cmd`` created and end it (terminator
        thread); False when Batch could not be read, so the caller looks again later."""
        if self._array_refs_of(cmd.submissions):
            if not self._status_call():
                return False
            try:
                child = self._find_array_child(cmd.submissions, cmd.created_after_ms)
            except BatchApiError as exc:
                log.info("Looking up the array of an ambiguous SubmitJob failed (%s); trying again", exc)
                return False
            except ArrayLookupOpen as exc:
                log.info("Looking up the array of an ambiguous SubmitJob again later: %s", exc)
                return False
            if child is not None:
                # Only this child: its siblings run other tasks.
                self._add_ending(_Ending(Terminate(child, cmd.reason)))
        if not self._status_call():
            return False
        try:
            found = self._find_submitted(cmd.job_queue, cmd.job_name, cmd.created_after_ms, cmd.submissions)
        except BatchApiError as exc:
            log.info("Looking up the job of an ambiguous SubmitJob failed (%s); trying again", exc)
            return False
        for job in found:
            if job.status in ACTIVE_STATUSES:
                self._add_ending(_Ending(Terminate(job.job_id, cmd.reason)))
        return True

    # ------------------------------------------------------------ terminator
    def _terminate_loop(self) -> None:
        while True:
            timeout = max(0.0, self._endings[0][0] - self._clock()) if self._endings else None
            try:
                cmd = self._terminate_q.get(timeout=timeout)
            except queue.Empty:
                cmd = _due
            if cmd is None:
                return
            if isinstance(cmd, Terminate | TerminateLookup):
                self._add_ending(_Ending(cmd))
            elif cmd is not _due:
                try:
                    cmd()
                except Exception:
                    log.exception("Background chore failed")
            self._run_due_endings()

    def _add_ending(self, ending: _Ending, at: float | None = None) -> None:
        when = self._clock() if at is None else at
        heapq.heappush(self._endings, (when, next(self._ending_seq), ending))

    @property
    def endings(self) -> int:
        """Terminations not yet seen through (their job not yet seen ended or gone)."""
        return len(self._endings)

    def _run_due_endings(self) -> None:
        due: list[_Ending] = []
        now = self._clock()
        while self._endings and self._endings[0][0] <= now:
            due.append(heapq.heappop(self._endings)[2])
        if any(e.accepted for e in due):
            # A check goes out now: those due within the window come along.
            later: list[tuple[float, int, _Ending]] = []
            while self._endings and self._endings[0][0] <= now + TERMINATE_CHECK_WINDOW_S:
                item = heapq.heappop(self._endings)
                if item[2].accepted:
                    due.append(item[2])
                else:
                    later.append(item)
            for item in later:
                heapq.heappush(self._endings, item)
        # Terminations Batch accepted are checked together, up to 100 jobs a DescribeJobs: a revoke
        # of thousands must not cost a status call each.
        checks = [e for e in due if e.accepted and isinstance(e.cmd, Terminate)]
        still: dict[int, _Ending] = {}
        for i in range(0, len(checks), DESCRIBE_MAX_IDS):
            if self._stop.is_set():
                return
            chunk = checks[i : i + DESCRIBE_MAX_IDS]
            active = self._still_active([e.cmd.job_id for e in chunk if isinstance(e.cmd, Terminate)])
            for ending in chunk:
                if active is None:
                    self._add_ending(ending, self._clock() + self._retry_delay(ending))
                elif isinstance(ending.cmd, Terminate) and ending.cmd.job_id in active:
                    log.info(
                        "Batch job %s is still %s after its TerminateJob; terminating it again",
                        ending.cmd.job_id,
                        active[ending.cmd.job_id],
                    )
                    still[id(ending)] = ending
        for ending in due:
            if self._stop.is_set():
                return
            if ending.accepted and id(ending) not in still:
                continue  # seen ended or gone, or rescheduled above
            try:
                again = self._advance(ending)
            except Exception:
                log.exception("Unexpected error ending %s", ending.cmd)
                again = None
            if again is not None:
                self._add_ending(ending, self._clock() + again)

    def _still_active(self, job_ids: list[str]) -> dict[str, str] | None:
        """Of ``job_ids``, the jobs still active and their status (one DescribeJobs); None when Batch
        cannot be read."""
        if not self._status_call():
            return None
        try:
            details = self.api.describe_jobs(job_ids)
        except BatchApiError as exc:
            log.info("DescribeJobs of %d terminated job(s) failed (%s); trying again", len(job_ids), exc)
            return None
        return {d.job_id: d.status for d in details if d.status in ACTIVE_STATUSES}

    def _advance(self, ending: _Ending) -> float | None:
        """One step of ``ending`` (a TerminateJob, or a lookup); seconds until its next step, or None
        when it is over."""
        cmd = ending.cmd
        if isinstance(cmd, TerminateLookup):
            if self.terminate_lookup(cmd):
                return None
            return self._retry_delay(ending)
        outcome = self._terminate_once(cmd)
        if outcome is None:
            return None  # refused: nothing a retry changes
        if not outcome:
            return self._retry_delay(ending)
        ending.accepted = True
        ending.failures = 0
        return TERMINATE_CHECK_S

    def _retry_delay(self, ending: _Ending) -> float:
        ending.failures += 1
        first, most = self.terminate_retry_s
        return float(min(most, first * 2 ** (ending.failures - 1)))

    def _terminate_once(self, cmd: Terminate) -> bool | None:
        """One TerminateJob: True accepted, False failed in a way that may pass, None refused."""
        self.submit_limiter.acquire()
        try:
            self.api.terminate_job(cmd.job_id, cmd.reason)
            return True
        except BatchApiError as exc:
            if exc.kind is ErrorKind.CLIENT:
                log.warning("TerminateJob %s refused: %s", cmd.job_id, exc)
                return None
            log.info("TerminateJob %s failed (%s); trying again", cmd.job_id, exc)
            return False

    def terminate_now(self, cmd: Terminate, tries: int = 5) -> bool:
        """TerminateJob with a few retries on throttling/server errors; True when Batch accepted it."""
        for attempt in range(tries):
            try:
                outcome = self._terminate_once(cmd)
            except Exception:
                log.exception("Unexpected error terminating %s", cmd.job_id)
                return False
            if outcome is not False:
                return bool(outcome)
            time.sleep(min(5.0, 0.2 * 2**attempt))
        return False

    # ------------------------------------------------------------ poller
    def _drain_inbox(self) -> None:
        now = self._clock()
        while True:
            try:
                cmd = self._poll_inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(cmd, Track):
                watched = self._tracked.get(cmd.job_id)
                if watched is None:
                    watched = self._tracked[cmd.job_id] = _Watched(cmd.job_queue, now)
                else:
                    # Tracked again: what was last reported of it still stands.
                    watched.job_queue, watched.since = cmd.job_queue, now
                if cmd.ti_id is not None and self._moved_on_checker is not None:
                    watched.ti_id, watched.try_number = cmd.ti_id, cmd.try_number
                if cmd.unconfirmed:
                    self._unconfirmed.add(cmd.job_id)
            else:
                self._tracked.pop(cmd.job_id, None)
                self._unconfirmed.discard(cmd.job_id)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            try:
                self.poll_once()
            except Exception:
                log.exception("Unexpected error while polling AWS Batch")
            if self._stop.is_set():
                return
            wait = self.poll_interval_s - (self._clock() - started)
            if not self._tracked:
                wait = self.poll_interval_s
            if wait > 0:
                self._wake_poller.wait(wait)
            self._wake_poller.clear()

    def _status_call(self) -> bool:
        self._open.wait()
        return self.status_limiter.acquire(timeout=30.0) and not self._stop.is_set()

    def poll_once(self) -> None:
        """Take in the Track/Untrack commands received so far, then one polling cycle over every
        tracked job (poller thread only, or a caller that never started the threads)."""
        self._drain_inbox()
        if not self._tracked:
            return
        running: list[str] = []
        to_describe: list[str] = []
        for job_id, watched in self._tracked.items():
            (running if watched.status == "RUNNING" else to_describe).append(job_id)
        if len(running) > LIST_RUNNING_THRESHOLD:
            listed = self._list_running({self._tracked[j].job_queue for j in running})
            if listed is None:
                to_describe.extend(running)
            else:
                to_describe.extend(j for j in running if j not in listed)
        else:
            to_describe.extend(running)
        for i in range(0, len(to_describe), DESCRIBE_MAX_IDS):
            if not self._status_call():
                return
            chunk = to_describe[i : i + DESCRIBE_MAX_IDS]
            try:
                details = self.api.describe_jobs(chunk)
            except BatchApiError as exc:
                log.info("DescribeJobs failed: %s", exc)
                continue
            for detail in details:
                adopted = self._tracked.get(detail.job_id)
                if adopted is not None and adopted.job_queue is None and detail.job_queue:
                    # Adopted jobs arrive without a queue; learning it lets ListJobs cover them.
                    adopted.job_queue = self._queue_names.setdefault(detail.job_queue, detail.job_queue)
            if self._unconfirmed:
                details, handed_over = self._hand_over_unconfirmed(chunk, details)
                # Neither reported here nor missing: the executor has them now.
                chunk = [j for j in chunk if j not in handed_over]
            self._publish(chunk, [d.view() for d in details])

    def _list_running(self, queues: set[str | None]) -> set[str] | None:
        listed: set[str] = set()
        for job_queue in queues:
            if job_queue is None:
                return None  # adopted jobs: queue unknown, describe them instead
            token: str | None = None
            while True:
                if not self._status_call():
                    return None
                try:
                    page, token = self.api.list_jobs_page(job_queue, "RUNNING", token)
                except BatchApiError as exc:
                    log.info("ListJobs failed (%s); describing running jobs instead", exc)
                    return None
                listed.update(s.job_id for s in page)
                if not token:
                    break
        return listed

    def _mark_moved_on(self, views: list[JobView]) -> list[JobView]:
        """``views`` with ``moved_on`` set on the SUCCEEDED jobs whose try Airflow has already moved on,
        and ``queued_again`` on those whose try it has queued again (asked here, on the poller thread,
        right before the success is reported; a task records its own end before its container exits,
        so what the DB says now is settled). Not knowing changes nothing: the success is reported."""
        checker = self._moved_on_checker
        if checker is None:
            return views
        tries = {
            v.job_id: (str(uuid.UUID(bytes=ti_id)), watched.try_number)
            for v in views
            if v.status == "SUCCEEDED"
            and (watched := self._tracked.get(v.job_id)) is not None
            and (ti_id := watched.ti_id) is not None
        }
        if not tries:
            return views
        try:
            moved_on = checker(list(tries.values()))
        except Exception:
            # Said once at warning level: a DB that cannot be read now usually cannot a cycle later.
            level = logging.DEBUG if self._moved_on_failed else logging.WARNING
            self._moved_on_failed = True
            log.log(
                level,
                "Could not read the task instances of %d succeeded job(s); their successes are reported",
                len(tries),
                exc_info=True,
            )
            return views
        if not moved_on:
            return views

        def marked(view: JobView) -> JobView:
            state = moved_on.get(tries[view.job_id][0]) if view.job_id in tries else None
            if state is None:
                return view
            return dataclasses.replace(view, moved_on=state != TI_QUEUED, queued_again=state == TI_QUEUED)

        return [marked(view) for view in views]

    def _hand_over_unconfirmed(
        self, asked: list[str], details: list[JobDetail]
    ) -> tuple[list[JobDetail], set[str]]:
        """Report the jobs of ``asked`` adopted unconfirmed as :class:`AdoptedSeen` (no grace for one
        DescribeJobs does not know: it is an old id, not a job just submitted); the other details,
        and the ids so reported."""
        rest: list[JobDetail] = []
        seen: list[JobDetail] = []
        for detail in details:
            if detail.job_id in self._unconfirmed:
                self._unconfirmed.discard(detail.job_id)
                # Reported through AdoptedSeen: the next cycle reports it only when it changes.
                if (watched := self._tracked.get(detail.job_id)) is not None:
                    watched.status, watched.status_reason = detail.status, detail.status_reason
                seen.append(detail)
            else:
                rest.append(detail)
        returned = {d.job_id for d in details}
        missing = [j for j in asked if j in self._unconfirmed and j not in returned]
        for job_id in missing:
            self._unconfirmed.discard(job_id)
            self._tracked.pop(job_id, None)
        if seen or missing:
            views = self._mark_moved_on([d.view() for d in seen])
            self.report(AdoptedSeen(list(zip(seen, views, strict=True)), missing))
        return rest, {d.job_id for d in seen}.union(missing)

    def _publish(self, asked: list[str], views: list[JobView]) -> None:
        now = self._clock()
        changed: list[JobView] = []
        returned = set()
        for view in views:
            returned.add(view.job_id)
            watched = self._tracked.get(view.job_id)
            if watched is None:
                continue
            if (watched.status, watched.status_reason) != (view.status, view.status_reason):
                watched.status, watched.status_reason = view.status, view.status_reason
                changed.append(view)
        missing = [
            j
            for j in asked
            if j not in returned
            and (watched := self._tracked.get(j)) is not None
            and now - watched.since > MISSING_GRACE_S
        ]
        if changed:
            self.report(JobsSeen(self._mark_moved_on(changed)))
        if missing:
            for job_id in missing:
                self._tracked.pop(job_id, None)
            self.report(JobsMissing(missing))
