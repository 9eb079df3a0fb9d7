"""`airflow aws-batch check` against localbatch, as real processes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from devstack import LocalBatchServer

pytestmark = pytest.mark.contract

RunAirflow = Callable[[list[str], Mapping[str, str]], subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def localbatch_resources(localbatch: LocalBatchServer, execution_api_url: str) -> str:
    """localbatch's own setup command creates the compute environment, queue and job definition."""
    localbatch.setup(
        job_queue="airflow-jobs",
        job_definition="airflow-task",
        api_server_url=execution_api_url.removesuffix("/execution/"),
    )
    return localbatch.url


@pytest.mark.parametrize(
    ("job_queue", "returncode", "expected"),
    [
        pytest.param(
            "airflow-jobs", 0, ("OK", "job queue", "'airflow-jobs' is ENABLED/VALID"), id="set-up-queue"
        ),
        pytest.param(
            "queue-that-is-not-there",
            1,
            ("FAIL", "job queue", "'queue-that-is-not-there' does not exist"),
            id="missing-queue",
        ),
    ],
)
def test_check_against_localbatch(
    *,
    run_airflow: RunAirflow,
    airflow_env: Callable[..., dict[str, str]],
    localbatch_resources: str,
    tmp_path: Path,
    job_queue: str,
    returncode: int,
    expected: tuple[str, str, str],
) -> None:
    env = airflow_env(
        tmp_path, localbatch_resources, job_queue=job_queue, job_definition="airflow-task", job_name="airflow"
    )
    result = run_airflow(["check"], env)
    assert result.returncode == returncode, result.stdout + result.stderr[-3000:]
    status, item, detail = expected
    assert any(
        line.startswith(status) and item in line and detail in line for line in result.stdout.splitlines()
    ), result.stdout
