"""Tasks that run while a scheduler is stopped (SIGTERM) or killed next to another one (HA)."""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import dag, task


def sleepers(dag_id: str, seconds: float, count: int) -> None:
    @dag(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
    def the_dag() -> None:
        @task
        def sleeper(n: int) -> int:
            print(f"{dag_id}: sleeper {n} starts")
            time.sleep(seconds)
            print(f"{dag_id}: sleeper {n} done")
            return n

        sleeper.expand(n=list(range(count)))

    the_dag()


sleepers("e2e_sigterm", 40.0, 3)
sleepers("e2e_ha", 8.0, 12)
