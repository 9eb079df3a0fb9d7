"""A DAG of team_a's bundle: its tasks run on team_a's executor and job queue."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="e2e_team_a", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_team_a() -> None:
    @task
    def work() -> str:
        print("e2e_team_a: work ran")
        return "team_a"

    work()


e2e_team_a()
