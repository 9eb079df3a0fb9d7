"""SQS's messages: sending, receiving (long polling), deleting, changing visibility, purging.

The half of localbatch.sqs.SqsBackend that moves messages; the queues themselves (create, attributes,
delete, list, tags) are the other half, in localbatch.sqs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from localbatch.errors import (
    SqsBatchEntryIdsNotDistinct,
    SqsEmptyBatchRequest,
    SqsError,
    SqsInvalidAddress,
    SqsInvalidBatchEntryId,
    SqsMessageNotInflight,
    SqsPurgeQueueInProgress,
    SqsQueueDoesNotExist,
    SqsReceiptHandleIsInvalid,
    SqsTooManyEntriesInBatchRequest,
    SqsUnsupportedOperation,
)
from localbatch.models import ACCOUNT_ID
from localbatch.sqs_queue import IN_FLIGHT, Message, Queue, md5_hex, now
from localbatch.store import Store

BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
# The characters a message may hold (SQS's rule: XML 1.0's, without the surrogates).
INVALID_BODY_RE = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MAX_BATCH = 10
#: AWS refuses a second PurgeQueue of a queue within a minute.
PURGE_INTERVAL_S = 60.0
SENDER_ID = "AIDALOCALBATCH"


def between(name: str, value: int | None, least: int, most: int) -> None:
    if value is not None and not least <= value <= most:
        raise SqsError(
            f"Value {value} for parameter {name} is invalid. Reason: Must be between {least} and {most}, "
            "if provided."
        )


class SqsMessages:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.queues: dict[str, Queue] = {}
        self.closing = False

    def close(self) -> None:
        """Receivers waiting answer at once (with what they have): the server is stopping."""
        self.closing = True
        for queue in self.queues.values():
            queue.wake_all()

    # -- lookups -----------------------------------------------------------------------------------
    @staticmethod
    def url(queue: Queue, host: str) -> str:
        return f"http://{host}/{ACCOUNT_ID}/{queue.name}"

    def _queue(self, url: str) -> Queue:
        parts = urlsplit(url).path.strip("/").split("/")
        if len(parts) != 2 or not parts[0].isdigit():
            raise SqsInvalidAddress(f"The address {url} is not valid for this endpoint.")
        queue = self.queues.get(parts[1]) if parts[0] == ACCOUNT_ID else None
        if queue is None:
            raise SqsQueueDoesNotExist("The specified queue does not exist.")
        return queue

    def by_arn(self, arn: str) -> Queue | None:
        parts = arn.split(":")
        if len(parts) != 6 or parts[2] != "sqs" or parts[4] != ACCOUNT_ID:
            return None
        queue = self.queues.get(parts[5])
        return queue if queue is not None and queue.region == parts[3] else None

    # -- messages in and out -----------------------------------------------------------------------
    def _put(self, queue: Queue, body: str, sender_id: str, delay: int = 0) -> Message:
        message = Message(str(uuid.uuid4()), body, now(), sender_id)
        queue.add(message, delay)
        record = {
            "queue": queue.name,
            "id": message.message_id,
            "body": body,
            "sent_at": message.sent_at,
            "seq": message.seq,
            "sender_id": sender_id,
        }
        self.store.put("sqs_message", f"{queue.name}/{message.message_id}", record)
        return message

    def deliver(self, queue_arn: str, body: str, sender_id: str) -> bool:
        """An event for the queue ``queue_arn`` names; False when there is no such queue."""
        queue = self.by_arn(queue_arn)
        if queue is None:
            return False
        self._put(queue, body, sender_id, queue.number("DelaySeconds"))
        return True

    def _forget(self, queue: Queue, message_ids: list[str]) -> None:
        for message_id in message_ids:
            self.store.delete("sqs_message", f"{queue.name}/{message_id}")

    def _refresh(self, queue: Queue) -> float:
        current = now()
        self._forget(queue, queue.refresh(current))
        return current

    @staticmethod
    def _receipt(message: Message) -> str:
        assert message.receipt is not None
        return base64.urlsafe_b64encode(message.receipt.encode()).decode()

    @staticmethod
    def _message_for(queue: Queue, handle: str) -> Message | None:
        """The message ``handle`` was last received as; None if it is gone or was received since."""
        try:
            raw = base64.urlsafe_b64decode(handle.encode()).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raw = ""
        parts = raw.split("/")
        if len(parts) != 3 or parts[0] != queue.name:
            raise SqsReceiptHandleIsInvalid(
                f'The input receipt handle "{handle}" is not a valid receipt handle.'
            )
        message = queue.messages.get(parts[1])
        return message if message is not None and message.receipt == raw else None

    # -- API -----------------------------------------------------------------------------------------
    async def receive_message(self, p: dict[str, Any], host: str) -> dict[str, Any]:
        url = p["QueueUrl"]
        queue = self._queue(url)
        limit = p.get("MaxNumberOfMessages", 1)
        between("MaxNumberOfMessages", limit, 1, MAX_BATCH)
        wait = p.get("WaitTimeSeconds", queue.number("ReceiveMessageWaitTimeSeconds"))
        between("WaitTimeSeconds", wait, 0, 20)
        visibility = p.get("VisibilityTimeout", queue.number("VisibilityTimeout"))
        between("VisibilityTimeout", visibility, 0, 43200)
        names = {*p.get("AttributeNames", ()), *p.get("MessageSystemAttributeNames", ())}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            queue = self._queue(url)  # deleted while we waited: QueueDoesNotExist
            current = self._refresh(queue)
            messages = queue.take(limit, visibility, current)
            remaining = deadline - loop.time()
            if messages or remaining <= 0 or self.closing:
                break
            due = queue.next_due_in(current)
            await queue.wait(remaining if due is None else min(remaining, due + 0.001))
        if not messages:
            return {}
        out = []
        for message in messages:
            item: dict[str, Any] = {
                "MessageId": message.message_id,
                "ReceiptHandle": self._receipt(message),
                "MD5OfBody": md5_hex(message.body),
                "Body": message.body,
            }
            if names:
                system = message.system_attributes()
                item["Attributes"] = {k: v for k, v in system.items() if "All" in names or k in names}
            out.append(item)
        return {"Messages": out}

    def delete_message(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self._queue(p["QueueUrl"])
        self._delete(queue, p["ReceiptHandle"])
        return {}

    def _delete(self, queue: Queue, handle: str) -> None:
        # Like AWS: a handle of an earlier receive succeeds but deletes nothing.
        message = self._message_for(queue, handle)
        if message is not None:
            queue.remove(message.message_id)
            self._forget(queue, [message.message_id])

    def _change(self, queue: Queue, handle: str, seconds: int) -> None:
        between("VisibilityTimeout", seconds, 0, 43200)
        message = self._message_for(queue, handle)
        if message is None or message.state != IN_FLIGHT:
            raise SqsMessageNotInflight(
                "Message does not exist or is not available for visibility timeout change."
            )
        queue.change_visibility(message, seconds, now())

    @staticmethod
    def _check_entries(entries: list[dict[str, Any]], request: str) -> None:
        if not entries:
            raise SqsEmptyBatchRequest(f"There should be at least one {request}RequestEntry in the request.")
        if len(entries) > MAX_BATCH:
            raise SqsTooManyEntriesInBatchRequest(
                f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}."
            )
        seen: set[str] = set()
        for entry in entries:
            if not BATCH_ID_RE.match(entry["Id"]):
                raise SqsInvalidBatchEntryId(
                    "A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
                    "It can be at most 80 letters long."
                )
            if entry["Id"] in seen:
                raise SqsBatchEntryIdsNotDistinct(f"Id {entry['Id']} repeated.")
            seen.add(entry["Id"])

    @staticmethod
    def _each(entries: list[dict[str, Any]], act: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        successful, failed = [], []
        for entry in entries:
            try:
                act(entry)
            except SqsError as error:
                failed.append(
                    {"Id": entry["Id"], "SenderFault": True, "Code": error.code, "Message": error.message}
                )
            else:
                successful.append({"Id": entry["Id"]})
        return {"Successful": successful, "Failed": failed}

    def delete_message_batch(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self._queue(p["QueueUrl"])
        self._check_entries(p["Entries"], "DeleteMessageBatch")
        return self._each(p["Entries"], lambda e: self._delete(queue, e["ReceiptHandle"]))

    def change_message_visibility(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self._queue(p["QueueUrl"])
        self._change(queue, p["ReceiptHandle"], p["VisibilityTimeout"])
        return {}

    def change_message_visibility_batch(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self._queue(p["QueueUrl"])
        self._check_entries(p["Entries"], "ChangeMessageVisibilityBatch")
        return self._each(
            p["Entries"], lambda e: self._change(queue, e["ReceiptHandle"], e.get("VisibilityTimeout", 0))
        )

    def send_message(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self._queue(p["QueueUrl"])
        body = p["MessageBody"]
        if p.get("MessageAttributes") or p.get("MessageSystemAttributes"):
            raise SqsUnsupportedOperation("localbatch does not support message attributes.")
        if not body or INVALID_BODY_RE.search(body):
            raise SqsError("The message body is empty or holds characters SQS does not allow.")
        if len(body.encode()) > queue.number("MaximumMessageSize"):
            raise SqsError(
                f"One or more parameters are invalid. Reason: Message must be shorter than "
                f"{queue.number('MaximumMessageSize')} bytes."
            )
        delay = p.get("DelaySeconds", queue.number("DelaySeconds"))
        between("DelaySeconds", delay, 0, 900)
        message = self._put(queue, body, SENDER_ID, delay)
        return {"MessageId": message.message_id, "MD5OfMessageBody": md5_hex(body)}

    def purge_queue(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self._queue(p["QueueUrl"])
        current = now()
        if queue.purged_at is not None and current - queue.purged_at < PURGE_INTERVAL_S:
            raise SqsPurgeQueueInProgress(
                f"Only one PurgeQueue operation on {queue.name} is allowed every 60 seconds."
            )
        queue.purged_at = current
        self._forget(queue, queue.purge())
        return {}
