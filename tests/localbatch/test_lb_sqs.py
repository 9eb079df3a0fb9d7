"""localbatch's SQS over real HTTP with boto3's sqs client: queues, long polling, visibility, batch
deletes, SQS's error codes, and admission on the SQS and EventBridge APIs."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from lb_support import Server, signed_request, start_server

pytestmark = pytest.mark.contract
SQS_JSON = {"Content-Type": "application/x-amz-json-1.0"}


def new_queue(sqs: Any, **attributes: str) -> str:
    url: str = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:12]}", Attributes=attributes)["QueueUrl"]
    return url


def code_of(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


def attributes(sqs: Any, url: str, *names: str) -> dict[str, str]:
    found: dict[str, str] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))["Attributes"]
    return found


def test_queue_lifecycle_and_sqs_error_codes(server: Server, sqs: Any) -> None:
    name = f"life-{uuid.uuid4().hex[:10]}"
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "45"}, tags={"team": "a"})[
        "QueueUrl"
    ]
    assert url == f"{server.url}/123456789012/{name}"
    # The same name and attributes: the same queue; different ones: refused.
    assert sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "45"})["QueueUrl"] == url
    assert code_of(lambda: sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "5"})) == (
        "QueueAlreadyExists"
    )
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    assert name in [u.rsplit("/", 1)[1] for u in sqs.list_queues(QueueNamePrefix="life-")["QueueUrls"]]
    got = attributes(sqs, url, "All")
    assert got["QueueArn"] == f"arn:aws:sqs:us-east-1:123456789012:{name}"
    assert (got["VisibilityTimeout"], got["MessageRetentionPeriod"]) == ("45", "345600")
    assert (got["ApproximateNumberOfMessages"], got["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
    policy = json.dumps({"Version": "2012-10-17", "Statement": []})
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={"VisibilityTimeout": "10", "MessageRetentionPeriod": "120", "Policy": policy},
    )
    got = attributes(sqs, url, "VisibilityTimeout", "MessageRetentionPeriod", "Policy", "RedrivePolicy")
    assert got == {"VisibilityTimeout": "10", "MessageRetentionPeriod": "120", "Policy": policy}
    assert code_of(
        lambda: sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "99999"})
    ) == ("InvalidAttributeValue")
    assert code_of(lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Nope"])) == (
        "InvalidAttributeName"
    )
    sqs.tag_queue(QueueUrl=url, Tags={"env": "test"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "test"}
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as missing:
        sqs.get_queue_url(QueueName=name)
    assert missing.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert code_of(lambda: sqs.receive_message(QueueUrl=url)) == "AWS.SimpleQueueService.NonExistentQueue"
    assert code_of(lambda: sqs.create_queue(QueueName=name)) == "AWS.SimpleQueueService.QueueDeletedRecently"
    assert (
        code_of(lambda: sqs.create_queue(QueueName="x.fifo")) == "AWS.SimpleQueueService.UnsupportedOperation"
    )


def test_list_queues_pages(sqs: Any) -> None:
    prefix = f"page-{uuid.uuid4().hex[:8]}-"
    names = [f"{prefix}{i}" for i in range(3)]
    for name in names:
        sqs.create_queue(QueueName=name)
    first = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
    second = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2, NextToken=first["NextToken"])
    seen = [u.rsplit("/", 1)[1] for u in first["QueueUrls"] + second["QueueUrls"]]
    assert seen == names and "NextToken" not in second
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix=f"none-{uuid.uuid4().hex}")


def test_long_poll_answers_as_soon_as_a_message_arrives(server: Server, sqs: Any) -> None:
    url = new_queue(sqs)
    answer: dict[str, Any] = {}

    def receive() -> None:
        started = time.monotonic()
        answer["result"] = server.client("sqs").receive_message(QueueUrl=url, WaitTimeSeconds=15)
        answer["took"] = time.monotonic() - started

    poller = threading.Thread(target=receive)
    poller.start()
    time.sleep(1.0)
    sent = sqs.send_message(QueueUrl=url, MessageBody="hello")
    poller.join(timeout=20)
    assert [m["Body"] for m in answer["result"]["Messages"]] == ["hello"]
    assert answer["result"]["Messages"][0]["MessageId"] == sent["MessageId"]
    assert 0.9 <= answer["took"] < 3.0


def test_long_poll_waits_up_to_wait_time_seconds(sqs: Any) -> None:
    url = new_queue(sqs, ReceiveMessageWaitTimeSeconds="1")
    started = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)
    assert 1.9 <= time.monotonic() - started < 3.5
    started = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url)  # the queue's own wait: 1 s
    assert 0.9 <= time.monotonic() - started < 2.5
    started = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    assert time.monotonic() - started < 0.8
    for bad in ({"WaitTimeSeconds": 21}, {"MaxNumberOfMessages": 11}, {"MaxNumberOfMessages": 0}):
        assert code_of(lambda b=bad: sqs.receive_message(QueueUrl=url, **b)) == "InvalidParameterValue"


def test_many_long_polls_hold_neither_the_server_nor_each_other(server: Server, batch: Any) -> None:
    urls = [new_queue(server.client("sqs")) for _ in range(12)]
    started = time.monotonic()
    with ThreadPoolExecutor(len(urls)) as pool:
        polls = [
            pool.submit(lambda u=url: server.client("sqs").receive_message(QueueUrl=u, WaitTimeSeconds=3))
            for url in urls
        ]
        time.sleep(0.5)
        asked = time.monotonic()
        batch.describe_job_queues()
        assert time.monotonic() - asked < 1.0
        assert all("Messages" not in poll.result(timeout=20) for poll in polls)
    # Twelve 3 s waits served one after another would take 36 s.
    assert time.monotonic() - started < 8


def test_a_message_not_deleted_comes_back_after_its_visibility_timeout(sqs: Any) -> None:
    url = new_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="again")
    names = ["ApproximateReceiveCount", "SentTimestamp"]
    (first,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1, MessageSystemAttributeNames=names)[
        "Messages"
    ]
    assert first["Attributes"]["ApproximateReceiveCount"] == "1"
    assert abs(int(first["Attributes"]["SentTimestamp"]) / 1000 - time.time()) < 5
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    counts = attributes(sqs, url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
    assert counts == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "1"}
    # Due again while a long poll waits: it answers then, not at the end of its wait.
    started = time.monotonic()
    (second,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10, AttributeNames=["All"])["Messages"]
    assert time.monotonic() - started < 3
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    # Like AWS: a receipt handle of an earlier receive deletes nothing (and fails nothing).
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    assert attributes(sqs, url, "ApproximateNumberOfMessagesNotVisible") == {
        "ApproximateNumberOfMessagesNotVisible": "1"
    }
    sqs.delete_message(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"])
    assert attributes(sqs, url, "ApproximateNumberOfMessagesNotVisible") == {
        "ApproximateNumberOfMessagesNotVisible": "0"
    }
    assert (
        code_of(lambda: sqs.delete_message(QueueUrl=url, ReceiptHandle="garbage")) == "ReceiptHandleIsInvalid"
    )


def test_change_message_visibility(sqs: Any) -> None:
    url = new_queue(sqs)
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)["Messages"]
    assert [m["Body"] for m in received] == ["a", "b"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=received[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["a"]
    answer = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "b", "ReceiptHandle": received[1]["ReceiptHandle"], "VisibilityTimeout": 0},
            {"Id": "stale", "ReceiptHandle": received[0]["ReceiptHandle"], "VisibilityTimeout": 0},
        ],
    )
    assert answer["Successful"] == [{"Id": "b"}]
    assert [(f["Id"], f["Code"]) for f in answer["Failed"]] == [("stale", "MessageNotInflight")]
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["b"]


def test_delete_message_batch(sqs: Any) -> None:
    url = new_queue(sqs)
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in received] == ["m0", "m1", "m2"]
    entries = [{"Id": f"e{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received[:2])]
    answer = sqs.delete_message_batch(
        QueueUrl=url, Entries=[*entries, {"Id": "bad", "ReceiptHandle": "not-a-handle"}]
    )
    assert answer["Successful"] == [{"Id": "e0"}, {"Id": "e1"}]
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in answer["Failed"]] == [
        ("bad", "ReceiptHandleIsInvalid", True)
    ]
    counts = attributes(sqs, url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
    assert counts == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "1"}
    handle = received[2]["ReceiptHandle"]
    assert code_of(lambda: sqs.delete_message_batch(QueueUrl=url, Entries=[])) == (
        "AWS.SimpleQueueService.EmptyBatchRequest"
    )
    eleven = [{"Id": f"e{i}", "ReceiptHandle": handle} for i in range(11)]
    assert code_of(lambda: sqs.delete_message_batch(QueueUrl=url, Entries=eleven)) == (
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    )
    twice = [{"Id": "same", "ReceiptHandle": handle}] * 2
    assert code_of(lambda: sqs.delete_message_batch(QueueUrl=url, Entries=twice)) == (
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    )


def test_send_any_body_purge_and_refusals(sqs: Any) -> None:
    url = new_queue(sqs)
    sent = sqs.send_message(QueueUrl=url, MessageBody="not an event {")
    assert sent["MD5OfMessageBody"] == hashlib.md5(b"not an event {").hexdigest()
    (message,) = sqs.receive_message(QueueUrl=url)["Messages"]
    assert message["Body"] == "not an event {" and message["MD5OfBody"] == sent["MD5OfMessageBody"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)
    assert attributes(sqs, url, "ApproximateNumberOfMessagesDelayed") == {
        "ApproximateNumberOfMessagesDelayed": "1"
    }
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]] == ["later"]
    sqs.send_message(QueueUrl=url, MessageBody="purged")
    sqs.purge_queue(QueueUrl=url)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    assert code_of(lambda: sqs.purge_queue(QueueUrl=url)) == "AWS.SimpleQueueService.PurgeQueueInProgress"
    attributes_call = {"a": {"DataType": "String", "StringValue": "x"}}
    assert code_of(
        lambda: sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes=attributes_call)
    ) == ("AWS.SimpleQueueService.UnsupportedOperation")


@pytest.mark.parametrize(
    ("target", "body"),
    [
        pytest.param("AmazonSQS.ListQueues", b"{}", id="sqs"),
        pytest.param("AWSEvents.ListRules", b"{}", id="events"),
    ],
)
def test_admission_refuses_unadmitted_callers_on_the_new_apis(
    server: Server, target: str, body: bytes
) -> None:
    service = "sqs" if target.startswith("AmazonSQS") else "events"
    media = "application/x-amz-json-1.0" if service == "sqs" else "application/x-amz-json-1.1"
    headers = {"X-Amz-Target": target, "Content-Type": media}
    assert signed_request(server, "POST", "/", body, headers, service=service).status_code == 200
    refused = {
        "unsigned": httpx.post(f"{server.url}/", content=body, headers=headers, timeout=10),
        "browser": httpx.post(
            f"{server.url}/",
            content=body,
            headers={"X-Amz-Target": target, "Content-Type": "text/plain", "Origin": "http://evil.example"},
            timeout=10,
        ),
        "foreign-host": signed_request(
            server, "POST", "/", body, headers, service=service, host="evil.example"
        ),
        "wrong-key": signed_request(
            server,
            "POST",
            "/",
            body,
            headers,
            service=service,
            credentials={"aws_access_key_id": "AKIDNOPE", "aws_secret_access_key": "nope"},
        ),
    }
    assert {name: answer.status_code for name, answer in refused.items()} == dict.fromkeys(refused, 403)


def test_a_stop_does_not_wait_for_long_polls(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        sqs = server.client("sqs")
        url = new_queue(sqs)
        answer: dict[str, Any] = {}
        poller = threading.Thread(
            target=lambda: answer.update(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20))
        )
        poller.start()
        time.sleep(1.0)
        started = time.monotonic()
    finally:
        server.stop()
    assert time.monotonic() - started < 8
    poller.join(timeout=20)
    assert "Messages" not in answer


@pytest.mark.usefixtures("clean_faults")
def test_request_faults_answer_in_the_errors_of_sqs_and_eventbridge(server: Server, sqs: Any) -> None:
    url = new_queue(sqs)
    no_retry = {"retries": {"mode": "standard", "total_max_attempts": 1}}
    server.set_faults({"denied": ["ReceiveMessage"], "quotas": {"ListRules": 1, "ListQueues": 1}})
    assert code_of(lambda: sqs.receive_message(QueueUrl=url)) == "AccessDenied"
    calls = {
        "sqs": lambda: server.client("sqs", **no_retry).list_queues(),
        "events": lambda: server.client("events", **no_retry).list_rules(),
    }
    for service, call in calls.items():
        codes = set()
        for _ in range(4):
            try:
                call()
                codes.add("ok")
            except ClientError as error:
                codes.add(error.response["Error"]["Code"])
        expected = "RequestThrottled" if service == "sqs" else "ThrottlingException"
        assert codes == {"ok", expected}, service
    server.set_faults({"error_rate": 1.0})
    assert code_of(lambda: server.client("sqs", **no_retry).list_queues()) == "InternalError"
    assert code_of(lambda: server.client("events", **no_retry).list_rules()) == "InternalException"
