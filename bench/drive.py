"""Drive one executor in-process the way Airflow's scheduler does, for one scenario.

Run as ``python -m bench.drive PARAMS_JSON OUT_JSON``, one process per executor (the orchestrator does it)
against that executor's own localbatch, so one executor's threads and memory never affect the other's
figures. Scenarios run in the order of ``SCENARIOS``; each builds a fresh executor like
the scheduler (``executor_cls(parallelism=...)``, ``start()``) on its own job queue, queues real
``ExecuteTask`` workloads with ``queue_workload``, then loops ``heartbeat()`` / ``get_event_buffer()`` /
draining the task event log the way ``SchedulerJobRunner._run_scheduler_loop`` does, with no database
and no scheduler. Between scenarios the previous one's jobs are ended and its executor ended, so no
thread of it is left.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import random
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import LocalBatch

EXECUTORS = {
    "ours": "airflow_aws_batch.AwsBatchExecutor",
    "theirs": "airflow.providers.amazon.aws.executors.batch.AwsBatchExecutor",
}

# A busy scheduler calls heartbeat() back to back; an idle one sleeps up to
# [scheduler] scheduler_idle_sleep_time (1 s). Half a second sits between the two.
LOOP_INTERVAL_S = 0.5
MEMORY_SAMPLING_S = 3.0
JWT_SECRET = "bench-" + "0123456789abcdef" * 5
DAG_ID = "bench"
RUN_ID = "manual__2026-01-01T00:00:00+00:00"


def localbatch_of(params: dict[str, Any]) -> LocalBatch:
    """The benchmark's localbatch: its URL, the keys it verifies and its admin token."""
    return LocalBatch(
        params["endpoint"], credentials=params["credentials"], admin_token=params["admin_token"]
    )


def configure_airflow(params: dict[str, Any], home: Path) -> None:
    """Airflow configuration shared by both executors: the same section, the same values."""
    service = localbatch_of(params)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": EXECUTORS[params["executor"]],
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            **service.aws_env(),
            "AIRFLOW_CONN_AWS_DEFAULT": service.airflow_connection(),
            "AIRFLOW__AWS_BATCH_EXECUTOR__JOB_DEFINITION": params["job_definition"],
            "AIRFLOW__AWS_BATCH_EXECUTOR__JOB_NAME": "bench",
            "AIRFLOW__AWS_BATCH_EXECUTOR__REGION_NAME": "us-east-1",
            "AIRFLOW__AWS_BATCH_EXECUTOR__CONN_ID": "aws_default",
            "AIRFLOW__AWS_BATCH_EXECUTOR__CHECK_HEALTH_ON_STARTUP": "True",
        }
    )


_SCENARIO_OPTIONS: list[str] = []


def configure_scenario(params: dict[str, Any]) -> None:
    """The scenario's job queue and our executor's options for it (read when the executor is built)."""
    while _SCENARIO_OPTIONS:
        os.environ.pop(_SCENARIO_OPTIONS.pop(), None)
    os.environ["AIRFLOW__AWS_BATCH_EXECUTOR__JOB_QUEUE"] = params["job_queue"]
    for key, value in params.get("executor_options", {}).items():
        name = f"AIRFLOW__AWS_BATCH_EXECUTOR__{key.upper()}"
        text = str(value)
        if "{tmp}" in text:
            text = text.replace("{tmp}", tempfile.mkdtemp(prefix="bench-workloads-"))
        os.environ[name] = text
        _SCENARIO_OPTIONS.append(name)


class Workloads:
    """Real ``ExecuteTask`` workloads, with tokens signed like the scheduler's (same size on the wire)."""

    def __init__(self) -> None:
        from airflow.api_fastapi.auth.tokens import JWTGenerator, get_signing_args

        self._generator = JWTGenerator(
            valid_for=600, audience="urn:airflow.apache.org:task", issuer=None, **get_signing_args()
        )
        self._dag_version_id = uuid.uuid4()

    def make(self, index: int, *, mapped: bool = False) -> Any:
        """Task ``index`` of the run: its own task, or (``mapped``) map index ``index`` of one mapped task."""
        from airflow.executors import workloads
        from airflow.executors.workloads import BundleInfo, ExecuteTask

        # TaskInstanceDTO from Airflow 3.2; TaskInstance in 3.1.
        TaskInstanceDTO = getattr(workloads, "TaskInstanceDTO", None) or workloads.TaskInstance

        ti_id = uuid.uuid4()
        task_id = "mapped" if mapped else f"task_{index:05d}"
        map_index = index if mapped else -1
        return ExecuteTask(
            ti=TaskInstanceDTO(
                id=ti_id,
                task_id=task_id,
                dag_id=DAG_ID,
                run_id=RUN_ID,
                map_index=map_index,
                try_number=1,
                dag_version_id=self._dag_version_id,
                pool_slots=1,
                priority_weight=1,
                queue="default",
            ),
            dag_rel_path="bench_dag.py",
            token=ExecuteTask.generate_token(str(ti_id), self._generator),
            log_path=f"dag_id={DAG_ID}/run_id={RUN_ID}/task_id={task_id}/"
            + (f"map_index={map_index}/" if mapped else "")
            + "attempt=1.log",
            bundle_info=BundleInfo(name="dags-folder"),
        )


