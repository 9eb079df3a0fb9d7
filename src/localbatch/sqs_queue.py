"""One SQS standard queue: its messages, their visibility, and the receivers waiting for one.

A message is *visible* (receivable), *in flight* (received, hidden until its visibility timeout
ends) or *delayed* (sent with a delay, not receivable yet). Visible messages are handed out oldest
first (AWS's standard queues promise no order; keeping the send order makes an event fault's
reordering something a test can see). Each state change bumps the message's generation, so stale
heap entries are skipped instead of searched for. Times are epoch seconds (``time.time()``), so a
message's age survives a restart.

Receivers wait on futures of the event loop, never a thread: a send (or a message becoming visible)
wakes them, and each waits at most until the next in-flight or delayed message is due.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from localbatch.models import ACCOUNT_ID

VISIBLE: Literal["visible"] = "visible"
IN_FLIGHT: Literal["in_flight"] = "in_flight"
DELAYED: Literal["delayed"] = "delayed"
State = Literal["visible", "in_flight", "delayed"]

DEFAULT_ATTRIBUTES = {
    "VisibilityTimeout": "30",
    "MessageRetentionPeriod": "345600",
    "ReceiveMessageWaitTimeSeconds": "0",
    "DelaySeconds": "0",
    "MaximumMessageSize": "262144",
}
_sequence = itertools.count(1)


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@dataclass
class Message:
    message_id: str
    body: str
    sent_at: float
    sender_id: str
    seq: int = field(default_factory=lambda: next(_sequence))
    state: State = VISIBLE
    #: When an in-flight or delayed message becomes visible.
    due: float = 0.0
    generation: int = 0
    receive_count: int = 0
    first_received_at: float | None = None
    #: The handle of the latest receive: only it deletes the message (as AWS documents).
    receipt: str | None = None

    def system_attributes(self) -> dict[str, str]:
        attributes = {
            "SenderId": self.sender_id,
            "SentTimestamp": str(int(self.sent_at * 1000)),
            "ApproximateReceiveCount": str(self.receive_count),
        }
        if self.first_received_at is not None:
            attributes["ApproximateFirstReceiveTimestamp"] = str(int(self.first_received_at * 1000))
        return attributes


@dataclass
class Queue:
    name: str
    region: str
    created_at: float
    attributes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ATTRIBUTES))
    tags: dict[str, str] = field(default_factory=dict)
    last_modified: float = 0.0
    purged_at: float | None = None
    messages: dict[str, Message] = field(default_factory=dict)
    counts: dict[State, int] = field(default_factory=lambda: {VISIBLE: 0, IN_FLIGHT: 0, DELAYED: 0})
    #: (seq, message id, generation) of visible messages: the oldest first.
    _visible: list[tuple[int, str, int]] = field(default_factory=list)
    #: (due, seq, message id, generation) of in-flight and delayed messages.
    _due: list[tuple[float, int, str, int]] = field(default_factory=list)
    #: (sent at, message id) in send order, for retention.
    _by_age: deque[tuple[float, str]] = field(default_factory=deque)
    _waiters: set[asyncio.Future[None]] = field(default_factory=set)

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{self.name}"

    def number(self, name: str) -> int:
        return int(self.attributes[name])

    # -- state moves -----------------------------------------------------------------------------
    def _set_state(self, message: Message, state: State, due: float = 0.0) -> None:
        self.counts[message.state] -= 1
        message.state = state
        message.generation += 1
        message.due = due
        self.counts[state] += 1
        if state == VISIBLE:
            heapq.heappush(self._visible, (message.seq, message.message_id, message.generation))
            self._wake()
        else:
            heapq.heappush(self._due, (due, message.seq, message.message_id, message.generation))

    def add(self, message: Message, delay: float = 0.0) -> None:
        self.messages[message.message_id] = message
        self._by_age.append((message.sent_at, message.message_id))
        self.counts[message.state] += 1
        if delay > 0:
            self._set_state(message, DELAYED, message.sent_at + delay)
        else:
            message.generation += 1
            heapq.heappush(self._visible, (message.seq, message.message_id, message.generation))
            self._wake()

    def remove(self, message_id: str) -> Message | None:
        message = self.messages.pop(message_id, None)
        if message is not None:
            self.counts[message.state] -= 1
        return message

    def refresh(self, now: float) -> list[str]:
        """Make due messages visible and drop those past retention; return the dropped ids."""
        while self._due and self._due[0][0] <= now:
            _, _, message_id, generation = heapq.heappop(self._due)
            message = self.messages.get(message_id)
            if message is not None and message.generation == generation and message.state != VISIBLE:
                self._set_state(message, VISIBLE)
        expired = []
        retention = self.number("MessageRetentionPeriod")
        while self._by_age and self._by_age[0][0] + retention <= now:
            _, message_id = self._by_age.popleft()
            if self.remove(message_id) is not None:
                expired.append(message_id)
        if len(self._by_age) > 2 * len(self.messages) + 1024:
            # Deleted messages linger here until their retention ends: drop them now and then.
            live = sorted(self.messages.values(), key=lambda m: m.seq)
            self._by_age = deque((m.sent_at, m.message_id) for m in live)
        return expired

    def take(self, limit: int, visibility: int, now: float) -> list[Message]:
        """Up to ``limit`` visible messages, oldest first, now in flight for ``visibility`` seconds."""
        taken: list[Message] = []
        while self._visible and len(taken) < limit:
            _, message_id, generation = heapq.heappop(self._visible)
            message = self.messages.get(message_id)
            if message is None or message.generation != generation or message.state != VISIBLE:
                continue
            message.receive_count += 1
            if message.first_received_at is None:
                message.first_received_at = now
            message.receipt = f"{self.name}/{message.message_id}/{uuid.uuid4().hex}"
            self._set_state(message, IN_FLIGHT, now + visibility)
            taken.append(message)
        return taken

    def change_visibility(self, message: Message, seconds: int, now: float) -> None:
        if seconds == 0:
            self._set_state(message, VISIBLE)
        else:
            self._set_state(message, IN_FLIGHT, now + seconds)

    def purge(self) -> list[str]:
        ids = list(self.messages)
        self.messages.clear()
        self.counts = {VISIBLE: 0, IN_FLIGHT: 0, DELAYED: 0}
        self._visible.clear()
        self._due.clear()
        self._by_age.clear()
        return ids

    def next_due_in(self, now: float) -> float | None:
        """Seconds until the next in-flight or delayed message is due (stale entries count too: a
        receiver that wakes for one just waits again)."""
        return max(0.0, self._due[0][0] - now) if self._due else None

    # -- waiting receivers ------------------------------------------------------------------------
    async def wait(self, timeout: float) -> None:
        """Until a message may have become visible, or ``timeout`` seconds."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            self._waiters.discard(waiter)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def wake_all(self) -> None:
        self._wake()

    # -- records ----------------------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "region": self.region,
            "created_at": self.created_at,
            "last_modified": self.last_modified,
            "attributes": dict(self.attributes),
            "tags": dict(self.tags),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Queue:
        return cls(
            name=record["name"],
            region=record["region"],
            created_at=record["created_at"],
            attributes={**DEFAULT_ATTRIBUTES, **record["attributes"]},
            tags=dict(record.get("tags", {})),
            last_modified=record.get("last_modified", record["created_at"]),
        )


def now() -> float:
    return time.time()
