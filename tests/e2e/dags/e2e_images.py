"""Two tasks, each on its own image (``jobDefinitionOverrides``): each runs under a job definition derived
from the deployment's, registered once however many runs there are (localbatch only records the image)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

IMAGES = {"first": "python:3.12-slim", "second": "python:3.13-slim"}


@dag(
    dag_id="e2e_images",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=10,
)
def e2e_images() -> None:
    @task(executor_config={"jobDefinitionOverrides": {"image": IMAGES["first"]}})
    def first() -> None:
        print("e2e_images: first ran")

    @task(executor_config={"jobDefinitionOverrides": {"image": IMAGES["second"]}})
    def second() -> None:
        print("e2e_images: second ran")

    first()
    second()


e2e_images()
