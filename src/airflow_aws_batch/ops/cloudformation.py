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

The IAM statements are :mod:`.template_iam`'s, the launch template, the YAML writer and the store's
exposure check :mod:`.template_hardening`'s; docs/security.md says what each role may do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_aws_batch.ops.template_hardening import (
    dump_yaml,
    launch_template,
    launch_template_ref,
    store_exposure_problem,
)
from airflow_aws_batch.ops.template_iam import (
    execution_role_statements,
    job_role_statements,
    s3_objects_arn,
    scheduler_statements,
    trust,
)
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
    MAX_SHARE_DECAY_SECONDS,
    SCHEDULER_POLICY,
    SCHEDULER_WORKLOAD_POLICY,
    SCHEDULING_POLICY,
    SERVICE_ROLE,
    WORKLOAD_BUCKET,
    WORKLOAD_EXPIRY_DAYS,
)

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

from airflow_aws_batch.ops import backstops

ComputeType = Literal["ec2", "spot", "fargate", "fargate-spot"]
COMPUTE_TYPES: tuple[ComputeType, ...] = ("ec2", "spot", "fargate", "fargate-spot")

EXECUTION_API_ENV = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class TemplateError(ValueError):
    """An option that cannot produce a valid template; the message names the option."""


@dataclass(frozen=True)
class TemplateOptions:
    """What ``build_template`` needs. Names default to the executor's ``[aws_batch_executor]`` ones."""

    job_queue: str = "airflow-jobs"
    job_definition: str = "airflow-task"
    compute_environment: str = "airflow-compute"
    compute: ComputeType = "fargate"
    image: str = "my-airflow-image:latest"
    execution_api_url: str = "http://airflow-api.internal:8080/execution/"
    vcpus: float = 1.0
    memory_mib: int = 2048
    max_vcpus: int = 64
    # Warm capacity: vCPUs the compute environment keeps running while idle (EC2/Spot only).
    min_vcpus: int = 0
    # A fair-share scheduling policy on the job queue (each job then needs a share identifier).
    fair_share: bool = False
    share_decay_seconds: int = 3600
    log_group: str = "/aws/batch/airflow-tasks"
    log_retention_days: int = 30
    # Remote logging destination for Airflow's own task logs: ``s3://bucket/prefix`` or
    # ``cloudwatch://arn:aws:logs:...:log-group:NAME``. Empty: no remote logging settings.
    remote_log_folder: str = ""
    # S3 prefix the entrypoint syncs DAGs from (the image's S3_URI). Empty: DAGs are in the image.
    dags_s3_uri: str = ""
    # Fargate tasks get a public IP only when asked: without one they reach the API server and the
    # registry through the VPC (NAT or endpoints), and nothing on the internet reaches them.
    assign_public_ip: bool = False
    extra_environment: Mapping[str, str] = field(default_factory=dict)
    # ``s3://bucket/prefix`` of [aws_batch_executor] workload_store. Empty: workloads travel in the
    # job's command and no store is granted.
    workload_store: str = ""
    # Create the store's bucket (private, encrypted, objects expire); otherwise it exists already.
    create_workload_bucket: bool = False
    # Name of the scheduler's IAM role, to attach the store's write policy to. Empty: attach it yourself.
    scheduler_role: str = ""
    # The deployment_id of the executor ([aws_batch_executor] deployment_id): the scheduler may then
    # terminate only jobs tagged with it. Empty: any job tagged with some deployment.
    deployment_id: str = ""
    # Images derived job definitions may name besides the Image parameter (jobDefinitionOverrides'
    # image). Empty: any image (RegisterJobDefinition is then held only to non-privileged definitions).
    allowed_images: tuple[str, ...] = ()
    # Minutes Batch keeps an idle instance after its last job (EC2/Spot; 0: unset). See backstops.py.
    scale_down_delay: int = 0
    # Seconds after which the queue cancels jobs stuck in RUNNABLE for a misconfiguration.
    cancel_misconfigured_after: int = backstops.DEFAULT_CANCEL_AFTER_SECONDS

    def __post_init__(self) -> None:
        for option in ("job_queue", "job_definition", "compute_environment"):
            value = getattr(self, option)
            if not _NAME.match(value):
                raise TemplateError(
                    f"{option}={value!r}: use letters, digits, '-' and '_', starting with a letter or digit"
                )
        if self.compute not in COMPUTE_TYPES:
            raise TemplateError(f"compute={self.compute!r}: expected one of {', '.join(COMPUTE_TYPES)}")
        if not re.match(r"^https?://[^/]+/.*execution/$", self.execution_api_url):
            raise TemplateError(
                f"execution_api_url={self.execution_api_url!r}: expected http(s)://HOST[:PORT]/execution/ "
                "(the API server's address as the containers reach it, ending in /execution/)"
            )
        if self.remote_log_folder and not self.remote_log_folder.startswith(("s3://", "cloudwatch://")):
            raise TemplateError(
                f"remote_log_folder={self.remote_log_folder!r}: expected s3://BUCKET/PREFIX or "
                "cloudwatch://arn:aws:logs:REGION:ACCOUNT:log-group:NAME"
            )
        if self.dags_s3_uri and not self.dags_s3_uri.startswith("s3://"):
            raise TemplateError(f"dags_s3_uri={self.dags_s3_uri!r}: expected s3://BUCKET/PREFIX")
        if self.max_vcpus < 1 or self.vcpus <= 0 or self.memory_mib < 512:
            raise TemplateError("max_vcpus must be >= 1, vcpus > 0 and memory_mib >= 512")
        if not 0 <= self.min_vcpus <= self.max_vcpus:
            raise TemplateError(
                f"min_vcpus={self.min_vcpus}: expected 0 <= min_vcpus <= max_vcpus ({self.max_vcpus})"
            )
        if self.min_vcpus and self.is_fargate:
            raise TemplateError(
                f"min_vcpus={self.min_vcpus}: Fargate compute environments keep no instances warm; "
                "use --compute ec2 or spot for warm capacity"
            )
        if not 0 <= self.share_decay_seconds <= MAX_SHARE_DECAY_SECONDS:
            raise TemplateError(
                f"share_decay_seconds={self.share_decay_seconds}: expected 0 to {MAX_SHARE_DECAY_SECONDS} "
                "(0: Batch's minimum window of 600 s)"
            )

        if self.workload_store:
            from airflow_aws_batch.workloads import parse_store_url

            try:
                location = parse_store_url(self.workload_store)
            except ValueError as err:
                raise TemplateError(f"workload_store={self.workload_store!r}: expected {err}") from None
            if location.scheme != "s3":
                raise TemplateError(
                    f"workload_store={self.workload_store!r}: expected s3://BUCKET/PREFIX (a file:// store "
                    "is for jobs on the scheduler's machine, e.g. localbatch)"
                )
        if self.create_workload_bucket and not self.workload_store:
            raise TemplateError("create_workload_bucket needs workload_store=s3://BUCKET/PREFIX")
        if self.scheduler_role and not re.match(r"^[\w+=,.@-]{1,64}$", self.scheduler_role):
            raise TemplateError(
                f"scheduler_role={self.scheduler_role!r}: expected an IAM role name (not an ARN), "
                "up to 64 letters, digits or +=,.@_-"
            )
        if self.scheduler_role and not self.workload_store:
            raise TemplateError("scheduler_role needs workload_store=s3://BUCKET/PREFIX")
        exposure = store_exposure_problem(self)
        if exposure:
            raise TemplateError(exposure)
        problem = backstops.scale_down_delay_problem(
            self.scale_down_delay, fargate=self.is_fargate
        ) or backstops.cancel_after_problem(self.cancel_misconfigured_after)
        if problem:
            raise TemplateError(problem)

    @property
    def workload_location(self) -> tuple[str, str] | None:
        """``(bucket, prefix)`` of the workload store, or None."""
        if not self.workload_store:
            return None
        from airflow_aws_batch.workloads import parse_store_url

        location = parse_store_url(self.workload_store)
        return location.bucket, location.key

    @property
    def is_fargate(self) -> bool:
        return self.compute.startswith("fargate")


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


