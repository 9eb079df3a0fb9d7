"""SQS, as much as a consumer of EventBridge events needs: standard queues, long polling, visibility.

Served with botocore's JSON protocol (``X-Amz-Target: AmazonSQS.<Operation>``, JSON 1.0), which every
botocore this project supports speaks to SQS; errors carry SQS's query-protocol codes (e.g.
``AWS.SimpleQueueService.NonExistentQueue``) the way SQS sends them, so boto3's modeled exceptions
(``client.exceptions.QueueDoesNotExist``) work. Queue URLs are ``http://<this host>/<account>/<name>``;
only their path is read back.

Queues, their attributes and tags, and every message not yet deleted are kept in the store: a restart
keeps them (what was in flight is visible again at once). Not emulated: FIFO queues, message
attributes, dead-letter queues (``RedrivePolicy``), encryption, permissions (``Policy`` is stored, not
enforced) and SQS's sampling of servers (a short poll returns every visible message up to the limit).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from localbatch.errors import (
    SqsError,
    SqsInvalidAttributeName,
    SqsInvalidAttributeValue,
    SqsQueueDeletedRecently,
    SqsQueueDoesNotExist,
    SqsQueueNameExists,
    SqsUnsupportedOperation,
)
from localbatch.models import ACCOUNT_ID
from localbatch.protocol import service_model
from localbatch.sqs_messages import SqsMessages, between
from localbatch.sqs_queue import Message, Queue, now
from localbatch.store import Store

QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
#: AWS refuses to create a queue named like one deleted within a minute.
RECREATE_INTERVAL_S = 60.0
#: Settable attributes: (least, most) for the numeric ones; None: any text (Policy: JSON).
SETTABLE: dict[str, tuple[int, int] | None] = {
    "VisibilityTimeout": (0, 43200),
    "MessageRetentionPeriod": (60, 1209600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 1048576),
    "Policy": None,
    "SqsManagedSseEnabled": None,
}


@cache
def _attribute_names() -> frozenset[str]:
    """Every queue attribute SQS knows (its model's enum), settable here or not."""
    shape = service_model("sqs").shape_for("QueueAttributeName")
    return frozenset(shape.enum)  # type: ignore[attr-defined]  # a StringShape


class SqsBackend(SqsMessages):
    """The SQS API: the queues here, their messages in localbatch.sqs_messages.SqsMessages."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._deleted_at: dict[str, float] = {}
        self._operations: dict[str, Callable[[dict[str, Any], str, str], dict[str, Any]]] = {
            "CreateQueue": self.create_queue,
            "GetQueueUrl": self.get_queue_url,
            "GetQueueAttributes": self.get_queue_attributes,
            "SetQueueAttributes": self.set_queue_attributes,
            "DeleteMessage": self.delete_message,
            "DeleteMessageBatch": self.delete_message_batch,
            "ChangeMessageVisibility": self.change_message_visibility,
            "ChangeMessageVisibilityBatch": self.change_message_visibility_batch,
            "SendMessage": self.send_message,
            "PurgeQueue": self.purge_queue,
            "DeleteQueue": self.delete_queue,
            "ListQueues": self.list_queues,
            "TagQueue": self.tag_queue,
            "UntagQueue": self.untag_queue,
            "ListQueueTags": self.list_queue_tags,
        }

    # -- lifecycle ---------------------------------------------------------------------------------
    def load(self) -> None:
        for record in self.store.load("sqs_queue"):
            queue = Queue.from_record(record)
            self.queues[queue.name] = queue
        records = sorted(self.store.load("sqs_message"), key=lambda r: (r["sent_at"], r["seq"]))
        for record in records:
            owner = self.queues.get(record["queue"])
            if owner is not None:
                owner.add(Message(record["id"], record["body"], record["sent_at"], record["sender_id"]))

    async def dispatch(
        self, operation: str, params: dict[str, Any], region: str, host: str
    ) -> dict[str, Any]:
        if operation == "ReceiveMessage":
            return await self.receive_message(params, host)
        method = self._operations.get(operation)
        if method is None:
            raise SqsUnsupportedOperation(f"localbatch does not implement {operation}")
        return method(params, region, host)

    # -- API -----------------------------------------------------------------------------------------
    def _check_attributes(self, attributes: dict[str, str]) -> dict[str, str]:
        checked = {}
        for name, value in attributes.items():
            if name not in _attribute_names():
                raise SqsInvalidAttributeName(f"Unknown Attribute {name}.")
            if name not in SETTABLE:
                raise SqsInvalidAttributeName(f"localbatch does not support the queue attribute {name}.")
            bounds = SETTABLE[name]
            try:
                if bounds is not None and not bounds[0] <= int(value) <= bounds[1]:
                    raise ValueError(value)
                if name == "Policy" and value and not isinstance(json.loads(value), dict):
                    raise ValueError(value)
            except ValueError as exc:
                raise SqsInvalidAttributeValue(f"Invalid value for the parameter {name}.") from exc
            checked[name] = str(int(value)) if bounds is not None else value
        return checked

    def create_queue(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        name = p["QueueName"]
        if name.endswith(".fifo") or p.get("Attributes", {}).get("FifoQueue") == "true":
            raise SqsUnsupportedOperation("localbatch serves standard queues only, not FIFO queues.")
        if not QUEUE_NAME_RE.match(name):
            raise SqsError(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
            )
        attributes = self._check_attributes(p.get("Attributes", {}))
        existing = self.queues.get(name)
        if existing is not None:
            for key, value in attributes.items():
                if existing.attributes.get(key) != value:
                    raise SqsQueueNameExists(
                        f"A queue already exists with the same name and a different value for attribute {key}"
                    )
            return {"QueueUrl": self.url(existing, host)}
        deleted = self._deleted_at.get(name)
        if deleted is not None and now() - deleted < RECREATE_INTERVAL_S:
            raise SqsQueueDeletedRecently(
                "You must wait 60 seconds after deleting a queue before you can create another with "
                "the same name."
            )
        created = now()
        queue = Queue(name=name, region=region, created_at=created, last_modified=created)
        queue.attributes.update(attributes)
        queue.tags.update(p.get("tags", {}))
        self.queues[name] = queue
        self.store.put("sqs_queue", name, queue.to_record())
        return {"QueueUrl": self.url(queue, host)}

    def get_queue_url(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self.queues.get(p["QueueName"])
        owner = p.get("QueueOwnerAWSAccountId", ACCOUNT_ID)
        if queue is None or owner != ACCOUNT_ID:
            raise SqsQueueDoesNotExist("The specified queue does not exist.")
        return {"QueueUrl": self.url(queue, host)}

    def get_queue_attributes(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self._queue(p["QueueUrl"])
        self._refresh(queue)
        wanted = list(p.get("AttributeNames", []))
        for name in wanted:
            if name != "All" and name not in _attribute_names():
                raise SqsInvalidAttributeName(f"Unknown Attribute {name}.")
        computed = {
            "QueueArn": queue.arn,
            "ApproximateNumberOfMessages": str(queue.counts["visible"]),
            "ApproximateNumberOfMessagesNotVisible": str(queue.counts["in_flight"]),
            "ApproximateNumberOfMessagesDelayed": str(queue.counts["delayed"]),
            "CreatedTimestamp": str(int(queue.created_at)),
            "LastModifiedTimestamp": str(int(queue.last_modified)),
        }
        every = {**computed, **queue.attributes}
        names = list(every) if "All" in wanted else wanted
        attributes = {name: every[name] for name in names if name in every}
        return {"Attributes": attributes} if attributes else {}

    def set_queue_attributes(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self._queue(p["QueueUrl"])
        queue.attributes.update(self._check_attributes(p["Attributes"]))
        queue.last_modified = now()
        self.store.put("sqs_queue", queue.name, queue.to_record())
        return {}

    def delete_queue(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self._queue(p["QueueUrl"])
        self._forget(queue, queue.purge())
        del self.queues[queue.name]
        self._deleted_at[queue.name] = now()
        self.store.delete("sqs_queue", queue.name)
        queue.wake_all()
        return {}

    def list_queues(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        prefix = p.get("QueueNamePrefix", "")
        limit = p.get("MaxResults")
        between("MaxResults", limit, 1, 1000)
        names = sorted(name for name in self.queues if name.startswith(prefix))
        token = p.get("NextToken")
        if token:
            names = [name for name in names if name > token]
        page = names if limit is None else names[:limit]
        result: dict[str, Any] = {}
        if page:
            result["QueueUrls"] = [self.url(self.queues[name], host) for name in page]
        if limit is not None and len(names) > limit:
            result["NextToken"] = page[-1]
        return result

    def tag_queue(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self._queue(p["QueueUrl"])
        queue.tags.update(p["Tags"])
        self.store.put("sqs_queue", queue.name, queue.to_record())
        return {}

    def untag_queue(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self._queue(p["QueueUrl"])
        for key in p["TagKeys"]:
            queue.tags.pop(key, None)
        self.store.put("sqs_queue", queue.name, queue.to_record())
        return {}

    def list_queue_tags(self, p: dict[str, Any], region: str, host: str) -> dict[str, Any]:
        queue = self._queue(p["QueueUrl"])
        return {"Tags": dict(queue.tags)} if queue.tags else {}

    def counts(self) -> dict[str, int]:
        """For ``GET /_localbatch/health``: queues and the messages they hold."""
        return {
            "queues": len(self.queues),
            "messages": sum(len(queue.messages) for queue in self.queues.values()),
        }
