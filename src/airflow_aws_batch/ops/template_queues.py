"""The template's job queue and, with fair share, its scheduling policy."""

from __future__ import annotations

from typing import Any

from airflow_aws_batch.ops import backstops
from airflow_aws_batch.ops.template_names import COMPUTE_ENVIRONMENT, DEFAULT_SHARE, SCHEDULING_POLICY
from airflow_aws_batch.ops.template_options import TemplateOptions


def job_queue(options: TemplateOptions) -> dict[str, Any]:
    queue: dict[str, Any] = {
        "Type": "AWS::Batch::JobQueue",
        "Properties": {
            "JobQueueName": options.job_queue,
            "Priority": 1,
            "State": "ENABLED",
            "ComputeEnvironmentOrder": [{"Order": 1, "ComputeEnvironment": {"Ref": COMPUTE_ENVIRONMENT}}],
            "JobStateTimeLimitActions": backstops.time_limit_actions(options.cancel_misconfigured_after),
        },
    }
    if options.fair_share:
        queue["Properties"]["SchedulingPolicyArn"] = {"Ref": SCHEDULING_POLICY}
    return queue


def scheduling_policy(options: TemplateOptions) -> dict[str, Any]:
    return {
        "Type": "AWS::Batch::SchedulingPolicy",
        "Properties": {
            "Name": f"{options.job_queue}-fair-share",
            "FairsharePolicy": {
                # Usage older than the decay window counts less: a DAG that ran a burst an hour ago
                # is not held back for it now.
                "ShareDecaySeconds": options.share_decay_seconds,
                "ComputeReservation": 0,
                # Every share not listed weighs 1.0 too; listed so that the weight of the share of
                # tasks whose template fields are empty is visible and easy to change.
                "ShareDistribution": [{"ShareIdentifier": DEFAULT_SHARE, "WeightFactor": 1.0}],
            },
        },
    }
