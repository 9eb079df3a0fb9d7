"""Array jobs: AwsBatchExecutor in-process against localbatch (a subprocess, real HTTP, real arrays)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.executors import workloads
from airflow.models.taskinstancekey import TaskInstanceKey

from airflow_aws_batch.core.messages import BackoffPolicy
from airflow_aws_batch.runtime.lookups import Lookups
from devstack import LocalBatchServer

from ._airflow import FastExecutor, Recorder, configure, task_workload

pytestmark = pytest.mark.contract

QUEUE = "array-queue"
DEFINITION = "array-def"
SIZE = 12


@pytest.fixture(scope="module")
def localbatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBatchServer]:
    server = LocalBatchServer(tmp_path_factory.mktemp("localbatch"), args=["--kill-grace-seconds", "1"])
    with server:
        server.setup(compute_environment="array-ce", job_queue=QUEUE, job_definition=DEFINITION)
        yield server


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    path = tmp_path / "workloads"
    path.mkdir()
    return path


@contextlib.contextmanager
def started(
    localbatch: LocalBatchServer,
    monkeypatch: pytest.MonkeyPatch,
    store_dir: Path,
    faults: dict[str, Any],
    cls: type[FastExecutor] = FastExecutor,
    **options: str,
) -> Iterator[FastExecutor]:
    localbatch.set_faults(faults)
    configure(
        monkeypatch,
        localbatch,
        job_queue=QUEUE,
        job_definition=DEFINITION,
        workload_store=f"file://{store_dir}",
        **options,
    )
    executor = cls(parallelism=256)
    executor.start()
    try:
        yield executor
    finally:
        executor.terminate()
        localbatch.set_faults({})


class SlowRetry(FastExecutor):
    # The lookup after a lost answer does not come while the test acts (a revoke's lookup does).
    backoff = BackoffPolicy(base_s=60.0, max_s=60.0, wait_s=0.1)


def lost_array_faults(name: str) -> dict[str, Any]:
    """Jobs named for ``name`` stay RUNNABLE, and the first SubmitJob's answer is lost."""
    lost = {"job_name_contains": f"airflow-dag-{name}", "fault": "lost_response", "times": 1}
    faults = held(f"airflow-dag-{name}")
    return {**faults, "rules": [*faults["rules"], lost]}


def until_ambiguous(rec: Recorder, executor: FastExecutor, work: list[workloads.ExecuteTask]) -> None:
    rec.until(
        lambda: all(
            any("aws_batch_submit_ambiguous" in e for e in events_of(executor, w.ti.key)) for w in work
        ),
        timeout=60,
        what="the lost answer",
    )


def children_of(batch: Any, name: str) -> list[str]:
    (array,) = batch.list_jobs(
        jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": [f"airflow-dag-{name}"]}]
    )["jobSummaryList"]
    return [f"{array['jobId']}:{i}" for i in range(SIZE)]


def revoke_and_see_only_child_0_end(
    rec: Recorder, executor: FastExecutor, batch: Any, work: list[workloads.ExecuteTask], name: str
) -> None:
    """Child 0 leaves (revoked) before the lookup of its lost array has resolved: its job must end,
    and no sibling's."""

    @dataclass
    class TI:
        key: TaskInstanceKey

    executor.revoke_task(ti=TI(work[0].ti.key))
    children = children_of(batch, name)
    rec.until(
        lambda: batch.describe_jobs(jobs=[children[0]])["jobs"][0]["status"] == "FAILED",
        timeout=30,
        what="the revoked child to end",
    )
    siblings = batch.describe_jobs(jobs=children[1:])["jobs"]
    assert {j["status"] for j in siblings} == {"RUNNABLE"}


def mapped(task_id: str, size: int = SIZE) -> list[workloads.ExecuteTask]:
    return [task_workload(task_id, map_index=i) for i in range(size)]


def queue_all(executor: FastExecutor, work: list[workloads.ExecuteTask]) -> None:
    for w in work:
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]


def submits(stats: dict[str, Any]) -> int:
    return int(stats["operations"].get("SubmitJob", {}).get("requests", 0))


