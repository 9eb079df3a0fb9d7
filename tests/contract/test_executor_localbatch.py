"""AwsBatchExecutor in-process against localbatch (a subprocess, real HTTP): throttling, revoke, logs."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.executors import workloads
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.utils.state import TaskInstanceState

from airflow_aws_batch.adoption import plan_adoption
from airflow_aws_batch.core import ownership
from airflow_aws_batch.core.messages import BackoffPolicy
from airflow_aws_batch.core.ownership import TiNow
from airflow_aws_batch.sweep import sweep
from airflow_aws_batch.workload_rules import launch_command
from airflow_aws_batch.workloads import open_store
from devstack import LocalBatchServer

from ._airflow import FastExecutor, Recorder, configure, started_executor, task_workload
from ._jobs import job_of, wait_job

pytestmark = pytest.mark.contract

QUEUE = "exec-queue"
DEFINITION = "exec-def"


@pytest.fixture(scope="module")
def localbatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBatchServer]:
    server = LocalBatchServer(tmp_path_factory.mktemp("localbatch"), args=["--kill-grace-seconds", "1"])
    with server:
        server.setup(compute_environment="exec-ce", job_queue=QUEUE, job_definition=DEFINITION)
        yield server


@pytest.fixture
def executor(localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastExecutor]:
    localbatch.set_faults({})
    configure(monkeypatch, localbatch, job_queue=QUEUE, job_definition=DEFINITION)
    executor = FastExecutor(parallelism=256)
    executor.start()
    try:
        yield executor
    finally:
        executor.terminate()
        localbatch.set_faults({})


@contextlib.contextmanager
def started(
    cls: type[FastExecutor],
    localbatch: LocalBatchServer,
    monkeypatch: pytest.MonkeyPatch,
    faults: dict[str, Any],
    parallelism: int,
    **options: str,
) -> Iterator[FastExecutor]:
    """An executor of ``cls`` against ``localbatch`` with ``faults``; terminated and faults cleared after."""
    with started_executor(
        cls,
        localbatch,
        monkeypatch,
        faults,
        parallelism,
        job_queue=QUEUE,
        job_definition=DEFINITION,
        **options,
    ) as executor:
        yield executor


def held(name_part: str) -> dict[str, Any]:
    """Jobs whose name contains ``name_part`` stay RUNNABLE: nothing runs, nothing burns CPU."""
    return {
        "hold_runnable": {"rate": 0.0, "reason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - held by test"},
        "rules": [{"job_name_contains": name_part, "fault": "hold_runnable"}],
    }


def count(stats: dict[str, Any], operation: str, what: str) -> int:
    """A per-operation counter from localbatch's ``/_localbatch/stats`` (0 before the first call)."""
    return int(stats["operations"].get(operation, {}).get(what, 0))


def test_a_429_storm_loses_no_task(executor: FastExecutor, localbatch: LocalBatchServer) -> None:
    faults = held("storm")
    faults["quotas"] = {"SubmitJob": 5}
    localbatch.set_faults(faults)
    before = localbatch.stats()
    rec = Recorder(executor)
    work = [task_workload(f"storm_{i}") for i in range(40)]
    for w in work:
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
    rec.until(lambda: all(rec.states(w.ti.key) for w in work), timeout=60, what="a job for every task")
    for w in work:
        assert rec.states(w.ti.key) == ["running"], rec.task_events(w.ti.key)
    job_ids = {rec.info(w.ti.key, "running") for w in work}
    assert len(job_ids) == len(work)
    after = localbatch.stats()
    print("localbatch stats after the storm:", json.dumps(after)[:800])
    throttled = count(after, "SubmitJob", "throttled") - count(before, "SubmitJob", "throttled")
    assert throttled > 0, "the quota never answered 429: the test did not test anything"
    listed = localbatch.batch.list_jobs(jobQueue=QUEUE, jobStatus="RUNNABLE", maxResults=1000)[
        "jobSummaryList"
    ]
    storm_jobs = [j for j in listed if j["jobName"].startswith("airflow-dag-storm_")]
    assert len(storm_jobs) == len(work)  # no duplicates


def test_runnable_reason_reaches_event_log_and_revoke_terminates(
    executor: FastExecutor, localbatch: LocalBatchServer
) -> None:
    localbatch.set_faults(held("stuck"))
    rec = Recorder(executor)
    w = task_workload("stuck_task")
    executor.queue_workload(w, session=None)  # type: ignore[arg-type]
    rec.until(
        lambda: any("INSUFFICIENT_INSTANCE_CAPACITY" in e for e in rec.task_events(w.ti.key)),
        what="the RUNNABLE reason in the event log",
    )
    job_id = rec.info(w.ti.key, "running")

    class TI:
        key = w.ti.key

    executor.revoke_task(ti=TI())
    batch = localbatch.batch
    deadline = time.monotonic() + 30
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        rec.beat()
        (job,) = batch.describe_jobs(jobs=[job_id])["jobs"]
        if job["status"] == "FAILED":
            break
        time.sleep(0.2)
    assert job["status"] == "FAILED", job
    assert "Revoked by Airflow" in job.get("statusReason", "")
    assert w.ti.key not in executor.running
    assert rec.states(w.ti.key) == ["running"]  # revoke reports nothing to Airflow


