"""Simulated execution (fault config `simulate`): jobs run no process; timers and the admin API end them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lb_support import Env, Server, describe, make_env, run, wait_for, wait_status

pytestmark = [pytest.mark.contract, pytest.mark.usefixtures("clean_faults")]

SIMULATED_LINE = "localbatch: simulated run (fault config 'simulate'), no process was started"


def _simulate(server: Server, **simulate: Any) -> None:
    answer = server.admin("PUT", "faults", {"simulate": simulate})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("simulate", "status", "exit_code"),
    [
        pytest.param({"seconds": 0}, "SUCCEEDED", 0, id="zero-seconds-succeeds"),
        pytest.param({"seconds": 0.2, "exit_code": 4}, "FAILED", 4, id="configured-exit-code"),
    ],
)
def test_simulated_job_runs_no_process(  # noqa: PLR0917 (pytest passes parameters by name)
    server: Server,
    batch: Any,
    logs: Any,
    env: Env,
    tmp_path: Path,
    simulate: dict[str, Any],
    status: str,
    exit_code: int,
) -> None:
    _simulate(server, **simulate)
    marker = tmp_path / "ran"
    job = wait_status(batch, run(batch, env, ["touch", str(marker)]))
    assert (job["status"], job["container"]["exitCode"]) == (status, exit_code)
    assert job["statusReason"] == "Essential container in task exited"
    assert job["startedAt"] <= job["stoppedAt"]
    assert not marker.exists()
    events = logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=job["container"]["logStreamName"], startFromHead=True
    )["events"]
    assert [e["message"] for e in events] == [SIMULATED_LINE]


def test_jobs_without_duration_run_until_finished_through_the_admin_api(
    server: Server, batch: Any, env: Env
) -> None:
    _simulate(server, seconds=None)
    ids = [run(batch, env, ["true"], name=f"sim{i}") for i in range(3)]
    for job_id in ids:
        wait_status(batch, job_id, "RUNNING")
    answer = server.admin("POST", "simulate/finish", {"job_ids": [ids[0], "no-such-job"]})
    assert answer.status_code == 200
    (finished,) = answer.json()["finished"]
    assert (finished["jobId"], finished["status"]) == (ids[0], "SUCCEEDED")
    assert finished["stoppedAt"] == describe(batch, ids[0])["stoppedAt"]
    answer = server.admin("POST", "simulate/finish", {"job_ids": ids[1:], "exit_code": 2})
    assert [(f["jobId"], f["status"]) for f in answer.json()["finished"]] == [(i, "FAILED") for i in ids[1:]]
    assert [describe(batch, i)["container"]["exitCode"] for i in ids] == [0, 2, 2]
    # Ending a job that is no longer running does nothing.
    assert server.admin("POST", "simulate/finish", {"job_ids": ids}).json() == {"finished": []}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-job-ids"),
        pytest.param({"job_ids": ["x"], "exit_code": 300}, id="exit-code-out-of-range"),
    ],
)
def test_finish_rejects_bad_requests(server: Server, body: dict[str, Any]) -> None:
    assert server.admin("POST", "simulate/finish", body).status_code == 400


def test_terminate_and_timeout_end_simulated_jobs(server: Server, batch: Any, env: Env) -> None:
    _simulate(server, seconds=None)
    terminated = run(batch, env, ["true"], name="term")
    timed_out = run(batch, env, ["true"], name="slow", timeout={"attemptDurationSeconds": 1})
    wait_status(batch, terminated, "RUNNING")
    batch.terminate_job(jobId=terminated, reason="stopped by test")
    job = wait_status(batch, terminated)
    assert (job["status"], job["statusReason"], job["container"]["exitCode"]) == (
        "FAILED",
        "stopped by test",
        143,
    )
    job = wait_status(batch, timed_out)
    assert (job["status"], job["statusReason"]) == ("FAILED", "Job attempt duration exceeded timeout")


def test_many_simulated_jobs_run_at_once_without_processes(server: Server, batch: Any) -> None:
    _simulate(server, seconds=None)
    env = make_env(batch, max_vcpus=300)
    children_before = _children(server.pid)
    ids = [run(batch, env, ["sleep", "60"], name=f"many{i}") for i in range(300)]
    wait_for(
        lambda: server.admin("GET", "health").json(),
        lambda h: h["simulated"] >= len(ids),
        what="300 simulated jobs RUNNING",
    )
    assert _children(server.pid) == children_before
    for start in range(0, len(ids), 100):
        server.admin("POST", "simulate/finish", {"job_ids": ids[start : start + 100]})
    assert {describe(batch, i)["status"] for i in ids[::50]} == {"SUCCEEDED"}


def _children(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
