"""``check``'s status events line against localbatch's SQS and EventBridge (real HTTP): what it says
for a queue wired as ``render --status-events`` wires it, and for each way events would not arrive."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from airflow_aws_batch.ops.check_events import status_events_line
from devstack import LocalBatchServer

pytestmark = pytest.mark.contract

RunAirflow = Callable[[list[str], Mapping[str, str]], subprocess.CompletedProcess[str]]
JOB_QUEUE = "events-check-jobs"


@pytest.fixture(scope="module")
def job_queue_arn(localbatch: LocalBatchServer, execution_api_url: str) -> str:
    localbatch.setup(
        job_queue=JOB_QUEUE,
        job_definition="airflow-task",
        api_server_url=execution_api_url.removesuffix("/execution/"),
    )
    arn: str = localbatch.batch.describe_job_queues(jobQueues=[JOB_QUEUE])["jobQueues"][0]["jobQueueArn"]
    return arn


def wire(
    localbatch: LocalBatchServer,
    job_queue_arns: list[str],
    *,
    policy: bool = True,
    state: str = "ENABLED",
    target: bool = True,
) -> str:
    """A queue, a rule for ``job_queue_arns`` and (``policy``) the queue policy letting that rule
    write, as the rendered template makes them; the queue's URL."""
    sqs, events = localbatch.client("sqs"), localbatch.client("events")
    name = f"check-{uuid.uuid4().hex[:10]}"
    url: str = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {
        "source": ["aws.batch"],
        "detail-type": ["Batch Job State Change"],
        "detail": {"jobQueue": job_queue_arns},
    }
    rule_arn = events.put_rule(Name=name, EventPattern=json.dumps(pattern), State=state)["RuleArn"]
    if target:
        events.put_targets(Rule=name, Targets=[{"Id": "scheduler", "Arn": queue_arn}])
    if policy:
        document = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                }
            ],
        }
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(document)})
    return url


def line(localbatch: LocalBatchServer, queue: str, job_queue_arn: str) -> tuple[str, str]:
    return status_events_line(queue, localbatch.client("sqs"), localbatch.client("events"), job_queue_arn)


def test_check_says_ok_for_a_queue_wired_as_rendered(
    *,
    run_airflow: RunAirflow,
    airflow_env: Callable[..., dict[str, str]],
    localbatch: LocalBatchServer,
    job_queue_arn: str,
    tmp_path: Path,
) -> None:
    url = wire(localbatch, [job_queue_arn])
    env = airflow_env(
        tmp_path,
        localbatch,
        job_queue=JOB_QUEUE,
        job_definition="airflow-task",
        job_name="airflow",
        status_events=url,
    )
    result = run_airflow(["check"], env)
    (found,) = [text for text in result.stdout.splitlines() if "status events" in text]
    assert found.startswith("OK") and "sends it the job state changes of" in found, result.stdout


@pytest.mark.parametrize(
    ("wiring", "says"),
    [
        pytest.param({"policy": False}, "its policy lets no EventBridge rule send to it", id="no-policy"),
        pytest.param({"state": "DISABLED"}, "it is DISABLED", id="rule-disabled"),
        pytest.param({"target": False}, "it does not target this queue", id="no-target"),
        pytest.param({"other_queue": True}, "detail.jobQueue does not name", id="other-job-queue"),
    ],
)
def test_each_way_events_would_not_arrive_is_a_warning_naming_it(
    localbatch: LocalBatchServer, job_queue_arn: str, wiring: dict[str, Any], says: str
) -> None:
    queues = [job_queue_arn.replace(JOB_QUEUE, "someone-elses")] if wiring.pop("other_queue", False) else None
    url = wire(localbatch, queues or [job_queue_arn], **wiring)
    status, detail = line(localbatch, url, job_queue_arn)
    assert status == "WARN" and says in detail and "poll only" in detail, detail


def test_a_queue_that_cannot_be_read_fails_naming_it(
    localbatch: LocalBatchServer, job_queue_arn: str
) -> None:
    status, detail = line(localbatch, "no-such-queue", job_queue_arn)
    assert status == "FAIL" and detail.startswith("no-such-queue: cannot be read"), detail