def test_get_task_log_reads_the_job_output(
    executor: FastExecutor, localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The job runs the real execute_workload with a token no API server accepts: it prints why and
    # the job fails before the task starts, which is exactly what the UI must be able to show.
    monkeypatch.setenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(tmp_path))
    log_file = "dag_id=dag/run_id=manual__1/task_id=logged_task/attempt=1.log"
    rec = Recorder(executor)
    w = task_workload("logged_task", log_path=log_file)
    executor.queue_workload(w, session=None)  # type: ignore[arg-type]
    rec.until(lambda: bool(rec.states(w.ti.key)), what="the job id")
    job_id = rec.info(w.ti.key, "running")
    batch = localbatch.batch
    deadline = time.monotonic() + 120
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        (job,) = batch.describe_jobs(jobs=[job_id])["jobs"]
        if job["status"] in ("SUCCEEDED", "FAILED"):
            break
        time.sleep(0.5)

    class TI:
        dag_id = "dag"
        task_id = "logged_task"
        run_id = "manual__1"
        map_index = -1
        try_number = 1
        queue = "default"
        external_executor_id = job_id

    messages, lines = executor.get_task_log(TI(), 1)
    assert any(job_id in m for m in messages), messages
    assert lines, messages
    text = "\n".join(lines)
    assert "execute_workload" in text or "Traceback" in text or "error" in text.lower(), text[:2000]

    class OlderTry(TI):
        external_executor_id = "not-this-one"
        try_number = 2

    # An earlier try is found by name and tags, not by the current external_executor_id.
    messages_by_tags, lines_by_tags = executor.get_task_log(OlderTry(), 1)
    assert lines_by_tags == lines, messages_by_tags

    # The task never wrote a log: the executor copies the job's output into the task's log file,
    # where Airflow's log reader finds it for a finished task.
    assert job["status"] == "FAILED", job
    rec.until(lambda: "failed" in rec.states(w.ti.key), what="the task's failure")
    written = tmp_path / log_file
    deadline = time.monotonic() + 30
    while not written.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    content = written.read_text().splitlines()
    assert job_id in content[0]
    # The job's own JSON records, unchanged (Airflow 3.1 also prints plain lines while importing).
    records = [line.strip() for line in lines if line.strip().startswith("{")]
    assert records and records[0] in content


def test_get_task_log_never_raises(executor: FastExecutor) -> None:
    class Nothing:
        dag_id = "dag"
        task_id = "never_ran"
        run_id = "manual__1"
        map_index = -1
        try_number = 1
        queue = "default"
        external_executor_id = None

    messages, lines = executor.get_task_log(Nothing(), 1)
    assert lines == []
    assert "No AWS Batch job found" in messages[0]


