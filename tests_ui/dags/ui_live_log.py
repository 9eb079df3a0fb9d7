"""A task that prints a line, waits for the test, prints another, and waits again.

The run conf's ``release_dir`` names a directory: the task prints ``FIRST_LINE``, waits until
``<release_dir>/more`` exists, prints ``SECOND_LINE``, then waits until ``<release_dir>/done`` exists.
Each wait gives up after 10 minutes, so a test that died leaves no job behind for long.
"""

from __future__ import annotations

import time
from pathlib import Path

import pendulum
from airflow.sdk import dag, get_current_context, task

FIRST_LINE = "ui-live-log: first line, the task now waits"
SECOND_LINE = "ui-live-log: second line, printed while the page was open"


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 600
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


@dag(dag_id="ui_live_log", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def ui_live_log() -> None:
    @task
    def waiter() -> None:
        release_dir = Path(get_current_context()["dag_run"].conf["release_dir"])
        print(FIRST_LINE, flush=True)
        _wait_for(release_dir / "more")
        print(SECOND_LINE, flush=True)
        _wait_for(release_dir / "done")

    waiter()


ui_live_log()
