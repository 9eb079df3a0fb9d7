"""Results: what the threads did (SubmitJob answers, job states, built requests, adoption checks)
taken in on the scheduler thread, within a share of each heartbeat, and handed on to the core.

What the intake built and the poller saw is taken in within this share of a heartbeat; the rest waits
in the results queue for the next one. Slot counts (asked several times a loop) take in less. A built
request is cheap to take in but costs several times that once due (submit, grouping): they are
taken in a round at a time, each round dispatched before the clock is read again.
The budget counts from the start of the heartbeat (taking in a burst spends some of it first), but
always leaves ``SYNC_MIN_S`` to take in results.
"""

from __future__ import annotations

import logging
import queue
import time

from airflow_aws_batch.adopt_desk import AdoptDesk
from airflow_aws_batch.core.messages import SubmitOutcome
from airflow_aws_batch.dispatch import Dispatcher
from airflow_aws_batch.failures import stuck_reason
from airflow_aws_batch.intake import Intake
from airflow_aws_batch.metrics import count_submits, emit_gauges
from airflow_aws_batch.reports import Reporter
from airflow_aws_batch.runtime import (
    Accepted,
    AdoptedSeen,
    JobsMissing,
    JobsSeen,
    LostResolved,
    StartChecked,
    SubmitDone,
)
from airflow_aws_batch.wiring import Airflow, Wiring

log = logging.getLogger(__name__)

HEARTBEAT_BUDGET_S = 0.012
SYNC_MIN_S = 0.002
SLOTS_BUDGET_S = 0.002
ACCEPTED_PER_ROUND = 128
# The core packs the requests it took (about 15 us each) a few at a time, within this share of each
# heartbeat once its results are all taken in; while a burst is being taken in, only in what is left
# of HEARTBEAT_BUDGET_S. Memory per tracked job comes down over the heartbeats after a burst.
COMPACT_BUDGET_S = 0.002
COMPACT_STEP = 4


class Results:
    """Takes the threads' results in and hands the core's commands back out (scheduler thread)."""

    def __init__(
        self,
        wiring: Wiring,
        airflow: Airflow,
        *,
        intake: Intake,
        dispatch: Dispatcher,
        reporter: Reporter,
        desk: AdoptDesk,
    ) -> None:
        self._wiring = wiring
        self._airflow = airflow
        self._intake = intake
        self._dispatch = dispatch
        self._reporter = reporter
        self._desk = desk

    def take_in(self) -> None:
        """Before the slot counts: what the poller found, within ``SLOTS_BUDGET_S``; never raises."""
        try:
            self.apply(time.perf_counter() + SLOTS_BUDGET_S, ACCEPTED_PER_ROUND)
            # What the results produced (e.g. tracking for jobs just submitted): queues only, no I/O.
            # Due submits are left to sync(): the scheduler reads the slot counts several times a loop.
            self._dispatch.dispatch(max_submits=0)
        except Exception:
            log.exception("AwsBatchExecutor could not take in results; the next heartbeat will")

    def sync(self) -> None:
        """``sync()``'s share: results taken in and dispatched round by round within the heartbeat's
        budget, then requests packed, then the gauges."""
        now = time.perf_counter()
        deadline = max((self._intake.heartbeat_started or now) + HEARTBEAT_BUDGET_S, now + SYNC_MIN_S)
        more = True
        while more and time.perf_counter() < deadline:
            more = self.apply(deadline, ACCEPTED_PER_ROUND)
            self._dispatch.dispatch()
        if not more:
            # While a burst is being taken in, only in what is left of the heartbeat's budget.
            busy = bool(self._intake.building or self._airflow.queued_tasks)
            until = time.perf_counter() + COMPACT_BUDGET_S
            self._compact(min(until, deadline) if busy else until)
        emit_gauges(self._wiring.started_core)

    def apply(self, deadline: float | None = None, accepted: int | None = None) -> bool:
        """Take in the threads' results until ``deadline`` (``perf_counter``) or ``accepted`` built
        requests, if given; whether some are left."""
        runtime = self._wiring.runtime
        if runtime is None:
            return False
        core = self._wiring.core
        report = self._reporter.report
        stuck = self._wiring.stuck
        results = runtime.results
        submitted = failures = 0
        more = False
        while True:
            if (deadline is not None and time.perf_counter() > deadline) or accepted == 0:
                more = not results.empty()
                break
            try:
                result = results.get_nowait()
            except queue.Empty:
                break
            if isinstance(result, SubmitDone):
                reports = core.submit_result(
                    result.key,
                    result.outcome,
                    job_id=result.job_id,
                    reason=result.reason,
                    sent_at_ms=result.sent_at_ms,
                    found=result.found,
                    wait_s=result.wait_s,
                )
                if result.outcome is SubmitOutcome.OK and not result.found:
                    submitted += 1
                elif result.outcome in (SubmitOutcome.FAILED, SubmitOutcome.AMBIGUOUS):
                    failures += 1
                report(reports)
            elif isinstance(result, JobsSeen):
                now = time.monotonic()
                for view in result.views:
                    stuck.seen(view.job_id, view.status, view.status_reason, now)
                    report(core.job_seen(view))
            elif isinstance(result, JobsMissing):
                for job_id in result.job_ids:
                    report(core.job_missing(job_id))
            elif isinstance(result, StartChecked):
                report(core.start_checked(result.key, result.seen, result.winner))
            elif isinstance(result, AdoptedSeen):
                self._desk.verify_adopted(result)
            elif isinstance(result, LostResolved):
                self._desk.take_lost_resolved(result)
            elif isinstance(result, Accepted):
                self._intake.built(result)
                if accepted is not None:
                    accepted -= 1
        count_submits(submitted, failures)
        self._fail_stuck_jobs()
        return more

    def _fail_stuck_jobs(self) -> None:
        """Tasks whose job waited in RUNNABLE with a MISCONFIGURATION reason past the grace fail now."""
        stuck = self._wiring.stuck
        if not len(stuck):
            return
        for found in stuck.due(time.monotonic()):
            self._reporter.report(self._wiring.core.give_up(found.job_id, stuck_reason(found)))

    def _compact(self, deadline: float) -> None:
        """Pack the requests the core still keeps as given, until ``deadline`` (``perf_counter``)."""
        core = self._wiring.core
        while time.perf_counter() < deadline and core.compact(COMPACT_STEP):
            pass
