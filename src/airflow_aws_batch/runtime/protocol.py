"""What the runtime's threads share: the queue each kind takes its work from, the one queue they all
report to, the stop event, the heartbeat gate, and the AWS clients with their call budgets.

Each room (intake.py, submitter.py, terminator.py, poller.py) runs its loop on a thread started
here; they meet the scheduler thread only through these queues.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_aws_batch.aws.batch import BatchApi
from airflow_aws_batch.aws.events import StateChange
from airflow_aws_batch.aws.ratelimit import TokenBucket
from airflow_aws_batch.core.arrays import SubmitArray
from airflow_aws_batch.core.messages import Submit, Terminate, TerminateLookup, Track, Untrack

if TYPE_CHECKING:
    from airflow_aws_batch.runtime import Result


#: A burst of ``(key, seq, workload)`` and the builder of each one's request (intake.py's ``Build``,
#: named there: the intake room depends on this one, not the other way round).
Burst = tuple[list[tuple[Any, int, Any]], Callable[[Any, int, Any], Any]]


class Threads:
    """The threads' shared protocol. :meth:`spawn` starts one; :meth:`stop` ends and joins them all."""

    def __init__(
        self,
        api: BatchApi,
        *,
        status_api: BatchApi | None,
        submit_rate: float,
        status_calls_per_second: float,
        submit_threads: int,
        clock: Callable[[], float],
    ) -> None:
        # SubmitJob goes through ``submit_api`` (no botocore retries: it is not idempotent);
        # everything else through ``api``.
        self.submit_api = api
        self.api = status_api or api
        self.submit_limiter = TokenBucket(submit_rate)
        self.status_limiter = TokenBucket(status_calls_per_second, 1.0)
        #: How many submit threads take from :attr:`submit_q` (each gets its own stop sentinel).
        self.submit_threads = submit_threads
        self.clock = clock
        self.results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self.submit_q: queue.SimpleQueue[Submit | SubmitArray | None] = queue.SimpleQueue()
        # The terminator thread also runs rare background chores (e.g. copying a failed job's output).
        self.terminate_q: queue.SimpleQueue[Terminate | TerminateLookup | Callable[[], object] | None] = (
            queue.SimpleQueue()
        )
        self.poll_inbox: queue.SimpleQueue[Track | Untrack] = queue.SimpleQueue()
        #: Job state changes from status events, for the poller (``status_events``).
        self.event_inbox: queue.SimpleQueue[list[StateChange]] = queue.SimpleQueue()
        #: Bursts of ``(key, seq, workload)`` and the builder of each one's request (intake.py's
        #: ``Build``, named there: the intake room depends on this one, not the other way).
        self.intake_q: queue.SimpleQueue[
            tuple[list[tuple[Any, int, Any]], Callable[[Any, int, Any], Any]] | None
        ] = queue.SimpleQueue()
        self.stopping = threading.Event()
        #: Cleared while the scheduler heartbeats (:meth:`hold`): the intake thread waits between two
        #: builds, submit threads before their next SubmitJob and the poller before its next call,
        #: instead of taking the GIL from the heartbeat (CPython hands it over every 5 ms).
        self.gate = threading.Event()
        self.gate.set()
        self.wake_poller = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------ lifecycle
    def spawn(self, target: Callable[[], None], name: str, *, joined: bool = True) -> None:
        """Start ``target`` on a thread; :meth:`stop` waits for it unless ``joined`` is False (a thread
        that may sit in a 20 s long poll and holds nothing to finish)."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        if joined:
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.wake_poller.set()
        self.gate.set()
        for _ in range(self.submit_threads):
            self.submit_q.put(None)
        self.terminate_q.put(None)
        self.intake_q.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    # ------------------------------------------------------------ shared by every loop
    def report(self, result: Result) -> None:
        """Hand ``result`` to the scheduler thread, which takes it from :attr:`results`."""
        self.results.put(result)

    def hold(self) -> None:
        """Keep the threads from starting new work until :meth:`release` (work under way goes on)."""
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def status_call(self) -> bool:
        """Wait for the heartbeat gate and the status budget; False when stopping (or no budget in 30 s)."""
        self.gate.wait()
        return self.status_limiter.acquire(timeout=30.0) and not self.stopping.is_set()
