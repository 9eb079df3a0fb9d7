"""Apache Airflow 3 executor that runs every task as its own AWS Batch job.

Set ``[core] executor = airflow_aws_batch.AwsBatchExecutor``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from airflow_aws_batch.executor import AwsBatchExecutor

__all__ = ["AwsBatchExecutor", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: the provider entry point imports this package while Airflow's ProvidersManager
    # is still initialising, and the executor module imports airflow.executors.
    if name == "AwsBatchExecutor":
        from airflow_aws_batch.executor import AwsBatchExecutor

        return AwsBatchExecutor
    raise AttributeError(name)
