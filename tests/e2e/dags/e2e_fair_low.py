"""Ten tasks of low priority on the fair-share queue (Airflow queue ``fair``), queued before the high one."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

LOW_TASKS = 10


@dag(dag_id="e2e_fair_low", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_fair_low() -> None:
    for index in range(LOW_TASKS):

        @task(task_id=f"low_{index}", queue="fair", priority_weight=1)
        def low() -> None:
            print("e2e_fair_low: ran")

        low()


e2e_fair_low()
