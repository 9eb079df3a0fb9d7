"""`airflow aws-batch provision` then `check`, as real CLI processes against moto's server."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from devstack import aws_client

pytestmark = pytest.mark.contract

RunAirflow = Callable[[list[str], Mapping[str, str]], subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def network(moto_url: str) -> tuple[str, str]:
    ec2 = aws_client("ec2", moto_url)
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="airflow-jobs", Description="jobs", VpcId=vpc)["GroupId"]
    return subnet, group


def _status_lines(stdout: str) -> dict[str, list[str]]:
    """`check` output as {item: [status, ...]}."""
    items: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        status, _, rest = line.partition("  ")
        if status in ("OK", "WARN", "FAIL"):
            items.setdefault(rest.strip()[:22].strip(), []).append(status)
    return items


@pytest.fixture(scope="module")
def provisioned(
    *,
    airflow_env: Callable[..., dict[str, str]],
    run_airflow: RunAirflow,
    moto_url: str,
    network: tuple[str, str],
    execution_api_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("airflow-home")
    env = airflow_env(
        home, moto_url, job_queue="airflow-jobs", job_definition="airflow-task", job_name="airflow"
    )
    subnet, group = network
    args = [
        "provision",
        "--compute", "fargate",
        "--subnets", subnet,
        "--security-groups", group,
        "--execution-api-url", execution_api_url,
        "--stack-name", "airflow-batch",
        "--poll-interval", "0.2",
        "--image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/airflow-task:1",
    ]  # fmt: skip
    first = run_airflow(args, env)
    second = run_airflow(args, env)
    yield {"env": env, "home": home, "first": first, "second": second, "args": args}


def test_provision_creates_then_is_idempotent(provisioned: dict[str, Any], moto_url: str) -> None:
    first, second = provisioned["first"], provisioned["second"]
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Stack airflow-batch: created (CREATE_COMPLETE)" in first.stdout
    # Real CloudFormation answers "No updates are to be performed" (unchanged); moto runs an empty update.
    assert second.returncode == 0, second.stderr[-3000:]
    assert any(f"Stack airflow-batch: {word}" in second.stdout for word in ("unchanged", "updated"))

    batch = aws_client("batch", moto_url)
    queues = batch.describe_job_queues(jobQueues=["airflow-jobs"])["jobQueues"]
    assert [(q["state"], q["status"]) for q in queues] == [("ENABLED", "VALID")]
    stacks = aws_client("cloudformation", moto_url).list_stacks()["StackSummaries"]
    assert [s["StackName"] for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"].count(
        "airflow-batch"
    ) == 1


def test_check_passes_after_provision(provisioned: dict[str, Any], run_airflow: RunAirflow) -> None:
    assert provisioned["first"].returncode == 0, provisioned["first"].stderr[-3000:]
    result = run_airflow(["check"], provisioned["env"])
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    items = _status_lines(result.stdout)
    for item in (
        "credentials",
        "region",
        "job queue",
        "compute environment",
        "job definition",
        "task environment",
        "execution API",
    ):
        assert item in items, result.stdout
        assert "FAIL" not in items[item], result.stdout
    # The API answers on a loopback address: fine here, a warning for AWS.
    assert items["execution API"] == ["WARN"], result.stdout
    # moto has no iam:SimulatePrincipalPolicy: the Batch probe says registering is allowed, and
    # iam:PassRole stays unverified (a warning, never a failure).
    assert items["register definitions"] == ["OK"], result.stdout
    assert items["pass role"] == ["WARN"], result.stdout
    # No workload store: tokens travel in the command, and the line says the one-line fix.
    assert items["workload store"] == ["WARN"], result.stdout
    store_line = next(line for line in result.stdout.splitlines() if "workload store" in line)
    assert "AIRFLOW__AWS_BATCH_EXECUTOR__WORKLOAD_STORE=s3://BUCKET/PREFIX" in store_line
    assert result.stdout.rstrip().endswith("All checks passed.")


@pytest.mark.parametrize(
    ("setup", "options", "expected_fail"),
    [
        pytest.param(
            None, {"job_definition": "no-such-definition"}, "no-such-definition", id="missing-definition"
        ),
        pytest.param(None, {"job_queue": "no-such-queue"}, "no-such-queue", id="missing-queue"),
        pytest.param("disabled-queue", {"job_queue": "disabled-jobs"}, "DISABLED/VALID", id="disabled-queue"),
        pytest.param(
            "no-api-env",
            {"job_definition": "bare-task"},
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
            id="no-api-url",
        ),
        pytest.param(
            "dead-api", {"job_definition": "dead-api-task"}, "127.0.0.1:9/execution/health", id="api-down"
        ),
        pytest.param(None, {"job_queue": "", "job_name": ""}, "job_queue", id="unconfigured-queue"),
    ],
)
def test_check_fails_and_names_the_problem(
    *,
    run_airflow: RunAirflow,
    provisioned: dict[str, Any],
    moto_url: str,
    setup: str | None,
    options: dict[str, str],
    expected_fail: str,
) -> None:
    batch = aws_client("batch", moto_url)
    if setup == "disabled-queue":
        ce = batch.describe_compute_environments()["computeEnvironments"][0]["computeEnvironmentArn"]
        batch.create_job_queue(
            jobQueueName="disabled-jobs",
            state="DISABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
        )
    elif setup in ("no-api-env", "dead-api"):
        env = (
            []
            if setup == "no-api-env"
            else [
                {"name": "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "value": "http://127.0.0.1:9/execution/"}
            ]
        )
        batch.register_job_definition(
            jobDefinitionName=options["job_definition"],
            type="container",
            containerProperties={"image": "img", "vcpus": 1, "memory": 512, "environment": env},
        )
    env = dict(provisioned["env"])
    for option, value in options.items():
        env[f"AIRFLOW__AWS_BATCH_EXECUTOR__{option.upper()}"] = value
    result = run_airflow(["check"], env)
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    failing = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert any(expected_fail in line for line in failing), result.stdout


def test_provision_refused_names_the_cause(
    *,
    airflow_env: Callable[..., dict[str, str]],
    run_airflow: RunAirflow,
    tmp_path: Path,
    moto_url: str,
    execution_api_url: str,
) -> None:
    env = airflow_env(tmp_path, moto_url)
    result = run_airflow(
        [
            "provision",
            "--subnets", "subnet-0000000000",
            "--security-groups", "sg-0000000000",
            "--execution-api-url", execution_api_url,
            "--stack-name", "broken",
            "--job-queue", "broken-q",
            "--compute-environment", "broken-ce",
            "--log-group", "/broken",
            "--image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/airflow-task:1",
        ],
        env,
    )  # fmt: skip
    assert result.returncode != 0
    assert "sg-0000000000" in result.stderr


@pytest.mark.parametrize(
    ("bucket_exists", "status", "detail"),
    [
        pytest.param(True, "OK", "wrote, read and deleted a probe object", id="store-works"),
        pytest.param(False, "FAIL", "NoSuchBucket", id="missing-bucket"),
    ],
)
def test_check_probes_the_workload_store(
    *,
    run_airflow: RunAirflow,
    provisioned: dict[str, Any],
    moto_url: str,
    bucket_exists: bool,
    status: str,
    detail: str,
) -> None:
    s3 = aws_client("s3", moto_url)
    bucket = f"check-workloads-{'present' if bucket_exists else 'absent'}"
    if bucket_exists:
        s3.create_bucket(Bucket=bucket)
    env = {**provisioned["env"], "AIRFLOW__AWS_BATCH_EXECUTOR__WORKLOAD_STORE": f"s3://{bucket}/airflow"}
    result = run_airflow(["check"], env)
    lines = [line for line in result.stdout.splitlines() if "workload store" in line]
    assert len(lines) == 1, result.stdout + result.stderr[-3000:]
    assert lines[0].startswith(status) and detail in lines[0], lines[0]
    assert f"s3://{bucket}/airflow" in lines[0]
    assert result.returncode == (0 if status == "OK" else 1), result.stdout
    if bucket_exists:
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
