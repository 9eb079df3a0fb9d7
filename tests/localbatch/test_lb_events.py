"""Batch job state change events over real HTTP: an EventBridge rule (boto3's events client) sends them
to an SQS queue (boto3's sqs client), in AWS's shape, with the event faults, across a restart."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from lb_support import Env, Server, describe, make_env, run, shape_errors, start_server, wait_status

from localbatch.protocol import service_model

pytestmark = [pytest.mark.contract, pytest.mark.usefixtures("clean_faults")]

# The example event of https://docs.aws.amazon.com/batch/latest/userguide/batch_job_events.html: its
# top-level keys in their order, and the members its detail and detail.container show.
AWS_EXAMPLE_KEYS = [
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
]
AWS_EXAMPLE_DETAIL = {
    *("jobArn", "jobName", "jobId", "jobQueue", "status", "attempts", "createdAt", "retryStrategy"),
    *(
        "dependsOn",
        "jobDefinition",
        "parameters",
        "container",
        "tags",
        "propagateTags",
        "platformCapabilities",
    ),
}
AWS_EXAMPLE_CONTAINER = {
    *("image", "command", "volumes", "environment", "mountPoints", "ulimits", "networkInterfaces"),
    *("resourceRequirements", "secrets"),
}
RUN = ["PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
DOC = Path(__file__).resolve().parents[2] / "docs" / "localbatch.md"
Listen = Callable[..., str]


def queue_arn(batch: Any, env: Env) -> str:
    arn: str = batch.describe_job_queues(jobQueues=[env.queue])["jobQueues"][0]["jobQueueArn"]
    return arn


def subscribe(server: Server, job_queue_arns: list[str], **rule: Any) -> tuple[str, str]:
    """An SQS queue and a rule that sends it the job events of ``job_queue_arns``: (URL, rule name)."""
    sqs, events = server.client("sqs"), server.client("events")
    name = f"ev-{uuid.uuid4().hex[:12]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {
        "source": ["aws.batch"],
        "detail-type": ["Batch Job State Change"],
        "detail": {"jobQueue": job_queue_arns},
    }
    events.put_rule(Name=name, EventPattern=json.dumps(pattern), **rule)
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
    return url, name


@pytest.fixture
def listen(server: Server) -> Iterator[Listen]:
    """``listen(env, ...)``: a queue getting the events of ``env``'s job queue; rules removed after."""
    rules: list[str] = []

    def make(*envs: Env, **rule: Any) -> str:
        batch = server.client("batch")
        url, name = subscribe(server, [queue_arn(batch, env) for env in envs], **rule)
        rules.append(name)
        return url

    yield make
    events = server.client("events")
    for name in rules:
        events.remove_targets(Rule=name, Ids=["queue"])
        events.delete_rule(Name=name)


def drain(sqs: Any, url: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The next ``count`` messages of ``url`` (deleted as they come), each with its event parsed."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        answer = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
        )
        for message in answer.get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            got.append({**message, "event": json.loads(message["Body"])})
    return got


def statuses(messages: list[dict[str, Any]], job_id: str | None = None) -> list[str]:
    return [
        m["event"]["detail"]["status"] for m in messages if job_id in (None, m["event"]["detail"]["jobId"])
    ]


def quiet(sqs: Any, url: str, seconds: float = 1.0) -> bool:
    return "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=int(seconds))


