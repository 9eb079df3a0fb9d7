"""A task on an EKS job definition, chosen by its executor_config: its command goes to the pod."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

OVERRIDE = {
    "jobDefinition": "airflow-task-eks",
    "jobQueue": "airflow-eks",
    "eksPropertiesOverride": {
        "podProperties": {
            "containers": [
                {
                    "env": [{"name": "E2E_POD_GREETING", "value": "hello-from-the-pod"}],
                    "resources": {"requests": {"cpu": "1", "memory": "1024Mi"}},
                }
            ]
        }
    },
}


@dag(dag_id="e2e_eks", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_eks() -> None:
    @task(executor_config=OVERRIDE)
    def in_pod() -> None:
        greeting = os.environ.get("E2E_POD_GREETING")
        print(f"e2e_eks: E2E_POD_GREETING={greeting}")
        if greeting != "hello-from-the-pod":
            raise RuntimeError(f"eksPropertiesOverride env did not reach the task: {greeting!r}")

    in_pod()


e2e_eks()
