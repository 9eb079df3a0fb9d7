"""Job state change events: AWS's documented example parses into the poller's JobDetail, and the
order of a job's changes survives duplicates, reordering and Batch's own retries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_aws_batch.aws.events import UNKNOWN, EventError, StateChange, is_newer, order_of, parse_event

# https://docs.aws.amazon.com/batch/latest/userguide/batch_job_events.html ("Example Job State Change
# Event"), its fields as documented.
AWS_EXAMPLE: dict[str, Any] = {
    "version": "0",
    "id": "c8f9c4b5-76e5-d76a-f980-7011e206042b",
    "detail-type": "Batch Job State Change",
    "source": "aws.batch",
    "account": "123456789012",
    "time": "2022-01-11T23:36:40Z",
    "region": "us-east-1",
    "resources": ["arn:aws:batch:us-east-1:123456789012:job/4c7599ae-0a82-49aa-ba5a-4727fcce14a8"],
    "detail": {
        "jobArn": "arn:aws:batch:us-east-1:123456789012:job/4c7599ae-0a82-49aa-ba5a-4727fcce14a8",
        "jobName": "event-test",
        "jobId": "4c7599ae-0a82-49aa-ba5a-4727fcce14a8",
        "jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/PexjEHappyPathCanary2JobQueue",
        "status": "RUNNABLE",
        "attempts": [],
        "createdAt": 1641944200058,
        "retryStrategy": {"attempts": 2, "evaluateOnExit": []},
        "dependsOn": [],
        "jobDefinition": "arn:aws:batch:us-east-1:123456789012:job-definition/first-run-job-definition:1",
        "parameters": {},
        "container": {
            "image": "137112412989.dkr.ecr.us-east-1.amazonaws.com/amazonlinux:latest",
            "command": ["sleep", "600"],
            "volumes": [],
            "environment": [],
            "mountPoints": [],
            "ulimits": [],
            "networkInterfaces": [],
            "resourceRequirements": [{"value": "2", "type": "VCPU"}, {"value": "256", "type": "MEMORY"}],
            "secrets": [],
        },
        "tags": {
            "resourceArn": "arn:aws:batch:us-east-1:123456789012:job/4c7599ae-0a82-49aa-ba5a-4727fcce14a8"
        },
        "propagateTags": False,
        "platformCapabilities": [],
    },
}


def _event(status: str, attempts: int = 0, **detail: Any) -> str:
    event = json.loads(json.dumps(AWS_EXAMPLE))
    event["detail"].update(status=status, attempts=[{"container": {"exitCode": 1}}] * attempts, **detail)
    return json.dumps(event)


def test_awss_example_parses_into_the_pollers_job_detail() -> None:
    change = parse_event(json.dumps(AWS_EXAMPLE))
    assert isinstance(change, StateChange)
    assert change.job_id == "4c7599ae-0a82-49aa-ba5a-4727fcce14a8"
    assert change.event_id == "c8f9c4b5-76e5-d76a-f980-7011e206042b"
    assert change.detail.status == "RUNNABLE"
    assert change.detail.job_queue.endswith("job-queue/PexjEHappyPathCanary2JobQueue")
    assert change.detail.command == ("sleep", "600")
    assert change.detail.created_at == 1641944200058


def test_an_event_of_another_kind_is_not_a_change() -> None:
    other = dict(AWS_EXAMPLE, **{"detail-type": "Batch Job Queue Blocked"})
    assert parse_event(json.dumps(other)) is None
    assert parse_event(json.dumps(dict(AWS_EXAMPLE, source="aws.ecs"))) is None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param("not json", "not JSON", id="not-json"),
        pytest.param("[1, 2]", "JSON list", id="not-an-object"),
        pytest.param(json.dumps(dict(AWS_EXAMPLE, detail={})), "no detail.jobId", id="no-job-id"),
        pytest.param(_event("EXPLODED"), "unknown status 'EXPLODED'", id="unknown-status"),
    ],
)
def test_a_body_that_is_no_event_is_refused_saying_why(body: str, says: str) -> None:
    with pytest.raises(EventError, match=says):
        parse_event(body)


# Each row: the order events of one job arrive in, and the statuses taken (a change never moves the
# job back; a duplicate is not taken twice).
@pytest.mark.parametrize(
    ("arrivals", "taken"),
    [
        pytest.param(
            [("RUNNABLE", 0), ("STARTING", 0), ("RUNNING", 0), ("SUCCEEDED", 0)],
            ["RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"],
            id="in-order",
        ),
        pytest.param(
            [("RUNNING", 0), ("RUNNABLE", 0), ("SUCCEEDED", 0), ("STARTING", 0)],
            ["RUNNING", "SUCCEEDED"],
            id="reordered",
        ),
        pytest.param(
            [("RUNNING", 0), ("RUNNING", 0), ("SUCCEEDED", 0), ("SUCCEEDED", 0)],
            ["RUNNING", "SUCCEEDED"],
            id="duplicated",
        ),
        pytest.param(
            # Batch retries: the first attempt fails, the job is RUNNABLE again with one ended attempt.
            [("RUNNING", 0), ("RUNNABLE", 1), ("RUNNING", 1), ("FAILED", 2)],
            ["RUNNING", "RUNNABLE", "RUNNING", "FAILED"],
            id="batch-retry",
        ),
        pytest.param(
            # The retry's RUNNABLE arrives after the first attempt's RUNNING was taken late.
            [("RUNNABLE", 1), ("RUNNING", 0), ("SUCCEEDED", 1)],
            ["RUNNABLE", "SUCCEEDED"],
            id="retry-reordered",
        ),
        pytest.param(
            [("SUCCEEDED", 0), ("RUNNING", 1), ("RUNNABLE", 1)],
            ["SUCCEEDED"],
            id="nothing-after-the-end",
        ),
    ],
)
def test_a_job_never_moves_back(arrivals: list[tuple[str, int]], taken: list[str]) -> None:
    known = UNKNOWN
    statuses: list[str] = []
    for status, attempts in arrivals:
        change = parse_event(_event(status, attempts))
        assert change is not None
        if is_newer(change, known):
            known = change.order
            statuses.append(change.detail.status)
    assert statuses == taken


def test_an_ended_job_orders_after_any_attempt_it_had() -> None:
    # A FAILED job lists the attempt that failed; a RUNNABLE of that attempt's retry lists it too.
    assert order_of({"attempts": [{}]}, "FAILED") > order_of({"attempts": [{}]}, "RUNNABLE")
    assert order_of({"attempts": [{}]}, "FAILED") > order_of({"attempts": [{}]}, "RUNNING")
