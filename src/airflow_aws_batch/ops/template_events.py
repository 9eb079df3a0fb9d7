"""The template's status events: an EventBridge rule sending this stack's job queue's "Batch Job
State Change" events to an SQS queue only that rule may write, and that only the scheduler reads.

The queue is encrypted with SQS's own keys (SSE-SQS): EventBridge cannot write to a queue under a
customer managed KMS key without a key policy naming it, and SSE-SQS needs no grant from the reader.
Messages live 15 minutes: the executor reconciles by polling much sooner than that, so an older
event only repeats what it knows, and each event holds the job's command.
"""

from __future__ import annotations

from typing import Any

from airflow_aws_batch.ops.template_names import (
    JOB_QUEUE,
    STATUS_EVENTS_QUEUE,
    STATUS_EVENTS_QUEUE_POLICY,
    STATUS_EVENTS_RULE,
)
from airflow_aws_batch.ops.template_options import TemplateOptions

#: Seconds an undelivered event stays in the queue (SQS's minimum is 60).
RETENTION_SECONDS = 900
#: The executor receives with 20 s waits (SQS's longest); the queue says so too, for other readers.
RECEIVE_WAIT_SECONDS = 20
#: Seconds a received event stays hidden before another receive may see it again: the executor
#: deletes what it has handed to its core long before.
VISIBILITY_SECONDS = 60

_QUEUE_ARN = {"Fn::GetAtt": [STATUS_EVENTS_QUEUE, "Arn"]}
_RULE_ARN = {"Fn::GetAtt": [STATUS_EVENTS_RULE, "Arn"]}


def event_pattern() -> dict[str, Any]:
    """Batch's job state changes of this stack's job queue (the event's ``detail.jobQueue`` is its ARN,
    which is what ``Ref`` of a job queue gives)."""
    return {
        "source": ["aws.batch"],
        "detail-type": ["Batch Job State Change"],
        "detail": {"jobQueue": [{"Ref": JOB_QUEUE}]},
    }


def status_events_resources(options: TemplateOptions) -> dict[str, Any]:
    """The queue, its policy and the rule, or nothing when status events are not asked for."""
    if not options.status_events:
        return {}
    return {
        STATUS_EVENTS_QUEUE: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "SqsManagedSseEnabled": True,
                "MessageRetentionPeriod": RETENTION_SECONDS,
                "ReceiveMessageWaitTimeSeconds": RECEIVE_WAIT_SECONDS,
                "VisibilityTimeout": VISIBILITY_SECONDS,
            },
        },
        STATUS_EVENTS_QUEUE_POLICY: {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": STATUS_EVENTS_QUEUE}],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            # EventBridge may write for this rule only, not for any rule of the account.
                            "Sid": "FromTheStatusRuleOnly",
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": _QUEUE_ARN,
                            "Condition": {"ArnEquals": {"aws:SourceArn": _RULE_ARN}},
                        },
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "sqs:*",
                            "Resource": _QUEUE_ARN,
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        },
                    ],
                },
            },
        },
        STATUS_EVENTS_RULE: {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Description": f"Job state changes of {options.job_queue} for the Airflow scheduler",
                "State": "ENABLED",
                "EventPattern": event_pattern(),
                "Targets": [{"Id": "scheduler", "Arn": _QUEUE_ARN}],
            },
        },
    }


def status_events_statements(options: TemplateOptions) -> list[dict[str, Any]]:
    """The scheduler's part: receive and delete on that queue, and (for ``check``) read the rule."""
    if not options.status_events:
        return []
    return [
        {
            "Sid": "ReadStatusEvents",
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            "Resource": _QUEUE_ARN,
        },
        {
            "Sid": "CheckStatusEventsRule",
            "Effect": "Allow",
            "Action": ["events:DescribeRule", "events:ListTargetsByRule"],
            "Resource": _RULE_ARN,
        },
    ]


def status_events_hints(options: TemplateOptions) -> dict[str, Any]:
    if not options.status_events:
        return {}
    return {
        "StatusEvents": (
            "Set [aws_batch_executor] status_events to the StatusEventsQueueUrl output. Jobs of other "
            "queues (exec_config job_queue) send no events here: add their ARNs to the rule's "
            "detail.jobQueue, or the executor learns of them by polling only."
        )
    }
