"""docker/entrypoint.sh, run with bash and a stub `aws` on PATH (no Docker engine on these machines)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[2] / "docker" / "entrypoint.sh"

# The stub records its arguments, one per line, and exits with $AWS_STUB_EXIT.
STUB_AWS = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$AWS_STUB_LOG"
exit "${AWS_STUB_EXIT:-0}"
"""


def _run(
    tmp_path: Path, command: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], list[str] | None]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "aws"
    stub.write_text(STUB_AWS)
    stub.chmod(0o755)
    log = tmp_path / "aws-calls.txt"
    full_env = {
        "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AWS_STUB_LOG": str(log),
        "CONTAINER_DAG_PATH": str(tmp_path / "dags"),
        **env,
    }
    proc = subprocess.run(
        ["bash", str(ENTRYPOINT), *command],
        check=False,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = log.read_text().splitlines() if log.exists() else None
    return proc, calls


@pytest.mark.parametrize(
    ("env", "expected_aws_args"),
    [
        pytest.param({}, None, id="no-s3-uri-no-sync"),
        pytest.param({"S3_URI": ""}, None, id="empty-s3-uri-no-sync"),
        pytest.param(
            {"S3_URI": "s3://my-bucket/dags/"},
            ["s3", "sync", "--no-progress", "s3://my-bucket/dags/", "{dags}"],
            id="s3-uri-syncs-to-container-dag-path",
        ),
    ],
)
def test_s3_sync_only_when_s3_uri_is_set(
    tmp_path: Path, env: dict[str, str], expected_aws_args: list[str] | None
) -> None:
    proc, calls = _run(tmp_path, ["true"], env)
    assert proc.returncode == 0, proc.stderr
    if expected_aws_args is None:
        assert calls is None
    else:
        assert calls == [a.replace("{dags}", str(tmp_path / "dags")) for a in expected_aws_args]
        assert (tmp_path / "dags").is_dir()


@pytest.mark.parametrize(
    ("command", "env", "returncode"),
    [
        pytest.param(["sh", "-c", "exit 0"], {}, 0, id="success"),
        pytest.param(["sh", "-c", "exit 3"], {}, 3, id="failure-propagated"),
        pytest.param(["sh", "-c", "kill -TERM $$"], {}, -15, id="signal-propagated"),
        pytest.param(
            ["sh", "-c", "exit 0"], {"S3_URI": "s3://b/d", "AWS_STUB_EXIT": "1"}, 70, id="sync-fails"
        ),
    ],
)
def test_exit_code_is_the_commands(
    tmp_path: Path, command: list[str], env: dict[str, str], returncode: int
) -> None:
    proc, _ = _run(tmp_path, command, env)
    assert proc.returncode == returncode, proc.stderr


def test_sync_failure_stops_before_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    proc, _ = _run(tmp_path, ["touch", str(marker)], {"S3_URI": "s3://b/d", "AWS_STUB_EXIT": "2"})
    assert proc.returncode == 70
    assert not marker.exists()
    assert "s3://b/d" in proc.stderr


def test_command_replaces_the_entrypoint_process(tmp_path: Path) -> None:
    # `exec` means the task is the container's main process and gets Batch's SIGTERM directly.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = "import os, sys; print(os.getpid()); print(' '.join(sys.argv[1:]))"
    proc = subprocess.Popen(
        ["bash", str(ENTRYPOINT), sys.executable, "-c", script, "--json-string", '{"a": 1}'],
        env={"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    pid, argv = out.splitlines()
    assert int(pid) == proc.pid
    assert argv == '--json-string {"a": 1}'


@pytest.mark.parametrize(
    ("variable", "value", "expect_set"),
    [
        pytest.param("AWS_ACCESS_KEY_ID", "", False, id="blank-key-dropped"),
        pytest.param("AWS_SESSION_TOKEN", "", False, id="blank-token-dropped"),
        pytest.param("AWS_DEFAULT_REGION", "", False, id="blank-region-dropped"),
        pytest.param("AWS_DEFAULT_REGION", "eu-west-1", True, id="region-kept"),
    ],
)
def test_blank_aws_variables_are_unset(tmp_path: Path, variable: str, value: str, expect_set: bool) -> None:
    proc, _ = _run(tmp_path, ["sh", "-c", f'echo "${{{variable}+set}}"'], {variable: value})
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout.strip() == "set") is expect_set


def test_bare_airflow_subcommand_gets_airflow_prefix(tmp_path: Path) -> None:
    # `docker run IMAGE version` (the seed's way to read the image's Airflow version).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_airflow = bin_dir / "airflow"
    fake_airflow.write_text('#!/usr/bin/env bash\necho "airflow called with: $*"\n')
    fake_airflow.chmod(0o755)
    proc, _ = _run(tmp_path, ["version"], {})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "airflow called with: version"


@pytest.mark.parametrize(
    ("env", "policy"),
    [
        pytest.param({}, os.SCHED_BATCH, id="sched-batch-by-default"),
        pytest.param({"AIRFLOW_AWS_BATCH_SCHED_BATCH": "0"}, os.SCHED_OTHER, id="opt-out"),
    ],
)
def test_task_runs_under_sched_batch(tmp_path: Path, env: dict[str, str], policy: int) -> None:
    # The task (and the task process Airflow forks from it) must not preempt on wake-up: see entrypoint.sh.
    script = "import os; print(os.sched_getscheduler(0))"
    proc, _ = _run(tmp_path, [sys.executable, "-c", script], env)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) == policy