def events_of(executor: FastExecutor, key: TaskInstanceKey) -> list[str]:
    return [
        f"{log.event}: {log.extra}"
        for log in executor.task_event_logs
        if log.task_id == key.task_id and log.map_index == key.map_index
    ]


def job_ids(rec: Recorder, work: list[workloads.ExecuteTask]) -> list[str]:
    return [str(rec.info(w.ti.key, "running")) for w in work]


def held(name_part: str) -> dict[str, Any]:
    return {
        "hold_runnable": {"rate": 0.0, "reason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - held by test"},
        "rules": [{"job_name_contains": name_part, "fault": "hold_runnable"}],
    }


def test_a_burst_is_one_array_whose_children_each_report_to_their_task(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, store_dir: Path
) -> None:
    with started(localbatch, monkeypatch, store_dir, {"simulate": {"seconds": 0.2}}) as executor:
        before = localbatch.stats()
        rec = Recorder(executor)
        work = mapped("burst")
        queue_all(executor, work)
        rec.until(lambda: all("success" in rec.states(w.ti.key) for w in work), timeout=60, what="every task")
        after = localbatch.stats()
    assert submits(after) - submits(before) == 1
    ids = job_ids(rec, work)
    parent = ids[0].split(":")[0]
    assert ids == [f"{parent}:{i}" for i in range(SIZE)]
    (job,) = localbatch.batch.describe_jobs(jobs=[parent])["jobs"]
    assert job["arrayProperties"]["size"] == SIZE
    assert job["jobName"] == "airflow-dag-burst"
    assert job["tags"]["task_id"] == "burst" and "map_index" not in job["tags"]
    command = job["container"]["command"]
    assert command[:3] == ["python", "-m", "airflow_aws_batch.launch"]
    assert "token" not in json.dumps(job)  # the workloads are in the store, not in the request
    # Child i runs task i: the object holds the workloads in child index order.
    (written,) = [p for p in store_dir.rglob("*") if p.is_file()]
    stored = json.loads(written.read_text())["workloads"]
    assert [w["ti"]["map_index"] for w in stored] == list(range(SIZE))
    assert [w["ti"]["id"] for w in stored] == [str(w.ti.id) for w in work]


def test_tasks_queued_over_two_heartbeats_still_form_one_array(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, store_dir: Path
) -> None:
    # Airflow's scheduler queues a burst over several loops; the first part waits for the rest.
    with started(localbatch, monkeypatch, store_dir, {"simulate": {"seconds": 0}}) as executor:
        before = localbatch.stats()
        rec = Recorder(executor)
        work = mapped("split")
        queue_all(executor, work[:7])
        rec.beat()
        queue_all(executor, work[7:])
        rec.until(lambda: all("success" in rec.states(w.ti.key) for w in work), timeout=60, what="every task")
        after = localbatch.stats()
    assert submits(after) - submits(before) == 1
    assert len({job_id.split(":")[0] for job_id in job_ids(rec, work)}) == 1


def test_too_few_tasks_go_out_as_single_jobs(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, store_dir: Path
) -> None:
    with started(
        localbatch, monkeypatch, store_dir, {"simulate": {"seconds": 0}}, array_min_size="20"
    ) as executor:
        before = localbatch.stats()
        rec = Recorder(executor)
        work = mapped("few")
        queue_all(executor, work)
        rec.until(lambda: all("success" in rec.states(w.ti.key) for w in work), timeout=60, what="every task")
        after = localbatch.stats()
    assert submits(after) - submits(before) == SIZE
    assert all(":" not in job_id for job_id in job_ids(rec, work))


def test_a_child_that_failed_before_start_is_resubmitted_alone(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, store_dir: Path
) -> None:
    faults = {
        "simulate": {"seconds": 0.2},
        "rules": [{"job_name_contains": "airflow-dag-fbs", "fault": "fail_before_start", "times": 1}],
    }
    with started(localbatch, monkeypatch, store_dir, faults) as executor:
        before = localbatch.stats()
        rec = Recorder(executor)
        work = mapped("fbs")
        queue_all(executor, work)
        rec.until(lambda: all("success" in rec.states(w.ti.key) for w in work), timeout=60, what="every task")
        after = localbatch.stats()
    assert submits(after) - submits(before) == 2  # the array, then the one child alone
    failed = [
        w
        for w in work
        if any("aws_batch_job_failed_before_start" in e for e in events_of(executor, w.ti.key))
    ]
    assert len(failed) == 1, [events_of(executor, w.ti.key) for w in work]
    (retried,) = failed
    first, *later = [info for key, state, info in rec.events if key == retried.ti.key and state == "running"]
    assert ":" in first
    assert later and all(":" not in info for info in later), later  # an ordinary job the second time
    parents = {
        job_id.split(":")[0] for w in work if w is not retried for job_id in [rec.info(w.ti.key, "running")]
    }
    assert len(parents) == 1


