"""``render --status-events``: the rule takes this stack's job state changes only, the queue takes
writes from that rule only, and the scheduler may read and delete there and nothing more."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_aws_batch.ops.cloudformation import TemplateError, TemplateOptions, build_template
from airflow_aws_batch.ops.template_names import (
    JOB_QUEUE,
    SCHEDULER_POLICY,
    STATUS_EVENTS_QUEUE,
    STATUS_EVENTS_QUEUE_POLICY,
    STATUS_EVENTS_RULE,
)

STORE = "s3://airflow-workloads/prod"


def _template(**options: Any) -> dict[str, Any]:
    return build_template(TemplateOptions(workload_store=STORE, status_events=True, **options))


def test_without_the_store_render_refuses_naming_the_token() -> None:
    with pytest.raises(TemplateError, match=r"status_events needs workload_store.*token"):
        TemplateOptions(status_events=True)


def test_not_asked_for_adds_nothing() -> None:
    template = build_template(TemplateOptions(workload_store=STORE))
    made = {STATUS_EVENTS_QUEUE, STATUS_EVENTS_RULE, STATUS_EVENTS_QUEUE_POLICY} & set(template["Resources"])
    assert not made
    policy = template["Resources"][SCHEDULER_POLICY]["Properties"]["PolicyDocument"]
    sids = [s["Sid"] for s in policy["Statement"]]
    assert "ReadStatusEvents" not in sids


def test_the_rule_takes_job_state_changes_of_this_stacks_queue_into_the_queue() -> None:
    rule = _template()["Resources"][STATUS_EVENTS_RULE]["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.batch"],
        "detail-type": ["Batch Job State Change"],
        "detail": {"jobQueue": [{"Ref": JOB_QUEUE}]},
    }
    assert rule["Targets"] == [{"Id": "scheduler", "Arn": {"Fn::GetAtt": [STATUS_EVENTS_QUEUE, "Arn"]}}]


def test_the_queue_is_encrypted_keeps_events_briefly_and_takes_writes_from_the_rule_only() -> None:
    resources = _template()["Resources"]
    queue = resources[STATUS_EVENTS_QUEUE]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert 60 <= queue["MessageRetentionPeriod"] <= 3600
    statements = resources[STATUS_EVENTS_QUEUE_POLICY]["Properties"]["PolicyDocument"]["Statement"]
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [STATUS_EVENTS_RULE, "Arn"]}}}
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_scheduler_reads_and_deletes_on_that_queue_only() -> None:
    template = _template()
    statements = template["Resources"][SCHEDULER_POLICY]["Properties"]["PolicyDocument"]["Statement"]
    sqs = [s for s in statements if any(a.startswith("sqs:") for a in s["Action"])]
    assert sqs == [
        {
            "Sid": "ReadStatusEvents",
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            "Resource": {"Fn::GetAtt": [STATUS_EVENTS_QUEUE, "Arn"]},
        }
    ]
    events = [s for s in statements if any(a.startswith("events:") for a in s["Action"])]
    assert [s["Resource"] for s in events] == [{"Fn::GetAtt": [STATUS_EVENTS_RULE, "Arn"]}]
    assert template["Outputs"]["StatusEventsQueueUrl"] == {"Value": {"Ref": STATUS_EVENTS_QUEUE}}
    assert "status_events" in template["Metadata"]["AirflowAwsBatch"]["StatusEvents"]
