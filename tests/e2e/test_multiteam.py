"""End to end, multi-team: one scheduler, two teams, each with its own AwsBatchExecutor and job queue.

Airflow 3.3's multi-team mode needs ``[core] multi_team``, the teams in the metadata DB (``airflow
teams create``, before the scheduler and dag-processor start), DAG bundles that name their team
(``[dag_processor] dag_bundle_config_list``) and ``[core] executor`` naming each team's executors
after the global ones. Each team's options are ``AIRFLOW__<TEAM>___AWS_BATCH_EXECUTOR__*``.

This case runs on a stack of its own (not the session's): its configuration differs from the start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from airflow_aws_batch import compat
from devstack import Stack, wait_until
from devstack.stack import COMPUTE_ENVIRONMENT, JOB_DEFINITION

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not compat.MULTI_TEAM, reason="Airflow 3.1 has no multi-team executors"),
]

DAGS = Path(__file__).resolve().parent / "multiteam_dags"
TEAMS = {"team_a": "team-a-jobs", "team_b": "team-b-jobs"}
EXECUTOR = "airflow_aws_batch.AwsBatchExecutor"
RUN_TIMEOUT = 240.0


def _bundles() -> str:
    return json.dumps(
        [
            {
                "name": f"{team}_dags",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(DAGS / team), "refresh_interval": 5},
                "team_name": team,
            }
            for team in TEAMS
        ]
    )


def _team_env(team: str, queue: str) -> dict[str, str]:
    prefix = f"AIRFLOW__{team.upper()}___AWS_BATCH_EXECUTOR__"
    options = {
        "JOB_QUEUE": queue,
        "JOB_DEFINITION": JOB_DEFINITION,
        "JOB_NAME": team,
        "REGION_NAME": "us-east-1",
    }
    return {prefix + key: value for key, value in options.items()}


def _prepare(stack: Stack) -> None:
    """Teams and their job queues exist before the scheduler checks them at start."""
    for team, queue in TEAMS.items():
        stack.run_airflow("teams", "create", team)
        stack.batch.batch.create_job_queue(
            jobQueueName=queue,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": COMPUTE_ENVIRONMENT}],
        )


def _final_jobs(stack: Stack, dag_id: str, run_id: str, queue: str) -> list[dict[str, Any]]:
    """The run's jobs on ``queue`` once each has ended (Airflow may see the task end first)."""

    def probe() -> tuple[bool, Any]:
        jobs = stack.batch.jobs_for(dag_id, run_id=run_id, job_queue=queue)
        return bool(jobs) and all(j["status"] in ("SUCCEEDED", "FAILED") for j in jobs), jobs

    jobs: list[dict[str, Any]] = wait_until(f"Batch jobs of {dag_id} on {queue} to end", probe, 60.0)
    return jobs


def test_each_teams_tasks_run_on_its_own_queue_and_a_bad_option_names_its_team() -> None:
    work_dir = Path(tempfile.mkdtemp(prefix="airflow-aws-batch-e2e-multiteam-"))
    multi_team = {
        "AIRFLOW__CORE__MULTI_TEAM": "True",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": _bundles(),
    }
    env = {
        **multi_team,
        "AIRFLOW__CORE__EXECUTOR": ";".join([EXECUTOR, *(f"{team}={EXECUTOR}" for team in TEAMS)]),
        **{k: v for team, queue in TEAMS.items() for k, v in _team_env(team, queue).items()},
    }
    stack = Stack(
        work_dir,
        db_url=os.environ.get("AIRFLOW_AWS_BATCH_E2E_DB") or None,
        dags_folder=DAGS,
        job_name="e2e",
        env=env,
        # The task processes resolve their DAG through the same bundles.
        task_env=multi_team,
        prepare=_prepare,
    )
    print(f"\ne2e multi-team stack work dir: {work_dir} (kept if the test fails)")
    with stack:
        dag_ids = [f"e2e_{team}" for team in TEAMS]
        stack.airflow.wait_for_dags(dag_ids, timeout=180)
        run_ids = {}
        for dag_id in dag_ids:
            stack.airflow.unpause(dag_id)
            run_ids[dag_id] = stack.airflow.trigger(dag_id)
        for team, queue in TEAMS.items():
            dag_id = f"e2e_{team}"
            run = stack.airflow.wait_for_run(dag_id, run_ids[dag_id], timeout=RUN_TIMEOUT)
            assert (run["state"], stack.airflow.task_states(dag_id, run_ids[dag_id])) == (
                "success",
                {"work": "success"},
            )
            jobs = _final_jobs(stack, dag_id, run_ids[dag_id], queue)
            assert [(j["jobName"], j["tags"].get("airflow_team"), j["status"]) for j in jobs] == [
                (f"{team}-{dag_id}-work", team, "SUCCEEDED")
            ], jobs
        # Nothing reached the global executor's queue.
        assert stack.batch.all_jobs() == []

        # A bad option of team_b stops a scheduler at start, and the message names team_b.
        bad_env = {**stack.airflow_env(), "AIRFLOW__TEAM_B___AWS_BATCH_EXECUTOR__SUBMIT_RATE": "fast"}
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "scheduler"],
            env=bad_env,
            cwd=work_dir,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        output = result.stdout + result.stderr
        (stack.logs_dir / "scheduler-bad-team-b.log").write_text(output)
        assert result.returncode != 0, output[-3000:]
        assert (
            "[aws_batch_executor] submit_rate (team 'team_b'): expected a number > 0 (calls per second), "
            "found 'fast' (env AIRFLOW__TEAM_B___AWS_BATCH_EXECUTOR__SUBMIT_RATE)" in output
        ), output[-3000:]
    shutil.rmtree(work_dir, ignore_errors=True)
