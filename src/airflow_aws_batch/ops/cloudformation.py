"""A CloudFormation template for the AWS resources the executor needs, as a plain dict.

``build_template`` is pure: the same options give the same dict, and nothing here talks to AWS.
``airflow aws-batch render`` prints it and ``airflow aws-batch provision`` deploys it.

The template creates a compute environment (EC2, Spot, Fargate or Fargate Spot), a job queue,
a container job definition, a log group, a job role, an execution role, a Batch service role,
for EC2/Spot an instance role with its instance profile, and a managed policy to attach to the
scheduler's role. With a workload store (``s3://bucket/prefix``): the job role may read and delete
objects under the prefix, a managed policy lets the scheduler write, read and delete there (attached to
``scheduler_role`` when named), and, when asked, the bucket itself (private, encrypted, objects under
the prefix expire after a day). It does not create a VPC, the database, the API server or an ECR
repository: subnets and security groups are parameters, and the image is a parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from airflow_aws_batch.ops import backstops

ComputeType = Literal["ec2", "spot", "fargate", "fargate-spot"]
COMPUTE_TYPES: tuple[ComputeType, ...] = ("ec2", "spot", "fargate", "fargate-spot")

EXECUTION_API_ENV = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"

# Logical ids, shared with provision.py (outputs) and the tests.
COMPUTE_ENVIRONMENT = "ComputeEnvironment"
JOB_QUEUE = "JobQueue"
SCHEDULING_POLICY = "SchedulingPolicy"
#: The share identifier tasks get when a template field is empty (e.g. ``{team}`` without a team).
DEFAULT_SHARE = "default"
MAX_SHARE_DECAY_SECONDS = 604800
JOB_DEFINITION = "JobDefinition"
LOG_GROUP = "TaskLogGroup"
JOB_ROLE = "JobRole"
EXECUTION_ROLE = "ExecutionRole"
SERVICE_ROLE = "BatchServiceRole"
INSTANCE_ROLE = "InstanceRole"
#: A managed policy for the scheduler's own role (the template does not know that role).
SCHEDULER_POLICY = "SchedulerPolicy"
INSTANCE_PROFILE = "InstanceProfile"
WORKLOAD_BUCKET = "WorkloadBucket"
SCHEDULER_WORKLOAD_POLICY = "SchedulerWorkloadPolicy"
#: Days after which the lifecycle rule expires workload objects nobody consumed (a token outlives
#: its use by [scheduler] task_queued_timeout at most, 10 minutes by default).
WORKLOAD_EXPIRY_DAYS = 1

_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[^:@]+)"
)
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
    assign_public_ip: bool = True
    extra_environment: Mapping[str, str] = field(default_factory=dict)
    # ``s3://bucket/prefix`` of [aws_batch_executor] workload_store. Empty: workloads travel in the
    # job's command and no store is granted.
    workload_store: str = ""
    # Create the store's bucket (private, encrypted, objects expire); otherwise it exists already.
    create_workload_bucket: bool = False
    # Name of the scheduler's IAM role, to attach the store's write policy to. Empty: attach it yourself.
    scheduler_role: str = ""
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


def _trust(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": [service]}, "Action": ["sts:AssumeRole"]}],
    }


def _s3_split(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.rstrip("/")


def _s3_objects_arn(bucket: str, prefix: str) -> dict[str, str]:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}/{prefix + '/' if prefix else ''}*"}


def _job_role_statements(options: TemplateOptions) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    if options.dags_s3_uri:
        bucket, prefix = _s3_split(options.dags_s3_uri)
        statements.append(
            {
                "Sid": "ListDagBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}"}],
                **({"Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}}} if prefix else {}),
            }
        )
        statements.append(
            {
                "Sid": "ReadDags",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [
                    {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}/{prefix + '/' if prefix else ''}*"}
                ],
            }
        )
    if options.remote_log_folder.startswith("s3://"):
        bucket, prefix = _s3_split(options.remote_log_folder)
        statements.append(
            {
                "Sid": "WriteTaskLogsS3",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": [
                    {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}/{prefix + '/' if prefix else ''}*"}
                ],
            }
        )
        statements.append(
            {
                "Sid": "ListTaskLogsS3",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}"}],
            }
        )
    elif options.remote_log_folder.startswith("cloudwatch://"):
        group_arn = options.remote_log_folder.removeprefix("cloudwatch://")
        statements.append(
            {
                "Sid": "WriteTaskLogsCloudWatch",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:GetLogEvents",
                    "logs:DescribeLogStreams",
                ],
                "Resource": [group_arn, f"{group_arn}:*"],
            }
        )
    store = options.workload_location
    if store is not None:
        # Read its own workload, and delete it once read: nothing else of the store.
        statements.append(
            {
                "Sid": "ReadOwnWorkload",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:DeleteObject"],
                "Resource": [_s3_objects_arn(*store)],
            }
        )
    if not statements:
        # IAM rejects an empty policy document; this grants nothing beyond reading the caller's id.
        statements.append(
            {"Sid": "Nothing", "Effect": "Allow", "Action": ["sts:GetCallerIdentity"], "Resource": "*"}
        )
    return statements


def _execution_role_statements(options: TemplateOptions) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = [
        {
            "Sid": "WriteContainerLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [{"Fn::GetAtt": [LOG_GROUP, "Arn"]}],
        }
    ]
    ecr = _ECR_IMAGE.match(options.image)
    if ecr:
        statements.append(
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"}
        )
        statements.append(
            {
                "Sid": "PullImage",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchGetImage",
                ],
                "Resource": [
                    {
                        "Fn::Sub": (
                            f"arn:${{AWS::Partition}}:ecr:{ecr['region']}:{ecr['account']}"
                            f":repository/{ecr['repo']}"
                        )
                    }
                ],
            }
        )
    return statements


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


def _scheduler_statements(options: TemplateOptions) -> list[dict[str, Any]]:
    """What the scheduler's credentials need: the executor's calls, and for per-task job definitions
    (``jobDefinitionOverrides``) registering definitions named ``<job_definition>-<hash>`` that may
    carry this stack's job and execution roles."""
    arn = "arn:${AWS::Partition}:batch:${AWS::Region}:${AWS::AccountId}"
    logs_arn = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}"
    definitions = {"Fn::Sub": f"{arn}:job-definition/{options.job_definition}*"}
    return [
        {
            "Sid": "SubmitJobs",
            "Effect": "Allow",
            "Action": ["batch:SubmitJob", "batch:TagResource"],
            "Resource": [{"Ref": JOB_QUEUE}, definitions, {"Fn::Sub": f"{arn}:job/*"}],
        },
        {
            "Sid": "WatchJobs",
            "Effect": "Allow",
            "Action": [
                "batch:DescribeJobs",
                "batch:ListJobs",
                "batch:TerminateJob",
                "batch:DescribeJobQueues",
                "batch:DescribeJobDefinitions",
                "batch:DescribeComputeEnvironments",
            ],
            "Resource": "*",
        },
        {
            "Sid": "PerTaskJobDefinitions",
            "Effect": "Allow",
            "Action": ["batch:RegisterJobDefinition"],
            "Resource": definitions,
        },
        {
            "Sid": "PassTaskRoles",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": [{"Fn::GetAtt": [JOB_ROLE, "Arn"]}, {"Fn::GetAtt": [EXECUTION_ROLE, "Arn"]}],
        },
        {
            "Sid": "ReadTaskLogs",
            "Effect": "Allow",
            "Action": ["logs:GetLogEvents"],
            "Resource": {"Fn::Sub": f"{logs_arn}:log-group:{options.log_group}:*"},
        },
    ]


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
                    "Resource": [_s3_objects_arn(bucket, prefix)],
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
                "AssumeRolePolicyDocument": _trust("batch.amazonaws.com"),
                "ManagedPolicyArns": [
                    {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSBatchServiceRole"}
                ],
            },
        },
        EXECUTION_ROLE: {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": _trust("ecs-tasks.amazonaws.com"),
                "Policies": [
                    {
                        "PolicyName": "pull-image-write-logs",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": _execution_role_statements(options),
                        },
                    }
                ],
            },
        },
        JOB_ROLE: {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": _trust("ecs-tasks.amazonaws.com"),
                "Policies": [
                    {
                        "PolicyName": "airflow-task",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": _job_role_statements(options),
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
                "AssumeRolePolicyDocument": _trust("ec2.amazonaws.com"),
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
        resources[INSTANCE_PROFILE] = {
            "Type": "AWS::IAM::InstanceProfile",
            "Properties": {"Roles": [{"Ref": INSTANCE_ROLE}]},
        }
    resources[SCHEDULER_POLICY] = {
        "Type": "AWS::IAM::ManagedPolicy",
        "Properties": {
            "Description": "Attach to the Airflow scheduler's role: what AwsBatchExecutor calls",
            "PolicyDocument": {"Version": "2012-10-17", "Statement": _scheduler_statements(options)},
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
    text: str = yaml.safe_dump(dict(template), sort_keys=False, default_flow_style=False, width=110)
    return text
