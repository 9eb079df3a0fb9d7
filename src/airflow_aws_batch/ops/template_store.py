"""The workload store's part of the template: the scheduler's write policy on the store's prefix,
the bucket when the stack creates it, and what to do by hand when it does not."""

from __future__ import annotations

import json
from typing import Any

from airflow_aws_batch.ops.template_iam import s3_objects_arn
from airflow_aws_batch.ops.template_names import (
    SCHEDULER_WORKLOAD_POLICY,
    WORKLOAD_BUCKET,
    WORKLOAD_EXPIRY_DAYS,
)
from airflow_aws_batch.ops.template_options import TemplateOptions


def workload_hints(options: TemplateOptions) -> dict[str, Any]:
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


def workload_resources(options: TemplateOptions) -> dict[str, Any]:
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
