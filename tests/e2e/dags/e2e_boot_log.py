"""A job whose container prints a line and exits before the Airflow task starts.

``boot/sitecustomize.py`` plays the part of an image entrypoint that fails (say, a DAG sync from S3):
the executor_config environment puts it on PYTHONPATH and tells it what to print and how to exit.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import dag, task

BOOT_DIR = str(Path(__file__).resolve().parents[1] / "boot")
BOOT_MESSAGE = "e2e-boot-log: entrypoint could not fetch the DAG bundle"

OVERRIDE = {
    "containerOverrides": {
        "environment": [
            {"name": "PYTHONPATH", "value": BOOT_DIR},
            {"name": "E2E_BOOT_MESSAGE", "value": BOOT_MESSAGE},
            {"name": "E2E_BOOT_EXIT_CODE", "value": "3"},
        ]
    }
}


@dag(dag_id="e2e_boot_log", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_boot_log() -> None:
    @task(executor_config=OVERRIDE)
    def never_starts() -> None:
        print("e2e_boot_log: ran, which it should not")

    never_starts()


e2e_boot_log()
