"""localbatch holds this task's jobs in RUNNABLE (a fault rule matches the job name)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="e2e_stuck", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_stuck() -> None:
    @task
    def held() -> None:
        print("e2e_stuck: ran, which it should not")

    held()


e2e_stuck()
