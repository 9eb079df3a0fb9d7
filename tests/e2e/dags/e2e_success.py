"""Two tasks in parallel, then one downstream: the plain path."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="e2e_success", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_success() -> None:
    @task
    def left() -> str:
        print("e2e_success: left ran")
        return "left"

    @task
    def right() -> str:
        print("e2e_success: right ran")
        return "right"

    @task
    def join(a: str, b: str) -> str:
        print(f"e2e_success: joined {a}+{b}")
        return a + b

    join(left(), right())


e2e_success()