def test_event_has_aws_shape_and_the_job_as_describe_jobs_shows_it(
    batch: Any, sqs: Any, env: Env, listen: Listen
) -> None:
    url = listen(env)
    job_id = run(batch, env, ["true"], name="shape", retryStrategy={"attempts": 2}, tags={"k": "v"})
    final = wait_status(batch, job_id)
    messages = drain(sqs, url, 5)
    assert statuses(messages) == RUN
    runnable = messages[1]["event"]
    assert list(runnable) == AWS_EXAMPLE_KEYS
    assert (runnable["version"], runnable["detail-type"], runnable["source"]) == (
        "0",
        "Batch Job State Change",
        "aws.batch",
    )
    assert (runnable["account"], runnable["region"]) == ("123456789012", "us-east-1")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", runnable["time"])
    stamp = datetime.datetime.strptime(runnable["time"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(stamp.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time()) < 60
    assert runnable["resources"] == [final["jobArn"]]
    detail = runnable["detail"]
    assert set(detail) >= AWS_EXAMPLE_DETAIL
    assert set(detail["container"]) >= AWS_EXAMPLE_CONTAINER
    assert (detail["jobId"], detail["jobQueue"], detail["tags"]) == (job_id, final["jobQueue"], {"k": "v"})
    assert (detail["attempts"], detail["retryStrategy"]["attempts"]) == ([], 2)
    for message in messages:
        assert shape_errors(message["event"]["detail"], service_model("batch").shape_for("JobDetail")) == []
    # Each event's id is its own; the last one's detail is what DescribeJobs says of the finished job.
    assert len({m["event"]["id"] for m in messages}) == 5
    assert messages[-1]["event"]["detail"] == final
    running = messages[3]["event"]["detail"]
    assert running["startedAt"] == final["startedAt"] and "stoppedAt" not in running


def test_a_retried_job_reports_every_change_and_nothing_for_its_submission(
    batch: Any, sqs: Any, env: Env, listen: Listen
) -> None:
    url = listen(env)
    job_id = run(batch, env, ["sh", "-c", "exit 3"], name="retried", retryStrategy={"attempts": 2})
    assert wait_status(batch, job_id)["status"] == "FAILED"
    messages = drain(sqs, url, 8)
    assert statuses(messages) == [*RUN[:4], "RUNNABLE", "STARTING", "RUNNING", "FAILED"]
    assert [len(m["event"]["detail"]["attempts"]) for m in messages] == [0, 0, 1, 1, 1, 2, 2, 2]
    assert quiet(sqs, url)


def test_a_rule_for_one_job_queue_gets_no_event_of_another(
    server: Server, batch: Any, sqs: Any, listen: Listen
) -> None:
    mine, other = make_env(batch), make_env(batch)
    mine_url, other_url = listen(mine), listen(other)
    ours = run(batch, mine, ["true"], name="mine")
    theirs = run(batch, other, ["true"], name="theirs")
    wait_status(batch, ours), wait_status(batch, theirs)
    assert {m["event"]["detail"]["jobId"] for m in drain(sqs, mine_url, 5)} == {ours}
    assert {m["event"]["detail"]["jobId"] for m in drain(sqs, other_url, 5)} == {theirs}
    assert quiet(sqs, mine_url) and quiet(sqs, other_url)


def test_array_parent_and_children_each_report_their_changes(
    batch: Any, sqs: Any, env: Env, listen: Listen
) -> None:
    url = listen(env)
    parent = run(batch, env, ["true"], name="array", arrayProperties={"size": 2})
    wait_status(batch, parent)
    messages = drain(sqs, url, 12)
    assert statuses(messages, f"{parent}:0") == RUN
    assert statuses(messages, f"{parent}:1") == RUN
    assert statuses(messages, parent) == ["PENDING", "SUCCEEDED"]
    order = [(m["event"]["detail"]["jobId"], m["event"]["detail"]["status"]) for m in messages]
    # A child's change goes out before the change of its parent it causes.
    first_runnable = min(order.index((f"{parent}:{i}", "RUNNABLE")) for i in range(2))
    assert order.index((parent, "PENDING")) == first_runnable + 1
    assert order[-1] == (parent, "SUCCEEDED")
    child = next(m["event"] for m in messages if m["event"]["detail"]["jobId"] == f"{parent}:1")
    assert child["resources"] == [f"{describe(batch, parent)['jobArn']}:1"]
    assert child["detail"]["arrayProperties"] == {"index": 1}
    summary = messages[-1]["event"]["detail"]["arrayProperties"]["statusSummary"]
    assert summary["SUCCEEDED"] == 2


def test_event_rules_api(server: Server, eventbridge: Any, sqs: Any, batch: Any, env: Env) -> None:
    url, name = subscribe(server, [queue_arn(batch, env)], Description="ours")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = eventbridge.describe_rule(Name=name)
    assert (rule["Arn"], rule["State"], rule["Description"], rule["EventBusName"]) == (
        f"arn:aws:events:us-east-1:123456789012:rule/{name}",
        "ENABLED",
        "ours",
        "default",
    )
    assert json.loads(rule["EventPattern"])["detail"]["jobQueue"] == [queue_arn(batch, env)]
    assert [r["Name"] for r in eventbridge.list_rules(NamePrefix=name)["Rules"]] == [name]
    assert eventbridge.list_targets_by_rule(Rule=name)["Targets"] == [{"Id": "queue", "Arn": arn}]

    def code(call: Callable[[], Any]) -> str:
        with pytest.raises(ClientError) as caught:
            call()
        return str(caught.value.response["Error"]["Code"])

    assert code(lambda: eventbridge.describe_rule(Name="missing")) == "ResourceNotFoundException"
    assert code(lambda: eventbridge.put_targets(Rule="missing", Targets=[{"Id": "a", "Arn": arn}])) == (
        "ResourceNotFoundException"
    )
    assert code(lambda: eventbridge.put_rule(Name="bad", EventPattern='{"source": "aws.batch"}')) == (
        "InvalidEventPatternException"
    )
    assert code(lambda: eventbridge.put_rule(Name="sched", ScheduleExpression="rate(1 minute)")) == (
        "ValidationException"
    )
    lambda_arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
    assert code(lambda: eventbridge.put_targets(Rule=name, Targets=[{"Id": "l", "Arn": lambda_arn}])) == (
        "ValidationException"
    )
    path_target = {"Id": "p", "Arn": arn, "InputPath": "$.detail"}
    assert code(lambda: eventbridge.put_targets(Rule=name, Targets=[path_target])) == "ValidationException"
    assert code(lambda: eventbridge.delete_rule(Name=name)) == "ValidationException"  # it has targets
    # Disabled, the rule sends nothing.
    eventbridge.put_rule(Name=name, EventPattern=rule["EventPattern"], State="DISABLED")
    wait_status(batch, run(batch, env, ["true"], name="unheard"))
    assert quiet(sqs, url)
    eventbridge.remove_targets(Rule=name, Ids=["queue"])
    assert eventbridge.list_targets_by_rule(Rule=name)["Targets"] == []
    eventbridge.delete_rule(Name=name)
    eventbridge.delete_rule(Name=name)  # as on AWS, deleting twice succeeds
    assert code(lambda: eventbridge.describe_rule(Name=name)) == "ResourceNotFoundException"


def test_a_target_whose_queue_is_gone_loses_the_event(
    server: Server, batch: Any, sqs: Any, env: Env, listen: Listen
) -> None:
    url = listen(env)
    sqs.delete_queue(QueueUrl=url)
    before = server.admin("GET", "health").json()["events"]
    wait_status(batch, run(batch, env, ["true"], name="lost"))
    after = server.admin("GET", "health").json()["events"]
    assert after["undeliverable"] - before["undeliverable"] == 5


def test_dropped_events_never_arrive(server: Server, batch: Any, sqs: Any, env: Env, listen: Listen) -> None:
    url = listen(env)
    server.set_faults({"events": {"drop_rate": 1.0}})
    before = server.admin("GET", "health").json()["events"]
    wait_status(batch, run(batch, env, ["true"], name="dropped"))
    assert quiet(sqs, url, 2)
    after = server.admin("GET", "health").json()["events"]
    assert (after["dropped"] - before["dropped"], after["delivered"] - before["delivered"]) == (5, 0)


def test_duplicated_events_arrive_twice(
    server: Server, batch: Any, sqs: Any, env: Env, listen: Listen
) -> None:
    url = listen(env)
    server.set_faults({"events": {"duplicate_rate": 1.0}})
    wait_status(batch, run(batch, env, ["true"], name="twice"))
    messages = drain(sqs, url, 10)
    assert statuses(messages) == [status for status in RUN for _ in range(2)]
    assert set(Counter(m["event"]["id"] for m in messages).values()) == {2}
    assert len({m["MessageId"] for m in messages}) == 10
    assert quiet(sqs, url)


def test_delayed_events_arrive_late(server: Server, batch: Any, sqs: Any, env: Env, listen: Listen) -> None:
    url = listen(env)
    server.set_faults({"events": {"delay_rate": 1.0, "delay_seconds": [3.0, 3.0]}})
    job_id = run(batch, env, ["true"], name="late")
    submitted = time.time()
    wait_status(batch, job_id)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    messages = drain(sqs, url, 5)
    assert statuses(messages) == RUN
    for message in messages:
        sent = int(message["Attributes"]["SentTimestamp"]) / 1000
        assert sent - submitted >= 2.9
        changed = datetime.datetime.strptime(message["event"]["time"], "%Y-%m-%dT%H:%M:%SZ")
        assert sent - changed.replace(tzinfo=datetime.timezone.utc).timestamp() >= 2.0


def test_reordered_events_arrive_swapped(
    server: Server, batch: Any, sqs: Any, env: Env, listen: Listen
) -> None:
    url = listen(env)
    server.set_faults({"rules": [{"job_name_contains": "swapped", "fault": "reorder_event", "times": 1}]})
    wait_status(batch, run(batch, env, ["true"], name="swapped"))
    assert statuses(drain(sqs, url, 5)) == ["RUNNABLE", "PENDING", "STARTING", "RUNNING", "SUCCEEDED"]
    # Every delivery chosen: each pair swaps, and the last one, with nothing after it, comes ~2 s late.
    server.set_faults({"events": {"reorder_rate": 1.0}})
    job_id = run(batch, env, ["true"], name="all-swapped")
    wait_status(batch, job_id)
    finished = time.monotonic()
    messages = drain(sqs, url, 5)
    assert statuses(messages) == ["RUNNABLE", "PENDING", "RUNNING", "STARTING", "SUCCEEDED"]
    assert time.monotonic() - finished >= 1.0


def test_rules_queues_and_messages_survive_a_restart(tmp_path: Path) -> None:
    first = start_server(tmp_path / "data")
    try:
        batch = first.client("batch")
        env = make_env(batch)
        url, name = subscribe(first, [queue_arn(batch, env)])
        sqs = first.client("sqs")
        wait_status(batch, run(batch, env, ["true"], name="before"))
        running = run(batch, env, ["sleep", "60"], name="lost")
        wait_status(batch, running, "RUNNING")
        # One message in flight when the server dies: visible again at once after the restart.
        assert len(sqs.receive_message(QueueUrl=url, VisibilityTimeout=600)["Messages"]) == 1
        # Writes reach SQLite within ~50 ms of a change; give the writer that long before a hard kill.
        time.sleep(0.5)
    finally:
        first.stop(signal.SIGKILL)
    second = start_server(tmp_path / "data")
    try:
        batch, sqs = second.client("batch"), second.client("sqs")
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        assert second.client("events").describe_rule(Name=name)["State"] == "ENABLED"
        messages = drain(sqs, url, 10)
        # The first job's five, the lost job's four before the kill and its FAILED at the restart.
        assert statuses(messages) == [*RUN, *RUN[:4], "FAILED"]
        assert messages[-1]["event"]["detail"]["statusReason"].startswith("localbatch restarted: ")
        wait_status(batch, run(batch, env, ["true"], name="after"))
        assert statuses(drain(sqs, url, 5)) == RUN
        assert second.shape_problems == []
    finally:
        second.stop()


def test_the_documented_example_receives_the_events_of_a_job(server: Server, batch: Any) -> None:
    subprocess.run(
        [sys.executable, "-m", "localbatch", "setup", "--endpoint-url", server.url],
        check=True,
        capture_output=True,
        timeout=60,
        env={**os.environ, **server.aws_env()},
    )
    section = DOC.read_text().split("## Job state change events", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    keys = server.credentials
    code = (
        code.replace("http://127.0.0.1:8000", server.url)
        .replace('aws_access_key_id="testing"', f'aws_access_key_id="{keys["aws_access_key_id"]}"')
        .replace(
            'aws_secret_access_key="testing"', f'aws_secret_access_key="{keys["aws_secret_access_key"]}"'
        )
    )
    # As a user would, run a job between setting the rule up and receiving.
    set_up, receive = code.split("messages = ", 1)
    scope: dict[str, Any] = {}
    exec(compile(set_up, "docs/localbatch.md", "exec"), scope)
    try:
        job_id = batch.submit_job(
            jobName="documented",
            jobQueue="airflow-jobs",
            jobDefinition="airflow-task",
            containerOverrides={"command": ["true"]},
        )["jobId"]
        wait_status(batch, job_id)
        exec(compile("messages = " + receive, "docs/localbatch.md", "exec"), scope)
        events = [json.loads(m["Body"]) for m in scope["messages"]["Messages"]]
        assert [(e["detail"]["jobId"], e["detail"]["status"]) for e in events] == [(job_id, s) for s in RUN]
    finally:
        scope["events"].remove_targets(Rule="batch-events", Ids=["queue"])
        scope["events"].delete_rule(Name="batch-events")
