"""The pieces of `airflow aws-batch check` that judge the task environment and the execution API."""

from __future__ import annotations

import socket

import pytest

from airflow_aws_batch.ops.check import CheckLine, execution_api_line, task_environment_lines

URL = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        pytest.param({URL: "https://api/execution/"}, [("OK", "task environment")], id="url-only"),
        pytest.param({}, [("OK", "task environment"), ("FAIL", "execution API URL")], id="no-url"),
        pytest.param(
            {URL: "https://api/execution/", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://u:p@h/db"},
            [("OK", "task environment"), ("WARN", "task environment")],
            id="database-url-warns",
        ),
        pytest.param(
            {URL: "https://api/execution/", "AIRFLOW__API_AUTH__JWT_SECRET": "s"},
            [("OK", "task environment"), ("WARN", "task environment")],
            id="jwt-secret-warns",
        ),
    ],
)
def test_task_environment_lines(environment: dict[str, str], expected: list[tuple[str, str]]) -> None:
    lines = task_environment_lines(environment)
    assert [(line.status, line.item) for line in lines] == expected


def test_secret_values_are_masked() -> None:
    shown = task_environment_lines(
        {URL: "https://api/execution/", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://u:hunter2@h/db"}
    )[0].detail
    assert "hunter2" not in shown
    assert "https://api/execution/" in shown


def test_only_known_harmless_values_are_shown() -> None:
    # Names that do not look secret carry credentials all the same: every value outside the
    # allowlist is masked.
    shown = task_environment_lines(
        {
            URL: "https://api/execution/",
            "SENTRY_DSN": "https://abc123@o1.ingest.sentry.io/42",
            "REDIS_URL": "redis://:hunter2@cache:6379/0",
            "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/xyz",
            "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": "s3://logs/airflow",
        }
    )[0].detail
    for secret in ("abc123", "hunter2", "hooks.slack.com"):
        assert secret not in shown, shown
    assert "SENTRY_DSN=****" in shown and "REDIS_URL=****" in shown and "SLACK_WEBHOOK_URL=****" in shown
    assert "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER=s3://logs/airflow" in shown


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.contract
@pytest.mark.parametrize(
    ("target", "status", "fragment"),
    [
        # Answers, but AWS jobs could not reach 127.0.0.1.
        pytest.param("airflow", "WARN", "loopback", id="airflow-execution-api-on-loopback"),
        pytest.param("closed", "FAIL", "failed", id="nothing-listening"),
        pytest.param("moto", "FAIL", "execution/health", id="something-else-answers"),
        pytest.param(None, "FAIL", "no URL", id="no-url"),
    ],
)
def test_execution_api_line(
    execution_api_url: str, moto_url: str, target: str | None, status: str, fragment: str
) -> None:
    urls = {
        "airflow": execution_api_url,
        "closed": f"http://127.0.0.1:{_closed_port()}/execution/",
        "moto": f"{moto_url}/execution/",
    }
    line: CheckLine = execution_api_line(urls[target] if target else None, timeout=30)
    assert line.status == status, line
    assert fragment in line.detail, line
