"""The IAM statements of the rendered template: what each role may do, and no more.

- The job role reads DAGs, writes task logs and reads (then deletes) its own workload object; every
  ``s3:ListBucket`` it gets is held to a prefix by an ``s3:prefix`` condition.
- The scheduler's policy submits to the stack's queue with the stack's definition (``<name>`` and the
  derived ``<name>-<hash>``, not every name that starts alike), registers derived definitions only
  when they are not privileged (and, when images are listed, only with one of them), and terminates
  only jobs tagged with a deployment (this one's, when the template knows it).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airflow_aws_batch.ops.template_events import status_events_statements
from airflow_aws_batch.ops.template_names import (
    DEPLOYMENT_TAG,
    EXECUTION_ROLE,
    JOB_QUEUE,
    JOB_ROLE,
    LOG_GROUP,
)
from airflow_aws_batch.ops.template_options import s3_split

if TYPE_CHECKING:
    from airflow_aws_batch.ops.template_options import TemplateOptions

ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[^:@]+)"
)


def trust(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": [service]}, "Action": ["sts:AssumeRole"]}],
    }


def list_bucket_statement(sid: str, bucket: str, prefix: str) -> dict[str, Any]:
    """``s3:ListBucket`` on ``bucket`` for keys under ``prefix`` only. Listing would show the names of
    whatever else the bucket holds (a workload store's objects among them), so no listing goes
    unconditioned: a bucket-wide folder (no prefix) is listed as the keys of its top level and below."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}"}],
        "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix] if prefix else ["*"]}},
    }


def s3_objects_arn(bucket: str, prefix: str) -> dict[str, str]:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}/{prefix + '/' if prefix else ''}*"}


def job_role_statements(options: TemplateOptions) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    if options.dags_s3_uri:
        bucket, prefix = s3_split(options.dags_s3_uri)
        statements.append(list_bucket_statement("ListDagBucket", bucket, prefix))
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
        bucket, prefix = s3_split(options.remote_log_folder)
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
        statements.append(list_bucket_statement("ListTaskLogsS3", bucket, prefix))
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
                "Resource": [s3_objects_arn(*store)],
            }
        )
    if not statements:
        # IAM rejects an empty policy document; this grants nothing beyond reading the caller's id.
        statements.append(
            {"Sid": "Nothing", "Effect": "Allow", "Action": ["sts:GetCallerIdentity"], "Resource": "*"}
        )
    return statements


def execution_role_statements(options: TemplateOptions) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = [
        {
            "Sid": "WriteContainerLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [{"Fn::GetAtt": [LOG_GROUP, "Arn"]}],
        }
    ]
    ecr = ECR_IMAGE.match(options.image)
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


def scheduler_statements(options: TemplateOptions) -> list[dict[str, Any]]:
    """What the scheduler's credentials need: the executor's calls, and for per-task job definitions
    (``jobDefinitionOverrides``) registering definitions named ``<job_definition>-<hash>`` that may
    carry this stack's job and execution roles."""
    arn = "arn:${AWS::Partition}:batch:${AWS::Region}:${AWS::AccountId}"
    logs_arn = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}"
    name = options.job_definition
    # The base definition (any revision) and the derived ones, "<name>-<hash>": not "<name>*", which
    # would also take "<name>s-prod" and whatever else starts alike.
    definitions = [
        {"Fn::Sub": f"{arn}:job-definition/{name}"},
        {"Fn::Sub": f"{arn}:job-definition/{name}:*"},
        {"Fn::Sub": f"{arn}:job-definition/{name}-*"},
    ]
    derived = [d for d in definitions if d["Fn::Sub"].endswith("-*")]
    register: dict[str, Any] = {
        "Sid": "PerTaskJobDefinitions",
        "Effect": "Allow",
        "Action": ["batch:RegisterJobDefinition"],
        "Resource": derived,
        # A DAG author's jobDefinitionOverrides must not make a privileged container (the executor
        # refuses one too, unless allowed_job_definition_overrides says otherwise: then so must this).
        "Condition": {"Bool": {"batch:Privileged": "false"}},
    }
    if options.allowed_images:
        register["Condition"]["StringEquals"] = {"batch:Image": [{"Ref": "Image"}, *options.allowed_images]}
    terminate: dict[str, Any] = {
        "Sid": "TerminateOwnJobs",
        "Effect": "Allow",
        # CancelJob: end() cancels the jobs that never started instead of terminating them.
        "Action": ["batch:TerminateJob", "batch:CancelJob"],
        "Resource": {"Fn::Sub": f"{arn}:job/*"},
        # Only jobs of an Airflow deployment (of this one, when its id is known here), not every job
        # of the account and region.
        "Condition": (
            {"StringEquals": {f"aws:ResourceTag/{DEPLOYMENT_TAG}": options.deployment_id}}
            if options.deployment_id
            else {"Null": {f"aws:ResourceTag/{DEPLOYMENT_TAG}": "false"}}
        ),
    }
    return [
        {
            "Sid": "SubmitJobs",
            "Effect": "Allow",
            "Action": ["batch:SubmitJob", "batch:TagResource"],
            "Resource": [{"Ref": JOB_QUEUE}, *definitions, {"Fn::Sub": f"{arn}:job/*"}],
        },
        {
            "Sid": "WatchJobs",
            "Effect": "Allow",
            "Action": [
                "batch:DescribeJobs",
                "batch:ListJobs",
                "batch:DescribeJobQueues",
                "batch:DescribeJobDefinitions",
                "batch:DescribeComputeEnvironments",
            ],
            "Resource": "*",
        },
        terminate,
        register,
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
        *status_events_statements(options),
    ]


def _role(service: str, **properties: Any) -> dict[str, Any]:
    """An IAM role ``service`` may assume, with ``properties`` (its policies)."""
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {"AssumeRolePolicyDocument": trust(service), **properties},
    }


def _aws_managed(name: str) -> list[dict[str, str]]:
    return [{"Fn::Sub": f"arn:${{AWS::Partition}}:iam::aws:policy/service-role/{name}"}]


def _inline(name: str, statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"PolicyName": name, "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}]


def service_role() -> dict[str, Any]:
    return _role("batch.amazonaws.com", ManagedPolicyArns=_aws_managed("AWSBatchServiceRole"))


def execution_role(options: TemplateOptions) -> dict[str, Any]:
    return _role(
        "ecs-tasks.amazonaws.com",
        Policies=_inline("pull-image-write-logs", execution_role_statements(options)),
    )


def job_role(options: TemplateOptions) -> dict[str, Any]:
    return _role("ecs-tasks.amazonaws.com", Policies=_inline("airflow-task", job_role_statements(options)))


def instance_role() -> dict[str, Any]:
    return _role("ec2.amazonaws.com", ManagedPolicyArns=_aws_managed("AmazonEC2ContainerServiceforEC2Role"))


def scheduler_policy(options: TemplateOptions) -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::ManagedPolicy",
        "Properties": {
            "Description": "Attach to the Airflow scheduler's role: what AwsBatchExecutor calls",
            "PolicyDocument": {"Version": "2012-10-17", "Statement": scheduler_statements(options)},
        },
    }
