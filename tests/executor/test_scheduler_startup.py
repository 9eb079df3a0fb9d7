"""The real ``airflow scheduler`` refuses to start with a bad [aws_batch_executor] configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

AIRFLOW = str(Path(sys.executable).parent / "airflow")


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__EXECUTOR="airflow_aws_batch.AwsBatchExecutor",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
    )
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=180)
    return env


@pytest.mark.parametrize(
    ("options", "named"),
    [
        pytest.param(
            {"JOB_DEFINITION": "d", "JOB_NAME": "airflow", "REGION_NAME": "us-east-1"},
            "job_queue",
            id="no-job-queue",
        ),
        pytest.param(
            {
                "JOB_QUEUE": "q",
                "JOB_DEFINITION": "d",
                "JOB_NAME": "airflow",
                "REGION_NAME": "us-east-1",
                "MAX_SUBMIT_JOB_ATTEMPTS": "many",
            },
            "max_submit_job_attempts",
            id="bad-int",
        ),
    ],
)
def test_scheduler_exits_naming_the_option(
    airflow_env: dict[str, str], options: dict[str, str], named: str
) -> None:
    env = {**airflow_env, **{f"AIRFLOW__AWS_BATCH_EXECUTOR__{k}": v for k, v in options.items()}}
    result = subprocess.run(
        [AIRFLOW, "scheduler"], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
