"""`localbatch setup`: create (idempotently) what an Airflow deployment needs on a localbatch endpoint.

A MANAGED EC2 compute environment, a job queue over it, and a container job definition whose
environment points tasks at the Airflow API server. Re-running changes nothing unless the job
definition's container properties differ, in which case a new revision is registered.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import boto3


def _client(endpoint_url: str, region: str) -> Any:
    return boto3.client(
        "batch",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )


def container_properties(args: argparse.Namespace) -> dict[str, Any]:
    env = dict(args.env)
    if args.api_server_url:
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = args.api_server_url.rstrip("/") + "/execution/"
    return {
        "image": args.image,
        "resourceRequirements": [
            {"type": "VCPU", "value": str(args.vcpus)},
            {"type": "MEMORY", "value": str(args.memory)},
        ],
        "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
    }


def run_setup(args: argparse.Namespace) -> int:
    batch = _client(args.endpoint_url, args.region)
    ces = batch.describe_compute_environments(computeEnvironments=[args.compute_environment])
    if ces["computeEnvironments"]:
        ce_arn = ces["computeEnvironments"][0]["computeEnvironmentArn"]
        batch.update_compute_environment(
            computeEnvironment=ce_arn, state="ENABLED", computeResources={"maxvCpus": args.max_vcpus}
        )
    else:
        ce_arn = batch.create_compute_environment(
            computeEnvironmentName=args.compute_environment,
            type="MANAGED",
            state="ENABLED",
            computeResources={
                "type": "EC2",
                "minvCpus": 0,
                "maxvCpus": args.max_vcpus,
                "instanceTypes": ["optimal"],
                "subnets": ["subnet-localbatch"],
                "securityGroupIds": ["sg-localbatch"],
                "instanceRole": "ecsInstanceRole",
            },
        )["computeEnvironmentArn"]
    queues = batch.describe_job_queues(jobQueues=[args.job_queue])
    if queues["jobQueues"]:
        jq_arn = queues["jobQueues"][0]["jobQueueArn"]
        batch.update_job_queue(jobQueue=jq_arn, state="ENABLED")
    else:
        jq_arn = batch.create_job_queue(
            jobQueueName=args.job_queue,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce_arn}],
        )["jobQueueArn"]
    props = container_properties(args)
    existing = batch.describe_job_definitions(jobDefinitionName=args.job_definition, status="ACTIVE")
    latest = max(existing["jobDefinitions"], key=lambda d: d["revision"], default=None)
    if latest is not None and all(latest["containerProperties"].get(k) == v for k, v in props.items()):
        jd_arn = latest["jobDefinitionArn"]
    else:
        jd_arn = batch.register_job_definition(
            jobDefinitionName=args.job_definition,
            type="container",
            containerProperties=props,
            platformCapabilities=["EC2"],
        )["jobDefinitionArn"]
    print(f"compute environment: {args.compute_environment} ({ce_arn})")
    print(f"job queue:           {args.job_queue} ({jq_arn})")
    print(f"job definition:      {args.job_definition} ({jd_arn})")
    return 0
