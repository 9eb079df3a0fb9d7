"""A task that fails its first try; the scheduler is killed just after its retry's job is submitted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task


@dag(
    dag_id="e2e_requeued_kill",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    # Long enough for the test to change localbatch's faults between the two tries.
    default_args={"retries": 1, "retry_delay": timedelta(seconds=20)},
)
def e2e_requeued_kill() -> None:
    @task
    def flaky() -> None:
        context: Any = get_current_context()
        try_number = context["ti"].try_number
        print(f"e2e_requeued_kill: flaky runs try {try_number}")
        if try_number == 1:
            raise RuntimeError("fails on try 1 by design")

    flaky()


e2e_requeued_kill()
