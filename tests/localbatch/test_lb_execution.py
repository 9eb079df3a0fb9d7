"""Jobs really run: exit codes, environment, logs, retries, timeouts, terminate/cancel, scheduling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lb_support import Env, describe, make_env, run, wait_for, wait_status

pytestmark = pytest.mark.contract


@pytest.mark.parametrize(
    ("command", "status", "exit_code"),
    [
        pytest.param(["true"], "SUCCEEDED", 0, id="exit-0-succeeds"),
        pytest.param(["sh", "-c", "exit 3"], "FAILED", 3, id="exit-3-fails"),
        pytest.param(["sh", "-c", "kill -9 $$"], "FAILED", 137, id="sigkill-is-137"),
    ],
)
def test_exit_code_decides_status(
    batch: Any, env: Env, command: list[str], status: str, exit_code: int
) -> None:
    job = wait_status(batch, run(batch, env, command))
    assert (job["status"], job["container"]["exitCode"]) == (status, exit_code)
    assert job["attempts"][0]["container"]["exitCode"] == exit_code
    assert job["statusReason"] == "Essential container in task exited"
    assert job["createdAt"] <= job["startedAt"] <= job["stoppedAt"]


def test_states_pass_through_batch_lifecycle_quickly(batch: Any, env: Env) -> None:
    job_id = run(batch, env, ["true"])
    job = wait_status(batch, job_id, timeout=1.0)
    assert job["status"] == "SUCCEEDED"


def test_job_definition_command_and_parameters_are_used(batch: Any, env: Env, logs: Any) -> None:
    batch.register_job_definition(
        jobDefinitionName=env.jd,
        type="container",
        parameters={"word": "default"},
        containerProperties={"image": "busybox", "command": ["echo", "Ref::word"]},
    )
    job_id = batch.submit_job(
        jobName="p", jobQueue=env.queue, jobDefinition=env.jd, parameters={"word": "given"}
    )["jobId"]
    job = wait_status(batch, job_id)
    assert job["container"]["command"] == ["echo", "given"]
    assert _messages(logs, job["container"]["logStreamName"]) == ["given"]


def _messages(logs: Any, stream: str, expected: int = 1) -> list[str]:
    events = wait_for(
        lambda: logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True)[
            "events"
        ],
        lambda e: len(e) >= expected,
        what=f"{expected} log events in {stream}",
    )
    return [e["message"] for e in events]


def test_environment_of_the_process(batch: Any, env: Env, logs: Any) -> None:
    names = [
        "FROM_JD",
        "OVERRIDDEN",
        "AWS_BATCH_JOB_ID",
        "AWS_BATCH_JOB_ATTEMPT",
        "AWS_BATCH_JQ_NAME",
        "AWS_BATCH_CE_NAME",
        "LB_TEST_PASSED",
        "LB_TEST_HIDDEN",
    ]
    script = "; ".join(f'echo "{n}=${{{n}-unset}}"' for n in names)
    job_id = run(
        batch,
        env,
        ["sh", "-c", script],
        containerOverrides={"environment": [{"name": "OVERRIDDEN", "value": "override"}]},
    )
    job = wait_status(batch, job_id)
    seen = dict(m.split("=", 1) for m in _messages(logs, job["container"]["logStreamName"], len(names)))
    assert seen == {
        "FROM_JD": "jd",
        "OVERRIDDEN": "override",
        "AWS_BATCH_JOB_ID": job_id,
        "AWS_BATCH_JOB_ATTEMPT": "1",
        "AWS_BATCH_JQ_NAME": env.queue,
        "AWS_BATCH_CE_NAME": env.ce,
        "LB_TEST_PASSED": "passed",
        "LB_TEST_HIDDEN": "unset",
    }


def test_stdout_and_stderr_reach_the_log_stream(batch: Any, env: Env, logs: Any) -> None:
    job = wait_status(batch, run(batch, env, ["sh", "-c", "echo out; echo err >&2; printf partial"]))
    stream = job["attempts"][0]["container"]["logStreamName"]
    assert stream == job["container"]["logStreamName"]
    assert stream.startswith(f"{env.jd}/default/")
    assert _messages(logs, stream, 3) == ["out", "err", "partial"]
    first = logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True, limit=2
    )
    rest = logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=stream, nextToken=first["nextForwardToken"]
    )
    end = logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=stream, nextToken=rest["nextForwardToken"]
    )
    assert [e["message"] for e in first["events"] + rest["events"]] == ["out", "err", "partial"]
    assert (end["events"], end["nextForwardToken"]) == ([], rest["nextForwardToken"])
    streams = logs.describe_log_streams(logGroupName="/aws/batch/job", logStreamNamePrefix=stream)[
        "logStreams"
    ]
    assert [s["logStreamName"] for s in streams] == [stream]
    found = logs.filter_log_events(
        logGroupName="/aws/batch/job", logStreamNames=[stream], filterPattern="err"
    )
    assert [e["message"] for e in found["events"]] == ["err"]


@pytest.mark.parametrize(
    ("command", "retry", "status", "attempts"),
    [
        pytest.param(["sh", "-c", "exit 1"], {"attempts": 3}, "FAILED", 3, id="retries-until-attempts-used"),
        pytest.param(
            ["sh", "-c", 'test "$AWS_BATCH_JOB_ATTEMPT" = 2'],
            {"attempts": 3},
            "SUCCEEDED",
            2,
            id="second-attempt-succeeds",
        ),
        pytest.param(
            ["sh", "-c", "exit 3"],
            {"attempts": 3, "evaluateOnExit": [{"onExitCode": "3", "action": "EXIT"}]},
            "FAILED",
            1,
            id="exit-rule-matches-exit-code",
        ),
        pytest.param(
            ["sh", "-c", "exit 3"],
            {"attempts": 2, "evaluateOnExit": [{"onExitCode": "4*", "action": "EXIT"}]},
            "FAILED",
            2,
            id="no-rule-matches-so-retry",
        ),
        pytest.param(
            ["sh", "-c", "exit 3"],
            {
                "attempts": 3,
                "evaluateOnExit": [
                    {"onReason": "CannotPull*", "action": "RETRY"},
                    {"onStatusReason": "Essential*", "action": "EXIT"},
                ],
            },
            "FAILED",
            1,
            id="status-reason-glob-exits",
        ),
    ],
)
def test_retry_strategy(  # noqa: PLR0917 (pytest passes parameters by name)
    batch: Any, env: Env, command: list[str], retry: dict[str, Any], status: str, attempts: int
) -> None:
    job = wait_status(batch, run(batch, env, command, retryStrategy=retry))
    assert (job["status"], len(job["attempts"])) == (status, attempts)
    assert len({a["container"]["logStreamName"] for a in job["attempts"]}) == attempts


def test_timeout_sends_sigterm_then_sigkill_and_does_not_retry(batch: Any, env: Env) -> None:
    # The server runs with --kill-grace-seconds 1; the job ignores SIGTERM, so only SIGKILL ends it.
    job_id = run(
        batch,
        env,
        ["sh", "-c", "trap '' TERM; sleep 30"],
        timeout={"attemptDurationSeconds": 1},
        retryStrategy={"attempts": 2},
    )
    job = wait_status(batch, job_id)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Job attempt duration exceeded timeout"
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [137]


def test_terminate_kills_the_process_group(batch: Any, env: Env, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    job_id = run(batch, env, ["sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait"])
    wait_status(batch, job_id, "RUNNING")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", bool, what="child pid")
    child = int(pid_file.read_text())
    batch.terminate_job(jobId=job_id, reason="stopped by test")
    job = wait_status(batch, job_id)
    assert (job["status"], job["statusReason"], job["isTerminated"]) == ("FAILED", "stopped by test", True)
    wait_for(lambda: Path(f"/proc/{child}").exists(), lambda alive: not alive, what="grandchild gone")


def test_cancel_fails_waiting_jobs_but_not_running_ones(batch: Any) -> None:
    env = make_env(batch, state="DISABLED")
    waiting = run(batch, env, ["true"])
    wait_status(batch, waiting, "RUNNABLE")
    batch.cancel_job(jobId=waiting, reason="not needed")
    job = describe(batch, waiting)
    assert (job["status"], job["statusReason"], job["isCancelled"]) == ("FAILED", "not needed", True)

    running_env = make_env(batch)
    running = run(batch, running_env, ["sleep", "30"])
    wait_status(batch, running, "RUNNING")
    batch.cancel_job(jobId=running, reason="too late")
    assert describe(batch, running)["status"] == "RUNNING"
    batch.terminate_job(jobId=running, reason="cleanup")
    assert wait_status(batch, running)["attempts"][0]["container"]["exitCode"] == 143


def test_queue_priority_then_fifo(batch: Any, tmp_path: Path) -> None:
    low = make_env(batch, max_vcpus=1, priority=1, state="DISABLED")
    high_queue = f"{low.queue}-high"
    batch.create_job_queue(
        jobQueueName=high_queue,
        priority=10,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": low.ce}],
    )
    high = Env(low.ce, high_queue, low.jd)
    order = tmp_path / "order"
    ids = [
        run(batch, env, ["sh", "-c", f"echo {name} >> {order}"], name=name)
        for env, name in [(low, "low1"), (high, "high1"), (low, "low2"), (high, "high2")]
    ]
    batch.update_compute_environment(computeEnvironment=low.ce, state="ENABLED")
    for job_id in ids:
        assert wait_status(batch, job_id)["status"] == "SUCCEEDED"
    assert order.read_text().split() == ["high1", "high2", "low1", "low2"]


def test_max_vcpus_bounds_concurrency(batch: Any, tmp_path: Path) -> None:
    env = make_env(batch, max_vcpus=2)
    running, counts = tmp_path / "running", tmp_path / "counts"
    running.mkdir()
    marker = f"{running}/$AWS_BATCH_JOB_ID"
    script = f"touch {marker}; ls {running} | wc -l >> {counts}; sleep 0.3; rm {marker}"
    ids = [run(batch, env, ["sh", "-c", script], name=f"j{i}") for i in range(5)]
    too_big = run(
        batch,
        env,
        ["true"],
        containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "4"}]},
    )
    for job_id in ids:
        assert wait_status(batch, job_id)["status"] == "SUCCEEDED"
    assert max(int(c) for c in counts.read_text().split()) <= 2
    job = describe(batch, too_big)
    assert job["status"] == "RUNNABLE"
    assert job["statusReason"].startswith("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - ")
    batch.terminate_job(jobId=too_big, reason="cleanup")


def test_dependent_job_waits_and_fails_with_its_dependency(batch: Any, env: Env) -> None:
    first = run(batch, env, ["sleep", "0.3"])
    second = batch.submit_job(
        jobName="after", jobQueue=env.queue, jobDefinition=env.jd, dependsOn=[{"jobId": first}]
    )["jobId"]
    assert describe(batch, second)["status"] in ("SUBMITTED", "PENDING")
    assert wait_status(batch, second)["status"] == "SUCCEEDED"
    assert describe(batch, first)["stoppedAt"] <= describe(batch, second)["startedAt"]
    failing = run(batch, env, ["sh", "-c", "sleep 0.3; exit 1"])
    doomed = batch.submit_job(
        jobName="doomed", jobQueue=env.queue, jobDefinition=env.jd, dependsOn=[{"jobId": failing}]
    )["jobId"]
    assert wait_status(batch, doomed)["statusReason"].startswith("Dependent Job failed")


def test_missing_executable_fails_to_start(batch: Any, env: Env) -> None:
    job = wait_status(batch, run(batch, env, ["no-such-program-here"]))
    assert job["status"] == "FAILED"
    assert job["statusReason"].startswith("CannotStartContainerError: ")
    assert "exitCode" not in job["attempts"][0]["container"]
