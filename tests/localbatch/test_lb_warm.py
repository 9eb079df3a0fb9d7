"""Warm interpreters (`serve --preload`): `python -m MODULE` jobs forked from a zygote behave as cold ones.

Every case runs twice: through the warm path (`python -m lb_probe`, preloaded) and through the cold
path (`python -u -m lb_probe`, an option the warm path does not take). The probe's first log line
says which path ran it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lb_support import Env, Server, make_env, run, start_server, wait_for, wait_status

pytestmark = pytest.mark.contract

PROBE_DIR = Path(__file__).parent / "probe"
PATHS = {"warm": ["python", "-m", "lb_probe"], "cold": ["python", "-u", "-m", "lb_probe"]}
WARM_LOST = "localbatch: the warm interpreter that forked this job exited while it ran"


@pytest.fixture(scope="module")
def warm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("warm") / "data",
        *("--preload", "lb_probe", "--pass-env", "PYTHONPATH", "--pass-env", "LB_TEST_PASSED"),
        *("--kill-grace-seconds", "1"),
        env={"PYTHONPATH": str(PROBE_DIR), "LB_TEST_PASSED": "passed", "LB_TEST_HIDDEN": "hidden"},
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def wbatch(warm_server: Server) -> Any:
    return warm_server.client("batch")


@pytest.fixture(scope="module")
def wlogs(warm_server: Server) -> Any:
    return warm_server.client("logs")


@pytest.fixture(scope="module")
def wenv(wbatch: Any) -> Env:
    return make_env(wbatch)


def _lines(logs: Any, job: dict[str, Any], first: str = "path=") -> list[str]:
    def fetch() -> list[str]:
        events = logs.get_log_events(
            logGroupName="/aws/batch/job", logStreamName=job["container"]["logStreamName"], startFromHead=True
        )["events"]
        return [e["message"] for e in events]

    return wait_for(fetch, lambda lines: any(m.startswith(first) for m in lines), what="probe output")


@pytest.mark.parametrize("path", ["warm", "cold"])
def test_environment_output_and_session(wbatch: Any, wlogs: Any, wenv: Env, path: str) -> None:
    job_id = run(
        wbatch,
        wenv,
        [*PATHS[path], "report", "two words"],
        containerOverrides={"environment": [{"name": "OVERRIDDEN", "value": "override"}]},
    )
    job = wait_status(wbatch, job_id, timeout=30)
    lines = _lines(wlogs, job)
    assert (job["status"], job["container"]["exitCode"]) == ("SUCCEEDED", 0)
    assert sorted(lines) == sorted(
        [
            f"path={path}",
            "FROM_JD=jd",
            "OVERRIDDEN=override",
            f"AWS_BATCH_JOB_ID={job_id}",
            "LB_TEST_PASSED=passed",
            "LB_TEST_HIDDEN=unset",
            "argv=['report', 'two words']",
            "session_leader=True",
            "cwd_is_work=True",
            # No preemption on wake-up, as in the airflow-aws-batch image (see localbatch.warm).
            "sched_batch=True",
            "to stderr",
        ]
    )


@pytest.mark.parametrize("path", ["warm", "cold"])
@pytest.mark.parametrize(
    ("args", "exit_code", "last_line"),
    [
        pytest.param(["exit", "0"], 0, "path=", id="exit-0"),
        pytest.param(["exit", "3"], 3, "path=", id="sys-exit-3"),
        pytest.param(["raise"], 1, "RuntimeError: probe failed on purpose", id="exception-is-1"),
        pytest.param(["kill"], 137, "path=", id="sigkill-is-137"),
        pytest.param(["exit-message"], 1, "probe gave up", id="sys-exit-message-is-1"),
        pytest.param(["interrupt"], 130, "KeyboardInterrupt", id="keyboard-interrupt-is-sigint"),
        pytest.param(["finish"], 0, "thread finished, then", id="threads-atexit-flush"),
    ],
)
def test_exit_codes(  # noqa: PLR0917 (pytest passes parameters by name)
    wbatch: Any, wlogs: Any, wenv: Env, path: str, args: list[str], exit_code: int, last_line: str
) -> None:
    job = wait_status(wbatch, run(wbatch, wenv, [*PATHS[path], *args]), timeout=30)
    assert job["container"]["exitCode"] == exit_code
    assert job["status"] == ("SUCCEEDED" if exit_code == 0 else "FAILED")
    lines = _lines(wlogs, job, last_line)
    assert lines[0] == f"path={path}"
    assert lines[-1].startswith(last_line)


def _grandchild(logs: Any, batch: Any, job_id: str) -> int:
    job = wait_status(batch, job_id, "RUNNING", timeout=30)
    line = _lines(logs, job, "grandchild=")[-1]
    return int(line.split("=")[1])


@pytest.mark.parametrize("path", ["warm", "cold"])
def test_terminate_kills_the_process_group(wbatch: Any, wlogs: Any, wenv: Env, path: str) -> None:
    job_id = run(wbatch, wenv, [*PATHS[path], "sleep"])
    grandchild = _grandchild(wlogs, wbatch, job_id)
    wbatch.terminate_job(jobId=job_id, reason="stopped by test")
    job = wait_status(wbatch, job_id)
    assert (job["status"], job["statusReason"], job["container"]["exitCode"]) == (
        "FAILED",
        "stopped by test",
        143,
    )
    wait_for(lambda: Path(f"/proc/{grandchild}").exists(), lambda alive: not alive, what="grandchild gone")


@pytest.mark.parametrize("path", ["warm", "cold"])
def test_timeout_sigterm_then_sigkill(wbatch: Any, wenv: Env, path: str) -> None:
    job_id = run(wbatch, wenv, [*PATHS[path], "sleep", "ignore-term"], timeout={"attemptDurationSeconds": 1})
    job = wait_status(wbatch, job_id, timeout=30)
    assert (job["status"], job["statusReason"], job["container"]["exitCode"]) == (
        "FAILED",
        "Job attempt duration exceeded timeout",
        137,
    )


@pytest.mark.parametrize(
    ("command", "path"),
    [
        pytest.param(["python3", "-m", "lb_probe", "exit", "0"], "warm", id="python3-is-warm"),
        pytest.param(["sh", "-c", "exec python -m lb_probe exit 0"], "cold", id="through-a-shell-is-cold"),
        pytest.param(["python", "-m", "lb_probe_state"], None, id="module-not-preloaded-is-cold"),
    ],
)
def test_which_commands_run_warm(  # noqa: PLR0917 (pytest passes parameters by name)
    wbatch: Any, wlogs: Any, wenv: Env, warm_server: Server, command: list[str], path: str | None
) -> None:
    forks_before = _zygote_forks(warm_server)
    job = wait_status(wbatch, run(wbatch, wenv, command), timeout=30)
    assert job["status"] == "SUCCEEDED"
    if path is not None:
        assert _lines(wlogs, job)[0] == f"path={path}"
    assert (_zygote_forks(warm_server) > forks_before) == (path == "warm")


def _zygote_forks(server: Server) -> int:
    warm = server.admin("GET", "health").json()["warm"]
    return int(sum(z["forked"] for z in warm["zygotes"]))


def _zygote_pids(server: Server, running: bool = False) -> list[int]:
    warm = server.admin("GET", "health").json()["warm"]
    return [z["pid"] for z in warm["zygotes"] if z["running"] or not running]


def test_a_dead_zygote_fails_its_running_jobs_and_is_replaced(
    wbatch: Any, wlogs: Any, wenv: Env, warm_server: Server
) -> None:
    running = run(wbatch, wenv, [*PATHS["warm"], "sleep"])
    grandchild = _grandchild(wlogs, wbatch, running)
    (zygote,) = _zygote_pids(warm_server, running=True)
    os.kill(zygote, signal.SIGKILL)
    job = wait_status(wbatch, running)
    assert job["status"] == "FAILED"
    assert job["statusReason"].startswith(WARM_LOST)
    wait_for(lambda: Path(f"/proc/{grandchild}").exists(), lambda alive: not alive, what="grandchild gone")
    again = wait_status(wbatch, run(wbatch, wenv, [*PATHS["warm"], "exit", "0"]), timeout=30)
    assert (again["status"], _lines(wlogs, again)[0]) == ("SUCCEEDED", "path=warm")
    assert zygote not in _zygote_pids(warm_server)


def test_jobs_queued_while_the_zygote_imports_all_run_warm(wbatch: Any, wlogs: Any) -> None:
    # A new environment gets a new zygote, slow to import; 40 x 8 KiB requests overflow the socket
    # buffer meanwhile, so the rest wait in localbatch until the zygote reads.
    env = make_env(wbatch, max_vcpus=64)
    slow = [{"name": "LB_PROBE_IMPORT_DELAY", "value": "1"}]
    big = "x" * 8000
    ids = [
        run(wbatch, env, [*PATHS["warm"], "exit", "0", big], containerOverrides={"environment": slow})
        for _ in range(40)
    ]
    jobs = [wait_status(wbatch, job_id, timeout=60) for job_id in ids]
    assert {job["status"] for job in jobs} == {"SUCCEEDED"}
    assert {_lines(wlogs, job)[0] for job in jobs} == {"path=warm"}


def test_terminate_while_the_zygote_imports(wbatch: Any, wenv: Env) -> None:
    slow = [{"name": "LB_PROBE_IMPORT_DELAY", "value": "1.5"}]
    job_id = run(wbatch, wenv, [*PATHS["warm"], "sleep"], containerOverrides={"environment": slow})
    assert wait_status(wbatch, job_id, "STARTING")["status"] == "STARTING"
    wbatch.terminate_job(jobId=job_id, reason="stopped while starting")
    job = wait_status(wbatch, job_id, timeout=30)
    assert (job["status"], job["statusReason"], job["container"]["exitCode"]) == (
        "FAILED",
        "stopped while starting",
        143,
    )


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _pid_of(gates: Path, name: str) -> int:
    running = gates / f"running-{name}"
    wait_for(running.exists, bool, what=f"job {name} running")
    return int(running.read_text())


def test_a_child_reaped_before_its_handshake_is_read_does_not_stall_the_zygote(tmp_path: Path) -> None:
    """A child that exits while the zygote forks another, its handshake ready but not read yet.

    The interleaving a loaded machine produces (a fork is slow, the jobs are quick), forced with
    lb_forkgate: one select returns [socket (request C), SIGCHLD wake-up (B exited), handshake
    of A]; while the zygote forks C, A exits. Handling the wake-up reaps A, which announces A and
    closes A's handshake pipe; the handshake key that select returned must then not be taken for
    the socket (a blocking read with nothing to read: C would stay STARTING for ever).
    """
    gates = tmp_path / "gates"
    gates.mkdir()
    srv = start_server(
        tmp_path / "data",
        *("--preload", "lb_forkgate", "--pass-env", "PYTHONPATH"),
        env={"PYTHONPATH": str(PROBE_DIR)},
    )
    try:
        batch = srv.client("batch")
        env = make_env(batch)
        gated = {"environment": [{"name": "LB_FORKGATE_DIR", "value": str(gates)}]}

        def submit(name: str) -> str:
            return run(batch, env, ["python", "-m", "lb_forkgate", name], containerOverrides=gated)

        for gate in ("parent-1", "exit-B", "child-3"):
            (gates / gate).touch()
        a = submit("A")  # fork 1: held before it closes its handshake pipe
        wait_for((gates / "at-parent-1").exists, bool, timeout=30, what="A forked")
        b = submit("B")  # fork 2: the zygote is held right after it
        wait_for((gates / "at-parent-2").exists, bool, what="B forked")
        c = submit("C")
        wait_status(batch, c, "STARTING")  # its request is in the zygote's socket
        (gates / "child-2").touch()  # B runs and exits: the zygote's SIGCHLD wake-up is ready
        wait_for(lambda: _zombie(_pid_of(gates, "B")), bool, what="B exited")
        (gates / "child-1").touch()  # A closes its handshake pipe: ready after the wake-up
        pid_a = _pid_of(gates, "A")
        (gates / "parent-2").touch()  # B is announced and reaped; the next select has all three
        wait_for((gates / "at-parent-3").exists, bool, what="C forked")
        (gates / "exit-A").touch()  # A exits while the zygote forks C
        wait_for(lambda: _zombie(pid_a), bool, what="A exited")
        (gates / "parent-3").touch()
        assert wait_status(batch, c, "RUNNING", timeout=10)["status"] == "RUNNING"
        (gates / "exit-C").touch()
        jobs = [wait_status(batch, job_id, timeout=10) for job_id in (a, b, c)]
        assert [job["status"] for job in jobs] == ["SUCCEEDED"] * 3
    finally:
        for gate in ("child-1", "child-2", "parent-2", "parent-3", "exit-A", "exit-C"):
            (gates / gate).touch()
        srv.stop()
