"""A restart keeps every job record; jobs whose processes died with the service are FAILED."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from lb_support import describe, make_env, run, start_server, wait_for, wait_status

pytestmark = pytest.mark.contract


@pytest.mark.parametrize(
    ("stop_signal", "reason"),
    [
        pytest.param(signal.SIGKILL, "localbatch restarted: ", id="killed"),
        pytest.param(signal.SIGTERM, "localbatch stopped while the job was running", id="stopped"),
    ],
)
def test_restart_keeps_records_and_fails_lost_jobs(tmp_path: Path, stop_signal: int, reason: str) -> None:
    data = tmp_path / "data"
    first = start_server(data, "--faults", _faults_file(tmp_path))
    try:
        batch = first.client("batch")
        env = make_env(batch)
        done = wait_status(batch, run(batch, env, ["true"], name="done"))["jobId"]
        pid_file = tmp_path / "pid"
        running = run(batch, env, ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"], name="running")
        waiting = run(batch, env, ["true"], name="stuck-waiting")
        wait_status(batch, running, "RUNNING")
        wait_status(batch, waiting, "RUNNABLE")
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", bool, what="pid file")
        pid = int(pid_file.read_text())
        # Writes reach SQLite within ~50 ms of a change; give the writer that long before a hard kill.
        time.sleep(0.5)
    finally:
        first.stop(stop_signal)

    second = start_server(data)
    try:
        batch = second.client("batch")
        assert describe(batch, done)["status"] == "SUCCEEDED"
        lost = describe(batch, running)
        assert lost["status"] == "FAILED"
        assert lost["statusReason"].startswith(reason)
        assert not _alive(pid)
        # The held job was only queued: it survives and runs once the restart dropped the hold rule.
        assert wait_status(batch, waiting)["status"] == "SUCCEEDED"
        assert second.shape_problems == []
    finally:
        second.stop()


def _faults_file(tmp_path: Path) -> str:
    path = tmp_path / "faults.json"
    path.write_text('{"rules": [{"job_name_contains": "stuck", "fault": "hold_runnable"}]}')
    return str(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_restart_keeps_arrays(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_server(data)
    try:
        batch = first.client("batch")
        env = make_env(batch, max_vcpus=1)
        # Child 0 runs until the service dies; the others wait for its vCPU meanwhile.
        script = 'if [ "$AWS_BATCH_JOB_ARRAY_INDEX" = 0 ]; then exec sleep 60; fi'
        parent = run(
            batch, env, ["sh", "-c", script], name="arr", arrayProperties={"size": 3}, tags={"k": "v"}
        )
        wait_status(batch, f"{parent}:0", "RUNNING")
        wait_status(batch, f"{parent}:2", "RUNNABLE")
        before = describe(batch, parent)
        # Writes reach SQLite within ~50 ms of a change; give the writer that long before a hard kill.
        time.sleep(0.5)
    finally:
        first.stop(signal.SIGKILL)

    second = start_server(data)
    try:
        batch = second.client("batch")
        parent_after = wait_status(batch, parent)
        assert parent_after["status"] == "FAILED"
        summary = parent_after["arrayProperties"]["statusSummary"]
        assert (summary["FAILED"], summary["SUCCEEDED"]) == (1, 2)
        assert parent_after["container"]["command"] == before["container"]["command"]
        lost = describe(batch, f"{parent}:0")
        assert lost["statusReason"].startswith("localbatch restarted: ")
        children = batch.describe_jobs(jobs=[f"{parent}:{i}" for i in range(3)])["jobs"]
        for child in children:
            assert child["arrayProperties"] == {"index": int(child["jobId"].rsplit(":", 1)[1])}
            assert (child["container"]["command"], child["tags"]) == (["sh", "-c", script], {"k": "v"})
        listed = batch.list_jobs(arrayJobId=parent, jobStatus="SUCCEEDED")["jobSummaryList"]
        assert [j["jobId"] for j in listed] == [f"{parent}:1", f"{parent}:2"]
        queue = batch.list_jobs(jobQueue=env.queue, jobStatus="FAILED")["jobSummaryList"]
        assert [j["jobId"] for j in queue] == [parent]
        health = second.admin("GET", "health").json()
        assert (health["array_jobs"], health["array_children"]) == (1, 3)
        assert second.shape_problems == []
    finally:
        second.stop()