@dataclass
class Tracker:
    """What the scheduler would learn from the event buffer, with the wall-clock time it learnt it."""

    job_id: dict[Any, str] = field(default_factory=dict)
    #: When each task's job id reached the event buffer (wall clock).
    job_id_at: dict[Any, float] = field(default_factory=dict)
    terminal: dict[Any, tuple[str, float]] = field(default_factory=dict)
    running: set[Any] = field(default_factory=set)
    # Light mode (memory scenario) keeps only the set of submitted keys, whose table it can measure.
    light: bool = False
    submitted: set[Any] = field(default_factory=set)
    # ... and the job ids (the scale scenario measures memory first, then detection delays).
    keep_job_ids: bool = False

    def harness_bytes(self) -> int:
        """The tables of this tracker, which are not the executor's memory (keys and ids are shared)."""
        return sys.getsizeof(self.submitted) + sys.getsizeof(self.job_id)

    def record(self, events: dict[Any, tuple[Any, Any]], now: float) -> None:
        for key, (state, info) in events.items():
            if self.light:
                if info:
                    self.submitted.add(key)
                    if self.keep_job_ids and isinstance(info, str):
                        self.job_id.setdefault(key, info)
                continue
            state_name = str(getattr(state, "value", state))
            if isinstance(info, str) and info and key not in self.job_id:
                self.job_id[key] = info
                self.job_id_at[key] = now
            if state_name in ("success", "failed"):
                self.terminal.setdefault(key, (state_name, now))
            elif state_name == "running":
                self.running.add(key)


@dataclass
class Driver:
    executor: Any
    tracker: Tracker = field(default_factory=Tracker)
    heartbeats_s: list[float] = field(default_factory=list)
    interval_s: float = LOOP_INTERVAL_S

    def tick(self) -> None:
        started = time.perf_counter()
        self.executor.heartbeat()
        self.heartbeats_s.append(time.perf_counter() - started)
        self.tracker.record(self.executor.get_event_buffer(), time.time())
        # The scheduler writes these to its log table each loop; keeping them would inflate memory figures.
        self.executor._task_event_logs.clear()
        spent = time.perf_counter() - started
        if spent < self.interval_s:
            time.sleep(self.interval_s - spent)

    def loop_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.tick()
            if done():
                return True
        return False


def make_executor(name: str, parallelism: int) -> Any:
    import importlib

    module_name, _, class_name = EXECUTORS[name].rpartition(".")
    executor_cls = getattr(importlib.import_module(module_name), class_name)
    executor = executor_cls(parallelism=parallelism)
    executor.start()
    return executor


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _end(executor: Any) -> None:
    # Ours hands over at once; the Amazon provider's end() waits for its running jobs, and a
    # benchmark must never hang on it, so it gets a thread and a deadline.
    thread = threading.Thread(target=executor.end, daemon=True)
    thread.start()
    thread.join(timeout=30)


def _queue(executor: Any, workloads: Iterator[Any]) -> dict[Any, int]:
    keys: dict[Any, int] = {}
    for index, workload in enumerate(workloads):
        keys[workload.ti.key] = index
        executor.queue_workload(workload, session=None)
    return keys


