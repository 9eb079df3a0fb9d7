"""End to end with ``workload_store=file://...`` (the session stack's setting): no task's token reaches Batch.

Every job of the session gets its workload through the store. Once the cases that leave objects behind
have ended, the tokens in those objects (jobs that never read theirs: failed before start, held in
RUNNABLE, a container that died at boot) must appear nowhere Batch shows: not in any SubmitJob request
localbatch received, not in any DescribeJobs answer, not in any job's log stream. Tokens of jobs that
consumed their object are gone with it, so every text is also searched for anything shaped like a JWT.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from airflow_aws_batch.workload_rules import LAUNCH_MODULE, decode_object

from .conftest import E2E, WORKLOAD_DIR

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 240.0
#: Cases whose runs must have ended before the search: together they run jobs that consumed their
#: object and jobs that never did.
ENDED_FIRST = ("e2e_success", "e2e_fail_before_start", "e2e_boot_log", "e2e_stuck")
#: A JWT: base64url JSON header ("{" encodes as "ey"), payload and signature.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
PIECE = 20


#: Characters a token is made of (base64url and the dots between its parts).
TOKEN_RUN = re.compile(rf"[A-Za-z0-9_.-]{{{PIECE},}}")


def _pieces(text: str) -> set[str]:
    """Every PIECE-character window of ``text`` that could belong to a token."""
    return {run[i : i + PIECE] for run in TOKEN_RUN.findall(text) for i in range(len(run) - PIECE + 1)}


def _log_text(batch: Any, job: dict[str, Any]) -> str:
    """The job's log; empty for a job that never started a container (no stream was created)."""
    try:
        return "\n".join(batch.log_lines(job))
    except ClientError as error:
        if error.response["Error"]["Code"] == "ResourceNotFoundException":
            return ""
        raise


def test_no_token_reaches_submit_requests_describe_jobs_or_logs(e2e: E2E) -> None:
    e2e.need_batch()
    for dag_id in ENDED_FIRST:
        e2e.stack.airflow.wait_for_run(dag_id, e2e.run_ids[dag_id], timeout=RUN_TIMEOUT)
    batch = e2e.stack.batch
    for dag_id in ENDED_FIRST:
        batch.wait_final(dag_id, run_id=e2e.run_ids[dag_id])

    store = Path(e2e.stack.work_dir) / WORKLOAD_DIR
    objects = sorted(p for p in store.rglob("*.json") if p.is_file())
    tokens = {workload["token"] for path in objects for workload in decode_object(path.read_bytes())}
    left = sorted(str(p.relative_to(store)) for p in objects)
    # Jobs that never read their workload left it; every task that ran consumed (deleted) its own.
    assert any("e2e_fail_before_start-resubmitted" in name for name in left), left
    assert any("e2e_boot_log-never_starts" in name for name in left), left
    assert not any("e2e_success" in name for name in left), left
    assert tokens and all(JWT.fullmatch(token) for token in tokens), left

    requests = batch.submit_requests()
    jobs = batch.all_jobs()
    session_jobs = [job for job in jobs if job["jobName"].startswith("e2e-")]
    assert session_jobs
    for job in session_jobs:
        command = job["container"]["command"]
        assert command[:3] == ["python", "-m", LAUNCH_MODULE], job["jobName"]
        assert command[3].startswith(f"file://{store}/"), command
    texts = {f"SubmitJob request {i}": body for i, body in enumerate(requests)}
    texts.update({f"DescribeJobs {job['jobName']} {job['jobId']}": json.dumps(job) for job in jobs})
    texts.update({f"log of {job['jobName']} {job['jobId']}": _log_text(batch, job) for job in session_jobs})
    # The scheduler's and every other process's log, and the tasks' own logs.
    stack = e2e.stack
    process_logs = sorted(Path(stack.logs_dir).glob("*.log"))
    assert any(path.name.startswith("scheduler") for path in process_logs), process_logs
    for path in [*process_logs, *sorted(Path(stack.task_logs_dir).rglob("*.log"))]:
        texts[f"file {path.name}"] = path.read_text(errors="replace")
    assert len(requests) >= len(session_jobs)

    pieces = set().union(*(_pieces(token) for token in tokens))
    leaks = []
    for where, text in texts.items():
        if JWT.search(text):
            leaks.append(f"{where}: a JWT")
        if pieces & _pieces(text):
            leaks.append(f"{where}: {PIECE} characters of a task's token")
    assert leaks == []