def test_server_errors_are_retried_after_a_lookup_without_duplicates(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = held("flaky")
    faults.update(error_rate=0.3, seed=7)
    localbatch.set_faults(faults)
    configure(
        monkeypatch, localbatch, job_queue=QUEUE, job_definition=DEFINITION, max_submit_job_attempts="10"
    )
    executor = FastExecutor(parallelism=64)
    executor.start()
    try:
        rec = Recorder(executor)
        work = [task_workload(f"flaky_{i}") for i in range(15)]
        for w in work:
            executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        rec.until(lambda: all(rec.states(w.ti.key) for w in work), timeout=90, what="a job for every task")
        assert all(rec.states(w.ti.key) == ["running"] for w in work), rec.events
        events = [e for w in work for e in rec.task_events(w.ti.key)]
        assert any("aws_batch_submit_ambiguous" in e for e in events), "no 5xx was injected on SubmitJob"
        localbatch.set_faults({})
        listed = localbatch.batch.list_jobs(
            jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": ["airflow-dag-flaky_*"]}]
        )
        names = sorted(j["jobName"] for j in listed["jobSummaryList"])
        assert names == sorted(f"airflow-dag-flaky_{i}" for i in range(15))
    finally:
        executor.terminate()
        localbatch.set_faults({})


@pytest.mark.parametrize(
    ("prefix", "mode", "max_attempts"),
    [
        pytest.param("lost500", "server_error", "3", id="500-found-by-the-next-attempt"),
        # The lost submit was the only attempt allowed: the task still succeeds, through a lookup only.
        pytest.param("lastlost500", "server_error", "1", id="500-found-by-a-lookup-after-the-last-attempt"),
        # The answer is cut off mid-body: botocore returns a 200 with no jobId instead of raising.
        pytest.param("dropped", "drop", "3", id="dropped-connection-found-by-the-next-attempt"),
    ],
)
def test_lost_submit_responses_run_each_task_exactly_once(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, prefix: str, mode: str, max_attempts: str
) -> None:
    # Zero-padded ids: no task id is contained in another's, so each rule hits one task's first submit.
    task_ids = [f"{prefix}_{i:02d}" for i in range(12)]
    localbatch.set_faults(
        {
            "simulate": {"seconds": 0},
            "lost_response_mode": mode,
            "rules": [{"job_name_contains": t, "fault": "lost_response", "times": 1} for t in task_ids],
        }
    )
    configure(
        monkeypatch,
        localbatch,
        job_queue=QUEUE,
        job_definition=DEFINITION,
        max_submit_job_attempts=max_attempts,
    )
    executor = FastExecutor(parallelism=64)
    executor.start()
    try:
        before = localbatch.stats()
        rec = Recorder(executor)
        work = [task_workload(t) for t in task_ids]
        for w in work:
            executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        rec.until(
            lambda: all("success" in rec.states(w.ti.key) or "failed" in rec.states(w.ti.key) for w in work),
            timeout=60,
            what="every task to finish",
        )
        after = localbatch.stats()
    finally:
        executor.terminate()
        localbatch.set_faults({})
    lost = count(after, "SubmitJob", "lost_responses") - count(before, "SubmitJob", "lost_responses")
    assert lost == len(work), "the first SubmitJob of every task must have lost its response"
    submits = count(after, "SubmitJob", "requests") - count(before, "SubmitJob", "requests")
    assert submits == len(work), "a job that was found must not be submitted again"
    for w in work:
        # "running" once when submitted, and again when seen RUNNING (when the poller catches it).
        states = rec.states(w.ti.key)
        assert list(dict.fromkeys(states)) == ["running", "success"], (states, rec.task_events(w.ti.key))
        assert any("aws_batch_job_found" in e for e in rec.task_events(w.ti.key)), rec.task_events(w.ti.key)

    batch = localbatch.batch
    listed = batch.list_jobs(
        jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": [f"airflow-dag-{prefix}_*"]}]
    )["jobSummaryList"]
    jobs = batch.describe_jobs(jobs=[j["jobId"] for j in listed])["jobs"]
    by_task = sorted((j["tags"]["task_id"], j["jobName"], j["status"]) for j in jobs)
    assert by_task == [(t, f"airflow-dag-{t}", "SUCCEEDED") for t in task_ids]  # one job per task
    # The job id Airflow recorded is that one job's, although SubmitJob never answered with it.
    recorded = {rec.info(w.ti.key, "running") for w in work}
    assert recorded == {j["jobId"] for j in jobs}


def test_terminate_with_submits_in_flight_leaves_no_live_job(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slow answers and a slow submit rate keep SubmitJobs on the wire or waiting on the rate limiter
    # when the scheduler stops: none of them may create a job that outlives terminate().
    localbatch.set_faults({**held("inflight"), "latency_ms": 500})
    configure(monkeypatch, localbatch, job_queue=QUEUE, job_definition=DEFINITION, submit_rate="2")
    executor = FastExecutor(parallelism=64)
    executor.start()
    try:
        before = count(localbatch.stats(), "SubmitJob", "requests")
        work = [task_workload(f"inflight_{i}") for i in range(5)]
        for w in work:
            executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        executor.heartbeat()  # dispatches every SubmitJob to the workers
        deadline = time.monotonic() + 30
        while count(localbatch.stats(), "SubmitJob", "requests") == before:
            assert time.monotonic() < deadline, "no SubmitJob reached localbatch"
            time.sleep(0.02)
    finally:
        executor.terminate()
    batch = localbatch.batch
    live: list[str] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        listed = batch.list_jobs(
            jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": ["airflow-dag-inflight_*"]}]
        )["jobSummaryList"]
        live = sorted(f"{j['jobName']} {j['status']}" for j in listed if j["status"] != "FAILED")
        if not live:
            break
        time.sleep(0.2)
    localbatch.set_faults({})
    assert live == [], "jobs submitted around terminate() were left running"


def test_a_burst_is_built_off_the_scheduler_thread_and_submitted_at_the_rate(
    executor: FastExecutor, localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A loaded machine: each SubmitJob request takes 2 ms to build. Built in the heartbeat, 200 of
    # them would hold the scheduler's loop for 400 ms; the heartbeat only hands them to the intake.
    localbatch.set_faults(held("slowbuild"))
    build = executor.intake.build_request
    built_on: set[str] = set()

    def slow_build(workload: Any) -> dict[str, Any]:
        built_on.add(threading.current_thread().name)
        time.sleep(0.002)
        return build(workload)

    monkeypatch.setattr(executor.intake, "build_request", slow_build)
    for i in range(200):
        executor.queue_workload(task_workload(f"slowbuild_{i}"), session=None)  # type: ignore[arg-type]
    for _ in range(10):
        executor.heartbeat()
        if not executor.queued_tasks:
            break
    assert not executor.queued_tasks, "the heartbeats did not take the burst off Airflow's queue"
    assert len(executor.running) == 200
    before = count(localbatch.stats(), "SubmitJob", "requests")
    deadline = time.monotonic() + 30
    while count(localbatch.stats(), "SubmitJob", "requests") - before < 100:
        assert time.monotonic() < deadline, "the built requests were not submitted"
        executor.heartbeat()
        time.sleep(0.1)
    assert built_on == {"aws-batch-intake"}


def test_a_task_revoked_or_failed_while_its_request_is_built_gets_no_job(
    executor: FastExecutor, localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    localbatch.set_faults(held("intake"))
    release = threading.Event()
    build = executor.intake.build_request

    def held_build(workload: Any) -> dict[str, Any]:
        release.wait(30)
        return build(workload)

    monkeypatch.setattr(executor.intake, "build_request", held_build)
    work = [task_workload(f"intake_{i}") for i in range(40)]
    for w in work:
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
    executor.heartbeat()
    assert not executor.queued_tasks and len(executor.running) == 40
    revoked, failed = work[0].ti, work[1].ti
    executor.revoke_task(ti=revoked)
    executor.fail(failed.key, "failed by the scheduler")
    release.set()
    deadline = time.monotonic() + 30
    while len(executor.core) < 38:
        assert time.monotonic() < deadline, "the intake's requests were not taken in"
        executor.heartbeat()
        time.sleep(0.05)
    assert revoked.key not in executor.core and failed.key not in executor.core
    assert revoked.key not in executor.running
    submitted: set[str] = set()
    while len(submitted) < 38:
        assert time.monotonic() < deadline, f"only {len(submitted)} of 38 jobs were submitted"
        executor.heartbeat()
        jobs = localbatch.batch.list_jobs(
            jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": ["airflow-dag-intake_*"]}]
        )["jobSummaryList"]
        submitted = {j["jobName"] for j in jobs}
        time.sleep(0.1)
    time.sleep(1.0)  # a job for either would have been submitted with the others
    executor.heartbeat()
    jobs = localbatch.batch.list_jobs(
        jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": ["airflow-dag-intake_*"]}]
    )["jobSummaryList"]
    names = {j["jobName"] for j in jobs}
    assert len(names) == 38
    assert not names & {"airflow-dag-intake_0", "airflow-dag-intake_1"}, names


@pytest.mark.parametrize(
    ("read", "free_when"), [("slots_available", 2), ("slots_occupied", 0)], ids=["available", "occupied"]
)
def test_slots_of_ended_jobs_are_free_before_the_next_heartbeat(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, read: str, free_when: int
) -> None:
    # The scheduler reads slots_available in its critical section, before it heartbeats the executor:
    # a job the poller saw end must free its slot there, not one scheduler loop (and idle sleep) later.
    with started(FastExecutor, localbatch, monkeypatch, {"simulate": {"seconds": 0}}, 2) as executor:
        work = [task_workload(f"slots_{i}") for i in range(2)]
        for w in work:
            executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        executor.heartbeat()  # accepts and submits both
        assert executor.slots_available == 0
        deadline = time.monotonic() + 60
        while getattr(executor, read) != free_when:  # no heartbeat from here on
            assert time.monotonic() < deadline, "the ended jobs' slots were never freed"
            time.sleep(0.05)
        events = executor.get_event_buffer()
    # Their success is in the event buffer, for the scheduler to process in the same loop.
    assert {w.ti.key: str(events[w.ti.key][0]) for w in work} == {w.ti.key: "success" for w in work}


# ----------------------------------------------------------------- adoption, shutdown, sweeps
class SlowRetry(FastExecutor):
    """Backoff long enough that nothing is resubmitted or looked up while a test acts."""

    backoff = BackoffPolicy(base_s=60.0, max_s=60.0, wait_s=0.1)


class QuickRetry(FastExecutor):
    backoff = BackoffPolicy(base_s=1.0, max_s=1.0, wait_s=0.1)


@dataclass
class FakeTi:
    """What ``try_adopt_task_instances`` reads of a TaskInstance row."""

    dag_id: str
    task_id: str
    try_number: int
    external_executor_id: str | None
    run_id: str = "manual__1"
    map_index: int = -1
    #: When Airflow queued the task instance this time (None: unknown, nothing is judged by it).
    queued_dttm: datetime | None = None

    @property
    def key(self) -> TaskInstanceKey:
        return TaskInstanceKey(self.dag_id, self.task_id, self.run_id, self.try_number, self.map_index)


def test_the_sweep_terminates_array_children_whose_try_moved_on(
    executor: FastExecutor, localbatch: LocalBatchServer, tmp_path: Path
) -> None:
    # A scheduler died between an array's SubmitJob and Airflow saving its children's ids: the next
    # one reset their task instances (now at try 2) and ListJobs lists only the array, whose tags
    # name no map index. The array's workload object says which try each child runs.
    localbatch.set_faults(held("sweep_array"))
    batch = localbatch.batch
    deployment = str(executor.config.deployment_id)
    store = open_store(f"file://{tmp_path}/workloads")
    ti = {"dag_id": "dag", "task_id": "sweep_array", "run_id": "manual__1", "try_number": 1}
    # The executor groups in the order tasks came: child i need not run map index i.
    indexes = [2, 0, 1]
    url = store.put(
        "airflow-dag-sweep_array/s1",
        [json.dumps({"ti": {**ti, "id": f"u{m}", "map_index": m}}) for m in indexes],
    )
    parent = batch.submit_job(
        jobName="airflow-dag-sweep_array",
        jobQueue=QUEUE,
        jobDefinition=DEFINITION,
        arrayProperties={"size": len(indexes)},
        containerOverrides={"command": launch_command(url)},
        tags={**{k: str(v) for k, v in ti.items()}, "deployment": deployment},
    )["jobId"]
    moved_on, live, watched = (f"{parent}:{i}" for i in range(3))  # map indexes 2, 0, 1
    airflow_now = {
        ("dag", "sweep_array", "manual__1", 2): TiNow(2, "queued", None),
        ("dag", "sweep_array", "manual__1", 0): TiNow(1, "queued", None),  # its id is not saved yet
        ("dag", "sweep_array", "manual__1", 1): TiNow(2, "queued", None),
    }
    looked_up: list[Any] = []

    def one_sweep(**options: Any) -> set[str]:
        def lookup(tries: Any) -> Any:
            looked_up.extend(tries)
            return airflow_now

        commands = sweep(
            executor.api,
            queues=[QUEUE],
            deployment=deployment,
            tracked=lambda job_id: job_id == watched,
            lookup=lookup,
            before_call=lambda: True,
            suspects=set(),
            **options,
        )
        return {cmd.job_id for cmd in commands}

    try:
        wait_job(batch, moved_on, "RUNNABLE")
        assert one_sweep(store=store) == {moved_on}
        assert sorted(t.map_index for t in looked_up) == [0, 1, 2]
        # Without the store, or once the object is gone, the children are left alone.
        assert one_sweep() == set()
        Path(url.removeprefix("file://")).unlink()
        assert one_sweep(store=store) == set()
        # A child that already ended is not terminated again.
        Path(url.removeprefix("file://")).write_text(
            json.dumps({"version": 1, "workloads": [{"ti": {**ti, "map_index": m}} for m in indexes]})
        )
        batch.terminate_job(jobId=moved_on, reason="test")
        wait_job(batch, moved_on, "FAILED")
        assert one_sweep(store=store) == set()
        assert job_of(batch, live)["status"] == "RUNNABLE"
    finally:
        batch.terminate_job(jobId=parent, reason="test cleanup")


def test_the_sweep_reads_no_object_outside_the_store(
    executor: FastExecutor, localbatch: LocalBatchServer, tmp_path: Path
) -> None:
    # A job's command is whatever its job says: "file://<store>/../x" starts like the store's URL but
    # names a file outside it, which the sweep must not read (nor act on).
    localbatch.set_faults(held("sweep_outside"))
    batch = localbatch.batch
    deployment = str(executor.config.deployment_id)
    store = open_store(f"file://{tmp_path}/workloads")
    ti = {"dag_id": "dag", "task_id": "sweep_outside", "run_id": "manual__1", "try_number": 1}
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"version": 1, "workloads": [{"ti": {**ti, "map_index": 0}}]}))
    parent = batch.submit_job(
        jobName="airflow-dag-sweep_outside",
        jobQueue=QUEUE,
        jobDefinition=DEFINITION,
        arrayProperties={"size": 2},
        containerOverrides={"command": launch_command(f"file://{tmp_path}/workloads/../outside.json")},
        tags={**{k: str(v) for k, v in ti.items()}, "deployment": deployment},
    )["jobId"]
    moved_on = {("dag", "sweep_outside", "manual__1", 0): TiNow(2, "queued", None)}
    try:
        wait_job(batch, f"{parent}:0", "RUNNABLE")
        commands = sweep(
            executor.api,
            queues=[QUEUE],
            deployment=deployment,
            tracked=lambda job_id: False,
            lookup=lambda tries: moved_on,
            before_call=lambda: True,
            suspects=set(),
            store=store,
        )
        assert {cmd.job_id for cmd in commands} == set()
        assert job_of(batch, f"{parent}:0")["status"] == "RUNNABLE"
    finally:
        batch.terminate_job(jobId=parent, reason="test cleanup")


def submit_tagged(batch: Any, task_id: str, try_number: int, deployment: str, dag_id: str = "dag") -> str:
    tags = {
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": "manual__1",
        "map_index": "-1",
        "try_number": str(try_number),
        "deployment": deployment,
    }
    job_id: str = batch.submit_job(
        jobName=f"airflow-{dag_id}-{task_id}",
        jobQueue=QUEUE,
        jobDefinition=DEFINITION,
        containerOverrides={"command": ["true"]},
        tags=tags,
    )["jobId"]
    return job_id


def test_adoption_takes_only_this_trys_job_and_finds_the_one_whose_id_was_not_saved(
    executor: FastExecutor, localbatch: LocalBatchServer
) -> None:
    localbatch.set_faults(held("adopt"))
    batch = localbatch.batch
    deployment = str(executor.config.deployment_id)
    stale = submit_tagged(batch, "adopt_requeued", 1, deployment)  # the id Airflow still holds
    unsaved = submit_tagged(batch, "adopt_requeued", 2, deployment)  # the scheduler died before saving it
    saved = submit_tagged(batch, "adopt_saved", 1, deployment)
    other_deployment = submit_tagged(batch, "adopt_nojob", 1, "someone-else")
    requeued = FakeTi("dag", "adopt_requeued", 2, stale)
    tis = [requeued, FakeTi("dag", "adopt_saved", 1, saved), FakeTi("dag", "adopt_nojob", 1, None)]

    handed_back = executor.try_adopt_task_instances(tis)

    assert [ti.task_id for ti in handed_back] == ["adopt_nojob"]
    assert executor.core.job_id(requeued.key) == unsaved
    assert executor.core.job_id(tis[1].key) == saved
    # Airflow is told the found job's id; the saved one needs no event.
    assert executor.event_buffer[requeued.key][1] == unsaved
    assert tis[1].key not in executor.event_buffer
    assert "Stale Batch job of try 1" in wait_job(batch, stale, "FAILED")["statusReason"]
    assert job_of(batch, other_deployment)["status"] == "RUNNABLE"  # never another deployment's


def test_adoption_takes_by_the_saved_id_only_a_job_of_the_current_queueing(
    executor: FastExecutor, localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deferred task that resumed (or a sensor's next poke) keeps its try number and the id of its
    # earlier queueing's job, which SUCCEEDED; the scheduler died before the new job's id was saved.
    # No clock allowance, so that "earlier" needs no wait: both clocks here are this host's.
    monkeypatch.setattr(ownership, "QUEUEING_CLOCK_ALLOWANCE_MS", 0)
    batch = localbatch.batch
    deployment = str(executor.config.deployment_id)
    localbatch.set_faults({"simulate": {"seconds": 0}})
    resumed_before = submit_tagged(batch, "queueing_resumed", 1, deployment)
    lost_before = submit_tagged(batch, "queueing_lost", 1, deployment)
    wait_job(batch, resumed_before, "SUCCEEDED")
    wait_job(batch, lost_before, "SUCCEEDED")
    time.sleep(0.01)  # createdAt has millisecond resolution
    queued = datetime.now(UTC)
    time.sleep(0.01)
    localbatch.set_faults(held("queueing"))
    resumed_now = submit_tagged(batch, "queueing_resumed", 1, deployment)
    revoked_now = submit_tagged(batch, "queueing_revoked", 1, deployment)
    batch.terminate_job(jobId=revoked_now, reason="Task revoked by Airflow")
    wait_job(batch, revoked_now, "FAILED")
    resumed = FakeTi("dag", "queueing_resumed", 1, resumed_before, queued_dttm=queued)
    tis = [
        resumed,
        FakeTi("dag", "queueing_lost", 1, lost_before, queued_dttm=queued),
        FakeTi("dag", "queueing_revoked", 1, revoked_now, queued_dttm=queued),
    ]
    try:
        handed_back = executor.try_adopt_task_instances(tis)

        # The earlier queueing's SUCCEEDED job and a terminated one are never this submission's.
        assert sorted(ti.task_id for ti in handed_back) == ["queueing_lost", "queueing_revoked"]
        assert executor.core.job_id(resumed.key) == resumed_now
        assert executor.event_buffer[resumed.key][1] == resumed_now  # found by tags: Airflow is told
    finally:
        batch.terminate_job(jobId=resumed_now, reason="test cleanup")


def test_adoption_out_of_budget_still_adopts_the_jobs_confirmed_by_their_saved_id(
    executor: FastExecutor, localbatch: LocalBatchServer
) -> None:
    localbatch.set_faults(held("budget"))
    batch = localbatch.batch
    deployment = str(executor.config.deployment_id)
    saved = submit_tagged(batch, "budget_saved", 1, deployment)
    unsaved = submit_tagged(batch, "budget_unsaved", 1, deployment)
    confirmed = FakeTi("dag", "budget_saved", 1, saved)
    needs_listing = FakeTi("dag", "budget_unsaved", 1, None)
    calls = iter([True])  # one DescribeJobs, then the budget is spent: no listing by tags

    try:
        plan = plan_adoption(
            executor.api,
            [confirmed, needs_listing],
            queues=[QUEUE],
            deployment=deployment,
            before_call=lambda: next(calls, False),
        )
        assert plan.adopt == {confirmed.key: saved}
        assert plan.not_adopted == [needs_listing]
    finally:
        for job_id in (saved, unsaved):
            batch.terminate_job(jobId=job_id, reason="test cleanup")


def test_an_adopted_job_that_failed_before_it_started_is_resubmitted_not_failed(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The previous scheduler's job failed to pull its image; the scheduler died before the resubmit.
    pull_fails = {"job_name_contains": "adopt_unstarted", "fault": "fail_before_start", "times": 1}
    faults = {"simulate": {"seconds": 0}, "rules": [pull_fails]}
    with started(QuickRetry, localbatch, monkeypatch, faults, 8) as executor:
        batch = localbatch.batch
        queued = datetime.now(UTC)
        failed = submit_tagged(batch, "adopt_unstarted", 1, str(executor.config.deployment_id))
        before = wait_job(batch, failed, "FAILED")
        assert "startedAt" not in before
        ti = FakeTi("dag", "adopt_unstarted", 1, failed, queued_dttm=queued)

        assert executor.try_adopt_task_instances([ti]) == []

        rec = Recorder(executor)
        rec.until(lambda: "success" in rec.states(ti.key), what="the resubmitted job to succeed")
        assert "failed" not in rec.states(ti.key), rec.task_events(ti.key)
        assert any("aws_batch_job_failed_before_start" in e for e in rec.task_events(ti.key))
        again = job_of(batch, rec.info(ti.key, "running"))
        assert again["jobId"] != failed
        for member in ("jobName", "jobDefinition", "jobQueue"):
            assert again[member] == before[member]
        assert {k: v for k, v in again["tags"].items() if k != "submission"} == before["tags"]
        assert again["container"]["command"] == before["container"]["command"]


def test_a_terminate_is_retried_across_an_outage_until_the_job_ends(localbatch: LocalBatchServer) -> None:
    from botocore.config import Config

    from airflow_aws_batch.aws.batch import BatchApi
    from airflow_aws_batch.core.messages import Terminate
    from airflow_aws_batch.runtime import Runtime

    localbatch.set_faults(held("outage_end"))
    batch = localbatch.batch
    job = submit_tagged(batch, "outage_end", 1, "outage")
    # One call per try (no botocore retries), so that localbatch's counter counts our tries.
    config = Config(retries={"total_max_attempts": 1})
    api = BatchApi(lambda: localbatch.client("batch", config=config))
    runtime = Runtime(api, submit_rate=100, status_calls_per_second=100)
    runtime.terminator.terminate_retry_s = (0.05, 0.2)
    runtime.start()
    try:
        localbatch.set_faults({**held("outage_end"), "error_rate": 1.0})  # Batch answers 500 to everything
        before = count(localbatch.stats(), "TerminateJob", "server_errors")
        runtime.terminate(Terminate(job, "Task revoked by Airflow"))
        deadline = time.monotonic() + 60
        while count(localbatch.stats(), "TerminateJob", "server_errors") - before < 10:
            assert time.monotonic() < deadline, "the terminate stopped being tried during the outage"
            time.sleep(0.05)
        localbatch.set_faults(held("outage_end"))
        assert "revoked" in wait_job(batch, job, "FAILED")["statusReason"]
    finally:
        runtime.stop()
        localbatch.set_faults({})


def test_terminated_jobs_are_checked_together_not_one_call_each(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.config import Config

    from airflow_aws_batch.aws.batch import BatchApi
    from airflow_aws_batch.core.messages import Terminate
    from airflow_aws_batch.runtime import Runtime, terminator

    # Checks 2 s after each TerminateJob, those due in the 5 s after the first taken along.
    monkeypatch.setattr(terminator, "TERMINATE_CHECK_S", 2.0)
    localbatch.set_faults(held("many_ended"))
    batch = localbatch.batch
    jobs = [submit_tagged(batch, f"many_ended_{i}", 1, "many") for i in range(150)]
    config = Config(retries={"total_max_attempts": 1})
    api = BatchApi(lambda: localbatch.client("batch", config=config))
    runtime = Runtime(api, submit_rate=1000, status_calls_per_second=1000)
    before = count(localbatch.stats(), "DescribeJobs", "requests")
    runtime.start()
    try:
        for job in jobs:
            runtime.terminate(Terminate(job, "Task revoked by Airflow"))
        deadline = time.monotonic() + 60

        def endings_left() -> int:
            """Read on the terminator thread, between two of its steps."""
            left: list[int] = []
            done = threading.Event()

            def read() -> None:
                left.append(runtime.endings)
                done.set()

            runtime.run_later(read)
            assert done.wait(60)
            return left[0]

        while (left := endings_left()) > 0:  # until every job is seen ended
            assert time.monotonic() < deadline, f"{left} terminations never seen through"
            time.sleep(0.2)
        described = count(localbatch.stats(), "DescribeJobs", "requests") - before
        assert 2 <= described <= 10, described  # about 100 jobs a call, not one each
    finally:
        runtime.stop()
        localbatch.set_faults({})


def test_the_orphan_sweep_also_runs_on_a_timer(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Sweeping(FastExecutor):
        sweep_interval_s = 0.5
        # No task instance of the orphan's try exists in Airflow's DB.
        ti_lookup = staticmethod(lambda tries: {})

    with started(Sweeping, localbatch, monkeypatch, held("timer_orphan"), 8) as executor:
        swept = threading.Event()
        executor.runtime.run_later(swept.set)  # queued after the start sweep: runs once it is done
        assert swept.wait(60)
        batch = localbatch.batch
        orphan = submit_tagged(batch, "timer_orphan", 1, str(executor.config.deployment_id))
        rec = Recorder(executor)
        rec.until(
            lambda: job_of(batch, orphan)["status"] == "FAILED", timeout=60, what="the orphan to be swept"
        )
        assert "Orphaned Batch job" in job_of(batch, orphan)["statusReason"]


def test_end_hands_over_and_terminates_only_the_jobs_whose_ids_were_not_saved(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    localbatch.set_faults(held("handover"))
    configure(monkeypatch, localbatch, job_queue=QUEUE, job_definition=DEFINITION)
    executor = FastExecutor(parallelism=64)
    executor.start()
    rec = Recorder(executor)
    saved = [task_workload(f"handover_saved_{i}") for i in range(2)]
    for w in saved:
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
    rec.until(lambda: all(rec.states(w.ti.key) for w in saved), what="the saved jobs")  # the buffer is read
    unsaved = task_workload("handover_unsaved")
    executor.queue_workload(unsaved, session=None)  # type: ignore[arg-type]
    deadline = time.monotonic() + 60
    while unsaved.ti.key not in executor.event_buffer:  # RunningState, never read by "the scheduler"
        assert time.monotonic() < deadline, "the last job was never submitted"
        executor.heartbeat()
        time.sleep(0.05)
    unsaved_job = executor.event_buffer[unsaved.ti.key][1]
    before = localbatch.stats()

    ender = threading.Thread(target=executor.end, daemon=True)
    ender.start()
    ender.join(60)
    assert not ender.is_alive(), "end() waited for the jobs instead of handing them over"

    batch = localbatch.batch
    assert "stopped before it saved" in wait_job(batch, unsaved_job, "FAILED")["statusReason"]
    # Cancelled, not terminated: a job that started meanwhile would have been left alone.
    after = localbatch.stats()
    assert count(after, "CancelJob", "requests") - count(before, "CancelJob", "requests") == 1
    assert count(after, "TerminateJob", "requests") == count(before, "TerminateJob", "requests")
    for w in saved:
        assert job_of(batch, rec.info(w.ti.key, "running"))["status"] == "RUNNABLE"  # left for adoption
        batch.terminate_job(jobId=rec.info(w.ti.key, "running"), reason="test cleanup")
    localbatch.set_faults({})


def test_end_sends_nothing_that_waited_to_be_sent(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One SubmitJob every 5 s: the submit threads hold a queue of commands when SIGTERM comes.
    with started(FastExecutor, localbatch, monkeypatch, held("drained"), 64, submit_rate="0.2") as executor:
        rec = Recorder(executor)
        work = [task_workload(f"drained_{i}") for i in range(20)]
        for w in work:
            executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        executor.heartbeat()
        executor.heartbeat()
        rec.until(lambda: bool(localbatch.submit_requests()), what="the first SubmitJob")
        executor.end()
        sent = len([r for r in localbatch.submit_requests() if "drained_" in r])
        time.sleep(6)  # a thread that would still send after end() has had its turn
        assert len([r for r in localbatch.submit_requests() if "drained_" in r]) == sent
        assert sent <= 2, sent  # end() waited for the calls on the wire only
        batch = localbatch.batch
        for summary in batch.list_jobs(jobQueue=QUEUE, jobStatus="RUNNABLE")["jobSummaryList"]:
            batch.terminate_job(jobId=summary["jobId"], reason="test cleanup")


def test_end_returns_in_bounded_time_when_batch_does_not_answer(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with started(FastExecutor, localbatch, monkeypatch, held("mute"), 8) as executor:
        unsaved = task_workload("mute_unsaved")
        executor.queue_workload(unsaved, session=None)  # type: ignore[arg-type]
        deadline = time.monotonic() + 60
        while unsaved.ti.key not in executor.event_buffer:  # RunningState, never read by "the scheduler"
            assert time.monotonic() < deadline, "the job was never submitted"
            executor.heartbeat()
            time.sleep(0.05)
        job = executor.event_buffer[unsaved.ti.key][1]
        localbatch.set_faults({**held("mute"), "latency_ms": 600_000})  # every answer takes 10 minutes
        ender = threading.Thread(target=executor.end, daemon=True)
        ender.start()
        ender.join(60)
        assert not ender.is_alive(), "end() waited on Batch without bound"
        localbatch.set_faults(held("mute"))
        localbatch.batch.terminate_job(jobId=job, reason="test cleanup")


def test_a_success_after_airflow_moved_the_try_on_frees_the_slot_without_an_event(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[tuple[str, int]]] = []

    class Rescheduled(FastExecutor):
        # Airflow's DB says: this try is back in SCHEDULED, waiting for its next poke.
        @staticmethod
        def moved_on_checker(tries: list[tuple[str, int]]) -> dict[str, str]:
            asked.append(tries)
            return {ti_id: "scheduled" for ti_id, _ in tries}

    with started(Rescheduled, localbatch, monkeypatch, {"simulate": {"seconds": 0}}, 8) as executor:
        rec = Recorder(executor)
        w = task_workload("poked")
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        rec.until(
            lambda: any("aws_batch_success_not_reported" in e for e in rec.task_events(w.ti.key)),
            what="the success to be held back",
        )
        assert "success" not in rec.states(w.ti.key)
        assert w.ti.key not in executor.running  # the slot is free
        assert asked == [[(str(w.ti.id), 1)]]


class _TryRunning(FastExecutor):
    # Airflow's DB says: this try started and is RUNNING (whichever job started it).
    start_checker = staticmethod(lambda ti_id, try_number: True)
    running_checker = staticmethod(lambda ti_id, try_number: True)


@pytest.mark.parametrize(
    "duplicate", [pytest.param(True, id="duplicate-won"), pytest.param(False, id="alone")]
)
def test_a_job_that_lost_its_tasks_start_to_a_duplicate_hands_the_try_to_it(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, duplicate: bool
) -> None:
    # Two jobs of one try both start; the execution API lets one start the task and refuses the other
    # (HTTP 409), which exits 1. Failing the try then would have Airflow retry it beside the task
    # still running in the other job. Without a duplicate, such a failure is a crash and fails the try.
    name = f"dupstart_{int(duplicate)}"
    with started(_TryRunning, localbatch, monkeypatch, {"simulate": {"seconds": None}}, 8) as executor:
        rec = Recorder(executor)
        w = task_workload(name)
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        rec.until(lambda: "running" in rec.states(w.ti.key), what="the job id")
        batch = localbatch.batch
        loser = rec.info(w.ti.key, "running")
        job = wait_job(batch, loser, "RUNNING")
        winner = None
        if duplicate:
            winner = batch.submit_job(
                jobName=job["jobName"],
                jobQueue=QUEUE,
                jobDefinition=DEFINITION,
                containerOverrides={"command": ["true"]},
                tags=job["tags"],
            )["jobId"]
            wait_job(batch, winner, "RUNNING")
        localbatch.finish_simulated([loser], exit_code=1)
        if not duplicate:
            rec.until(lambda: "failed" in rec.states(w.ti.key), what="the failure")
            return
        rec.until(
            lambda: any("aws_batch_duplicate_start" in e for e in rec.task_events(w.ti.key)),
            what="the duplicate start to be seen",
        )
        assert [info for k, s, info in rec.events if k == w.ti.key and s == "running"][-1] == winner
        localbatch.finish_simulated([winner], exit_code=0)
        rec.until(lambda: "success" in rec.states(w.ti.key), what="the winner's success")
        assert "failed" not in rec.states(w.ti.key)


def test_a_task_airflow_fails_for_missing_heartbeats_has_its_job_terminated(
    executor: FastExecutor, localbatch: LocalBatchServer
) -> None:
    localbatch.set_faults(held("zombie"))
    rec = Recorder(executor)
    w = task_workload("zombie_task")
    executor.queue_workload(w, session=None)  # type: ignore[arg-type]
    rec.until(lambda: bool(rec.states(w.ti.key)), what="the job id")
    # What the scheduler does to a task instance without heartbeats.
    executor.change_state(w.ti.key, TaskInstanceState.FAILED, remove_running=True)
    job = wait_job(localbatch.batch, rec.info(w.ti.key, "running"), "FAILED")
    assert "Airflow failed the task" in job["statusReason"]
    assert w.ti.key not in executor.core


def test_revoking_a_task_whose_submit_was_ambiguous_terminates_the_job_it_created(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = {"job_name_contains": "revamb", "fault": "lost_response", "times": 1}
    faults = {**held("revamb"), "rules": [*held("revamb")["rules"], lost]}
    with started(SlowRetry, localbatch, monkeypatch, faults, 8) as executor:
        rec = Recorder(executor)
        w = task_workload("revamb_task")
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        rec.until(
            lambda: any("aws_batch_submit_ambiguous" in e for e in rec.task_events(w.ti.key)),
            what="the ambiguous submit",
        )
        batch = localbatch.batch
        (created,) = batch.list_jobs(
            jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": ["airflow-dag-revamb_task"]}]
        )["jobSummaryList"]

        executor.revoke_task(ti=FakeTi("dag", "revamb_task", 1, None))
        rec.beat()
        assert "revoked" in wait_job(batch, created["jobId"], "FAILED")["statusReason"].lower()


def test_the_lookup_after_an_ambiguous_submit_never_takes_an_earlier_job_of_the_same_try(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deferral resume queues the same key again; its job carries the same name and task tags as the
    # earlier job, which SUCCEEDED. Its SubmitJob fails with a 5xx that created nothing.
    with started(QuickRetry, localbatch, monkeypatch, {"simulate": {"seconds": 0}}, 8) as executor:
        rec = Recorder(executor)
        first = task_workload("resumed_task")
        executor.queue_workload(first, session=None)  # type: ignore[arg-type]
        rec.until(lambda: "success" in rec.states(first.ti.key), what="the first job to succeed")
        earlier_job = rec.info(first.ti.key, "running")

        localbatch.set_faults({"simulate": {"seconds": 0}, "error_rate": 1.0})
        resumed = workloads.ExecuteTask.model_validate({**first.model_dump(), "token": "resumed"})
        executor.queue_workload(resumed, session=None)  # type: ignore[arg-type]
        rec.until(
            lambda: any("aws_batch_submit_ambiguous" in e for e in rec.task_events(first.ti.key)),
            what="the ambiguous submit",
        )
        localbatch.set_faults({"simulate": {"seconds": 0}})
        rec.until(lambda: rec.states(first.ti.key).count("success") == 2, what="the resumed job to succeed")
    # Each job's id is reported when it is submitted, and again if the poller sees it RUNNING.
    running = [info for key, state, info in rec.events if key == first.ti.key and state == "running"]
    jobs = list(dict.fromkeys(running))
    assert len(jobs) == 2 and jobs[1] != earlier_job, running


def test_the_sweep_terminates_only_jobs_no_live_try_points_at(
    executor: FastExecutor, localbatch: LocalBatchServer
) -> None:
    localbatch.set_faults(held("sweep"))
    batch = localbatch.batch
    deployment = str(executor.config.deployment_id)
    moved_on = submit_tagged(batch, "sweep_moved_on", 1, deployment)
    queued_elsewhere = submit_tagged(batch, "sweep_queued", 1, deployment)
    foreign = submit_tagged(batch, "sweep_foreign", 1, "another-deployment")
    finished = submit_tagged(batch, "sweep_finished", 1, deployment)
    watched = submit_tagged(batch, "sweep_watched", 1, deployment)
    airflow_now = {
        ("dag", "sweep_moved_on", "manual__1", -1): TiNow(2, "queued", None),
        ("dag", "sweep_queued", "manual__1", -1): TiNow(1, "queued", None),
        ("dag", "sweep_finished", "manual__1", -1): TiNow(1, "success", finished),
        ("dag", "sweep_watched", "manual__1", -1): TiNow(2, "queued", None),
    }
    suspects: set[str] = set()

    def one_sweep() -> set[str]:
        commands = sweep(
            executor.api,
            queues=[QUEUE],
            deployment=deployment,
            tracked=lambda job_id: job_id == watched,
            lookup=lambda tries: airflow_now,
            before_call=lambda: True,
            suspects=suspects,
        )
        return {cmd.job_id for cmd in commands}

    first = one_sweep()
    assert moved_on in first
    assert not first & {queued_elsewhere, foreign, finished, watched}
    assert finished in suspects  # its task just finished: it may still be exiting
    assert finished in one_sweep()  # still active a sweep later: hung
    for job_id in (moved_on, queued_elsewhere, foreign, finished, watched):
        batch.terminate_job(jobId=job_id, reason="test cleanup")


def test_a_sigterm_python_swallowed_stops_the_scheduler_at_its_next_heartbeat(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Airflow's scheduler installs its handler (which raises SystemExit) before it starts executors.
    import signal
    import sys
    import weakref

    received: list[int] = []

    def exit_gracefully(signum: int, frame: Any) -> None:
        received.append(signum)
        sys.exit(0)

    previous = signal.signal(signal.SIGTERM, exit_gracefully)
    unraisable: list[Any] = []
    try:
        with started(FastExecutor, localbatch, monkeypatch, {}, 8) as executor:
            executor.heartbeat()  # nothing received: a plain heartbeat
            hook = sys.unraisablehook
            sys.unraisablehook = unraisable.append
            try:
                anchor = type("Session", (), {})()
                weakref.finalize(anchor, signal.raise_signal, signal.SIGTERM)
                del anchor  # the handler runs inside the finalizer: its SystemExit is swallowed
            finally:
                sys.unraisablehook = hook
            assert received == [signal.SIGTERM]
            with pytest.raises(SystemExit):
                executor.heartbeat()
            assert received == [signal.SIGTERM, signal.SIGTERM]
            executor.end()
        assert signal.getsignal(signal.SIGTERM) is exit_gracefully  # the scheduler's own, put back
    finally:
        signal.signal(signal.SIGTERM, previous)
