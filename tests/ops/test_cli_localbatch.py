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
def localbatch_resources(localbatch: LocalBatchServer, execution_api_url: str) -> LocalBatchServer:
    """localbatch's own setup command creates the compute environment, queue and job definition."""
    localbatch.setup(
        job_queue="airflow-jobs",
        job_definition="airflow-task",
        api_server_url=execution_api_url.removesuffix("/execution/"),
    )
    return localbatch


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
    localbatch_resources: LocalBatchServer,
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


def test_check_on_an_eks_job_definition(
    *,
    run_airflow: RunAirflow,
    airflow_env: Callable[..., dict[str, str]],
    localbatch: LocalBatchServer,
    localbatch_resources: LocalBatchServer,
    tmp_path: Path,
) -> None:
    """An EKS queue and definition (the container definition's environment in the pod's first container):
    the report names the kind and reads the task environment from the pod."""
    batch = localbatch.batch
    batch.create_compute_environment(
        computeEnvironmentName="check-eks-ce",
        type="MANAGED",
        computeResources={"type": "EC2", "maxvCpus": 2, "subnets": ["subnet-1"], "instanceRole": "r"},
        eksConfiguration={
            "eksClusterArn": "arn:aws:eks:us-east-1:123456789012:cluster/c",
            "kubernetesNamespace": "airflow-batch",
        },
    )
    batch.create_job_queue(
        jobQueueName="check-eks-jobs",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "check-eks-ce"}],
    )
    (container,) = batch.describe_job_definitions(jobDefinitionName="airflow-task", status="ACTIVE")[
        "jobDefinitions"
    ]
    batch.register_job_definition(
        jobDefinitionName="check-eks-task",
        type="container",
        eksProperties={
            "podProperties": {
                "containers": [
                    {"name": "task", "image": "x", "env": container["containerProperties"]["environment"]}
                ]
            }
        },
    )
    env = airflow_env(
        tmp_path,
        localbatch_resources,
        job_queue="check-eks-jobs",
        job_definition="check-eks-task",
        job_name="a",
    )
    result = run_airflow(["check"], env)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "an EKS job definition: tasks run in container 'task'" in result.stdout, result.stdout
    assert "EKS (namespace 'airflow-batch')" in result.stdout, result.stdout