def test_a_lost_answer_to_an_array_submit_is_found_not_sent_again(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, store_dir: Path
) -> None:
    faults = {
        "simulate": {"seconds": 0.2},
        "rules": [{"job_name_contains": "airflow-dag-lost", "fault": "lost_response", "times": 1}],
    }
    with started(localbatch, monkeypatch, store_dir, faults) as executor:
        before = localbatch.stats()
        rec = Recorder(executor)
        work = mapped("lost")
        queue_all(executor, work)
        rec.until(lambda: all("success" in rec.states(w.ti.key) for w in work), timeout=60, what="every task")
        after = localbatch.stats()
    assert submits(after) - submits(before) == 1
    ids = job_ids(rec, work)
    parent = ids[0].split(":")[0]
    assert ids == [f"{parent}:{i}" for i in range(SIZE)]
    for w in work:
        assert any("aws_batch_job_found" in e for e in events_of(executor, w.ti.key)), events_of(
            executor, w.ti.key
        )


def test_children_are_not_sent_alone_while_the_lost_arrays_lookup_may_still_find_it(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, store_dir: Path
) -> None:
    # ListJobs lists a job a moment after Batch created it (localbatch lists it at once, so the lag is
    # put between the executor and it): the first lookup after the lost answer finds no array.
    lag_ms = 1_500
    monkeypatch.setattr(Lookups, "array_lookup_settle_s", 3.0)
    faults = {
        "simulate": {"seconds": 0.2},
        "rules": [{"job_name_contains": "airflow-dag-lagged", "fault": "lost_response", "times": 1}],
    }
    with started(localbatch, monkeypatch, store_dir, faults) as executor:
        runtime = executor.runtime
        assert runtime is not None
        listed = runtime.api.find_jobs
        looked: list[int] = []

        def lagging(*args: Any, **kwargs: Any) -> list[Any]:
            now_ms = int(time.time() * 1000)
            jobs = [j for j in listed(*args, **kwargs) if (j.created_at or 0) <= now_ms - lag_ms]
            looked.append(len(jobs))
            return jobs

        monkeypatch.setattr(runtime.api, "find_jobs", lagging)
        before = localbatch.stats()
        rec = Recorder(executor)
        work = mapped("lagged")
        queue_all(executor, work)
        rec.until(lambda: all("success" in rec.states(w.ti.key) for w in work), timeout=60, what="every task")
        after = localbatch.stats()
    assert looked[0] == 0, "the first lookup must have come before the array was listed"
    assert submits(after) - submits(before) == 1, "no child may be sent alone while the array may exist"
    ids = job_ids(rec, work)
    parent = ids[0].split(":")[0]
    assert ids == [f"{parent}:{i}" for i in range(SIZE)]


def test_revoke_terminates_only_that_child(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, store_dir: Path
) -> None:
    batch = localbatch.batch
    with started(localbatch, monkeypatch, store_dir, held("airflow-dag-revoke")) as executor:
        rec = Recorder(executor)
        work = mapped("revoke")
        queue_all(executor, work)
        rec.until(lambda: all(rec.states(w.ti.key) for w in work), timeout=60, what="a job for every task")
        ids = job_ids(rec, work)

        @dataclass
        class TI:
            key: TaskInstanceKey

        executor.revoke_task(ti=TI(work[3].ti.key))
        rec.until(
            lambda: batch.describe_jobs(jobs=[ids[3]])["jobs"][0]["status"] == "FAILED",
            timeout=30,
            what="the revoked child to end",
        )
        others = batch.describe_jobs(jobs=[j for i, j in enumerate(ids) if i != 3])["jobs"]
        assert {j["status"] for j in others} == {"RUNNABLE"}
        (revoked,) = batch.describe_jobs(jobs=[ids[3]])["jobs"]
        assert "Revoked by Airflow" in revoked["statusReason"]
        assert work[3].ti.key not in executor.running


