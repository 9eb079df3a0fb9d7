"""Batch's job state change events: built as a job changes status, sent to the queues of the rules
they match, through the event faults.

As on AWS, an event is sent whenever an existing job changes status, never for its submission
(SUBMITTED), for array parents and children alike (a child's is its own, job id ``<parent>:<index>``).
Its ``detail`` is the job as DescribeJobs shows it at that moment. Nothing is built while no enabled
rule has a target, so a localbatch nobody listens to pays one attribute check per change.

Each delivery (one event to one queue) meets the event faults (localbatch.faults.EventFaults):
dropped, sent twice (the same event id, two messages), sent late (a timer of the event loop), or held
back until the next delivery to that queue has gone out (at most ``REORDER_HOLD_SECONDS``), so the two
arrive swapped (with every delivery chosen, each pair is swapped). Late and held events live only in
memory: a restart loses them, as it would lose what EventBridge had not yet
delivered.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from collections import Counter
from typing import Any

from localbatch.arns import name_from
from localbatch.events import EventsBackend
from localbatch.faults import REORDER_HOLD_SECONDS, Faults
from localbatch.models import ACCOUNT_ID, Job
from localbatch.sqs import SqsBackend

SOURCE = "aws.batch"
DETAIL_TYPE = "Batch Job State Change"
#: The SenderId of the messages EventBridge puts in a queue.
EVENTS_SENDER_ID = "AIDAEVENTBRIDGELOCALBATCH"


def state_change_event(job: Job) -> dict[str, Any]:
    """The event of ``job``'s current status, in AWS's shape (keys in the order AWS sends them)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": ACCOUNT_ID,
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": job.job_arn.split(":")[3],
        "resources": [job.job_arn],
        "detail": job.to_detail(name_from(job.queue_arn, "job-queue")),
    }


class JobEvents:
    def __init__(self, rules: EventsBackend, sqs: SqsBackend, faults: Faults) -> None:
        self.rules = rules
        self.sqs = sqs
        self.faults = faults
        #: emitted (events that matched a rule), delivered (messages put in a queue), dropped,
        #: duplicated, delayed, reordered, undeliverable (the target's queue does not exist).
        self.counts: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: A reordered delivery waiting for the next one to its queue, and the timer that sends it
        #: anyway: queue ARN -> (bodies, timer).
        self._held: dict[str, tuple[list[str], asyncio.TimerHandle | None]] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def job_changed(self, job: Job) -> None:
        """Called by the backend right after ``job``'s status changed."""
        if not self.rules.active:
            return
        event = state_change_event(job)
        arns = self.rules.target_arns(event)
        if not arns:
            return
        self.counts["emitted"] += 1
        body = json.dumps(event)
        for arn in arns:
            self._route(arn, body, job.job_name)

    def _route(self, arn: str, body: str, job_name: str) -> None:
        fate = self.faults.event_fate(job_name)
        if fate.drop:
            self.counts["dropped"] += 1
            return
        if fate.copies > 1:
            self.counts["duplicated"] += 1
        if fate.reorder:
            self.counts["reordered"] += 1
        for _ in range(fate.copies):
            if fate.delay > 0 and self._loop is not None:
                self.counts["delayed"] += 1
                self._loop.call_later(fate.delay, self._send, arn, body, fate.reorder)
            else:
                self._send(arn, body, fate.reorder)

    def _send(self, arn: str, body: str, reorder: bool) -> None:
        """Into the queue, and then what was held back for it; a reordered delivery is held back
        instead, unless one already is (then the two go out swapped)."""
        if reorder and arn not in self._held and self._loop is not None:
            timer = self._loop.call_later(REORDER_HOLD_SECONDS, self._release, arn)
            self._held[arn] = ([body], timer)
            return
        self._put(arn, body)
        self._release(arn)

    def _release(self, arn: str) -> None:
        bodies, timer = self._held.pop(arn, ([], None))
        if timer is not None:
            timer.cancel()
        for body in bodies:
            self._put(arn, body)

    def _put(self, arn: str, body: str) -> None:
        if self.sqs.deliver(arn, body, EVENTS_SENDER_ID):
            self.counts["delivered"] += 1
        else:
            self.counts["undeliverable"] += 1

    def stats(self) -> dict[str, int]:
        keys = ("emitted", "delivered", "dropped", "duplicated", "delayed", "reordered", "undeliverable")
        return {key: self.counts[key] for key in keys}
