"""One task with an executor_config Batch does not accept, one without: only the first fails."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="e2e_bad_exec_config", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_bad_exec_config() -> None:
    @task(executor_config={"containerOverrides": {"cpus": 4}})
    def bad() -> None:
        print("e2e_bad_exec_config: bad ran, which it should not")

    @task
    def good() -> None:
        print("e2e_bad_exec_config: good ran")

    bad()
    good()


e2e_bad_exec_config()
