"""The executor's threads: submit workers, one poller, one terminator, one intake, and with
``status_events`` one listener.

The scheduler thread never calls AWS: it puts commands on queues and reads results from one
queue (:attr:`Runtime.results`). Every network call happens on a thread started here.

One room per kind of thread, each with the messages it reports: ``intake.py`` (:class:`Accepted`),
``submitter.py`` (:class:`SubmitDone`), ``terminator.py`` (:class:`StartChecked`, and the chores'
:class:`LostResolved`), ``poller.py`` (:class:`JobsSeen`, :class:`JobsMissing`, :class:`AdoptedSeen`),
``listener.py`` (status events, handed to the poller).
What they share is ``protocol.py`` (the queues, the stop event, the heartbeat gate, ``report``) and
``lookups.py`` (finding what an ambiguous SubmitJob created). :class:`Runtime` starts them and is
what the executor calls.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from airflow_aws_batch.aws.batch import BatchApi
from airflow_aws_batch.aws.ratelimit import TokenBucket
from airflow_aws_batch.aws.sqs import EventQueue
from airflow_aws_batch.core.arrays import SubmitArray
from airflow_aws_batch.core.messages import CheckStarted, Submit, Terminate, TerminateLookup, Track, Untrack
from airflow_aws_batch.runtime.intake import Accepted, Build, intake_loop
from airflow_aws_batch.runtime.listener import EventListener, StatusEvents
from airflow_aws_batch.runtime.lookups import ArrayLookupOpen, ArrayRef, Lookups, kept_of_duplicates
from airflow_aws_batch.runtime.poller import AdoptedSeen, JobsMissing, JobsSeen, MovedOnChecker, Poller
from airflow_aws_batch.runtime.protocol import Threads
from airflow_aws_batch.runtime.submitter import SubmitDone, Submitter
from airflow_aws_batch.runtime.terminator import (
    LostResolved,
    RunningChecker,
    StartChecked,
    StartChecker,
    Terminator,
)
from airflow_aws_batch.workloads import WorkloadStore

Result = SubmitDone | JobsSeen | JobsMissing | AdoptedSeen | LostResolved | StartChecked | Accepted

__all__ = [
    "Accepted",
    "AdoptedSeen",
    "ArrayLookupOpen",
    "ArrayRef",
    "Build",
    "JobsMissing",
    "JobsSeen",
    "LostResolved",
    "MovedOnChecker",
    "Result",
    "RunningChecker",
    "Runtime",
    "StartChecked",
    "StartChecker",
    "SubmitDone",
    "kept_of_duplicates",
]


class Runtime:
    """Owns the threads. ``start()`` once; ``stop()`` joins them.

    Its rooms are public for tests and tuning: :attr:`threads` (the shared protocol), :attr:`lookups`,
    :attr:`submitter`, :attr:`terminator` (e.g. its ``terminate_retry_s``), :attr:`poller`.
    """

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
        status_events: EventQueue | None = None,
    ) -> None:
        self.threads = Threads(
            api,
            status_api=status_api,
            submit_rate=submit_rate,
            status_calls_per_second=status_calls_per_second,
            submit_threads=submit_threads,
            clock=clock,
        )
        self.lookups = Lookups(self.threads)
        self.submitter = Submitter(self.threads, self.lookups, prepare=prepare, store=store)
        self.terminator = Terminator(
            self.threads, self.lookups, start_checker=start_checker, running_checker=running_checker
        )
        #: The status events queue and whether it delivers; None without ``status_events``.
        self.events = StatusEvents(status_events) if status_events is not None else None
        self.poller = Poller(
            self.threads,
            poll_interval_s=poll_interval_s,
            moved_on_checker=moved_on_checker,
            events=self.events,
        )

    @property
    def api(self) -> BatchApi:
        """Every call but SubmitJob goes through this one."""
        return self.threads.api

    @property
    def submit_api(self) -> BatchApi:
        return self.threads.submit_api

    @property
    def submit_limiter(self) -> TokenBucket:
        return self.threads.submit_limiter

    @property
    def status_limiter(self) -> TokenBucket:
        return self.threads.status_limiter

    @property
    def results(self) -> queue.SimpleQueue[Result]:
        return self.threads.results

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        threads = self.threads
        for i in range(threads.submit_threads):
            threads.spawn(self.submitter.loop, f"aws-batch-submit-{i}")
        threads.spawn(self.poller.loop, "aws-batch-poller")
        threads.spawn(self.terminator.loop, "aws-batch-terminator")
        threads.spawn(partial(intake_loop, threads), "aws-batch-intake")
        if self.events is not None:
            # Not joined by stop(): it may sit in a 20 s receive, and has nothing to finish.
            threads.spawn(EventListener(threads, self.events).loop, "aws-batch-events", joined=False)

    def stop(self, timeout: float = 10.0) -> None:
        self.threads.stop(timeout)

    # ------------------------------------------------------------ inputs (any thread)
    def report(self, result: Result) -> None:
        """Hand ``result`` to the scheduler thread, which takes it from :attr:`results`."""
        self.threads.report(result)

    def submit(self, cmd: Submit | SubmitArray) -> None:
        self.threads.submit_q.put(cmd)

    def stop_submitting(self) -> list[Submit | SubmitArray]:
        """See :meth:`Submitter.stop_submitting`."""
        return self.submitter.stop_submitting()

    def terminate(self, cmd: Terminate | TerminateLookup) -> None:
        self.threads.terminate_q.put(cmd)

    def run_later(self, chore: Callable[[], object]) -> None:
        """Run ``chore`` on the terminator thread (it may do I/O; exceptions are logged)."""
        self.threads.terminate_q.put(chore)

    def intake(self, items: list[tuple[Any, int, Any]], build: Build) -> None:
        """Report ``build(key, seq, workload)`` of each item, in order, built on the intake thread."""
        self.threads.intake_q.put((items, build))

    def hold(self) -> None:
        """Keep the threads from starting new work until :meth:`release` (work under way goes on)."""
        self.threads.hold()

    def release(self) -> None:
        self.threads.release()

    def check_started(self, cmd: CheckStarted) -> None:
        """Answer ``cmd`` with a :class:`StartChecked` result, asked on the terminator thread."""
        self.terminator.check_started(cmd)

    def track(self, cmd: Track | Untrack) -> None:
        self.poller.track(cmd)

    # ------------------------------------------------------------ on the caller's thread
    @property
    def endings(self) -> int:
        """Terminations not yet seen through (their job not yet seen ended or gone)."""
        return self.terminator.endings

    def terminate_lookup(self, cmd: TerminateLookup) -> bool:
        """See :meth:`Terminator.terminate_lookup`."""
        return self.terminator.terminate_lookup(cmd)

    def terminate_now(self, cmd: Terminate, tries: int = 5) -> bool:
        """TerminateJob with a few retries on throttling/server errors; True when Batch accepted it."""
        return self.terminator.terminate_now(cmd, tries)

    def poll_once(self) -> None:
        """See :meth:`Poller.poll_once`."""
        self.poller.poll_once()
