"""End to end: real Airflow processes run AwsBatchExecutor against localbatch.

Each case has its own DAG in ``dags/``; outcomes are read through Airflow's REST API and through
localbatch's Batch API (boto3). The DAGs are triggered together when the session starts, so the
cases overlap in time; the scheduler-kill case runs last, alone.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from devstack import WaitTimeout, ti_label, wait_until

from .conftest import E2E, FAULT_RULES, TASK_QUEUED_TIMEOUT

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 240.0


def _finished_run(e2e: E2E, dag_id: str) -> tuple[str, dict[str, Any]]:
    run_id = e2e.run_ids[dag_id]
    return run_id, e2e.stack.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)


def _job_summary(jobs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(job["tags"].get("try_number", "?"), job["status"], job.get("statusReason", "")) for job in jobs]


def _children_as_tries(stack: Any, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Array parents replaced by their children, each tagged with the try of the workload it runs.

    Children share their parent's tags; which try child ``i`` ran is workload ``i`` of the array's
    object in the session's file:// store, named by the parent's command.
    """
    out: list[dict[str, Any]] = []
    for job in jobs:
        size = (job.get("arrayProperties") or {}).get("size")
        if not size:
            out.append(job)
            continue
        url = str(job["container"]["command"][-1])
        workloads = json.loads(Path(url.removeprefix("file://")).read_text())["workloads"]
        for child in stack.batch.describe([f"{job['jobId']}:{i}" for i in range(int(size))]):
            ti = workloads[int(child["arrayProperties"]["index"])]["ti"]
            tries = {"map_index": str(ti["map_index"]), "try_number": str(ti["try_number"])}
            out.append({**child, "tags": {**child["tags"], **tries}})
    return out


def _events_text(events: list[dict[str, Any]]) -> str:
    return "\n".join(f"{event['event']}: {event.get('extra') or ''}" for event in events)


@pytest.mark.parametrize(
    ("dag_id", "run_state", "task_states"),
    [
        pytest.param(
            "e2e_success",
            "success",
            {"left": "success", "right": "success", "join": "success"},
            id="success",
        ),
        pytest.param("e2e_airflow_retry", "success", {"flaky": "success"}, id="airflow-retry"),
        pytest.param("e2e_fail_before_start", "success", {"resubmitted": "success"}, id="fail-before-start"),
        pytest.param("e2e_exec_config", "success", {"overridden": "success"}, id="exec-config-override"),
        pytest.param(
            "e2e_bad_exec_config", "failed", {"bad": "failed", "good": "success"}, id="bad-exec-config"
        ),
        pytest.param("e2e_stuck", "failed", {"held": "failed"}, id="stuck-in-runnable"),
        pytest.param("e2e_boot_log", "failed", {"never_starts": "failed"}, id="boot-failure"),
    ],
)
def test_run_outcome(e2e: E2E, dag_id: str, run_state: str, task_states: dict[str, str]) -> None:
    if dag_id not in {"e2e_success", "e2e_airflow_retry"}:
        e2e.need_batch()
    run_id, run = _finished_run(e2e, dag_id)
    states = e2e.stack.airflow.task_states(dag_id, run_id)
    assert (run["state"], states) == (run_state, task_states)


def test_success_runs_one_batch_job_per_task(e2e: E2E) -> None:
    e2e.need_batch()
    run_id, _ = _finished_run(e2e, "e2e_success")
    jobs = e2e.stack.batch.wait_final("e2e_success", run_id=run_id)
    per_task = Counter((job["tags"]["task_id"], job["status"]) for job in jobs)
    assert per_task == {("left", "SUCCEEDED"): 1, ("right", "SUCCEEDED"): 1, ("join", "SUCCEEDED"): 1}
    names = sorted(job["jobName"] for job in jobs)
    assert names == ["e2e-e2e_success-join", "e2e-e2e_success-left", "e2e-e2e_success-right"]


def test_airflow_retry_is_one_batch_job_per_try(e2e: E2E) -> None:
    e2e.need_batch()
    run_id, _ = _finished_run(e2e, "e2e_airflow_retry")
    tries = e2e.stack.airflow.task_tries("e2e_airflow_retry", run_id, "flaky")
    assert sorted((t["try_number"], t["state"]) for t in tries) == [(1, "failed"), (2, "success")]
    jobs = e2e.stack.batch.wait_final("e2e_airflow_retry", "flaky", run_id)
    # execute_workload exits 0 when the task's code fails, so both jobs succeed and none is resubmitted.
    assert [(try_number, status) for try_number, status, _ in _job_summary(jobs)] == [
        ("1", "SUCCEEDED"),
        ("2", "SUCCEEDED"),
    ]


