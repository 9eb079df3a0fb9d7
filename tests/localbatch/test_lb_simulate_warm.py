"""Simulated execution (faults ``simulate``) and warm interpreters (``serve --preload``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lb_support import Env, Server, describe, make_env, run, start_server, wait_for, wait_status
from localbatch.warm import WarmPool

pytestmark = pytest.mark.contract


def _log_lines(logs: Any, job: dict[str, Any]) -> list[str]:
    stream = job["container"]["logStreamName"]
    events = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream)["events"]
    return [event["message"] for event in events]


# --------------------------------------------------------------------------- simulated execution


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(({"seconds": 0}, "SUCCEEDED", 0), id="instant-success"),
        pytest.param(({"seconds": 0.2, "exit_code": 3}, "FAILED", 3), id="exit-code-fails"),
    ],
)
@pytest.mark.usefixtures("clean_faults")
def test_simulated_job_runs_no_process(
    server: Server, batch: Any, env: Env, tmp_path: Path, case: tuple[dict[str, Any], str, int]
) -> None:
    simulate, status, exit_code = case
    logs = server.client("logs")
    server.admin("PUT", "faults", {"simulate": simulate}).raise_for_status()
    marker = tmp_path / "ran"
    job_id = run(batch, env, ["sh", "-c", f"touch {marker}"], name="simulated")

    job = wait_status(batch, job_id)
    assert (job["status"], job["attempts"][-1]["container"]["exitCode"]) == (status, exit_code)
    assert job["startedAt"] <= job["stoppedAt"]
    assert not marker.exists()
    assert any("simulated run" in line for line in _log_lines(logs, job))


def test_open_ended_simulated_job_runs_until_finished(
    server: Server, batch: Any, env: Env, clean_faults: None
) -> None:
    server.admin("PUT", "faults", {"simulate": {"seconds": None}}).raise_for_status()
    job_ids = [run(batch, env, ["true"], name=f"long{i}") for i in range(3)]
    for job_id in job_ids:
        wait_status(batch, job_id, "RUNNING")

    answer = server.admin("POST", "simulate/finish", {"job_ids": [*job_ids[:2], "no-such-job"]})
    answer.raise_for_status()

    finished = answer.json()["finished"]
    assert [item["jobId"] for item in finished] == job_ids[:2]
    for item in finished:
        job = describe(batch, item["jobId"])
        assert (job["status"], job["stoppedAt"]) == ("SUCCEEDED", item["stoppedAt"])
    assert describe(batch, job_ids[2])["status"] == "RUNNING"
    batch.terminate_job(jobId=job_ids[2], reason="enough")
    job = wait_status(batch, job_ids[2])
    assert (job["status"], job["statusReason"]) == ("FAILED", "enough")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-job-ids"),
        pytest.param({"job_ids": ["x"], "exit_code": "zero"}, id="bad-exit-code"),
    ],
)
def test_finish_rejects_a_bad_body(server: Server, body: dict[str, Any]) -> None:
    assert server.admin("POST", "simulate/finish", body).status_code == 400


# --------------------------------------------------------------------------- warm interpreters

PROBE = """
import os
import sys

if __name__ == "__main__":
    warm = "lbwarm_marker" in sys.modules  # only the zygote imported it
    print(
        f"warm={warm} own_session={os.getsid(0) == os.getpid()} "
        f"overridden={os.environ.get('OVERRIDDEN')} job={os.environ.get('AWS_BATCH_JOB_ID')} "
        f"argv={sys.argv[1:]}",
        flush=True,
    )
    if sys.argv[1:2] == ["sleep"]:
        import time

        time.sleep(60)
    sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
