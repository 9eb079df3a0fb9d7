"""`airflow aws-batch ... --help` the section name survives its markup; defaults show."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

RunAirflow = Callable[[list[str], Mapping[str, str]], subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def helps(
    tmp_path_factory: pytest.TempPathFactory,
    airflow_env: Callable[..., dict[str, str]],
    run_airflow: RunAirflow,
) -> dict[str, str]:
    env = airflow_env(tmp_path_factory.mktemp("help"), "http://127.0.0.1:9")
    env["COLUMNS"] = "400"  # one help entry per line, so each assertion sees its whole text
    texts = {}
    for command in ("check", "render", "provision"):
        result = run_airflow([command, "--help"], env)
        assert result.returncode == 0, result.stderr[-3000:]
        texts[command] = " ".join(result.stdout.split())
    return texts


def test_help_names_the_section_literally(helps: dict[str, str]) -> None:
    assert "(default: [aws_batch_executor] conn_id, else aws_default)" in helps["check"]
    assert "[aws_batch_executor] region_name" in helps["check"]
    assert "[aws_batch_executor] job_queue" in helps["check"]
    assert "[aws_batch_executor] workload_store" in helps["render"]
    assert "[core] execution_api_server_url" in helps["render"]
    assert "--json" in helps["check"]


@pytest.mark.parametrize(
    "expected",
    [
        "Compute environment type (default: fargate)",
        "Compute environment name (default: airflow-compute)",
        "vCPUs per task (default: 1.0)",
        "Memory per task, MiB (default: 2048)",
        "Compute environment max vCPUs (default: 64)",
        "(default: /aws/batch/airflow-tasks)",
        "CloudFormation stack name (default: airflow-aws-batch)",
        "Seconds to wait for the stack (default: 1800.0)",
    ],
)
def test_provision_help_shows_every_default(helps: dict[str, str], expected: str) -> None:
    assert expected in helps["provision"]


def test_render_help_shows_its_format_default(helps: dict[str, str]) -> None:
    assert "Output format (default: yaml)" in helps["render"]


def test_provision_refuses_to_run_without_an_image(
    tmp_path: Path, airflow_env: Callable[..., dict[str, str]], run_airflow: RunAirflow
) -> None:
    """No AWS is contacted: the refusal comes before any template or client (the endpoint is closed)."""
    env = airflow_env(tmp_path, "http://127.0.0.1:9")
    args = ["provision", "--subnets", "subnet-1", "--security-groups", "sg-1"]
    result = run_airflow([*args, "--execution-api-url", "https://api.internal/execution/"], env)
    assert result.returncode != 0
    assert "--image is required" in result.stderr, result.stderr[-3000:]
    assert "my-airflow-image:latest" in result.stderr