def test_job_failed_before_start_is_resubmitted_for_the_same_try(e2e: E2E) -> None:
    e2e.need_batch()
    run_id, _ = _finished_run(e2e, "e2e_fail_before_start")
    jobs = e2e.stack.batch.wait_final("e2e_fail_before_start", "resubmitted", run_id)
    summary = _job_summary(jobs)
    assert [(try_number, status) for try_number, status, _ in summary] == [
        ("1", "FAILED"),
        ("1", "SUCCEEDED"),
    ], summary
    assert summary[0][2].startswith("CannotPullContainerError"), summary
    ti = e2e.stack.airflow.task_instance("e2e_fail_before_start", run_id, "resubmitted")
    assert ti["try_number"] == 1


def test_exec_config_override_is_visible_on_the_batch_job(e2e: E2E) -> None:
    e2e.need_batch()
    run_id, _ = _finished_run(e2e, "e2e_exec_config")
    [job] = e2e.stack.batch.wait_final("e2e_exec_config", "overridden", run_id)
    container = job["container"]
    requirements = {r["type"]: r["value"] for r in container.get("resourceRequirements", [])}
    environment = {e["name"]: e["value"] for e in container.get("environment", [])}
    assert (requirements.get("VCPU"), requirements.get("MEMORY")) == ("2", "1024"), container
    assert environment.get("E2E_GREETING") == "hello-from-executor-config", container


def test_bad_exec_config_fails_only_its_task_with_the_reason_in_the_event_log(e2e: E2E) -> None:
    e2e.need_batch()
    run_id, _ = _finished_run(e2e, "e2e_bad_exec_config")
    jobs = e2e.stack.batch.wait_final("e2e_bad_exec_config", run_id=run_id)
    assert sorted(job["tags"]["task_id"] for job in jobs) == ["good"]
    events = _events_text(
        e2e.stack.airflow.event_logs(dag_id="e2e_bad_exec_config", task_id="bad", run_id=run_id)
    )
    # The executor's own event carries the message (not only the scheduler's state-mismatch note).
    assert (
        "aws_batch_bad_executor_config: Bad executor_config, task not submitted: "
        "executor_config.containerOverrides.cpus" in events
    ), events


def test_task_stuck_in_runnable_has_its_job_terminated(e2e: E2E) -> None:
    e2e.need_batch()
    run_id, _ = _finished_run(e2e, "e2e_stuck")
    jobs = e2e.stack.batch.wait_final("e2e_stuck", "held", run_id)
    assert len(jobs) == 1, _job_summary(jobs)
    # Terminated while RUNNABLE: it never ran, so it has no attempt.
    assert (jobs[0]["status"], jobs[0].get("attempts", [])) == ("FAILED", []), jobs[0]
    events = e2e.stack.airflow.event_logs(dag_id="e2e_stuck", task_id="held", run_id=run_id)
    assert f"longer than {TASK_QUEUED_TIMEOUT}" in _events_text(events) or "requeued" in _events_text(
        events
    ), _events_text(events)


def test_job_that_exited_before_its_task_started_fails_the_task_with_its_reason(e2e: E2E) -> None:
    e2e.need_batch()
    from .dags.e2e_boot_log import BOOT_MESSAGE

    run_id, _ = _finished_run(e2e, "e2e_boot_log")
    jobs = e2e.stack.batch.wait_final("e2e_boot_log", "never_starts", run_id)
    assert jobs and {(t, status) for t, status, _ in _job_summary(jobs)} == {("1", "FAILED")}, jobs
    for job in jobs:
        assert any(BOOT_MESSAGE in line for line in e2e.stack.batch.log_lines(job)), job["jobId"]
        assert job["attempts"][-1]["container"].get("exitCode") == 3, job["attempts"]
    events = _events_text(
        e2e.stack.airflow.event_logs(dag_id="e2e_boot_log", task_id="never_starts", run_id=run_id)
    )
    assert jobs[-1]["jobId"] in events and "Essential container in task exited" in events, events


def test_job_that_exited_before_airflow_saw_its_task_start_is_resubmitted(e2e: E2E) -> None:
    e2e.need_batch()
    run_id, _ = _finished_run(e2e, "e2e_boot_log")
    jobs = e2e.stack.batch.wait_final("e2e_boot_log", "never_starts", run_id)
    # max_submit_job_attempts (3) jobs, all for Airflow's try 1, each of which reached RUNNING.
    assert [(t, status) for t, status, _ in _job_summary(jobs)] == [("1", "FAILED")] * 3, _job_summary(jobs)
    assert all(job.get("startedAt") for job in jobs), jobs
    events = _events_text(
        e2e.stack.airflow.event_logs(dag_id="e2e_boot_log", task_id="never_starts", run_id=run_id)
    )
    # Each resubmit leaves the executor's own event, and the final reason says why it stopped.
    assert events.count("aws_batch_job_failed_before_task_start:") == 2, events
    assert "Airflow never saw the task start; no submit attempts left (3 of 3)" in events, events


