"""A task whose Batch jobs print a line and exit 3 before the Airflow task starts.

``boot/sitecustomize.py`` plays the part of an image entrypoint that fails: the executor_config
environment puts it on PYTHONPATH and tells it what to print and how to exit.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import dag, task

BOOT_DIR = str(Path(__file__).resolve().parents[1] / "boot")
BOOT_MESSAGE = "ui-boot: entrypoint could not fetch the DAG bundle"

OVERRIDE = {
    "containerOverrides": {
        "environment": [
            {"name": "PYTHONPATH", "value": BOOT_DIR},
            {"name": "UI_BOOT_MESSAGE", "value": BOOT_MESSAGE},
            {"name": "UI_BOOT_EXIT_CODE", "value": "3"},
        ]
    }
}


@dag(dag_id="ui_failed_before_start", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def ui_failed_before_start() -> None:
    @task(executor_config=OVERRIDE)
    def never_starts() -> None:
        print("ui_failed_before_start: ran, which it should not")

    never_starts()


ui_failed_before_start()