@dataclass
class FakeTi:
    """What ``try_adopt_task_instances`` reads of a TaskInstance row."""

    task_id: str
    map_index: int
    try_number: int
    external_executor_id: str | None
    dag_id: str = "dag"
    run_id: str = "manual__1"
    #: When Airflow queued the task instance this time (None: unknown, nothing is judged by it).
    queued_dttm: datetime | None = None

    @property
    def key(self) -> TaskInstanceKey:
        return TaskInstanceKey(self.dag_id, self.task_id, self.run_id, self.try_number, self.map_index)


def test_a_new_scheduler_adopts_children_by_their_ids(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, store_dir: Path
) -> None:
    batch = localbatch.batch
    with started(localbatch, monkeypatch, store_dir, held("airflow-dag-adopt")) as first:
        rec = Recorder(first)
        work = mapped("adopt")
        queue_all(first, work)
        rec.until(lambda: all(rec.states(w.ti.key) for w in work), timeout=60, what="a job for every task")
        ids = job_ids(rec, work)
        # The next scheduler: same deployment (same database), its own executor.
        configure(monkeypatch, localbatch, job_queue=QUEUE, job_definition=DEFINITION)
        second = FastExecutor(parallelism=64)
        second.start()
        try:
            current = FakeTi("adopt", 2, 1, ids[2])
            # Airflow queued try 2 and still holds try 1's child id: that child is not this try's job.
            stale = FakeTi("adopt", 5, 2, ids[5])
            # No id saved, and this scheduler has no workload store to read which child runs it.
            unsaved = FakeTi("adopt", 7, 1, None)
            handed_back = second.try_adopt_task_instances([current, stale, unsaved])
            assert handed_back == [stale, unsaved]
            assert second.core.job_id(current.key) == ids[2]
            assert current.key in second.running
            # The adopted child's end reaches its task through the new scheduler.
            batch.terminate_job(jobId=ids[2], reason="ended by test")
            rec2 = Recorder(second)
            rec2.until(
                lambda: "failed" in rec2.states(current.key), timeout=30, what="the adopted child's end"
            )
        finally:
            second.terminate()


def test_a_new_scheduler_adopts_children_whose_ids_were_never_saved_by_the_arrays_object(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, store_dir: Path
) -> None:
    # The scheduler died between the array's SubmitJob and Airflow saving its children's ids: the
    # next one holds no id for them, and ListJobs lists only the array, whose tags name no map index.
    batch = localbatch.batch
    queued = datetime.now(UTC) - timedelta(seconds=5)
    with started(localbatch, monkeypatch, store_dir, held("airflow-dag-unsaved")) as first:
        rec = Recorder(first)
        work = mapped("unsaved")
        queue_all(first, work)
        rec.until(lambda: all(rec.states(w.ti.key) for w in work), timeout=60, what="a job for every task")
        ids = job_ids(rec, work)
        # The next scheduler: same deployment and store, its own executor.
        configure(
            monkeypatch,
            localbatch,
            job_queue=QUEUE,
            job_definition=DEFINITION,
            workload_store=f"file://{store_dir}",
        )
        second = FastExecutor(parallelism=64)
        second.start()
        try:
            waiting = [FakeTi("unsaved", i, 1, None, queued_dttm=queued) for i in (0, 4, 7)]
            # Reset and queued again as try 2 since: child 9 runs try 1, a try nobody waits for.
            moved_on = FakeTi("unsaved", 9, 2, None, queued_dttm=queued)
            # Queued again after the array was created (an earlier queueing's array): not this one's.
            requeued = FakeTi("unsaved", 2, 1, None, queued_dttm=datetime.now(UTC) + timedelta(seconds=30))
            handed_back = second.try_adopt_task_instances([*waiting, moved_on, requeued])
            assert sorted(ti.map_index for ti in handed_back) == [2, 9]
            for ti in waiting:
                # Adopted by its own child id, which Airflow is told (it never saved one).
                assert second.core.job_id(ti.key) == ids[ti.map_index]
                assert second.event_buffer[ti.key][1] == ids[ti.map_index]
            # The adopted child's end reaches its task through the new scheduler.
            batch.terminate_job(jobId=ids[4], reason="ended by test")
            rec2 = Recorder(second)
            rec2.until(lambda: "failed" in rec2.states(waiting[1].key), timeout=30, what="child 4's end")
            assert {j["status"] for j in batch.describe_jobs(jobs=[ids[0], ids[7], ids[9]])["jobs"]} == {
                "RUNNABLE"
            }
        finally:
            second.terminate()


