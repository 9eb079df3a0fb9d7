"""A task whose code fails on its first try and passes on Airflow's retry."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task


@dag(dag_id="e2e_airflow_retry", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_airflow_retry() -> None:
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def flaky() -> None:
        try_number = get_current_context()["ti"].try_number
        print(f"e2e_airflow_retry: try {try_number}")
        if try_number == 1:
            raise RuntimeError("e2e_airflow_retry: failing on purpose on the first try")

    flaky()


e2e_airflow_retry()
