"""Job definition properties that cannot work: an unknown property (refused before any call) and an
image name Batch refuses to register; a task beside them without overrides succeeds."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="e2e_bad_job_definition", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_bad_job_definition() -> None:
    @task(executor_config={"jobDefinitionOverrides": {"imageName": "python:3.12-slim"}})
    def unknown_property() -> None:
        print("e2e_bad_job_definition: unknown_property ran, which it should not")

    @task(executor_config={"jobDefinitionOverrides": {"image": "not an image!"}})
    def refused_image() -> None:
        print("e2e_bad_job_definition: refused_image ran, which it should not")

    @task
    def good() -> None:
        print("e2e_bad_job_definition: good ran")

    unknown_property()
    refused_image()
    good()


e2e_bad_job_definition()