def test_output_of_a_job_that_failed_before_its_task_started_is_in_the_task_log(e2e: E2E) -> None:
    e2e.need_batch()
    from .dags.e2e_boot_log import BOOT_MESSAGE

    run_id, _ = _finished_run(e2e, "e2e_boot_log")
    log = e2e.stack.airflow.task_log("e2e_boot_log", run_id, "never_starts", 1)
    assert BOOT_MESSAGE in log, log[-3000:]


def test_scheduler_killed_while_tasks_run_is_restarted_and_adopts_them(e2e: E2E) -> None:
    """SIGKILL the scheduler while three mapped tasks run on Batch; a new scheduler adopts them."""
    e2e.need_batch()
    stack, dag_id = e2e.stack, "e2e_scheduler_kill"
    run_id = stack.airflow.trigger(dag_id)

    def all_running() -> tuple[bool, Any]:
        states = stack.airflow.task_states(dag_id, run_id)
        sleepers = {k: v for k, v in states.items() if k.startswith("sleeper[")}
        return len(sleepers) == 3 and set(sleepers.values()) == {"running"}, states

    wait_until("the three sleepers to run", all_running, timeout=180, interval=1.0)
    stack.kill_component("scheduler", signal.SIGKILL)
    stack.start_component("scheduler")
    try:
        run = stack.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    except WaitTimeout as error:
        pytest.fail(f"{error}\nscheduler log:\n{stack.processes['scheduler'].tail(60)}")
    tis = stack.airflow.task_instances(dag_id, run_id)
    events = _events_text(stack.airflow.event_logs(dag_id=dag_id, run_id=run_id))
    assert run["state"] == "success", events
    assert sorted((ti_label(ti), ti["state"], ti["try_number"]) for ti in tis) == [
        ("after", "success", 1),
        ("sleeper[0]", "success", 1),
        ("sleeper[1]", "success", 1),
        ("sleeper[2]", "success", 1),
    ], events
    jobs = stack.batch.wait_final(dag_id, run_id=run_id)
    per_task = Counter((job["tags"]["task_id"], job["tags"]["map_index"], job["status"]) for job in jobs)
    assert per_task == {
        ("sleeper", "0", "SUCCEEDED"): 1,
        ("sleeper", "1", "SUCCEEDED"): 1,
        ("sleeper", "2", "SUCCEEDED"): 1,
        ("after", "-1", "SUCCEEDED"): 1,
    }, json.dumps(_job_summary(jobs))
    stack.wait_healthy(timeout=120)


def _active(jobs: list[dict[str, Any]]) -> list[str]:
    return [
        f"{job['jobId']} {job['status']} try {job['tags'].get('try_number')}"
        for job in jobs
        if job["status"] not in ("SUCCEEDED", "FAILED")
    ]


def test_requeued_task_is_adopted_by_its_new_job_after_a_kill_before_the_id_was_saved(e2e: E2E) -> None:
    """SIGKILL between the retry's SubmitJob and Airflow saving its id: the task instance still holds
    try 1's job id; the next scheduler adopts try 2's job by its tags, not try 1's finished job."""
    e2e.need_batch()
    stack, dag_id, task = e2e.stack, "e2e_requeued_kill", "flaky"
    run_id = stack.airflow.trigger(dag_id)
    stack.airflow.wait_for_task_state(dag_id, run_id, task, ["up_for_retry"], timeout=RUN_TIMEOUT)
    # The retry's SubmitJob creates its job but loses the answer: the executor backs off before it
    # looks the job up, so the id is not known (let alone saved) for a couple of seconds. The job is
    # held in RUNNABLE so that it cannot finish the task before the next scheduler adopts it.
    name = f"{dag_id}-{task}"
    stack.batch.set_faults(
        {
            "seed": 1,
            "rules": [
                *FAULT_RULES,
                {"job_name_contains": name, "fault": "lost_response", "times": 1},
                {"job_name_contains": name, "fault": "hold_runnable"},
            ],
        }
    )

    def retry_job() -> tuple[bool, Any]:
        jobs = [j for j in stack.batch.jobs_for(dag_id, run_id=run_id) if j["tags"]["try_number"] == "2"]
        return bool(jobs), jobs

    wait_until("the retry's job", retry_job, timeout=120, interval=0.1)
    stack.kill_component("scheduler", signal.SIGKILL)
    stack.start_component("scheduler")

    def adopted() -> tuple[bool, Any]:
        events = _events_text(stack.airflow.event_logs(dag_id=dag_id, run_id=run_id))
        return "aws_batch_job_adopted" in events, events

    wait_until("the retry's job to be adopted", adopted, timeout=180, interval=1.0)
    stack.batch.set_faults({"seed": 1, "rules": FAULT_RULES})  # let it run
    run = stack.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    events = _events_text(stack.airflow.event_logs(dag_id=dag_id, run_id=run_id))
    ti = stack.airflow.task_instance(dag_id, run_id, task)
    assert (run["state"], ti["state"], ti["try_number"]) == ("success", "success", 2), events
    jobs = stack.batch.wait_final(dag_id, run_id=run_id)
    assert sorted((j["tags"]["try_number"], j["status"]) for j in jobs) == [
        ("1", "SUCCEEDED"),
        ("2", "SUCCEEDED"),
    ], json.dumps(_job_summary(jobs))
    log = stack.airflow.task_log(dag_id, run_id, task, 2)
    assert "flaky runs try 2" in log
    stack.wait_healthy(timeout=120)