def _hints(options: TemplateOptions) -> dict[str, Any]:
    """Settings that live outside this stack but must agree with it; shown to whoever reads the template."""
    logging_hint = (
        f"The API server must read task logs from {options.remote_log_folder}: set the same "
        "[logging] remote_logging and remote_base_log_folder there."
        if options.remote_log_folder
        else "No remote logging: task logs vanish with their containers. Re-render with "
        "--remote-log-folder s3://... or cloudwatch://... and set the same on the API server."
    )
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
        "RemoteLogging": logging_hint,
        "ExecutorSettings": {
            "[aws_batch_executor] job_queue": options.job_queue,
            "[aws_batch_executor] job_definition": options.job_definition,
            **(
                {"[aws_batch_executor] workload_store": options.workload_store}
                if options.workload_store
                else {}
            ),
        },
        **_workload_hints(options),
    }


def _workload_hints(options: TemplateOptions) -> dict[str, Any]:
    store = options.workload_location
    if store is None:
        return {
            "WorkloadStore": "None: each task's token travels in its job's command, visible to DescribeJobs. "
            "Re-render with --workload-store s3://BUCKET/PREFIX to keep it out."
        }
    bucket, prefix = store
    hints: dict[str, Any] = {}
    if not options.scheduler_role:
        hints["WorkloadStoreScheduler"] = (
            f"Attach the managed policy {SCHEDULER_WORKLOAD_POLICY} (output SchedulerWorkloadPolicyArn) "
            "to the scheduler's role, or re-render with --scheduler-role NAME."
        )
    if not options.create_workload_bucket:
        rule = {
            "Rules": [
                {
                    "ID": "expire-airflow-workloads",
                    "Status": "Enabled",
                    "Filter": {"Prefix": f"{prefix}/" if prefix else ""},
                    "Expiration": {"Days": WORKLOAD_EXPIRY_DAYS},
                }
            ]
        }
        hints["WorkloadStoreLifecycle"] = (
            f"The bucket {bucket} exists outside this stack: expire unconsumed workloads with "
            f"aws s3api put-bucket-lifecycle-configuration --bucket {bucket} --lifecycle-configuration "
            f"'{json.dumps(rule, separators=(',', ':'))}' (this replaces the bucket's other rules: merge "
            "them in if it has any)"
        )
    return hints


