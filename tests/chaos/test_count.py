"""The chaos figures from hand-built records, task instances, jobs and logs (no stack needed)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from chaos import count  # noqa: E402
from chaos.tasks import append_record, sleep_seconds  # noqa: E402

RUN = "manual__1"


def rec(event: str, index: int, pid: int, start: float, t: float, *, try_number: int = 1) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event": event,
        "ti_id": f"ti-{index}-{try_number}",
        "dag_id": "chaos",
        "task_id": "work",
        "run_id": RUN,
        "map_index": index,
        "try_number": try_number,
        "pid": pid,
        "start": start,
        "t": t,
    }
    if event == "end":
        record["end"] = t
    return record


def run_of(
    index: int, pid: int, start: float, end: float | None, try_number: int = 1
) -> list[dict[str, Any]]:
    """Records of one execution; ``end`` None: killed after one beat, half a second in."""
    records = [rec("start", index, pid, start, start, try_number=try_number)]
    if end is None:
        return [*records, rec("beat", index, pid, start, start + 0.5, try_number=try_number)]
    return [*records, rec("end", index, pid, start, end, try_number=try_number)]


def ti(index: int, state: str | None, try_number: int = 1, job: str | None = None) -> dict[str, Any]:
    return {
        "id": f"ti-{index}-{try_number}",
        "dag_id": "chaos",
        "task_id": "work",
        "run_id": RUN,
        "map_index": index,
        "try_number": try_number,
        "max_tries": 3,
        "state": state,
        "external_executor_id": job,
    }


def job(
    job_id: str, status: str, index: int, try_number: int = 1, created: int = 0, **extra: Any
) -> dict[str, Any]:
    tags = {"dag_id": "chaos", "task_id": "work", "run_id": RUN, "map_index": str(index)}
    return {
        "jobId": job_id,
        "status": status,
        "createdAt": created,
        "tags": {**tags, "try_number": str(try_number)},
        **extra,
    }


# --- executions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "twice", "concurrent"),
    [
        pytest.param(run_of(0, 10, 100.0, 102.0), 0, 0, id="one-execution"),
        pytest.param(
            run_of(0, 10, 100.0, 102.0) + run_of(0, 11, 100.0, 102.0, try_number=2), 0, 0, id="retry"
        ),
        pytest.param(run_of(0, 10, 100.0, 102.0) + run_of(0, 11, 105.0, 107.0), 1, 0, id="recorded-twice"),
        pytest.param(
            run_of(0, 10, 100.0, 102.0) + run_of(0, 11, 101.0, 103.0), 1, 1, id="overlapping-processes"
        ),
        pytest.param(
            run_of(0, 10, 100.0, None) + run_of(0, 11, 100.2, 103.0), 1, 1, id="killed-overlaps-by-beat"
        ),
        pytest.param(run_of(0, 10, 100.0, None) + run_of(0, 11, 101.0, 103.0), 1, 0, id="killed-then-rerun"),
    ],
)
def test_run_twice_and_concurrently(records: list[dict[str, Any]], twice: int, concurrent: int) -> None:
    runs = count.executions(records)
    assert (len(count.run_twice(runs)), len(count.ran_concurrently(runs))) == (twice, concurrent)


def test_beats_extend_an_execution_and_one_pid_is_one_execution() -> None:
    records = [
        rec("start", 0, 10, 100.0, 100.0),
        rec("beat", 0, 10, 100.0, 100.5),
        rec("beat", 0, 10, 100.0, 101.0),
        rec("end", 0, 10, 100.0, 101.2),
    ]
    [run] = count.executions(records)
    assert (run.pid, run.start, run.last_seen, run.ended) == (10, 100.0, 101.2, True)


def test_overlap_evidence_names_both_pids() -> None:
    runs = count.executions(run_of(3, 10, 100.0, 104.0) + run_of(3, 11, 102.0, 105.0))
    [found] = count.ran_concurrently(runs)
    assert found == {"try": "chaos/manual__1/work[3] try 1", "pids": [10, 11], "overlap_s": 2.0}


# --- lost -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance", "records", "why"),
    [
        pytest.param(ti(0, "success"), run_of(0, 10, 1.0, 2.0), None, id="success"),
        pytest.param(
            ti(0, "running"),
            run_of(0, 10, 1.0, None),
            "not in a final state at the end: running",
            id="running",
        ),
        pytest.param(ti(0, "queued"), [], "not in a final state at the end: queued", id="queued"),
        pytest.param(ti(0, None), [], "not in a final state at the end: None", id="no-state"),
        pytest.param(
            ti(0, "failed", try_number=2), [], "failed with 2 retries left", id="failed-retries-left"
        ),
        pytest.param(ti(0, "failed", try_number=4), [], None, id="failed-exhausted-counted-apart"),
        pytest.param(
            ti(0, "success"),
            run_of(0, 10, 1.0, None),
            "success, but no execution of this try recorded its end",
            id="success-without-end",
        ),
        pytest.param(
            ti(0, "success", try_number=2),
            run_of(0, 10, 1.0, 2.0, try_number=1),
            "success, but no execution of this try recorded its end",
            id="success-only-earlier-try-ran",
        ),
    ],
)
def test_lost(instance: dict[str, Any], records: list[dict[str, Any]], why: str | None) -> None:
    found = count.lost([instance], count.executions(records))
    assert [item["why"] for item in found] == ([why] if why else [])


def test_failed_retries_exhausted() -> None:
    found = count.failed_retries_exhausted([ti(0, "failed", try_number=4), ti(1, "failed", try_number=3)])
    assert [item["try"] for item in found] == ["chaos/manual__1/work[0] try 4"]


# --- orphan jobs ------------------------------------------------------------------------------------

TERMINATED = {"isTerminated": True, "statusReason": "Task revoked by Airflow while its job was submitted"}
PULL = {"statusReason": "CannotPullContainerError: pull image manifest has been retried 5 time(s)"}
HOST = {"statusReason": "Host EC2 (instance i-0123) terminated.", "startedAt": 5}


LOGGED_A = {"a": {("chaos", "work", RUN, 0)}}


@pytest.mark.parametrize(
    ("jobs", "tries", "logged", "orphans"),
    [
        pytest.param([job("a", "SUCCEEDED", 0)], [ti(0, "success", job="a")], {}, [], id="pointed-at"),
        pytest.param([job("a", "RUNNING", 0)], [ti(0, "success", job="a")], {}, ["a"], id="still-running"),
        pytest.param(
            [job("a", "RUNNABLE", 0, **TERMINATED)],
            [ti(0, "success", job="b")],
            {},
            ["a"],
            id="terminated-but-live",
        ),
        pytest.param(
            [job("a", "FAILED", 0, **TERMINATED), job("b", "SUCCEEDED", 0, created=1)],
            [ti(0, "success", job="b")],
            {},
            [],
            id="terminated-not-orphan",
        ),
        pytest.param(
            [job("a", "SUCCEEDED", 0), job("b", "SUCCEEDED", 0, created=1)],
            [ti(0, "success", job="b")],
            {},
            ["a"],
            id="duplicate-ran-on-its-own",
        ),
        pytest.param(
            [job("a", "FAILED", 0, **PULL), job("b", "SUCCEEDED", 0, created=1)],
            [ti(0, "success", job="b")],
            LOGGED_A,
            [],
            id="resubmitted-after-image-pull-pointed-at-earlier",
        ),
        pytest.param(
            [job("a", "FAILED", 0, **PULL), job("b", "SUCCEEDED", 0, created=1)],
            [ti(0, "success", job="b")],
            {},
            [],
            id="image-pull-never-pointed-at-ran-nothing",
        ),
        pytest.param(
            [job("a", "FAILED", 0, **HOST)],
            [ti(0, "success", try_number=2, job="b")],
            LOGGED_A,
            [],
            id="try-without-history-row-but-logged",
        ),
        pytest.param(
            [job("a", "SUCCEEDED", 0)],
            [ti(0, "success", job="b")],
            {"a": {("chaos", "work", RUN, 1)}},
            ["a"],
            id="logged-for-another-task-instance",
        ),
        pytest.param(
            [job("a", "FAILED", 0, **HOST), job("b", "SUCCEEDED", 0, try_number=2, created=1)],
            [ti(0, "failed", job="a"), ti(0, "success", try_number=2, job="b")],
            {},
            [],
            id="earlier-try-from-history",
        ),
        pytest.param(
            [job("a", "SUCCEEDED", 0, try_number=2)],
            [ti(0, "success", try_number=2, job="z")],
            {},
            ["a"],
            id="stale-pointer",
        ),
        pytest.param([{"jobId": "x", "status": "SUCCEEDED", "tags": {}}], [], {}, ["x"], id="untagged"),
    ],
)
def test_orphan_jobs(
    jobs: list[dict[str, Any]], tries: list[dict[str, Any]], logged: dict[str, Any], orphans: list[str]
) -> None:
    assert [found["job_id"] for found in count.orphan_jobs(jobs, tries, (), logged)] == orphans


def test_logged_pointers_from_scheduler_log_lines() -> None:
    log = (
        "2026-12-01T20:22:15.027525Z [info     ] Setting external_executor_id for <TaskInstance: "
        f"chaos.work {RUN} map_index=6 [queued] ti_id=01a2> to 8eac9e07-a4d6 [airflow.jobs] loc=x.py:1429\n"
        "2026-12-01T20:22:16.0Z [info     ] Setting external_executor_id for <TaskInstance: "
        f"other.t {RUN} [running]> to ffff-0000 [airflow.jobs]\n"
        "2026-12-01T20:22:17.0Z [info     ] Setting external_executor_id for <TaskInstance: "
        f"chaos.work {RUN} [running]> to 1111-2222 [airflow.jobs]\n"
    )
    found = count.logged_pointers({"scheduler.log": log}, [ti(6, "success")])
    assert found == {"8eac9e07-a4d6": {("chaos", "work", RUN, 6)}, "1111-2222": {("chaos", "work", RUN, -1)}}


def test_job_outcomes_by_reason_class() -> None:
    jobs = [
        job("a", "SUCCEEDED", 0),
        job("b", "FAILED", 1, **PULL),
        job("c", "FAILED", 2, **HOST),
        job("d", "FAILED", 3, **TERMINATED),
        job(
            "e",
            "FAILED",
            4,
            statusReason="localbatch stopped while the job was running: its process was killed",
        ),
        job("f", "FAILED", 5, statusReason="something new"),
        job("g", "RUNNABLE", 6),
    ]
    assert count.job_outcomes(jobs) == {
        "FAILED: host lost": 1,
        "FAILED: image pull": 1,
        "FAILED: localbatch restart": 1,
        "FAILED: other": 1,
        "FAILED: terminated": 1,
        "RUNNABLE": 1,
        "SUCCEEDED": 1,
    }


# --- processes, logs, calls ------------------------------------------------------------------------


def test_scheduler_crashes_are_exits_the_harness_did_not_cause() -> None:
    exits = [
        {"component": "scheduler", "instance": "scheduler", "exit_code": -9, "caused_by_harness": True},
        {"component": "scheduler", "instance": "scheduler-2", "exit_code": 1, "caused_by_harness": False},
        {"component": "triggerer", "instance": "triggerer", "exit_code": 1, "caused_by_harness": False},
    ]
    assert [e["instance"] for e in count.scheduler_crashes(exits)] == ["scheduler-2"]


SCHEDULER_LOG = """\
2026-01-01T00:00:00.000000Z [info     ] Starting the scheduler
2026-01-01T00:00:01.000000Z [error    ] Exception in sync
Traceback (most recent call last):
  File "/x/airflow_aws_batch/executor.py", line 10, in sync
    self._core.step()
