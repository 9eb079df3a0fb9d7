"""`airflow aws-batch check` against localbatch, as real processes."""

from __future__ import annotations

import json
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


def _check(
    run_airflow: RunAirflow, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    result = run_airflow(["check", *args], env)
    return result, result.stdout.splitlines()


def test_a_missing_queue_or_definition_names_where_it_looked_and_what_is_there(
    *,
    run_airflow: RunAirflow,
    airflow_env: Callable[..., dict[str, str]],
    localbatch_resources: LocalBatchServer,
    tmp_path: Path,
) -> None:
    env = airflow_env(
        tmp_path, localbatch_resources, job_queue="airflow-job", job_definition="airflow-tsk", job_name="a"
    )
    result, lines = _check(run_airflow, env)
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    queue = next(line for line in lines if line.startswith("FAIL") and "job queue" in line)
    assert "'airflow-job' does not exist" in queue
    assert f"looked in us-east-1 at {localbatch_resources.url}" in queue, queue
    assert "did you mean 'airflow-jobs'?" in queue, queue
    definition = next(line for line in lines if line.startswith("FAIL") and "job definition" in line)
    assert "did you mean 'airflow-task'?" in definition, definition
    assert any(
        line.startswith("OK") and "endpoint" in line and localbatch_resources.url in line for line in lines
    ), result.stdout


def test_no_region_names_the_option_and_the_connection_extra(
    *,
    run_airflow: RunAirflow,
    airflow_env: Callable[..., dict[str, str]],
    localbatch_resources: LocalBatchServer,
    tmp_path: Path,
) -> None:
    env = airflow_env(
        tmp_path, localbatch_resources, job_queue="airflow-jobs", job_definition="airflow-task", job_name="a"
    )
    env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
        {"conn_type": "aws", "extra": {"endpoint_url": localbatch_resources.url}}
    )
    result, lines = _check(run_airflow, env)
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    (failure,) = [line for line in lines if line.startswith("FAIL")]
    assert "region" in failure, result.stdout
    assert "[aws_batch_executor] region_name" in failure
    assert "AIRFLOW__AWS_BATCH_EXECUTOR__REGION_NAME" in failure
    assert "extra of connection 'aws_default'" in failure
    assert "You must specify a region" not in result.stdout


def test_json_report_alone_on_stdout_with_the_url_source(
    *,
    run_airflow: RunAirflow,
    airflow_env: Callable[..., dict[str, str]],
    localbatch_resources: LocalBatchServer,
    tmp_path: Path,
) -> None:
    """Credentials from the connection's login make the Amazon provider log an info line per hook;
    none of it may reach stdout, which holds only the JSON report."""
    env = airflow_env(
        tmp_path, localbatch_resources, job_queue="airflow-jobs", job_definition="airflow-task", job_name="a"
    )
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
        {
            "conn_type": "aws",
            "login": localbatch_resources.credentials["aws_access_key_id"],
            "password": localbatch_resources.credentials["aws_secret_access_key"],
            "extra": {"endpoint_url": localbatch_resources.url, "region_name": "us-east-1"},
        }
    )
    text = run_airflow(["check"], env)
    assert "credentials retrieved" not in text.stdout, text.stdout
    assert text.stdout.rstrip().endswith("All checks passed."), text.stdout + text.stderr[-3000:]

    result, _ = _check(run_airflow, env, "--json")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["failed"] == 0
    by_item = {check["item"]: check for check in report["checks"]}
    assert (
        by_item["region"]["detail"] == "us-east-1 (from region_name in the extra of connection 'aws_default')"
    )
    api = by_item["execution API"]["detail"]
    assert "URL from AIRFLOW__CORE__EXECUTION_API_SERVER_URL in the environment of job definition" in api


def test_json_report_of_a_failure_exits_1(
    *,
    run_airflow: RunAirflow,
    airflow_env: Callable[..., dict[str, str]],
    localbatch_resources: LocalBatchServer,
    tmp_path: Path,
) -> None:
    env = airflow_env(
        tmp_path, localbatch_resources, job_queue="nope", job_definition="airflow-task", job_name="a"
    )
    result, _ = _check(run_airflow, env, "--json")
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["failed"] == 1
    assert [c["item"] for c in report["checks"] if c["status"] == "FAIL"] == ["job queue"]
