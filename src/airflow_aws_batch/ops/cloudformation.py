"""A CloudFormation template for the AWS resources the executor needs, as a plain dict.

``build_template`` is pure: the same options give the same dict, and nothing here talks to AWS.
``airflow aws-batch render`` prints it and ``airflow aws-batch provision`` deploys it.

The template creates a compute environment (EC2, Spot, Fargate or Fargate Spot), a job queue,
a container job definition, a log group, a job role, an execution role, a Batch service role,
for EC2/Spot an instance role with its instance profile and an IMDSv2-only launch template, and a
managed policy to attach to the scheduler's role. With a workload store (``s3://bucket/prefix``):
the job role may read and delete objects under the prefix, a managed policy lets the scheduler
write, read and delete there (attached to ``scheduler_role`` when named), and, unless told it
exists, the bucket itself (private, encrypted, objects under the prefix expire after a day). It
does not create a VPC, the database, the API server or an ECR repository: subnets and security
groups are parameters, and the image is a parameter.

The pieces are built per concern: :mod:`.template_options` checks the options, :mod:`.template_compute`
makes the compute environment and the job definition, :mod:`.template_queues` the queue and its
policy, :mod:`.template_iam` the roles and what they may do, :mod:`.template_store` the workload
store's part, :mod:`.template_events` the status events' rule and queue, :mod:`.template_logs` the
log group; :mod:`.template_hardening` holds the launch
template and the YAML writer. docs/security.md says what each role may do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from airflow_aws_batch.ops.template_compute import (
    EXECUTION_API_ENV,
    compute_environment,
    instance_profile,
    job_definition,
    task_environment,
)
from airflow_aws_batch.ops.template_events import status_events_hints, status_events_resources
from airflow_aws_batch.ops.template_hardening import dump_yaml, launch_template
from airflow_aws_batch.ops.template_iam import (
    execution_role,
    instance_role,
    job_role,
    scheduler_policy,
    service_role,
)
from airflow_aws_batch.ops.template_logs import log_group, remote_logging_hint
from airflow_aws_batch.ops.template_names import (
    COMPUTE_ENVIRONMENT,
    DEFAULT_SHARE,
    EXECUTION_ROLE,
    INSTANCE_PROFILE,
    INSTANCE_ROLE,
    JOB_DEFINITION,
    JOB_QUEUE,
    JOB_ROLE,
    LAUNCH_TEMPLATE,
    LOG_GROUP,
    SCHEDULER_POLICY,
    SCHEDULER_WORKLOAD_POLICY,
    SCHEDULING_POLICY,
    SERVICE_ROLE,
    STATUS_EVENTS_QUEUE,
    WORKLOAD_BUCKET,
)
from airflow_aws_batch.ops.template_options import COMPUTE_TYPES, TemplateError, TemplateOptions
from airflow_aws_batch.ops.template_queues import job_queue, scheduling_policy
from airflow_aws_batch.ops.template_store import workload_hints, workload_resources

__all__ = [
    "COMPUTE_ENVIRONMENT",
    "COMPUTE_TYPES",
    "DEFAULT_SHARE",
    "EXECUTION_API_ENV",
    "EXECUTION_ROLE",
    "INSTANCE_PROFILE",
    "INSTANCE_ROLE",
    "JOB_DEFINITION",
    "JOB_QUEUE",
    "JOB_ROLE",
    "LAUNCH_TEMPLATE",
    "LOG_GROUP",
    "SCHEDULER_POLICY",
    "SCHEDULER_WORKLOAD_POLICY",
    "SCHEDULING_POLICY",
    "SERVICE_ROLE",
    "WORKLOAD_BUCKET",
    "TemplateError",
    "TemplateOptions",
    "build_template",
    "dump_template",
    "task_environment",
]


def _hints(options: TemplateOptions) -> dict[str, Any]:
    """Settings that live outside this stack but must agree with it; shown to whoever reads the template."""
    return {
        "TaskEnvironment": sorted(task_environment(options)),
        "SameOnSchedulerAndApiServer": [
            "[api_auth] jwt_secret (or jwt_private_key_path on the scheduler and trusted_jwks_url "
            "on the API server)",
            "[api_auth] jwt_issuer",
            "[api_auth] jwt_audience",
            "[execution_api] jwt_audience",
        ],
        "NotForTasks": "The job definition carries no database URL, JWT secret or Fernet key: "
        "Airflow 3 tasks only talk to the execution API.",
        "RemoteLogging": remote_logging_hint(options),
        "ExecutorSettings": {
            "[aws_batch_executor] job_queue": options.job_queue,
            "[aws_batch_executor] job_definition": options.job_definition,
            **(
                {"[aws_batch_executor] workload_store": options.workload_store}
                if options.workload_store
                else {}
            ),
        },
        **workload_hints(options),
        **status_events_hints(options),
    }


def build_template(options: TemplateOptions) -> dict[str, Any]:
    """Return the CloudFormation template (a JSON-compatible dict) for ``options``."""
    resources: dict[str, Any] = {
        LOG_GROUP: log_group(options),
        SERVICE_ROLE: service_role(),
        EXECUTION_ROLE: execution_role(options),
        JOB_ROLE: job_role(options),
        COMPUTE_ENVIRONMENT: compute_environment(options),
        JOB_QUEUE: job_queue(options),
        JOB_DEFINITION: job_definition(options),
    }
    if options.fair_share:
        resources[SCHEDULING_POLICY] = scheduling_policy(options)
    resources.update(workload_resources(options))
    resources.update(status_events_resources(options))
    if not options.is_fargate:
        resources[INSTANCE_ROLE] = instance_role()
        resources[LAUNCH_TEMPLATE] = launch_template(options)
        resources[INSTANCE_PROFILE] = instance_profile()
    resources[SCHEDULER_POLICY] = scheduler_policy(options)
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"AWS Batch resources for airflow-aws-batch ({options.compute}): compute environment, job queue "
            "and job definition for Airflow 3 tasks, with their roles and log group."
        ),
        "Metadata": {"AirflowAwsBatch": _hints(options)},
        "Parameters": {
            "Image": {
                "Type": "String",
                "Default": options.image,
                "Description": "Task image (docker/Dockerfile), built for the scheduler's versions",
            },
            "SubnetIds": {
                "Type": "List<AWS::EC2::Subnet::Id>",
                "Description": "Subnets for the jobs; they must reach the API server and the image registry",
            },
            "SecurityGroupIds": {
                "Type": "List<AWS::EC2::SecurityGroup::Id>",
                "Description": "Security groups for the jobs; the API server must accept their traffic",
            },
        },
        "Resources": resources,
        "Outputs": {
            "JobQueueArn": {"Value": {"Ref": JOB_QUEUE}},
            "JobDefinitionArn": {"Value": {"Ref": JOB_DEFINITION}},
            "ComputeEnvironmentArn": {"Value": {"Ref": COMPUTE_ENVIRONMENT}},
            "LogGroupName": {"Value": {"Ref": LOG_GROUP}},
            "JobRoleArn": {"Value": {"Fn::GetAtt": [JOB_ROLE, "Arn"]}},
            "ExecutionRoleArn": {"Value": {"Fn::GetAtt": [EXECUTION_ROLE, "Arn"]}},
            "SchedulerPolicyArn": {"Value": {"Ref": SCHEDULER_POLICY}},
            **(
                {"SchedulerWorkloadPolicyArn": {"Value": {"Ref": SCHEDULER_WORKLOAD_POLICY}}}
                if options.workload_store
                else {}
            ),
            **(
                {"StatusEventsQueueUrl": {"Value": {"Ref": STATUS_EVENTS_QUEUE}}}
                if options.status_events
                else {}
            ),
        },
    }


def dump_template(template: Mapping[str, Any], fmt: Literal["yaml", "json"] = "yaml") -> str:
    """Serialise a template. YAML uses only plain mappings (no ``!Ref`` tags) so any YAML parser reads it."""
    if fmt == "json":
        return json.dumps(template, indent=2) + "\n"
    return dump_yaml(template)