KeyError: 'job-1'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/x/airflow/jobs/scheduler_job_runner.py", line 5, in _run
    executor.heartbeat()
RuntimeError: boom
2026-01-01T00:00:02.000000Z [info     ] next line
2026-01-01T00:00:03.000000Z [error    ] DB hiccup
Traceback (most recent call last):
  File "/x/sqlalchemy/engine/base.py", line 1, in execute
    raise OperationalError
sqlalchemy.exc.OperationalError: server closed the connection
\x1b[2m2026-01-01T00:00:04.000000Z\x1b[0m [info] done
"""


def test_tracebacks_chained_count_once_and_end_at_the_exception_line() -> None:
    found = count.tracebacks(SCHEDULER_LOG)
    assert [line for line, _ in found] == [3, 16]
    assert found[0][1].splitlines()[-1] == "RuntimeError: boom"
    assert found[1][1].splitlines()[-1] == "sqlalchemy.exc.OperationalError: server closed the connection"


def test_executor_errors_are_tracebacks_naming_the_executor() -> None:
    found = count.executor_errors({"scheduler.log": SCHEDULER_LOG, "scheduler-2.log": "all fine\n"})
    assert [(e["log"], e["line"]) for e in found] == [("scheduler.log", 3)]


def test_rich_boxed_traceback() -> None:
    text = (
        "╭───── Traceback (most recent call last) ─────╮\n"
        "│ airflow_aws_batch/runtime.py:5 │\n"
        "╰─────╯\n"
        "ValueError: x\n"
    )
    [(line, block)] = count.tracebacks(text)
    assert line == 1 and block.endswith("ValueError: x") and count.EXECUTOR_PACKAGE in block


def test_api_calls_sum_over_localbatch_restarts() -> None:
    before = {
        "operations": {"SubmitJob": {"requests": 120, "throttled": 3}, "DescribeJobs": {"requests": 40}}
    }
    after = {
        "operations": {
            "SubmitJob": {"requests": 80, "server_errors": 9, "lost_responses": 2},
            "ReceiveMessage": {"requests": 30, "server_errors": 1},
            "DeleteMessageBatch": {"requests": 20},
        }
    }
    # The status events thread's SQS calls are counted apart from the Batch API's (their faults too).
    assert count.api_calls([before, after], tasks=100) == {
        "total": 240,
        "per_task": 2.4,
        "by_operation": {"DescribeJobs": 40, "SubmitJob": 200},
        "sqs_by_operation": {"DeleteMessageBatch": 20, "ReceiveMessage": 30},
        "faulted": {"throttled": 3, "server_errors": 10, "lost_responses": 2},
    }


def test_status_events_sum_over_localbatch_restarts() -> None:
    before = {"emitted": 10, "delivered": 9, "dropped": 1, "duplicated": 2, "delayed": 0, "reordered": 1}
    after = {"emitted": 5, "delivered": 5, "delayed": 2, "undeliverable": 0}
    assert count.status_events([before, after], {"ReceiveMessage": 7}) == {
        "emitted": 15,
        "delivered": 14,
        "dropped": 1,
        "duplicated": 2,
        "delayed": 2,
        "reordered": 1,
        "undeliverable": 0,
        "received": 7,
    }


EVENTS_MET = {"delivered": 9, "dropped": 1, "duplicated": 1, "delayed": 1, "reordered": 1, "received": 3}


MET: dict[str, Any] = {
    **dict.fromkeys(count.ZERO_TARGETS, 0),
    "arrays": 2,
    "array_children": 9,
    "status_events": EVENTS_MET,
}


@pytest.mark.parametrize(
    ("figures", "missed"),
    [
        pytest.param({**MET, "sigterm_exit_s": 3.0}, [], id="all-met"),
        pytest.param(
            {**MET, "orphan_jobs": 2, "sigterm_exit_s": 31.0},
            ["orphan_jobs = 2 (target 0)", "sigterm_exit_s = 31.0 (target <= 30)"],
            id="orphans-and-slow-exit",
        ),
        pytest.param(
            {**MET, "sigterm_exit_s": None, "not_performed": ["sigterm scheduler"]},
            ["sigterm_exit_s = None (target <= 30)", "fault steps not performed: sigterm scheduler"],
            id="step-not-performed",
        ),
        pytest.param(
            {**MET, "sigterm_exit_s": 3.0, "arrays": 0, "array_children": 0},
            ["arrays = 0 (target >= 1: no array job formed)"],
            id="no-array-formed",
        ),
        pytest.param(
            {**MET, "sigterm_exit_s": 3.0, "array_mismatches": 1},
            ["array_mismatches = 1 (target 0)"],
            id="array-child-mismatched",
        ),
        pytest.param(
            {**MET, "sigterm_exit_s": 3.0, "status_events": {**EVENTS_MET, "dropped": 0, "received": 0}},
            [
                "status_events.dropped = 0 (target >= 1: status events or one of their faults were not "
                "in play)",
                "status_events.received = 0 (target >= 1: status events or one of their faults were not "
                "in play)",
            ],
            id="status-events-not-in-play",
        ),
    ],
)
def test_misses(figures: dict[str, Any], missed: list[str]) -> None:
    assert count.misses(figures) == missed


# --- the task's own pieces --------------------------------------------------------------------------


def test_sleep_is_one_to_four_seconds_and_fixed_by_seed_and_index() -> None:
    values = [sleep_seconds(1, i) for i in range(500)]
    assert all(1.0 <= v <= 4.0 for v in values)
    assert values == [sleep_seconds(1, i) for i in range(500)]
    assert values != [sleep_seconds(2, i) for i in range(500)]


def test_records_are_whole_lines(tmp_path: Path) -> None:
    for index in range(50):
        append_record(tmp_path, rec("start", index, 1, 1.0, 1.0))
    lines = (tmp_path / "executions.jsonl").read_text().splitlines()
    runs = count.executions(__import__("json").loads(line) for line in lines)
    assert len(runs) == 50


def test_orphan_evidence_says_whether_the_job_ran_the_code() -> None:
    # A second execution of the same try (in job b): a is no longer the try's only execution.
    records = [{**r, "job_id": "a"} for r in run_of(0, 10, 1.0, 2.0)] + _ran(0, 11, "b", 5.0)
    jobs = [job("a", "SUCCEEDED", 0), job("b", "SUCCEEDED", 0, created=1)]
    [found] = count.orphan_jobs(jobs, [ti(0, "success", job="b")], count.executions(records))
    assert (found["job_id"], found["ran_code_in_pids"]) == ("a", [10])
    assert found["why"] == "SUCCEEDED on its own, never saved on its task instance; its try points at ['b']"


def _ran(index: int, pid: int, job_id: str, start: float, try_number: int = 1) -> list[dict[str, Any]]:
    return [{**r, "job_id": job_id} for r in run_of(index, pid, start, start + 2.0, try_number=try_number)]


@pytest.mark.parametrize(
    ("jobs", "records", "orphans", "accounted"),
    [
        pytest.param(
            [job("a", "SUCCEEDED", 0)], _ran(0, 10, "a", 1.0), [], ["a"], id="unsaved-but-the-only-execution"
        ),
        pytest.param(
            [job("a", "SUCCEEDED", 0), job("b", "SUCCEEDED", 0, created=1)],
            _ran(0, 10, "a", 1.0) + _ran(0, 11, "b", 5.0),
            ["a"],
            [],
            id="unsaved-and-a-second-execution",
        ),
        pytest.param([job("a", "SUCCEEDED", 0)], [], ["a"], [], id="unsaved-container-ran-nothing"),
        pytest.param([job("a", "FAILED", 0, **HOST)], [], [], ["a"], id="unsaved-failed-before-the-code"),
    ],
)
def test_unrecorded_jobs_are_orphans_unless_accounted_for(
    jobs: list[dict[str, Any]], records: list[dict[str, Any]], orphans: list[str], accounted: list[str]
) -> None:
    tries = [ti(0, "success", job="b" if len(jobs) > 1 else None)]
    runs = count.executions(records)
    assert [found["job_id"] for found in count.orphan_jobs(jobs, tries, runs, {})] == orphans
    assert [found["job_id"] for found in count.unrecorded_accounted(jobs, tries, runs, {})] == accounted


# --- array jobs ------------------------------------------------------------------------------------

PARENT = "p"


def parent(size: int, status: str = "SUCCEEDED", try_number: int = 1) -> dict[str, Any]:
    """An array job as ListJobs + DescribeJobs give it: the tags children share, no map index."""
    tags = {"dag_id": "chaos", "task_id": "work", "run_id": RUN, "try_number": str(try_number)}
    command = ["python", "-m", "airflow_aws_batch.launch", "file:///w/chaos.json"]
    return {
        "jobId": PARENT,
        "status": status,
        "tags": tags,
        "container": {"command": command},
        "arrayProperties": {"size": size, "statusSummary": {status: size}},
    }


def child(index: int, status: str = "SUCCEEDED", **extra: Any) -> dict[str, Any]:
    shared = parent(1)
    return {"jobId": f"{PARENT}:{index}", "status": status, "tags": shared["tags"], **extra}


def workload_try(index: int, try_number: int = 1, **changes: Any) -> dict[str, Any]:
    identity = {
        "dag_id": "chaos",
        "task_id": "work",
        "run_id": RUN,
        "map_index": index,
        "try_number": try_number,
    }
    return {"ti_id": f"ti-{index}-{try_number}", **identity, **changes}


def test_an_array_counts_as_its_children_each_a_job_of_the_try_its_workload_names() -> None:
    # Children 0..2 run map indexes 5, 3, 4 (the order the executor grouped them), each saved on its
    # task instance; a single job runs index 0.
    listed = [job("s", "SUCCEEDED", 0), parent(3)]
    arrays = [{"jobId": PARENT, "size": 3, "tries": [workload_try(5), workload_try(3), workload_try(4)]}]
    jobs, mismatches = count.expand_arrays(listed, [child(0), child(1), child(2)], arrays)
    assert mismatches == []
    assert [(j["jobId"], count.job_try_key(j)) for j in jobs] == [
        ("s", ("chaos", "work", RUN, 0, 1)),
        ("p:0", ("chaos", "work", RUN, 5, 1)),
        ("p:1", ("chaos", "work", RUN, 3, 1)),
        ("p:2", ("chaos", "work", RUN, 4, 1)),
    ]
    tis = [ti(0, "success", job="s"), ti(5, "success", job="p:0"), ti(3, "success", job="p:1")]
    tis.append(ti(4, "success", job="p:2"))
    assert count.orphan_jobs(jobs, tis, []) == []
    # Saved on another task instance than the one it ran: child 2 is an orphan.
    wrong = [*tis[:3], ti(4, "success", job="x")]
    assert [o["job_id"] for o in count.orphan_jobs(jobs, wrong, [])] == ["p:2"]


def test_an_array_child_that_ran_a_try_another_job_also_ran_is_an_orphan() -> None:
    # p:0 ran index 1's try 1, never saved; job b ran it again and is the one saved.
    listed = [parent(1), job("b", "SUCCEEDED", 1, created=1)]
    arrays = [{"jobId": PARENT, "size": 1, "tries": [workload_try(1)]}]
    jobs, _ = count.expand_arrays(listed, [child(0)], arrays)
    runs = count.executions(_ran(1, 10, "p:0", 1.0) + _ran(1, 11, "b", 5.0))
    [found] = count.orphan_jobs(jobs, [ti(1, "success", job="b")], runs, {})
    assert (found["job_id"], found["try"], found["ran_code_in_pids"]) == (
        "p:0",
        f"chaos/{RUN}/work[1] try 1",
        [10],
    )
    assert count.run_twice(runs) != []


def test_a_child_still_running_after_the_run_is_an_orphan_and_the_parent_never_counts() -> None:
    listed = [parent(2, status="RUNNING")]
    arrays = [{"jobId": PARENT, "size": 2, "tries": [workload_try(0), workload_try(1)]}]
    jobs, _ = count.expand_arrays(listed, [child(0), child(1, "RUNNING")], arrays)
    tis = [ti(0, "success", job="p:0"), ti(1, "success", job="p:1")]
    assert [(o["job_id"], o["why"]) for o in count.orphan_jobs(jobs, tis, [])] == [
        ("p:1", "still RUNNING after the run ended")
    ]
    assert count.job_outcomes(jobs) == {"RUNNING": 1, "SUCCEEDED": 1}


def test_array_children_whose_workload_is_unknown_or_disagrees_are_mismatches() -> None:
    unreadable = [{"jobId": PARENT, "size": 2, "error": "unreadable workload object: FileNotFoundError()"}]
    jobs, mismatches = count.expand_arrays([parent(2)], [child(0), child(1)], unreadable)
    assert [m["job_id"] for m in mismatches] == ["p:0", "p:1"]
    assert mismatches[0]["why"] == "unreadable workload object: FileNotFoundError()"
    # Without its workload a child names no try, and one that ended on its own is an orphan.
    whys = {o["job_id"]: o["why"] for o in count.orphan_jobs(jobs, [], [])}
    assert whys == dict.fromkeys(
        ["p:0", "p:1"], "array child that ended on its own; no workload names its try"
    )

    other_try = [{"jobId": PARENT, "size": 2, "tries": [workload_try(0), workload_try(1, try_number=2)]}]
    jobs, mismatches = count.expand_arrays([parent(2)], [child(0), child(1)], other_try)
    assert mismatches == [
        {"job_id": "p:1", "why": "workload differs from the array's tags", "try_number": ("1", 2)}
    ]
    # The workload, not the array's tags, says which try the child ran.
    assert count.job_try_key(jobs[1]) == ("chaos", "work", RUN, 1, 2)


def test_figures_count_arrays_and_their_children_as_jobs() -> None:
    raw = {
        "task_instances": [ti(i, "success", job=f"p:{i}") for i in range(3)],
        "records": [r for i in range(3) for r in _ran(i, 10 + i, f"p:{i}", 1.0)],
        "jobs": [parent(3)],
        "array_children": [
            child(0),
            child(1),
            child(2, "FAILED", statusReason="CannotPullContainerError: x"),
        ],
        "arrays": [{"jobId": PARENT, "size": 3, "tries": [workload_try(i) for i in range(3)]}],
        "sigterm_exit_s": 1.0,
        "stats_parts": [{"operations": {"ReceiveMessage": {"requests": 3}}}],
        "status_events_parts": [EVENTS_MET],
    }
    figures, evidence = count.figures(raw, 3)
    assert (figures["arrays"], figures["array_children"], figures["array_mismatches"]) == (1, 3, 0)
    assert figures["jobs"] == {"FAILED: image pull": 1, "SUCCEEDED": 2}
    assert figures["orphan_jobs"] == 0
    assert evidence["arrays"][0]["job_id"] == PARENT
    assert count.misses(figures) == []


def test_the_harness_reads_each_childs_try_from_the_arrays_workload_object(tmp_path: Path) -> None:
    from chaos.drive import read_array

    path = tmp_path / "chaos-work.json"
    ti_fields = {"dag_id": "chaos", "task_id": "work", "run_id": RUN, "try_number": 1}
    workloads = [{"ti": {"id": f"u{i}", **ti_fields, "map_index": i}, "token": "secret"} for i in (7, 2)]
    path.write_text(__import__("json").dumps({"version": 1, "workloads": workloads}))
    array = {**parent(2), "container": {"command": ["python", "-m", "x", f"file://{path}"]}}
    found = read_array(array)
    assert found["tries"] == [workload_try(7, ti_id="u7"), workload_try(2, ti_id="u2")]
    assert "secret" not in str(found)
    path.unlink()
    assert "unreadable workload object" in read_array(array)["error"]


# --- deferring tasks and sensors: phases, resets, tries failed on the executor's word -----------------


def phase_run(
    task: str,
    index: int,
    *,
    pid: int,
    start: float,
    end: float | None,
    phase: str,
    outcome: str = "done",
    **kw: Any,
) -> list[dict[str, Any]]:
    """Records of one execution of one phase of a deferring task's or a sensor's try."""
    records = [{**r, "task_id": task, "phase": phase} for r in run_of(index, pid, start, end, **kw)]
    if end is not None:
        records[-1]["outcome"] = outcome
    return records


DEFERRED = phase_run("defer", 0, pid=10, start=1.0, end=1.3, phase="execute", outcome="defer") + phase_run(
    "defer", 0, pid=11, start=5.0, end=6.0, phase="resume 1"
)
POKED = phase_run("poke", 0, pid=10, start=1.0, end=1.3, phase="poke 0", outcome="reschedule") + phase_run(
    "poke", 0, pid=11, start=3.0, end=4.0, phase="poke 1"
)


@pytest.mark.parametrize(
    ("records", "twice", "concurrent"),
    [
        pytest.param(DEFERRED, 0, 0, id="execute-then-resume-is-one-try"),
        pytest.param(POKED, 0, 0, id="two-pokes-are-one-try"),
        pytest.param(
            POKED + phase_run("poke", 0, pid=12, start=3.2, end=4.1, phase="poke 1"),
            1,
            1,
            id="the-same-poke-in-two-processes",
        ),
        pytest.param(
            DEFERRED + phase_run("defer", 0, pid=12, start=8.0, end=9.0, phase="resume 1"),
            1,
            0,
            id="the-same-resume-twice",
        ),
    ],
)
def test_a_try_runs_each_phase_once(records: list[dict[str, Any]], twice: int, concurrent: int) -> None:
    runs = count.executions(records)
    assert (len(count.run_twice(runs)), len(count.ran_concurrently(runs))) == (twice, concurrent)


def test_success_needs_an_execution_that_ran_to_its_end_not_to_a_deferral() -> None:
    instance = {**ti(0, "success"), "task_id": "defer"}
    only_deferred = phase_run("defer", 0, pid=10, start=1.0, end=1.3, phase="execute", outcome="defer")
    assert [f["why"] for f in count.lost([instance], count.executions(only_deferred))] == [
        "success, but no execution of this try recorded its end"
    ]
    assert count.lost([instance], count.executions(DEFERRED)) == []


def test_a_job_that_ran_the_only_execution_of_a_poke_is_accounted_for() -> None:
    """A sensor's try runs a job per poke: each unrecorded one ran the only execution of its poke."""
    records = [{**r, "job_id": job_id} for r, job_id in zip(POKED, ["a", "a", "b", "b"], strict=True)]
    jobs = [
        {**job(j, "SUCCEEDED", 0, created=n), "tags": {**job(j, "SUCCEEDED", 0)["tags"], "task_id": "poke"}}
        for n, j in enumerate("ab")
    ]
    tries = [{**ti(0, "success"), "task_id": "poke"}]
    runs = count.executions(records)
    assert count.orphan_jobs(jobs, tries, runs) == []
    assert len(count.unrecorded_accounted(jobs, tries, runs)) == 2


RESET_ID = "0196f3a2-7d1c-7c3e-9a57-2f1d0e4c5b6a"
RESET_LOG = (
    "[2026-12-07T00:10:01.000+0000] {scheduler_job_runner.py:3376} INFO - Reset the following 2 orphaned "
    "TaskInstances:\n"
    f"\t<TaskInstance: chaos.defer manual__1 map_index=0 [queued] ti_id={RESET_ID}>\n"
    "\t<TaskInstance: chaos.work manual__1 map_index=5 [queued] ti_id=0196f3a2-0000-7000-8000-000000000005>\n"
    "[2026-12-07T00:10:01.100+0000] {scheduler_job_runner.py:3400} INFO - ti_id=0196f3a2-0000-7000-8000-"
    "000000000009 mentioned outside a reset\n"
)


def reset_log(state: str) -> str:
    return (
        "[2026-12-07T00:10:01.000+0000] {scheduler_job_runner.py:3376} INFO - Reset the following 2 "
        "orphaned TaskInstances:\n"
        f"\t<TaskInstance: chaos.defer manual__1 map_index=0 [{state}] ti_id={RESET_ID}>\n"
        "\t<TaskInstance: chaos.work manual__1 map_index=5 [queued] "
        "ti_id=0196f3a2-0000-7000-8000-000000000005>\n"
        "[2026-12-07T00:10:01.100+0000] {scheduler_job_runner.py:3400} INFO - ti_id=0196f3a2-0000-7000-8000-"
        "000000000009 mentioned outside a reset\n"
    )


EXECUTE = phase_run("defer", 0, pid=10, start=1.0, end=1.3, phase="execute", outcome="defer")
RESUME_CUT_SHORT = phase_run("defer", 0, pid=11, start=5.0, end=None, phase="resume 1")
RESUME_DONE = phase_run("defer", 0, pid=11, start=5.0, end=6.0, phase="resume 1")


@pytest.mark.parametrize(
    ("records", "state", "uncounted", "between"),
    [
        pytest.param(EXECUTE, "queued", [], ["execute"], id="reset-while-queued-for-its-resume"),
        pytest.param(EXECUTE, "scheduled", [], ["execute"], id="reset-while-scheduled-for-its-resume"),
        pytest.param(EXECUTE, "running", ["execute"], [], id="reset-while-its-deferral-was-not-taken"),
        pytest.param(EXECUTE + RESUME_CUT_SHORT, "running", ["resume 1"], ["execute"], id="resume-cut-short"),
        pytest.param(EXECUTE + RESUME_DONE, "running", ["resume 1"], ["execute"], id="resume-ran-to-its-end"),
        pytest.param(run_of(0, 10, 1.0, 2.0), "running", [""], [], id="a-task-that-runs-once"),
    ],
)
def test_reset_executions_are_those_whose_work_a_reset_threw_away(
    records: list[dict[str, Any]], state: str, uncounted: list[str], between: list[str]
) -> None:
    unrelated = [{**r, "ti_id": "0196f3a2-0000-7000-8000-000000000009"} for r in run_of(9, 20, 1.0, 2.0)]
    runs = count.executions([{**r, "ti_id": RESET_ID} for r in records] + unrelated)
    logs = {"scheduler-2.log": reset_log(state)}
    found = count.reset_executions(runs, logs)
    assert [item.get("phase", "") for item in found] == uncounted
    assert [item.get("phase", "") for item in count.reset_between_phases(runs, logs)] == between
    assert all(item["reset_in"] == "scheduler-2.log" and item["state_at_reset"] == state for item in found)
    assert count.reset_executions(runs, {"scheduler.log": "nothing reset"}) == []


def mismatch(task: str, reported: str, was: str, index: int = 0) -> dict[str, Any]:
    return {
        "event": count.STATE_MISMATCH,
        "dag_id": "chaos",
        "task_id": task,
        "run_id": RUN,
        "map_index": index,
        "try_number": 1,
        "dttm": "2026-12-07 00:10:00",
        "extra": f"Executor AwsBatchExecutor(parallelism=8) reported that the task instance <TaskInstance: "
        f"chaos.{task} {RUN} map_index={index} [{was}] ti_id=x> finished with state {reported}, but the "
        f"task instance's state attribute is {was}. Learn more: https://airflow.apache.org/...",
    }


def gave_up(task: str) -> dict[str, Any]:
    """The "state mismatch" of a try the executor failed after its last SubmitJob attempt."""
    found = mismatch(task, "failed", "queued")
    return {**found, "extra": found["extra"] + " Extra info: SubmitJob failed 3 times; last error: x"}


def submit_event(task: str, error: str) -> dict[str, Any]:
    return {
        **mismatch(task, "failed", "queued"),
        "event": "aws_batch_submit_ambiguous",
        "extra": f"SubmitJob attempt 1 of 3 may have failed ({error}); looking for the job",
    }


def poke_job(job_id: str, index: int, status: str = "SUCCEEDED", **extra: Any) -> dict[str, Any]:
    found = job(job_id, status, index, **extra)
    return {**found, "tags": {**found["tags"], "task_id": "poke"}}


@pytest.mark.parametrize(
    ("events", "jobs", "counted", "explained"),
    [
        pytest.param([mismatch("poke", "success", "scheduled")], [], 1, 0, id="success-read-as-killed"),
        pytest.param([mismatch("defer", "failed", "queued")], [poke_job("a", 0)], 1, 0, id="failed-no-fault"),
        pytest.param(
            [mismatch("poke", "failed", "running")],
            [poke_job("a", 0, "FAILED", **HOST)],
            0,
            1,
            id="host-lost",
        ),
        pytest.param(
            [mismatch("poke", "success", "scheduled")],
            [poke_job("a", 0, "FAILED", **HOST)],
            1,
            0,
            id="success-never-explained-by-a-fault",
        ),
        pytest.param([mismatch("work", "success", "scheduled")], [], 0, 0, id="other-tasks-not-counted"),
        pytest.param(
            [
                gave_up("poke"),
                submit_event("poke", "ServerException: Internal server error (injected fault)"),
            ],
            [],
            0,
            1,
            id="every-submit-met-an-injected-fault",
        ),
        pytest.param(
            [gave_up("poke"), submit_event("poke", "ServerException: Internal server error")],
            [],
            1,
            0,
            id="submits-failed-without-an-injected-fault",
        ),
        pytest.param(
            [{**mismatch("poke", "success", "queued"), "event": "running"}], [], 0, 0, id="other-events"
        ),
    ],
)
def test_failed_by_executor(
    events: list[dict[str, Any]], jobs: list[dict[str, Any]], counted: int, explained: int
) -> None:
    found, excused = count.failed_by_executor(events, jobs, {"defer", "poke"})
    assert (len(found), len(excused)) == (counted, explained)
    if found:
        assert found[0]["try"].startswith("chaos/manual__1/")


def test_figures_count_resets_and_executor_failures_against_zero_targets() -> None:
    raw = {
        "task_instances": [{**ti(0, "success", try_number=2), "task_id": "poke"}],
        "records": [{**r, "ti_id": RESET_ID} for r in POKED],
        "task_events": [mismatch("poke", "success", "scheduled")],
        "scheduler_logs": {"scheduler.log": reset_log("running")},
        "sigterm_exit_s": 1.0,
        "arrays": [],
    }
    figures, _ = count.figures(raw, 1)
    # poke 0 handed back and poke 1 ran after it: only poke 1's work was thrown away.
    assert (figures["reset_executions"], figures["reset_between_phases"], figures["failed_by_executor"]) == (
        1,
        1,
        1,
    )
    missed = count.misses(figures)
    assert "reset_executions = 1 (target 0)" in missed
    assert "failed_by_executor = 1 (target 0)" in missed


def test_a_lane_starts_at_its_share_of_the_stagger_after_the_run_started() -> None:
    """Counted from the DAG run's start: a lane whose first slot came late does not wait it all again."""
    from datetime import datetime, timedelta, timezone
    from types import SimpleNamespace

    from chaos.operators import wait_left

    run = SimpleNamespace(start_date=datetime.now(timezone.utc) - timedelta(seconds=100))
    assert 49 < wait_left({"dag_run": run}, 1, 2, 300.0) <= 50
    assert wait_left({"dag_run": run}, 1, 4, 300.0) == 0.0  # due 75 s after the start: passed
    assert wait_left({}, 1, 2, 300.0) == 0.0


# A SIGTERM whose SystemExit Python dropped (raised inside a weakref callback), as a scheduler log
# shows it, then the executor's guard delivering the signal again.
DROPPED_EXIT = """\
2026-12-07T06:46:11.055135Z [info     ] Exiting gracefully upon receiving signal 15
Exception ignored in: <function _collection_gced at 0x7ff487917060>
Traceback (most recent call last):
  File "/x/sqlalchemy/event/registry.py", line 104, in _collection_gced
    def _collection_gced(ref: weakref.ref[Any]) -> None:
\x20\x20\x20\x20
  File "/x/airflow_aws_batch/exit_signals.py", line 54, in handler
    previous(number, frame)
  File "/x/airflow/jobs/scheduler_job_runner.py", line 520, in _exit_gracefully
    sys.exit(os.EX_OK)
SystemExit: 0
2026-12-07T06:46:11.314188Z [warning  ] Signal SIGTERM did not stop the scheduler (Python drops an \
exception raised while a weakref callback runs); delivering it again [airflow_aws_batch.exit_signals]
2026-12-07T06:46:12.553137Z [info     ] Exited execute loop
"""


def test_an_exit_python_dropped_and_the_executor_delivered_again_is_no_executor_error() -> None:
    logs = {"scheduler-2.log": DROPPED_EXIT}
    assert count.executor_errors(logs) == []
    [found] = count.exit_signals_redelivered(logs)
    assert found["line"] == 3 and found["traceback"].endswith("SystemExit: 0")


def test_a_dropped_exit_not_delivered_again_before_a_restart_is_an_executor_error() -> None:
    before, _, after = DROPPED_EXIT.partition("2026-12-07T06:46:11.314188Z")
    restarted = (
        before
        + "\n=== devstack: starting python -m airflow scheduler\n"
        + "2026-12-07T06:46:11.314188Z"
        + after
    )
    assert len(count.executor_errors({"scheduler.log": restarted})) == 1
    assert count.exit_signals_redelivered({"scheduler.log": restarted}) == []
    other = DROPPED_EXIT.replace("SystemExit: 0", "ValueError: x")
    assert len(count.executor_errors({"scheduler.log": other})) == 1