def burst(params: dict[str, Any]) -> dict[str, Any]:
    """N tasks queued at once (burst-array: N map indexes of one mapped task, what arrays are for);
    localbatch finishes every job as soon as it starts."""
    n = params["tasks"]
    factory = Workloads()
    workloads = [factory.make(i, mapped=params.get("mapped", False)) for i in range(n)]
    executor = make_executor(params["executor"], parallelism=n)
    driver = Driver(executor)
    started = time.time()
    keys = _queue(executor, iter(workloads))
    del workloads
    finished = driver.loop_until(lambda: len(driver.tracker.terminal) >= n, params["timeout_s"])
    drained_s = time.time() - started
    _end(executor)
    failed = sum(1 for state, _ in driver.tracker.terminal.values() if state == "failed")
    heartbeats_ms = [s * 1000 for s in driver.heartbeats_s]
    return {
        "started_at": started,
        "tasks": n,
        "drained": finished,
        "drain_s": drained_s,
        "tasks_succeeded": sum(1 for state, _ in driver.tracker.terminal.values() if state == "success"),
        "tasks_failed": failed,
        "tasks_lost": n - len(driver.tracker.terminal),
        "heartbeats": len(heartbeats_ms),
        "heartbeat_p50_ms": percentile(heartbeats_ms, 50),
        "heartbeat_p99_ms": percentile(heartbeats_ms, 99),
        "heartbeat_max_ms": max(heartbeats_ms) if heartbeats_ms else None,
        "job_ids": len(set(driver.tracker.job_id.values())),
        # Seconds until every task had its Batch job id in the event buffer (None: some never did).
        "all_job_ids_s": (
            max(driver.tracker.job_id_at.values()) - started if len(driver.tracker.job_id_at) >= n else None
        ),
        "keys": len(keys),
    }


def steady(params: dict[str, Any]) -> dict[str, Any]:
    """N long-running jobs tracked; a few end every second; count status calls and detection delay."""
    n = params["tasks"]
    factory = Workloads()
    executor = make_executor(params["executor"], parallelism=n)
    # Filling localbatch is set-up: the loop runs back to back, like a busy scheduler's.
    driver = Driver(executor, interval_s=0.05)
    keys = _queue(executor, (factory.make(i) for i in range(n)))
    tracked = driver.loop_until(lambda: len(driver.tracker.job_id) >= n, params["setup_timeout_s"])
    # Let every job reach RUNNING in localbatch and the executor see it before measuring.
    driver.interval_s = LOOP_INTERVAL_S
    driver.loop_until(lambda: False, params.get("settle_before_window_s", params["settle_s"]))
    return {"tasks": n, "tracked": tracked, "keys": len(keys), **_measure_steady(executor, driver, params)}


def _measure_steady(executor: Any, driver: Driver, params: dict[str, Any]) -> dict[str, Any]:
    """The steady window: a few jobs end every second; status calls, detection delays, heartbeats."""
    localbatch = localbatch_of(params)
    localbatch.set_faults(params["measure_faults"])
    # The calls are counted between two reads of localbatch's stats: the window they are divided by
    # spans both reads (it used to start after the first one, inflating calls per second).
    measure_started = time.monotonic()
    before = localbatch.stats()
    window_s = params["window_s"]
    per_second = params["finish_per_s"]
    ended: dict[str, float] = {}
    rng = random.Random(params.get("seed", 1))
    candidates = [job for key, job in driver.tracker.job_id.items() if key not in driver.tracker.terminal]
    rng.shuffle(candidates)
    stop = threading.Event()

    def finisher() -> None:
        # Ends jobs from outside the scheduler loop, like containers exiting on their own.
        next_at = time.monotonic()
        while not stop.is_set() and candidates:
            batch = [candidates.pop() for _ in range(min(per_second, len(candidates)))]
            for job in localbatch.finish_simulated(batch):
                ended[job["jobId"]] = job["stoppedAt"] / 1000
            next_at += 1.0
            stop.wait(max(0.0, next_at - time.monotonic()))

    events = params.get("status_events", False)
    if events:
        events_before, poller_before = localbatch.health()["events"], _poller_state(executor)
    driver.heartbeats_s.clear()
    thread = threading.Thread(target=finisher, daemon=True)
    thread.start()
    driver.loop_until(lambda: time.monotonic() - measure_started >= window_s, window_s + 5)
    stop.set()
    thread.join(timeout=30)
    after = localbatch.stats()
    measured_s = time.monotonic() - measure_started
    # Grace period so jobs ended late in the window are detected too, instead of truncating the tail.
    by_job = {job: key for key, job in driver.tracker.job_id.items()}
    driver.loop_until(lambda: all(by_job.get(j) in driver.tracker.terminal for j in ended), params["grace_s"])
    if events:
        # After the grace period: the events of the window's ends, and what the poller made of them.
        events_after, poller_after = localbatch.health()["events"], _poller_state(executor)
    delays = [
        driver.tracker.terminal[by_job[job]][1] - stopped
        for job, stopped in ended.items()
        if by_job.get(job) in driver.tracker.terminal
    ]
    heartbeats_ms = [s * 1000 for s in driver.heartbeats_s]
    _drain(executor, driver, localbatch, params["job_queue"])
    figures = {}
    if events:
        figures = {
            "events_before": events_before,
            "events_after": events_after,
            "poller_before": poller_before,
            "poller_after": poller_after,
        }
    return {
        **figures,
        "window_s": measured_s,
        "stats_before": before,
        "stats_after": after,
        "jobs_ended": len(ended),
        "jobs_detected": len(delays),
        "detect_p50_s": percentile(delays, 50),
        "detect_p95_s": percentile(delays, 95),
        "detect_max_s": max(delays) if delays else None,
        "heartbeat_p99_ms": percentile(heartbeats_ms, 99),
    }