"""


@pytest.fixture(scope="module")
def warm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    modules = tmp_path_factory.mktemp("warm-modules")
    (modules / "lbwarm_probe.py").write_text(PROBE)
    (modules / "lbwarm_marker.py").write_text("")
    path = os.pathsep.join(p for p in (str(modules), os.environ.get("PYTHONPATH", "")) if p)
    srv = start_server(
        tmp_path_factory.mktemp("warm") / "data",
        *("--preload", "lbwarm_marker", "--preload", "lbwarm_probe"),
        *("--pass-env", "PYTHONPATH", "--kill-grace-seconds", "1"),
        env={"PYTHONPATH": path},
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def warm(warm_server: Server) -> tuple[Any, Any, Env]:
    batch = warm_server.client("batch")
    return batch, warm_server.client("logs"), make_env(batch)


def _probe(batch: Any, logs: Any, env: Env, *args: str, **overrides: Any) -> tuple[dict[str, Any], str]:
    job_id = run(batch, env, ["python", "-m", "lbwarm_probe", *args], name="probe", **overrides)
    job = wait_status(batch, job_id)
    return job, " ".join(_log_lines(logs, job))


def _warm_up(batch: Any, logs: Any, env: Env) -> None:
    # The first job starts the zygote and runs as a plain subprocess meanwhile.
    wait_for(lambda: _probe(batch, logs, env)[1], lambda out: "warm=True" in out, 60, "a warm job")


@pytest.mark.parametrize(
    ("args", "status", "exit_code"),
    [
        pytest.param(("0",), "SUCCEEDED", 0, id="exit-0"),
        pytest.param(("3",), "FAILED", 3, id="exit-3"),
    ],
)
def test_warm_job_is_forked_with_its_own_session_env_and_exit_code(
    warm: tuple[Any, Any, Env], args: tuple[str, ...], status: str, exit_code: int
) -> None:
    batch, logs, env = warm
    _warm_up(batch, logs, env)
    overrides = {"containerOverrides": {"environment": [{"name": "OVERRIDDEN", "value": "override"}]}}

    job, output = _probe(batch, logs, env, *args, **overrides)

    assert (job["status"], job["attempts"][-1]["container"]["exitCode"]) == (status, exit_code)
    assert "warm=True own_session=True overridden=override" in output
    assert f"job={job['jobId']}" in output


def test_terminate_stops_a_warm_job(warm: tuple[Any, Any, Env]) -> None:
    batch, logs, env = warm
    _warm_up(batch, logs, env)
    job_id = run(batch, env, ["python", "-m", "lbwarm_probe", "sleep"], name="sleeper")
    wait_for(
        lambda: describe(batch, job_id), lambda j: j.get("container", {}).get("logStreamName"), 20, "a log"
    )
    wait_for(lambda: _log_lines(logs, describe(batch, job_id)), bool, 20, "output")
    batch.terminate_job(jobId=job_id, reason="stop the sleeper")
    job = wait_status(batch, job_id)
    assert (job["status"], job["statusReason"]) == ("FAILED", "stop the sleeper")
    assert "warm=True" in " ".join(_log_lines(logs, job))


def test_other_commands_run_as_subprocesses(warm: tuple[Any, Any, Env]) -> None:
    batch, logs, env = warm
    _warm_up(batch, logs, env)
    job_id = run(batch, env, ["sh", "-c", "python -m lbwarm_probe 0"], name="shell")
    job = wait_status(batch, job_id)
    assert job["status"] == "SUCCEEDED"
    assert "warm=False" in " ".join(_log_lines(logs, job))


@pytest.mark.parametrize(
    ("command", "module"),
    [
        pytest.param(["python", "-m", "pkg.mod", "--x"], "pkg.mod", id="preloaded-submodule"),
        pytest.param(["python3", "-m", "pkg"], "pkg", id="python3"),
        pytest.param([sys.executable, "-m", "pkg"], "pkg", id="localbatch-interpreter"),
        pytest.param(["python", "-m", "pkgx"], None, id="other-module"),
        pytest.param(["python", "-c", "import pkg"], None, id="not-dash-m"),
        pytest.param(["/usr/bin/env", "-m", "pkg"], None, id="not-python"),
        pytest.param(["python"], None, id="too-short"),
    ],
)
def test_which_commands_are_forked(command: list[str], module: str | None) -> None:
    pool = WarmPool(["pkg"], on_exit=lambda child: None)
    assert pool.module_of(command) == module
