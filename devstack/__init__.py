"""Dev stack: localbatch + Airflow 3 on this machine, for the demo, the end-to-end tests and benchmarks.

Not shipped in the wheel; import it from the repository root. Typical use::

    with Stack(work_dir, dags_folder=dags, db_url=None) as stack:   # None: SQLite in work_dir
        stack.airflow.wait_for_dags(["my_dag"])
        stack.airflow.unpause("my_dag")
        run_id = stack.airflow.trigger("my_dag")
        run = stack.airflow.wait_for_run("my_dag", run_id, timeout=300)
        jobs = stack.batch.wait_final("my_dag", run_id=run_id)      # boto3 DescribeJobs dicts
        stack.batch.set_faults({"rules": [{"job_name_contains": "x", "fault": "hold_runnable"}]})

localbatch alone (tests, benchmarks): :class:`LocalBatchServer`. Every boto3 client for localbatch or
moto's server: :func:`aws_client`.
"""

from __future__ import annotations

from devstack.airflow_api import AirflowClient, ApiError, WaitTimeout, ti_label, wait_until
from devstack.batch import LocalBatch
from devstack.clients import REGION, TESTING_ENV, aws_client
from devstack.localbatch import LocalBatchServer
from devstack.stack import JOB_DEFINITION, JOB_QUEUE, Stack, StackError

__all__ = [
    "JOB_DEFINITION",
    "JOB_QUEUE",
    "REGION",
    "TESTING_ENV",
    "AirflowClient",
    "ApiError",
    "LocalBatch",
    "LocalBatchServer",
    "Stack",
    "StackError",
    "WaitTimeout",
    "aws_client",
    "ti_label",
    "wait_until",
]
