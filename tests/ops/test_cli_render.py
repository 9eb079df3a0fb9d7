"""`airflow aws-batch render`, run as the real Airflow CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

RunAirflow = Callable[[list[str], Mapping[str, str]], subprocess.CompletedProcess[str]]

REQUIRED_TYPES = {
    "AWS::Batch::ComputeEnvironment",
    "AWS::Batch::JobQueue",
    "AWS::Batch::JobDefinition",
    "AWS::IAM::Role",
    "AWS::Logs::LogGroup",
}


@pytest.mark.parametrize(
    ("args", "options", "parse", "expect"),
    [
        pytest.param(
            ["--compute", "spot", "--execution-api-url", "https://api.internal/execution/"],
            {"job_queue": "from-config-q", "job_definition": "from-config-d"},
            yaml.safe_load,
            {"queue": "from-config-q", "definition": "from-config-d", "ce_type": "SPOT"},
            id="yaml-spot-names-from-config",
        ),
        pytest.param(
            ["--format", "json", "--job-queue", "cli-q", "--env", "A=1"],
            {"job_queue": "from-config-q"},
            json.loads,
            {"queue": "cli-q", "definition": "airflow-task", "ce_type": "FARGATE", "env_a": "1"},
            id="json-fargate-cli-wins-url-from-core-config",
        ),
        pytest.param(
            [
                "--compute",
                "ec2",
                "--fair-share",
                "--min-vcpus",
                "4",
                "--scale-down-delay",
                "45",
                "--cancel-misconfigured-after",
                "1200",
                "--format",
                "json",
            ],
            {"job_queue": "fair-q"},
            json.loads,
            {
                "queue": "fair-q",
                "definition": "airflow-task",
                "ce_type": "EC2",
                "min_vcpus": "4",
                "scale_down_delay": "45",
                "cancel_after": "1200",
            },
            id="json-ec2-fair-share-warm",
        ),
    ],
)
def test_render_prints_a_parsable_template(
    *,
    run_airflow: RunAirflow,
    airflow_env: Callable[..., dict[str, str]],
    tmp_path: Path,
    args: list[str],
    options: dict[str, str],
    parse: Callable[[str], Any],
    expect: dict[str, str],
) -> None:
    env = airflow_env(tmp_path, "http://127.0.0.1:1", **options)
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = "http://api.from.config:8080/execution/"
    result = run_airflow(["render", *args], env)
    assert result.returncode == 0, result.stderr[-3000:]
    template = parse(result.stdout)
    resources = template["Resources"]
    assert {r["Type"] for r in resources.values()} >= REQUIRED_TYPES
    assert resources["JobQueue"]["Properties"]["JobQueueName"] == expect["queue"]
    assert resources["JobDefinition"]["Properties"]["JobDefinitionName"] == expect["definition"]
    assert resources["ComputeEnvironment"]["Properties"]["ComputeResources"]["Type"] == expect["ce_type"]
    env_pairs = {
        e["Name"]: e["Value"]
        for e in resources["JobDefinition"]["Properties"]["ContainerProperties"]["Environment"]
    }
    if "--execution-api-url" not in args:
        assert (
            env_pairs["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api.from.config:8080/execution/"
        )
    if "env_a" in expect:
        assert env_pairs["A"] == expect["env_a"]
    compute = resources["ComputeEnvironment"]["Properties"]["ComputeResources"]
    queue = resources["JobQueue"]["Properties"]
    if "min_vcpus" in expect:
        assert compute["MinvCpus"] == int(expect["min_vcpus"])
        assert resources["SchedulingPolicy"]["Type"] == "AWS::Batch::SchedulingPolicy"
        assert queue["SchedulingPolicyArn"] == {"Ref": "SchedulingPolicy"}
    else:
        assert "SchedulingPolicyArn" not in queue
    if "scale_down_delay" in expect:
        assert compute["ScalingPolicy"] == {"MinScaleDownDelayMinutes": int(expect["scale_down_delay"])}
    else:
        assert "ScalingPolicy" not in compute
    limits = queue["JobStateTimeLimitActions"]
    assert {a["MaxTimeSeconds"] for a in limits} == {int(expect.get("cancel_after", "900"))}


def test_render_refuses_a_bad_url_by_name(
    *, run_airflow: RunAirflow, airflow_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    result = run_airflow(
        ["render", "--execution-api-url", "http://api:8080/"], airflow_env(tmp_path, "http://x")
    )
    assert result.returncode != 0
    assert "execution_api_url" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "bucket_created", "public_ip", "warns"),
    [
        pytest.param(
            ["--workload-store", "s3://airflow-workloads/prod"],
            True,
            "DISABLED",
            True,
            id="store-creates-bucket",
        ),
        pytest.param(
            ["--workload-store", "s3://airflow-workloads/prod", "--existing-workload-bucket", "--public-ip"],
            False,
            "ENABLED",
            True,
            id="existing-bucket-public-ip",
        ),
        pytest.param(
            ["--execution-api-url", "https://api.internal/execution/"], None, "DISABLED", False, id="tls"
        ),
    ],
)
def test_render_defaults_are_the_safe_ones(
    *,
    run_airflow: RunAirflow,
    airflow_env: Callable[..., dict[str, str]],
    tmp_path: Path,
    args: list[str],
    bucket_created: bool | None,
    public_ip: str,
    warns: bool,
) -> None:
    env = airflow_env(tmp_path, "http://127.0.0.1:1")
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = "http://api.internal:8080/execution/"
    result = run_airflow(["render", "--format", "json", *args], env)
    assert result.returncode == 0, result.stderr[-3000:]
    resources = json.loads(result.stdout)["Resources"]
    if bucket_created is not None:
        assert ("WorkloadBucket" in resources) is bucket_created
    container = resources["JobDefinition"]["Properties"]["ContainerProperties"]
    assert container["NetworkConfiguration"] == {"AssignPublicIp": public_ip}
    assert ("plain http" in result.stderr) is warns, result.stderr
