"""The terminator thread sees each termination through: a TerminateJob that fails is tried again with
backoff for as long as Batch fails, and a job is described again after Batch accepted it, until it
is seen ended or gone. It also runs rare chores: copying a failed job's output into the task log,
asking Airflow's metadata DB whether it saw a task start (:class:`CheckStarted`), the orphan sweep.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_aws_batch.aws.batch import DESCRIBE_MAX_IDS, BatchApiError, ErrorKind
from airflow_aws_batch.core.messages import (
    ACTIVE_STATUSES,
    SUBMISSION_TAG,
    CheckStarted,
    Terminate,
    TerminateLookup,
)
from airflow_aws_batch.runtime.lookups import ArrayLookupOpen, Lookups
from airflow_aws_batch.runtime.protocol import Threads

if TYPE_CHECKING:
    from airflow_aws_batch.lost import Awaited, Resolution

log = logging.getLogger(__name__)

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
class LostResolved:
    """What the lookup by tags decided for task instances adopted whose saved job was not their
    submission (a ``lost.Resolution``; None when the lookup failed, with ``error``)."""

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
#: ``(ti_id, try_number) -> is that try RUNNING in Airflow's DB now``. May do I/O; may raise.
RunningChecker = Callable[[str, int], bool]

#: Read from the terminator's queue when it timed out: time to run the terminations that are due.
_due: Callable[[], object] = lambda: None  # noqa: E731


class Terminator:
    """The terminator thread's state; the thread runs :meth:`loop`."""

    #: Delay before a termination is tried again after a failed call: doubling from the first, at
    #: most the second, for as long as Batch fails (an outage does not end it; ``stop()`` does).
    terminate_retry_s = (0.5, 60.0)

    def __init__(
        self,
        threads: Threads,
        lookups: Lookups,
        *,
        start_checker: StartChecker | None = None,
        running_checker: RunningChecker | None = None,
    ) -> None:
        self.threads = threads
        self.lookups = lookups
        self._start_checker = start_checker
        self._running_checker = running_checker
        #: Terminations under way, by when each is next tried (terminator thread only).
        self._endings: list[tuple[float, int, _Ending]] = []
        self._ending_seq = itertools.count()

    # ------------------------------------------------------------ the start check
    def check_started(self, cmd: CheckStarted) -> None:
        """Answer ``cmd`` with a :class:`StartChecked` result, asked on the terminator thread."""

        def answer() -> None:
            seen = self._ask_started(cmd)
            self.threads.report(StartChecked(cmd.key, seen, self._find_winner(cmd) if seen else None))

        self.threads.terminate_q.put(answer)

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
        if not self.threads.status_call():
            return None
        tags = {k: v for k, v in cmd.tags if k != SUBMISSION_TAG}
        try:
            found = self.threads.api.find_jobs(cmd.job_queue, cmd.job_name, 0, tags)
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

    # ------------------------------------------------------------ terminations
    def terminate_lookup(self, cmd: TerminateLookup) -> bool:
        """Look up what the unresolved ambiguous SubmitJobs of ``cmd`` created and end it (terminator
        thread); False when Batch could not be read, so the caller looks again later."""
        if self.lookups.array_refs_of(cmd.submissions):
            if not self.threads.status_call():
                return False
            try:
                child = self.lookups.find_array_child(cmd.submissions, cmd.created_after_ms)
            except BatchApiError as exc:
                log.info("Looking up the array of an ambiguous SubmitJob failed (%s); trying again", exc)
                return False
            except ArrayLookupOpen as exc:
                log.info("Looking up the array of an ambiguous SubmitJob again later: %s", exc)
                return False
            if child is not None:
                # Only this child: its siblings run other tasks.
                self._add_ending(_Ending(Terminate(child, cmd.reason)))
        if not self.threads.status_call():
            return False
        try:
            found = self.lookups.find_submitted(
                cmd.job_queue, cmd.job_name, cmd.created_after_ms, cmd.submissions
            )
        except BatchApiError as exc:
            log.info("Looking up the job of an ambiguous SubmitJob failed (%s); trying again", exc)
            return False
        for job in found:
            if job.status in ACTIVE_STATUSES:
                self._add_ending(_Ending(Terminate(job.job_id, cmd.reason)))
        return True

    def loop(self) -> None:
        while True:
            timeout = max(0.0, self._endings[0][0] - self.threads.clock()) if self._endings else None
            try:
                cmd = self.threads.terminate_q.get(timeout=timeout)
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
        when = self.threads.clock() if at is None else at
        heapq.heappush(self._endings, (when, next(self._ending_seq), ending))

    @property
    def endings(self) -> int:
        """Terminations not yet seen through (their job not yet seen ended or gone)."""
        return len(self._endings)

    def _run_due_endings(self) -> None:
        clock, stopping = self.threads.clock, self.threads.stopping
        due: list[_Ending] = []
        now = clock()
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
            if stopping.is_set():
                return
            chunk = checks[i : i + DESCRIBE_MAX_IDS]
            active = self._still_active([e.cmd.job_id for e in chunk if isinstance(e.cmd, Terminate)])
            for ending in chunk:
                if active is None:
                    self._add_ending(ending, clock() + self._retry_delay(ending))
                elif isinstance(ending.cmd, Terminate) and ending.cmd.job_id in active:
                    log.info(
                        "Batch job %s is still %s after its TerminateJob; terminating it again",
                        ending.cmd.job_id,
                        active[ending.cmd.job_id],
                    )
                    still[id(ending)] = ending
        for ending in due:
            if stopping.is_set():
                return
            if ending.accepted and id(ending) not in still:
                continue  # seen ended or gone, or rescheduled above
            try:
                again = self._advance(ending)
            except Exception:
                log.exception("Unexpected error ending %s", ending.cmd)
                again = None
            if again is not None:
                self._add_ending(ending, clock() + again)

    def _still_active(self, job_ids: list[str]) -> dict[str, str] | None:
        """Of ``job_ids``, the jobs still active and their status (one DescribeJobs); None when Batch
        cannot be read."""
        if not self.threads.status_call():
            return None
        try:
            details = self.threads.api.describe_jobs(job_ids)
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
        self.threads.submit_limiter.acquire()
        try:
            self.threads.api.terminate_job(cmd.job_id, cmd.reason)
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
