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
