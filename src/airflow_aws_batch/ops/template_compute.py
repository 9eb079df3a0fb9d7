"""The template's compute: the compute environment (in the subnets and security groups the stack
is given), the instance profile of EC2/Spot instances, and the job definition the tasks run with."""

from __future__ import annotations

from typing import Any

from airflow_aws_batch.ops import backstops
from airflow_aws_batch.ops.template_hardening import launch_template_ref
from airflow_aws_batch.ops.template_names import (
    EXECUTION_ROLE,
    INSTANCE_PROFILE,
    INSTANCE_ROLE,
    JOB_ROLE,
    LOG_GROUP,
    SERVICE_ROLE,
)
from airflow_aws_batch.ops.template_options import TemplateOptions

EXECUTION_API_ENV = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"


def task_environment(options: TemplateOptions) -> dict[str, str]:
    """The environment every task container gets from the job definition.

    Airflow 3 tasks talk to the API server, not to the database, so neither the database URL nor
    the JWT signing secret belongs here: only the scheduler and the API server need those.
    """
    env: dict[str, str] = {EXECUTION_API_ENV: options.execution_api_url}
    if options.remote_log_folder:
        env["AIRFLOW__LOGGING__REMOTE_LOGGING"] = "True"
        # No REMOTE_LOG_CONN_ID: without one the log handler's hook falls back to boto's default
        # credential chain, which inside the container is the job role granted below.
        env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] = options.remote_log_folder
    if options.dags_s3_uri:
        env["S3_URI"] = options.dags_s3_uri
    env.update(options.extra_environment)
    return env


def _compute_resources(options: TemplateOptions) -> dict[str, Any]:
    common: dict[str, Any] = {
        "MaxvCpus": options.max_vcpus,
        "Subnets": {"Ref": "SubnetIds"},
        "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
    }
    if options.is_fargate:
        return {"Type": options.compute.upper().replace("-", "_"), **common}
    return {
        "Type": options.compute.upper(),
        # Warm capacity: Batch keeps MinvCpus running while no job needs them (billed by the hour),
        # so that jobs start without waiting for an instance to boot.
        "MinvCpus": options.min_vcpus,
        "DesiredvCpus": options.min_vcpus,
        "InstanceTypes": ["optimal"],
        "InstanceRole": {"Fn::GetAtt": [INSTANCE_PROFILE, "Arn"]},
        "AllocationStrategy": (
            "SPOT_PRICE_CAPACITY_OPTIMIZED" if options.compute == "spot" else "BEST_FIT_PROGRESSIVE"
        ),
        "LaunchTemplate": launch_template_ref(),
        **backstops.scaling_policy(options.scale_down_delay),
        **common,
    }


def _container_properties(options: TemplateOptions) -> dict[str, Any]:
    vcpus = f"{options.vcpus:g}"
    props: dict[str, Any] = {
        "Image": {"Ref": "Image"},
        # The executor replaces the command for every job; this one only proves the image works.
        "Command": ["airflow", "version"],
        "ResourceRequirements": [
            {"Type": "VCPU", "Value": vcpus},
            {"Type": "MEMORY", "Value": str(options.memory_mib)},
        ],
        "JobRoleArn": {"Fn::GetAtt": [JOB_ROLE, "Arn"]},
        "ExecutionRoleArn": {"Fn::GetAtt": [EXECUTION_ROLE, "Arn"]},
        "Environment": [{"Name": k, "Value": v} for k, v in sorted(task_environment(options).items())],
        "LogConfiguration": {
            "LogDriver": "awslogs",
            "Options": {
                "awslogs-group": {"Ref": LOG_GROUP},
                "awslogs-region": {"Ref": "AWS::Region"},
                "awslogs-stream-prefix": "airflow",
            },
        },
    }
    if options.is_fargate:
        props["NetworkConfiguration"] = {
            "AssignPublicIp": "ENABLED" if options.assign_public_ip else "DISABLED"
        }
        props["FargatePlatformConfiguration"] = {"PlatformVersion": "LATEST"}
    return props


def compute_environment(options: TemplateOptions) -> dict[str, Any]:
    return {
        "Type": "AWS::Batch::ComputeEnvironment",
        "Properties": {
            "ComputeEnvironmentName": options.compute_environment,
            "Type": "MANAGED",
            "State": "ENABLED",
            "ServiceRole": {"Fn::GetAtt": [SERVICE_ROLE, "Arn"]},
            "ComputeResources": _compute_resources(options),
        },
    }


def job_definition(options: TemplateOptions) -> dict[str, Any]:
    return {
        "Type": "AWS::Batch::JobDefinition",
        "Properties": {
            "JobDefinitionName": options.job_definition,
            "Type": "container",
            "PlatformCapabilities": ["FARGATE" if options.is_fargate else "EC2"],
            "PropagateTags": True,
            # One attempt: a job that fails before its task starts is resubmitted by the executor
            # (max_submit_job_attempts), and task retries belong to Airflow.
            "RetryStrategy": {"Attempts": 1},
            "ContainerProperties": _container_properties(options),
        },
    }


def instance_profile() -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::InstanceProfile",
        "Properties": {"Roles": [{"Ref": INSTANCE_ROLE}]},
    }
