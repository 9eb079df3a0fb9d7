"""A DAG of team_b's bundle: its tasks run on team_b's executor and job queue."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="e2e_team_b", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_team_b() -> None:
    @task
    def work() -> str:
        print("e2e_team_b: work ran")
        return "team_b"

    work()


e2e_team_b()
