"""The template's log group for the jobs' output, and where Airflow's own task logs go."""

from __future__ import annotations

from typing import Any

from airflow_aws_batch.ops.template_options import TemplateOptions


def log_group(options: TemplateOptions) -> dict[str, Any]:
    return {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {"LogGroupName": options.log_group, "RetentionInDays": options.log_retention_days},
    }


def remote_logging_hint(options: TemplateOptions) -> str:
    """What the API server needs to read the task logs this template's tasks write."""
    return (
        f"The API server must read task logs from {options.remote_log_folder}: set the same "
        "[logging] remote_logging and remote_base_log_folder there."
        if options.remote_log_folder
        else "No remote logging: task logs vanish with their containers. Re-render with "
        "--remote-log-folder s3://... or cloudwatch://... and set the same on the API server."
    )
