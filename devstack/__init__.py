"""Dev stack: localbatch + Airflow 3 on this machine, for the demo, the end-to-end tests and benchmarks.

Not shipped in the wheel; import it from the repository root.
"""

from __future__ import annotations

from devstack.airflow_api import AirflowClient, ApiError, WaitTimeout, ti_label, wait_until
from devstack.batch import LocalBatch
from devstack.stack import JOB_DEFINITION, JOB_QUEUE, Stack, StackError

__all__ = [
    "JOB_DEFINITION",
    "JOB_QUEUE",
    "AirflowClient",
    "ApiError",
    "LocalBatch",
    "Stack",
    "StackError",
    "WaitTimeout",
    "ti_label",
    "wait_until",
]
