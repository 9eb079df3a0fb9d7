"""The SQS calls a consumer of job events makes, against localbatch and moto's SQS: the same shapes,
values and error codes.

What the executor will send: ReceiveMessage with WaitTimeSeconds (empty, then with messages and their
system attributes), DeleteMessageBatch (one good handle, one malformed), GetQueueAttributes (counts
and the ARN), and the error of a queue that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from lb_support import Server
from moto.server import ThreadedMotoServer

from devstack import aws_client
from devstack.clients import TESTING_CREDENTIALS

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:
        # moto's backends are process-wide: the next suite's moto server must not find these queues.
        httpx.post(f"{url}/moto-api/reset", timeout=10)
        server.stop()


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


def _scenario(url: str, credentials: Mapping[str, str]) -> dict[str, Any]:
    sqs = aws_client("sqs", url, credentials=credentials)
    out: dict[str, Any] = {}

    def step(name: str, call: Any, keep: Any = _shape) -> Any:
        try:
            result = call()
        except ClientError as error:
            out[name] = (
                "error",
                error.response["Error"]["Code"],
                error.response["Error"].get("QueryErrorCode"),
            )
            return None
        out[name] = ("ok", keep(result))
        return result

    queue_url = step("create_queue", lambda: sqs.create_queue(QueueName="contract-events"))["QueueUrl"]
    counts = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    step("receive_empty", lambda: sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1))
    for body in ('{"detail": 1}', '{"detail": 2}'):
        step("send_message", lambda b=body: sqs.send_message(QueueUrl=queue_url, MessageBody=b))
    received = step(
        "receive",
        lambda: sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=30,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        ),
    )
    step("received_bodies", lambda: [m["Body"] for m in received["Messages"]], keep=list)
    step(
        "received_counts",
        lambda: [m["Attributes"]["ApproximateReceiveCount"] for m in received["Messages"]],
        keep=list,
    )
    step(
        "attributes_in_flight",
        lambda: sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=counts)["Attributes"],
        keep=dict,
    )
    step(
        "queue_arn",
        lambda: sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]),
        keep=lambda r: r["Attributes"]["QueueArn"],
    )
    handle = received["Messages"][0]["ReceiptHandle"]
    step(
        "delete_message_batch",
        lambda: sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": "good", "ReceiptHandle": handle}, {"Id": "bad", "ReceiptHandle": "garbage"}],
        ),
        keep=lambda r: (r["Successful"], [(f["Id"], f["Code"], f["SenderFault"]) for f in r["Failed"]]),
    )
    step(
        "attributes_after_delete",
        lambda: sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=counts)["Attributes"],
        keep=dict,
    )
    step("empty_batch", lambda: sqs.delete_message_batch(QueueUrl=queue_url, Entries=[]))
    step("missing_queue", lambda: sqs.get_queue_url(QueueName="contract-missing"))
    missing_url = queue_url.replace("contract-events", "contract-missing")
    step("receive_missing", lambda: sqs.receive_message(QueueUrl=missing_url, WaitTimeSeconds=1))
    step("delete_queue", lambda: sqs.delete_queue(QueueUrl=queue_url))
    return out


def test_the_executors_sqs_calls_behave_as_on_moto(server: Server, moto_url: str) -> None:
    ours = _scenario(server.url, server.credentials)
    theirs = _scenario(moto_url, TESTING_CREDENTIALS)
    differences = {
        step: {"localbatch": ours[step], "moto": theirs.get(step)}
        for step in ours
        if ours[step] != theirs.get(step)
    }
    assert differences == {}
    assert ours.keys() == theirs.keys()
