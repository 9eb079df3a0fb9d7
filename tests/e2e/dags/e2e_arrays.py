"""One mapped task of twelve map indexes, queued together: one Batch array job (see conftest)."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="e2e_arrays", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_arrays() -> None:
    @task(queue="arrays")
    def square(x: int) -> int:
        print(f"e2e_arrays: child {os.environ.get('AWS_BATCH_JOB_ARRAY_INDEX')} squares {x}")
        return x * x

    square.expand(x=list(range(12)))


e2e_arrays()