def _poller_state(executor: Any) -> dict[str, Any]:
    """Our poller with status events: how many changes its polling found that no event had brought,
    and whether it only reconciles now (events arrive and none was found lost lately)."""
    runtime = executor.runtime
    return {
        "events_missed": runtime.poller.events_missed,
        "reconciling": runtime.poller.events_reconcile(runtime.threads.clock()),
        "events_live": runtime.events is not None and runtime.events.live.is_set(),
    }


def _rss() -> int:
    # Second field of statm: resident pages.
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _at_least(items: set[Any], count: int) -> bool:
    return len(items) >= count


def _compacted(executor: Any) -> bool:
    """Ours keeps a request as given until a heartbeat has time to pack it: under load that lags the
    fixed settle time, and a sample taken meanwhile counts requests the executor is about to shrink
    (one full scale run measured 2,784 bytes per job against 1,285-1,398 in the others). Theirs has
    no such step."""
    core = getattr(executor, "core", None)
    return core is None or core.unpacked == 0


def memory(params: dict[str, Any]) -> dict[str, Any]:
    """Executor memory per tracked job: the slope between a fifth and all of N jobs tracked."""
    n = params["tasks"]
    first = n // 5
    factory = Workloads()
    executor = make_executor(params["executor"], parallelism=n)
    # The loop runs fast here: tracemalloc makes accepting each workload slower, and how quickly jobs
    # get tracked does not change how much memory each one takes.
    driver = Driver(executor, Tracker(light=True), interval_s=0.02)
    submitted = driver.tracker.submitted
    tracemalloc.start()
    points: list[tuple[int, int, int]] = []
    start = 0
    for count in (first, n):
        _queue(executor, (factory.make(i) for i in range(start, count)))
        start = count
        driver.loop_until(functools.partial(_at_least, submitted, count), params["setup_timeout_s"])
        driver.loop_until(lambda: False, params["settle_s"])
        driver.loop_until(functools.partial(_compacted, executor), params["setup_timeout_s"])
        gc.collect()
        # Polls in flight (a parsed DescribeJobs answer is hundreds of KB) come and go: sample a while
        # and keep the least, which is what the executor holds for its jobs.
        samples = []
        sampling_until = time.monotonic() + MEMORY_SAMPLING_S
        while time.monotonic() < sampling_until:
            driver.tick()
            samples.append(tracemalloc.get_traced_memory()[0])
        # The harness's set of keys is not the executor's memory: subtract its table.
        traced = min(samples) - sys.getsizeof(submitted)
        points.append((len(submitted), traced, _rss()))
    tracemalloc.stop()
    _drain(executor, driver, localbatch_of(params), params["job_queue"])
    (n1, traced1, rss1), (n2, traced2, rss2) = points
    jobs = max(1, n2 - n1)
    return {
        "tasks": n,
        "tracked": n2,
        "points": points,
        "bytes_per_job": (traced2 - traced1) / jobs,
        "bytes_per_1000_jobs": (traced2 - traced1) / jobs * 1000,
        "rss_bytes_per_job": (rss2 - rss1) / jobs,
    }


