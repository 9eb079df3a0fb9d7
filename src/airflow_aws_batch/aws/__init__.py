"""The executor's AWS seam: typed calls, error classification, client construction, call-rate limits."""

from airflow_aws_batch.aws.batch import BatchApi, BatchApiError, ErrorKind, classify
from airflow_aws_batch.aws.shapes import (
    ComputeEnvironmentInfo,
    JobDefinitionInfo,
    JobDetail,
    JobQueueInfo,
    JobSummary,
)

__all__ = [
    "BatchApi",
    "BatchApiError",
    "ComputeEnvironmentInfo",
    "ErrorKind",
    "JobDefinitionInfo",
    "JobDetail",
    "JobQueueInfo",
    "JobSummary",
    "classify",
]
