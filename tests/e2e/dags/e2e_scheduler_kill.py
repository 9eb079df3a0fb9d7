"""Tasks that run long enough for the scheduler to be killed and restarted under them."""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import dag, task

SLEEP_SECONDS = 45


@dag(dag_id="e2e_scheduler_kill", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_scheduler_kill() -> None:
    @task
    def sleeper(n: int) -> int:
        print(f"e2e_scheduler_kill: sleeper {n} starts")
        time.sleep(SLEEP_SECONDS)
        print(f"e2e_scheduler_kill: sleeper {n} done")
        return n

    @task
    def after(values: list[int]) -> None:
        print(f"e2e_scheduler_kill: after saw {sorted(values)}")

    after(sleeper.expand(n=[1, 2, 3]))


e2e_scheduler_kill()