def test_sigterm_hands_running_jobs_over_to_the_next_scheduler(e2e: E2E) -> None:
    """SIGTERM while three tasks run: the scheduler exits within 30 s, the next one adopts the jobs,
    and each task finishes once, on its first try."""
    e2e.need_batch()
    stack, dag_id = e2e.stack, "e2e_sigterm"
    run_id = stack.airflow.trigger(dag_id)

    def all_running() -> tuple[bool, Any]:
        states = stack.airflow.task_states(dag_id, run_id)
        return len(states) == 3 and set(states.values()) == {"running"}, states

    wait_until("the three sleepers to run", all_running, timeout=180, interval=1.0)
    scheduler = stack.processes["scheduler"]
    scheduler.signal(signal.SIGTERM)
    assert scheduler.popen is not None
    try:
        scheduler.popen.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the scheduler did not exit within 30 s of SIGTERM:\n{scheduler.tail(40)}")
    stack.start_component("scheduler")
    run = stack.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    tis = stack.airflow.task_instances(dag_id, run_id)
    events = _events_text(stack.airflow.event_logs(dag_id=dag_id, run_id=run_id))
    assert run["state"] == "success", events
    assert sorted((ti_label(ti), ti["state"], ti["try_number"]) for ti in tis) == [
        (f"sleeper[{n}]", "success", 1) for n in range(3)
    ], events
    jobs = stack.batch.wait_final(dag_id, run_id=run_id)
    assert sorted((j["tags"]["map_index"], j["status"]) for j in jobs) == [
        (str(n), "SUCCEEDED") for n in range(3)
    ], json.dumps(_job_summary(jobs))
    stack.wait_healthy(timeout=120)


def test_two_schedulers_one_killed_run_each_task_once_and_leave_no_job(e2e: E2E) -> None:
    """Airflow's HA mode: two schedulers share the work; one is SIGKILLed mid-run, the other adopts
    its tasks. Each try runs once and no Batch job is left active. (PostgreSQL only: Airflow does not
    support several schedulers on SQLite, which has no row locks.)"""
    e2e.need_batch()
    stack, dag_id = e2e.stack, "e2e_ha"
    if stack.admin_db_url is None:
        pytest.skip("Airflow runs several schedulers only on PostgreSQL or MySQL (make e2e-postgres)")
    stack.start_scheduler("scheduler-2")
    try:
        run_id = stack.airflow.trigger(dag_id)

        def some_running() -> tuple[bool, Any]:
            states = stack.airflow.task_states(dag_id, run_id)
            return list(states.values()).count("running") >= 3, states

        wait_until("tasks to run", some_running, timeout=180, interval=0.5)
        stack.kill_component("scheduler", signal.SIGKILL)
        run = stack.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    finally:
        stack.start_component("scheduler")
        stack.forget_component("scheduler-2")
    tis = stack.airflow.task_instances(dag_id, run_id)
    events = _events_text(stack.airflow.event_logs(dag_id=dag_id, run_id=run_id))
    assert run["state"] == "success", events
    assert {ti["state"] for ti in tis} == {"success"}, events
    # With the session's workload store, the first burst of mapped tasks may go out as one array.
    jobs = _children_as_tries(stack, stack.batch.wait_final(dag_id, run_id=run_id))
    succeeded = Counter(
        (j["tags"]["map_index"], j["tags"]["try_number"]) for j in jobs if j["status"] == "SUCCEEDED"
    )
    assert all(n == 1 for n in succeeded.values()), json.dumps(_job_summary(jobs))
    finished = {(str(ti["map_index"]), str(ti["try_number"])) for ti in tis}
    assert finished <= set(succeeded), json.dumps(_job_summary(jobs))
    assert _active(stack.batch.jobs_for(dag_id, run_id=run_id)) == []
    stack.wait_healthy(timeout=120)