def scale(params: dict[str, Any]) -> dict[str, Any]:
    """Steady at scale: N long-running jobs tracked (20,000 in the full profile). First the memory per
    tracked job (the slope between a fifth and all of them, as in ``memory``), then, with tracemalloc
    off, the steady window: heartbeat p99, status calls per second and detection delays."""
    n = params["tasks"]
    factory = Workloads()
    executor = make_executor(params["executor"], parallelism=n)
    tracker = Tracker(light=True, keep_job_ids=True)
    driver = Driver(executor, tracker, interval_s=0.05)
    tracemalloc.start()
    points: list[tuple[int, int, int]] = []
    start = 0
    for count in (n // 5, n):
        _queue(executor, (factory.make(i) for i in range(start, count)))
        start = count
        driver.loop_until(functools.partial(_at_least, tracker.submitted, count), params["setup_timeout_s"])
        driver.loop_until(lambda: False, params["settle_s"])
        driver.loop_until(functools.partial(_compacted, executor), params["setup_timeout_s"])
        gc.collect()
        samples = []
        sampling_until = time.monotonic() + MEMORY_SAMPLING_S
        while time.monotonic() < sampling_until:
            driver.tick()
            samples.append(tracemalloc.get_traced_memory()[0])
        points.append((len(tracker.submitted), min(samples) - tracker.harness_bytes(), _rss()))
    tracemalloc.stop()
    (n1, traced1, rss1), (n2, traced2, rss2) = points
    jobs = max(1, n2 - n1)
    # From here on every event counts: the window needs each task's end and when it was reported.
    tracker.light = False
    driver.interval_s = LOOP_INTERVAL_S
    driver.loop_until(lambda: False, params.get("settle_before_window_s", params["settle_s"]))
    return {
        "tasks": n,
        "tracked": len(tracker.job_id) >= n,
        "points": points,
        "bytes_per_job": (traced2 - traced1) / jobs,
        "rss_bytes_per_job": (rss2 - rss1) / jobs,
        **_measure_steady(executor, driver, params),
    }


class AdoptableTi:
    """What ``try_adopt_task_instances`` reads of a TaskInstance row, for either executor (the Amazon
    provider's builds a workload from it). Compared by identity, as ORM rows are."""

    def __init__(self, workload: Any, job_id: str, queued_dttm: Any) -> None:
        from types import SimpleNamespace

        ti = workload.ti
        self.key = ti.key
        self.id = ti.id
        self.dag_id, self.task_id, self.run_id = ti.dag_id, ti.task_id, ti.run_id
        self.map_index, self.try_number = ti.map_index, ti.try_number
        self.dag_version_id = ti.dag_version_id
        self.queue, self.pool_slots, self.priority_weight = ti.queue, ti.pool_slots, ti.priority_weight
        self.hostname = None
        self.context_carrier = None
        self.executor_config: dict[str, Any] = {}
        self.external_executor_id = job_id
        self.queued_dttm = queued_dttm
        self.state = "running"
        self.dag_model = SimpleNamespace(bundle_name="dags-folder", relative_fileloc="bench_dag.py")
        self.dag_run = SimpleNamespace(bundle_version=None)


def restart(params: dict[str, Any]) -> dict[str, Any]:
    """N jobs running, then the scheduler restarts: a new executor adopts the N task instances with
    their saved job ids, as Airflow's ``adopt_or_reset_orphaned_tasks`` does. How many it adopts and
    hands back, how long the call holds the scheduler thread (capped: ``cap_s``), the status calls it
    makes; for ours, also until every job adopted unconfirmed is verified, and the heartbeats meanwhile."""
    import datetime

    n = params["tasks"]
    factory = Workloads()
    localbatch = localbatch_of(params)
    queued = datetime.datetime.now(datetime.timezone.utc)
    workloads = [factory.make(i) for i in range(n)]
    first = make_executor(params["executor"], parallelism=n)
    tracker = Tracker(light=True, keep_job_ids=True)
    filler = Driver(first, tracker, interval_s=0.05)
    _queue(first, iter(workloads))
    filler.loop_until(functools.partial(_at_least, tracker.submitted, n), params["setup_timeout_s"])
    filled = len(tracker.job_id)
    # The scheduler dies: its executor's threads stop, its jobs keep running.
    if params["executor"] == "ours":
        first.shutdown.stop_runtime(timeout=5.0)
    del filler
    tis = [AdoptableTi(w, tracker.job_id[w.ti.key], queued) for w in workloads if w.ti.key in tracker.job_id]
    del workloads
    gc.collect()
    localbatch.set_faults(params["measure_faults"])
    second = make_executor(params["executor"], parallelism=n)
    driver = Driver(second)
    before = localbatch.stats()
    answer: list[Any] = []
    began = time.perf_counter()

    def adopt() -> None:
        try:
            answer.append(second.try_adopt_task_instances(tis))
        except Exception as exc:  # reported, not raised: the other figures still count
            answer.append(exc)

    # On a thread only so that a call that runs for very long is cut off at the cap; the driver waits
    # for it doing nothing else, as the scheduler thread would.
    worker = threading.Thread(target=adopt, daemon=True)
    worker.start()
    worker.join(params["cap_s"])
    held_s = time.perf_counter() - began
    after_call = localbatch.stats()
    capped = not answer
    handed_back: int | None = None
    error = None
    if answer:
        if isinstance(answer[0], Exception):
            error = f"{type(answer[0]).__name__}: {answer[0]}"
        else:
            handed_back = len(answer[0])
    # Ours verifies what it adopted unconfirmed on its poller; the heartbeats meanwhile are on the thread too.
    desk = getattr(second, "adoption_desk", None)
    unverified = desk.unconfirmed if desk is not None else None
    lost = desk.lost if desk is not None else None
    verified_s = None
    if not capped and unverified is not None and lost is not None:
        verify_began = time.monotonic()
        if driver.loop_until(lambda: not unverified and not lost, params["verify_timeout_s"]):
            verified_s = time.monotonic() - verify_began
    after_verify = localbatch.stats()
    failed = sum(1 for state, _ in driver.tracker.terminal.values() if state == "failed")
    heartbeats_ms = [s * 1000 for s in driver.heartbeats_s]
    result = {
        "tasks": n,
        "filled": filled,
        "adopted": None if handed_back is None else len(tis) - handed_back,
        "handed_back": handed_back,
        "capped": capped,
        "cap_s": params["cap_s"],
        "error": error,
        "thread_held_s": held_s,
        "stats_before": before,
        "stats_after_call": after_call,
        "stats_after_verify": after_verify,
        "verified_s": verified_s,
        "failed_after_adoption": failed,
        "heartbeat_max_ms": max(heartbeats_ms) if heartbeats_ms else None,
        "heartbeat_p99_ms": percentile(heartbeats_ms, 99),
    }
    if error is None:
        result.pop("error")
    if capped:
        # The call is still running on its thread: nothing can be drained or ended under it.
        return result
    _drain(second, driver, localbatch, params["job_queue"], timeout_s=120)
    return result


def _drain(
    executor: Any, driver: Driver, localbatch: LocalBatch, job_queue: str, timeout_s: float = 60
) -> bool:
    """End every job still running on the queue and let the executor see it, then end the executor."""
    localbatch.set_faults({"simulate": {"seconds": 0}})
    ids = [
        job["jobId"]
        for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
        for page in localbatch.batch.get_paginator("list_jobs").paginate(
            jobQueue=job_queue, jobStatus=status, PaginationConfig={"PageSize": 1000}
        )
        for job in page["jobSummaryList"]
    ]
    for start in range(0, len(ids), 1000):
        localbatch.finish_simulated(ids[start : start + 1000])
    drained = driver.loop_until(lambda: not executor.running and not executor.queued_tasks, timeout_s)
    _end(executor)
    return drained


SCENARIOS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "memory": memory,
    "burst": burst,
    "burst-array": burst,
    "steady": steady,
    # steady and scale with the executor's status_events set (their options and faults say so).
    "steady-events": steady,
    "scale": scale,
    "scale-events": scale,
    "scale-events-lossy": scale,
    "restart": restart,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    params = json.loads(Path(args[0]).read_text())
    out = Path(args[1])
    results: dict[str, Any] = {}
    localbatch = localbatch_of(params)
    with tempfile.TemporaryDirectory(prefix="bench-airflow-home-") as home:
        configure_airflow(params, Path(home))
        for name, scenario in SCENARIOS.items():
            if name not in params["scenarios"]:
                continue
            scenario_params = {**params, **params["scenarios"][name]}
            configure_scenario(scenario_params)
            localbatch.set_faults(scenario_params["faults"])
            # The scenarios share this process; the garbage of the ones before (an ended executor
            # and its jobs are cycles) must not land in this one's heartbeats as a full collection.
            gc.collect()
            before = localbatch.stats()
            began = time.monotonic()
            try:
                result = scenario(scenario_params)
            except Exception as error:  # the report shows which run broke instead of losing the others
                import traceback

                traceback.print_exc()
                result = {"error": f"{type(error).__name__}: {error}"}
            result["elapsed_s"] = time.monotonic() - began
            result["stats_scenario_before"] = before
            result["stats_scenario_after"] = localbatch.stats()
            results[name] = result
            out.write_text(json.dumps(results, default=str))
    sys.stdout.flush()
    # Nothing of the last executor may keep the process alive.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
