"""A per-task executor_config: vCPUs, memory and environment reach the Batch job."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

OVERRIDE = {
    "containerOverrides": {
        "resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "1024"}],
        "environment": [{"name": "E2E_GREETING", "value": "hello-from-executor-config"}],
    }
}


@dag(dag_id="e2e_exec_config", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_exec_config() -> None:
    @task(executor_config=OVERRIDE)
    def overridden() -> None:
        greeting = os.environ.get("E2E_GREETING")
        print(f"e2e_exec_config: E2E_GREETING={greeting}")
        if greeting != "hello-from-executor-config":
            raise RuntimeError(f"executor_config environment did not reach the task: {greeting!r}")

    overridden()


e2e_exec_config()
