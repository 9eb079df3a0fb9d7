"""docs/localbatch.md's boto3 example works as printed: `localbatch setup`, then submit, describe, logs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lb_support import Server, wait_for

pytestmark = pytest.mark.contract

PAGE = Path(__file__).resolve().parents[2] / "docs" / "localbatch.md"


def _readme_example() -> str:
    section = PAGE.read_text().split("## Serve and set up", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "docs/localbatch.md's 'Serve and set up' has no python example"
    return str(blocks[0])


def test_readme_example_submits_describes_and_reads_logs(server: Server) -> None:
    subprocess.run(
        [sys.executable, "-m", "localbatch", "setup", "--endpoint-url", server.url],
        check=True,
        capture_output=True,
        timeout=60,
        env={**os.environ, **server.aws_env()},
    )
    # The example's keys are any keys; this server checks signatures against its own.
    keys = server.credentials
    code = (
        _readme_example()
        .replace("http://127.0.0.1:8000", server.url)
        .replace('aws_access_key_id="testing"', f'aws_access_key_id="{keys["aws_access_key_id"]}"')
        .replace(
            'aws_secret_access_key="testing"', f'aws_secret_access_key="{keys["aws_secret_access_key"]}"'
        )
    )
    # The example submits, then describes and reads the logs; as its comment says, a user polls in
    # between, so run it in two halves with the poll between them.
    submit_part, rest = code.split("detail = ", 1)
    scope: dict[str, Any] = {}
    exec(compile(submit_part, "docs/localbatch.md", "exec"), scope)
    batch, job = scope["batch"], scope["job"]
    finished = wait_for(
        lambda: batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0],
        lambda d: d["status"] in ("SUCCEEDED", "FAILED"),
        what="the documented job to finish",
    )
    assert finished["status"] == "SUCCEEDED", finished.get("statusReason")
    exec(compile("detail = " + rest, "docs/localbatch.md", "exec"), scope)
    messages = [event["message"] for event in scope["events"]]
    assert f"hello from {job['jobId']}" in messages
