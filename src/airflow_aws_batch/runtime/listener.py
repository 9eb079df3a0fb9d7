"""The status events thread (``status_events``): long-polls the SQS queue EventBridge fills with
Batch's job state changes and hands them to the poller, which keeps the only record of each tracked
job and reports what changed.

An event is deleted once the poller has it in its inbox: a scheduler that dies in between loses it,
which reconciliation (polling the jobs that had no news for a while) covers. While the queue cannot
be read (deleted, access denied, throttled, unreachable) the poller polls every job as it does without
events; one line says so, one more when events come back.
"""

from __future__ import annotations

import logging
import threading
import time

from airflow_aws_batch.aws.batch import BatchApiError
from airflow_aws_batch.aws.events import EventError, StateChange, parse_event
from airflow_aws_batch.aws.sqs import MAX_WAIT_S, EventQueue
from airflow_aws_batch.runtime.protocol import Threads

log = logging.getLogger(__name__)


class StatusEvents:
    """The queue and whether it delivers: :attr:`live` is set while receives succeed."""

    def __init__(self, queue: EventQueue) -> None:
        self.queue = queue
        self.live = threading.Event()
        #: When a receive first succeeded (epoch ms; None before): changes before it had no reader.
        self.live_since_ms: float | None = None
        #: Messages taken, and those that were no job state change we could read (for tests and logs).
        self.received = 0
        self.unreadable = 0

    def delivering(self) -> None:
        """A receive succeeded."""
        if self.live_since_ms is None:
            self.live_since_ms = time.time() * 1000
        self.live.set()


class EventListener:
    """The loop of the events thread."""

    #: Seconds before a queue that failed is tried again: doubling from the first, at most the second.
    retry_s = (1.0, 60.0)

    def __init__(self, threads: Threads, events: StatusEvents) -> None:
        self.threads = threads
        self.events = events

    def loop(self) -> None:
        threads, events = self.threads, self.events
        delay = self.retry_s[0]
        failed = False
        while not threads.stopping.is_set():
            try:
                # Until a receive has succeeded, ask without waiting: whether the queue can be read
                # is known at once, not after a 20 s wait on an empty queue.
                messages = events.queue.receive(MAX_WAIT_S if events.live.is_set() else 0)
            except Exception as exc:
                self._lost(exc, first=not failed)
                failed = True
                if threads.stopping.wait(delay):
                    return
                delay = min(delay * 2, self.retry_s[1])
                continue
            if not events.live.is_set():
                log.info(
                    "Status events from %s arrive%s: polling only reconciles",
                    events.queue.name,
                    " again" if failed else "",
                )
                events.delivering()
            failed, delay = False, self.retry_s[0]
            if not messages:
                continue
            events.received += len(messages)
            # Parsed between heartbeats, as the other threads work (see Threads.gate).
            threads.gate.wait()
            changes = self._read([m.body for m in messages])
            if changes:
                threads.event_inbox.put(changes)
                if not threads.wake_poller.is_set():
                    threads.wake_poller.set()
            # After the hand-over: what fails to be deleted comes back and is taken again, harmlessly.
            events.queue.delete(messages)

    def _read(self, bodies: list[str]) -> list[StateChange]:
        changes: list[StateChange] = []
        for body in bodies:
            try:
                change = parse_event(body)
            except EventError as err:
                # Said once at warning level: a queue that holds one such message usually holds more.
                level = logging.DEBUG if self.events.unreadable else logging.WARNING
                self.events.unreadable += 1
                log.log(
                    level, "Status events from %s: a message was dropped: %s", self.events.queue.name, err
                )
                continue
            if change is not None:
                changes.append(change)
        return changes

    def _lost(self, exc: Exception, *, first: bool) -> None:
        was_live = self.events.live.is_set()
        self.events.live.clear()
        # The poller polls everything from its next cycle on: wake it rather than wait for it.
        self.threads.wake_poller.set()
        if was_live or first:
            reason = str(exc) if isinstance(exc, BatchApiError) else f"{type(exc).__name__}: {exc}"
            log.warning(
                "Status events from %s cannot be read (%s): polling every tracked job at "
                "status_calls_per_second until they can",
                self.events.queue.name,
                reason,
            )
        else:
            log.debug("Status events from %s still cannot be read: %s", self.events.queue.name, exc)
