"""localbatch fails this task's first job before it starts (a fault rule matches the job name)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="e2e_fail_before_start", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_fail_before_start() -> None:
    @task
    def resubmitted() -> None:
        print("e2e_fail_before_start: ran")

    resubmitted()


e2e_fail_before_start()