def _workload_resources(options: TemplateOptions) -> dict[str, Any]:
    """The store's bucket (when created here) and the scheduler's write policy, on the prefix only."""
    store = options.workload_location
    if store is None:
        return {}
    bucket, prefix = store
    policy: dict[str, Any] = {
        "Description": f"Write, read and delete Airflow workloads under s3://{bucket}/{prefix}",
        "PolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "WriteWorkloads",
                    "Effect": "Allow",
                    "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
                    "Resource": [s3_objects_arn(bucket, prefix)],
                }
            ],
        },
    }
    if options.scheduler_role:
        policy["Roles"] = [options.scheduler_role]
    resources: dict[str, Any] = {
        SCHEDULER_WORKLOAD_POLICY: {"Type": "AWS::IAM::ManagedPolicy", "Properties": policy}
    }
    if options.create_workload_bucket:
        resources[WORKLOAD_BUCKET] = {
            "Type": "AWS::S3::Bucket",
            # Kept when the stack goes: deleting a bucket fails while it holds objects, and a replaced
            # bucket would lose the workloads of jobs still queued.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": bucket,
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "LifecycleConfiguration": {
                    "Rules": [
                        {
                            "Id": "expire-airflow-workloads",
                            "Status": "Enabled",
                            **({"Prefix": f"{prefix}/"} if prefix else {}),
                            "ExpirationInDays": WORKLOAD_EXPIRY_DAYS,
                        }
                    ]
                },
            },
        }
    return resources


def build_template(options: TemplateOptions) -> dict[str, Any]:
    """Return the CloudFormation template (a JSON-compatible dict) for ``options``."""
    resources: dict[str, Any] = {
        LOG_GROUP: {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": options.log_group, "RetentionInDays": options.log_retention_days},
        },
        SERVICE_ROLE: {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": trust("batch.amazonaws.com"),
                "ManagedPolicyArns": [
                    {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSBatchServiceRole"}
                ],
            },
        },
        EXECUTION_ROLE: {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": trust("ecs-tasks.amazonaws.com"),
                "Policies": [
                    {
                        "PolicyName": "pull-image-write-logs",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": execution_role_statements(options),
                        },
                    }
                ],
            },
        },
        JOB_ROLE: {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": trust("ecs-tasks.amazonaws.com"),
                "Policies": [
                    {
                        "PolicyName": "airflow-task",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": job_role_statements(options),
                        },
                    }
                ],
            },
        },
        COMPUTE_ENVIRONMENT: {
            "Type": "AWS::Batch::ComputeEnvironment",
            "Properties": {
                "ComputeEnvironmentName": options.compute_environment,
                "Type": "MANAGED",
                "State": "ENABLED",
                "ServiceRole": {"Fn::GetAtt": [SERVICE_ROLE, "Arn"]},
                "ComputeResources": _compute_resources(options),
            },
        },
        JOB_QUEUE: {
            "Type": "AWS::Batch::JobQueue",
            "Properties": {
                "JobQueueName": options.job_queue,
                "Priority": 1,
                "State": "ENABLED",
                "ComputeEnvironmentOrder": [{"Order": 1, "ComputeEnvironment": {"Ref": COMPUTE_ENVIRONMENT}}],
                "JobStateTimeLimitActions": backstops.time_limit_actions(options.cancel_misconfigured_after),
            },
        },
        JOB_DEFINITION: {
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
        },
    }
    if options.fair_share:
        resources[SCHEDULING_POLICY] = {
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
        resources[JOB_QUEUE]["Properties"]["SchedulingPolicyArn"] = {"Ref": SCHEDULING_POLICY}
    resources.update(_workload_resources(options))
    if not options.is_fargate:
        resources[INSTANCE_ROLE] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": trust("ec2.amazonaws.com"),
                "ManagedPolicyArns": [
                    {
                        "Fn::Sub": (
                            "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                            "AmazonEC2ContainerServiceforEC2Role"
                        )
                    }
                ],
            },
        }
        resources[LAUNCH_TEMPLATE] = launch_template(options)
        resources[INSTANCE_PROFILE] = {
            "Type": "AWS::IAM::InstanceProfile",
            "Properties": {"Roles": [{"Ref": INSTANCE_ROLE}]},
        }
    resources[SCHEDULER_POLICY] = {
        "Type": "AWS::IAM::ManagedPolicy",
        "Properties": {
            "Description": "Attach to the Airflow scheduler's role: what AwsBatchExecutor calls",
            "PolicyDocument": {"Version": "2012-10-17", "Statement": scheduler_statements(options)},
        },
    }
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
        },
    }


def dump_template(template: Mapping[str, Any], fmt: Literal["yaml", "json"] = "yaml") -> str:
    """Serialise a template. YAML uses only plain mappings (no ``!Ref`` tags) so any YAML parser reads it."""
    if fmt == "json":
        return json.dumps(template, indent=2) + "\n"
    return dump_yaml(template)
