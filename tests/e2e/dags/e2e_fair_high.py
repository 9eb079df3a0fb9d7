"""One task of high priority on the fair-share queue, queued after the ten low ones of e2e_fair_low."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="e2e_fair_high", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_fair_high() -> None:
    @task(queue="fair", priority_weight=100)
    def high() -> None:
        print("e2e_fair_high: ran")

    high()


e2e_fair_high()
