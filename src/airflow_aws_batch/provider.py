"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-aws-batch",
        "name": "AWS Batch Executor",
        "description": "Runs every Airflow task as its own AWS Batch job.",
        "versions": ["0.1.0"],
        "executors": ["airflow_aws_batch.AwsBatchExecutor"],
    }
