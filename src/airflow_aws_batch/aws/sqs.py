"""The status events queue (``status_events``): SQS calls, typed and classified like Batch's.

Receives long-poll (up to 20 s, SQS's longest) so an idle queue costs three calls a minute; deletes
go ten at a time. Errors become :class:`BatchApiError` through the same classification as Batch's,
so the caller tells throttling and credentials from a queue that is gone or denied.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_aws_batch.aws.batch import BatchApiError, CallObserver, ErrorKind, classify

#: SQS's longest receive wait and largest batches.
MAX_WAIT_S = 20
MAX_MESSAGES = 10


@dataclass(frozen=True, slots=True)
class Message:
    message_id: str
    receipt_handle: str
    body: str


def queue_url_of(value: str) -> str | None:
    """``value`` when it is a queue URL; None for a queue name (resolved by GetQueueUrl)."""
    return value if value.startswith(("https://", "http://")) else None


class EventQueue:
    """One SQS queue, named by URL or by name. The client comes from a factory (the AWS hook), rebuilt
    after a credentials error as :class:`BatchApi` does."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        queue: str,
        observer: CallObserver | None = None,
    ) -> None:
        if not queue:
            raise ValueError("status_events: empty queue URL or name")
        self._factory = client_factory
        self._queue = queue
        self._url = queue_url_of(queue)
        self._client: Any = None
        self._lock = threading.Lock()
        self._observer = observer

    @property
    def name(self) -> str:
        return self._queue

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        start = time.monotonic()
        kind: ErrorKind | None = None
        try:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
                client = self._client
            result: dict[str, Any] = getattr(client, operation)(**kwargs)
            return result
        except Exception as exc:
            error = classify(exc, operation)
            kind = error.kind
            if kind is ErrorKind.CREDENTIALS:
                with self._lock:
                    self._client = None
            raise error from exc
        finally:
            if self._observer is not None:
                self._observer(operation, time.monotonic() - start, kind)

    def url(self) -> str:
        if self._url is None:
            self._url = str(self._call("get_queue_url", QueueName=self._queue)["QueueUrl"])
        return self._url

    def receive(self, wait_s: int = MAX_WAIT_S) -> list[Message]:
        response = self._call(
            "receive_message",
            QueueUrl=self.url(),
            MaxNumberOfMessages=MAX_MESSAGES,
            WaitTimeSeconds=wait_s,
        )
        return [
            Message(str(m.get("MessageId", "")), str(m["ReceiptHandle"]), str(m.get("Body", "")))
            for m in response.get("Messages") or ()
            if m.get("ReceiptHandle")
        ]

    def delete(self, messages: Sequence[Message]) -> list[str]:
        """Delete ``messages``, ten a call; the ids SQS did not delete (they come back after their
        visibility timeout and are taken again, which a change's order makes harmless)."""
        failed: list[str] = []
        for i in range(0, len(messages), MAX_MESSAGES):
            chunk = messages[i : i + MAX_MESSAGES]
            entries = [{"Id": str(n), "ReceiptHandle": m.receipt_handle} for n, m in enumerate(chunk)]
            try:
                response = self._call("delete_message_batch", QueueUrl=self.url(), Entries=entries)
            except BatchApiError:
                failed.extend(m.message_id for m in chunk)
                continue
            failed.extend(chunk[int(f["Id"])].message_id for f in response.get("Failed") or ())
        return failed

    def attributes(self) -> dict[str, str]:
        response = self._call(
            "get_queue_attributes",
            QueueUrl=self.url(),
            AttributeNames=["QueueArn", "ApproximateNumberOfMessages", "MessageRetentionPeriod"],
        )
        return {str(k): str(v) for k, v in (response.get("Attributes") or {}).items()}