def test_end_cancels_an_array_whose_ids_were_never_saved_in_one_call(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, store_dir: Path
) -> None:
    batch = localbatch.batch
    localbatch.set_faults(held("airflow-dag-handover"))
    configure(
        monkeypatch,
        localbatch,
        job_queue=QUEUE,
        job_definition=DEFINITION,
        workload_store=f"file://{store_dir}",
    )
    executor = FastExecutor(parallelism=64)
    executor.start()
    try:
        work = mapped("handover")
        queue_all(executor, work)
        deadline = time.monotonic() + 60
        # RunningStates wait in the event buffer, never read by "the scheduler": no id is saved.
        while not all(w.ti.key in executor.event_buffer for w in work):
            assert time.monotonic() < deadline, "the array was never submitted"
            executor.heartbeat()
            time.sleep(0.05)
        ids = [str(executor.event_buffer[w.ti.key][1]) for w in work]
        before = localbatch.stats()
        executor.end()
        after = localbatch.stats()
    finally:
        localbatch.set_faults({})

    def calls(operation: str) -> int:
        return int(after["operations"].get(operation, {}).get("requests", 0)) - int(
            before["operations"].get(operation, {}).get("requests", 0)
        )

    assert calls("CancelJob") == 1, "one CancelJob for the whole array"
    assert calls("TerminateJob") == 0
    deadline = time.monotonic() + 30
    children = batch.describe_jobs(jobs=ids)["jobs"]
    while {c["status"] for c in children} != {"FAILED"} and time.monotonic() < deadline:
        time.sleep(0.2)
        children = batch.describe_jobs(jobs=ids)["jobs"]
    assert {c["status"] for c in children} == {"FAILED"}, [(c["jobId"], c["status"]) for c in children]


def test_revoking_a_child_after_a_lost_array_answer_ends_only_that_child(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, store_dir: Path
) -> None:
    faults = lost_array_faults("lostrev")
    with started(localbatch, monkeypatch, store_dir, faults, cls=SlowRetry) as executor:
        rec = Recorder(executor)
        work = mapped("lostrev")
        queue_all(executor, work)
        until_ambiguous(rec, executor, work)
        revoke_and_see_only_child_0_end(rec, executor, localbatch.batch, work, "lostrev")


def test_a_child_revoked_before_its_lost_array_is_listed_is_still_ended(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, store_dir: Path
) -> None:
    lag_ms = 2_000
    monkeypatch.setattr(Lookups, "array_lookup_settle_s", 4.0)
    faults = lost_array_faults("lagrev")
    with started(localbatch, monkeypatch, store_dir, faults, cls=SlowRetry) as executor:
        runtime = executor.runtime
        assert runtime is not None
        listed = runtime.api.find_jobs
        looked: list[int] = []

        def lagging(*args: Any, **kwargs: Any) -> list[Any]:
            now_ms = int(time.time() * 1000)
            jobs = [j for j in listed(*args, **kwargs) if (j.created_at or 0) <= now_ms - lag_ms]
            looked.append(len(jobs))
            return jobs

        monkeypatch.setattr(runtime.api, "find_jobs", lagging)
        rec = Recorder(executor)
        work = mapped("lagrev")
        queue_all(executor, work)
        until_ambiguous(rec, executor, work)
        # Child 0 leaves while ListJobs does not list the array yet: "not found" is no answer.
        revoke_and_see_only_child_0_end(rec, executor, localbatch.batch, work, "lagrev")
        assert looked[0] == 0, "the first lookup must have come before the array was listed"
