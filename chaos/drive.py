"""One seed of the matrix: trigger the run, apply the fault steps as it progresses, collect what happened.

The harness watches from outside the executor: Airflow's database (SQL), localbatch's admin endpoints
and Batch API (boto3), the execution records the tasks write, and the process table and logs.
"""

from __future__ import annotations

import json
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from botocore.config import Config

from chaos import count
from chaos.dag import DAG_ID
from chaos.settings import PARALLELISM, SIGTERM_WAIT_S, Profile, fault_config
from chaos.tasks import RECORD_FILE
from devstack import JOB_QUEUE, LocalBatch, Stack
from devstack.procs import Process

#: Tasks submitted within BURST_WINDOW_S that make a burst (the first scheduling loop queues up to
#: [core] parallelism tasks at once; the executor submits them within a fraction of a second). Counted
#: as jobs that run, single jobs and array children, not SubmitJob calls: one call submits a whole array.
BURST_MIN_SUBMITS = max(4, PARALLELISM * 3 // 4)
BURST_WINDOW_S = 1.0
#: Seconds both schedulers must have been heartbeating before one of them is killed.
HA_OVERLAP_S = 10.0
#: A scheduler counts as up when its job row heartbeat is at most this old ...
HEARTBEAT_FRESH_S = 10.0
#: ... and it started this long ago: long enough to have adopted what it will adopt and be scheduling,
#: so that the next fault meets a working scheduler, not one still starting.
SETTLE_S = 5.0
#: Least seconds from the end of one step to the next, so that their effects do not merge.
STEP_GAP_S = 5.0
TICK_S = 0.1


@dataclass
class Watched:
    """A process the harness started or inherited, and whether the harness caused its exit."""

    instance: str
    component: str
    process: Process
    started_wall: datetime
    signalled: str | None = None
    exit_seen: bool = False


@dataclass
class Step:
    name: str
    ready: Callable[[], bool]
    act: Callable[[], dict[str, Any]]


@dataclass
class Harness:
    stack: Stack
    profile: Profile
    seed: int
    log: Callable[[str], None]
    record_dir: Path
    watched: list[Watched] = field(default_factory=list)
    exits: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    stats_parts: list[dict[str, Any]] = field(default_factory=list)
    #: localbatch's status event counts (``health()["events"]``) per lifetime, like ``stats_parts``.
    status_events_parts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    current: str = "scheduler"
    sigterm_exit_s: float | None = None

    def __post_init__(self) -> None:
        self.engine = sa.create_engine(self.stack.db_url, pool_size=2, pool_pre_ping=True)
        # Started before the harness: any scheduler job row counts as theirs.
        long_ago = datetime(2000, 1, 1, tzinfo=timezone.utc)
        for name, process in self.stack.processes.items():
            self.watched.append(Watched(name, _component(name), process, long_ago))
        self.faults: dict[str, Any] = fault_config(self.seed, "server_error")
        self.run_id = ""
        self._t0 = 0.0
        self._submits: deque[tuple[float, int]] = deque()
        self._burst_started: float | None = None
        self._both_up_since: float | None = None
        self._final = 0
        self._last_progress = 0.0
        self._last_report = 0.0
        self._last_step_end = 0.0
        self.run_state: str | None = None

    # --- the run --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        n = self.profile.task_instances
        steps = [
            Step("sigkill scheduler at a SubmitJob burst", self._burst_seen, lambda: self._kill_restart(1)),
            Step("restart localbatch", lambda: self._at(0.15), self._restart_localbatch),
            Step("start a second scheduler", lambda: self._at(0.25), self._start_second),
            Step("sigkill one of two schedulers", self._both_up, self._kill_one_of_two),
            Step("sigkill scheduler", lambda: self._at(0.45), lambda: self._kill_restart(2)),
            Step("sigterm scheduler", lambda: self._at(0.60), self._sigterm_restart),
            Step("sigkill scheduler", lambda: self._at(0.75), lambda: self._kill_restart(3)),
        ]
        self.stack.batch.set_faults(self.faults)
        # Count the run's calls only, not the stack's set-up.
        self.stack.batch.reset_stats()
        self._baseline_submits = self._tasks_submitted()
        self.run_id = self.stack.airflow.trigger(DAG_ID, conf={"seed": self.seed})
        self._t0 = time.monotonic()
        self.log(f"seed {self.seed}: triggered {DAG_ID}/{self.run_id} ({n} tasks)")
        deadline = self._t0 + self.profile.run_deadline_s
        pending = list(steps)
        while True:
            self._check_processes()
            self._progress()
            if self.run_state in ("success", "failed"):
                break
            if time.monotonic() > deadline:
                self.notes.append(f"run deadline of {self.profile.run_deadline_s:.0f} s passed")
                break
            if pending and pending[0].ready():
                step = pending.pop(0)
                began = self._elapsed()
                self.log(f"seed {self.seed}: [{began:6.1f} s] {step.name} ({self._final}/{n} final)")
                detail = step.act()
                self.events.append(
                    {"step": step.name, "at_s": round(began, 2), "final_tis": self._final, **detail}
                )
                self._last_step_end = time.monotonic()
            time.sleep(TICK_S)
        run_s = self._elapsed()
        self.log(f"seed {self.seed}: run ended {self.run_state} after {run_s:.0f} s; waiting for orphans")
        self._snapshot_stats()
        wait_until = time.monotonic() + self.profile.orphan_wait_s
        while time.monotonic() < wait_until:
            self._check_processes()
            time.sleep(0.5)
        return {
            "run_id": self.run_id,
            "run_state": self.run_state,
            "run_s": round(run_s, 1),
            "events": self.events,
            "not_performed": [step.name for step in pending],
            "exits": self.exits,
            "sigterm_exit_s": self.sigterm_exit_s,
            "stats_parts": self.stats_parts,
            "status_events_parts": self.status_events_parts,
            "notes": self.notes,
            **self._collect(),
        }

    # --- step conditions ------------------------------------------------------------------------

    def _at(self, fraction: float) -> bool:
        return (
            self._final >= fraction * self.profile.task_instances
            and time.monotonic() - self._last_step_end >= STEP_GAP_S
            and self._scheduler_up(self.current)
        )

    def _burst_seen(self) -> bool:
        now, submits = time.monotonic(), self._tasks_submitted() - self._baseline_submits
        self._submits.append((now, submits))
        while self._submits and self._submits[0][0] < now - BURST_WINDOW_S:
            self._submits.popleft()
        if self._burst_started is None and submits > 0:
            self._burst_started = now
        return submits - self._submits[0][1] >= BURST_MIN_SUBMITS

    def _both_up(self) -> bool:
        older = self._watch_of("scheduler")
        if older is None or "scheduler-2" not in self.stack.processes:
            return False
        if self._fresh_scheduler_jobs(older.started_wall) < 2:
            self._both_up_since = None
            return False
        if self._both_up_since is None:
            self._both_up_since = time.monotonic()
        return time.monotonic() - self._both_up_since >= HA_OVERLAP_S

    # --- step actions ---------------------------------------------------------------------------

    def _kill_restart(self, number: int) -> dict[str, Any]:
        detail: dict[str, Any] = {"signal": "SIGKILL", "instance": self.current, "kill": number}
        if number == 1:
            window = self._submits[-1][1] - self._submits[0][1] if self._submits else 0
            detail["submits_in_last_s"] = window
            if self._burst_started is not None:
                detail["s_since_first_submit"] = round(time.monotonic() - self._burst_started, 2)
        detail["exit_code"] = self._signal_wait(self.current, signal.SIGKILL, 30.0)
        self._start_scheduler(self.current)
        return detail

    def _sigterm_restart(self) -> dict[str, Any]:
        began = time.monotonic()
        code = self._signal_wait(self.current, signal.SIGTERM, SIGTERM_WAIT_S)
        detail: dict[str, Any] = {"signal": "SIGTERM", "instance": self.current, "exit_code": code}
        if code is None:
            detail["gave_up_after_s"] = SIGTERM_WAIT_S
            detail["sigkill_after"] = True
            self._signal_wait(self.current, signal.SIGKILL, 30.0)
        else:
            self.sigterm_exit_s = round(time.monotonic() - began, 2)
            detail["exit_s"] = self.sigterm_exit_s
        self._start_scheduler(self.current)
        return detail

    def _restart_localbatch(self) -> dict[str, Any]:
        self._snapshot_stats()
        self.faults = fault_config(self.seed, "drop")
        began = time.monotonic()
        watch = self._watch_of("localbatch")
        if watch is not None:
            watch.signalled = "SIGTERM"
        process = self.stack.restart_localbatch(sig=signal.SIGTERM, faults=self.faults)
        self._check_processes()
        self.watched.append(Watched("localbatch", "localbatch", process, _utcnow()))
        return {
            "downtime_s": round(time.monotonic() - began, 2),
            "lost_response_mode_after": "drop",
        }

    def _start_second(self) -> dict[str, Any]:
        self._start_scheduler("scheduler-2")
        return {"instance": "scheduler-2"}

    def _kill_one_of_two(self) -> dict[str, Any]:
        # The older one goes: the newer must then adopt the tasks the killed one had queued.
        code = self._signal_wait("scheduler", signal.SIGKILL, 30.0)
        self.stack.forget_component("scheduler")
        self.current = "scheduler-2"
        return {"signal": "SIGKILL", "instance": "scheduler", "exit_code": code, "survivor": "scheduler-2"}

    # --- processes ------------------------------------------------------------------------------

    def _start_scheduler(self, instance: str) -> None:
        process = self.stack.start_component("scheduler", instance=instance)
        self.watched.append(Watched(instance, "scheduler", process, _utcnow()))

    def _watch_of(self, instance: str) -> Watched | None:
        process = self.stack.processes.get(instance)
        return next((w for w in reversed(self.watched) if w.process is process), None)

    def _signal_wait(self, instance: str, sig: signal.Signals, wait_s: float) -> int | None:
        """Signal a process group; return its leader's exit code, or None if it outlived ``wait_s``."""
        self._check_processes()  # an exit that happened before the signal is not ours
        watch = self._watch_of(instance)
        if watch is None:
            return None
        if watch.process.poll() is None:
            watch.signalled = watch.signalled or sig.name
        watch.process.signal(sig)
        deadline = time.monotonic() + wait_s
        while watch.process.poll() is None and time.monotonic() < deadline:
            self._check_processes(skip=watch)
            time.sleep(TICK_S)
        self._check_processes()
        return watch.process.poll()

    def _check_processes(self, skip: Watched | None = None) -> None:
        for watch in list(self.watched):
            if watch.exit_seen or watch is skip:
                continue
            code = watch.process.poll()
            if code is None:
                continue
            watch.exit_seen = True
            entry: dict[str, Any] = {
                "component": watch.component,
                "instance": watch.instance,
                "pid": watch.process.pid,
                "exit_code": code,
                "at_s": round(self._elapsed(), 2),
                "caused_by_harness": watch.signalled is not None,
                "signal": watch.signalled,
            }
            if watch.signalled is None:
                entry["log_tail"] = watch.process.tail(40)
                self.log(f"seed {self.seed}: {watch.instance} exited on its own with {code}")
            self.exits.append(entry)
            if watch.signalled is None and self.stack.processes.get(watch.instance) is watch.process:
                self._restart_crashed(watch)

    def _restart_crashed(self, watch: Watched) -> None:
        """Keep the stack whole after an exit nobody asked for, so the run can go on."""
        if watch.component == "scheduler":
            self._start_scheduler(watch.instance)
        elif watch.component == "localbatch":
            self.notes.append("localbatch exited on its own: its stats since the last snapshot are lost")
            process = self.stack.restart_localbatch(faults=self.faults)
            self.watched.append(Watched("localbatch", "localbatch", process, _utcnow()))
        else:
            process = self.stack.start_component(watch.component)
            self.watched.append(Watched(watch.instance, watch.component, process, _utcnow()))

    # --- observations ---------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self._t0 if self._t0 else 0.0

    def _progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress < 1.0:
            return
        self._last_progress = now
        with self.engine.connect() as conn:
            self.run_state = conn.execute(
                sa.text("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r"),
                {"d": DAG_ID, "r": self.run_id},
            ).scalar()
            states = {
                str(row[0]): int(row[1])
                for row in conn.execute(
                    sa.text(
                        "SELECT state, count(*) FROM task_instance WHERE dag_id = :d AND run_id = :r "
                        "GROUP BY state"
                    ),
                    {"d": DAG_ID, "r": self.run_id},
                )
            }
        self._final = sum(n for state, n in states.items() if state in count.FINAL_TI_STATES)
        if now - self._last_report >= 15.0:
            self._last_report = now
            shown = ", ".join(f"{state}={n}" for state, n in sorted(states.items(), key=str))
            self.log(f"seed {self.seed}: [{self._elapsed():6.1f} s] {shown or 'no task instances yet'}")

    def _scheduler_up(self, instance: str) -> bool:
        """Whether the process's scheduler job heartbeats and started SETTLE_S ago or more."""
        watch = self._watch_of(instance)
        if watch is None:
            return False
        settled = _utcnow() - timedelta(seconds=SETTLE_S)
        return self._fresh_scheduler_jobs(watch.started_wall, settled) >= 1

    def _fresh_scheduler_jobs(self, since: datetime, until: datetime | None = None) -> int:
        """Scheduler job rows started between ``since`` and ``until`` whose heartbeat is fresh."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT count(*) FROM job WHERE job_type = 'SchedulerJob' AND state = 'running' "
                    "AND start_date >= :since AND start_date <= :until AND latest_heartbeat >= :fresh"
                ),
                {
                    "since": since,
                    "until": until or _utcnow(),
                    "fresh": _utcnow() - timedelta(seconds=HEARTBEAT_FRESH_S),
                },
            ).scalar()
        return int(found or 0)

    def _tasks_submitted(self) -> int:
        """Jobs localbatch holds that run a task: single jobs and array children, not array parents."""
        answer = self.stack.batch.admin("GET", "health")
        answer.raise_for_status()
        health = answer.json()
        return int(health["jobs"]) - int(health.get("array_jobs", 0))

    def _snapshot_stats(self) -> None:
        try:
            self.stats_parts.append(self.stack.batch.stats())
            self.status_events_parts.append(self.stack.batch.health()["events"])
        except Exception as error:  # a dead localbatch: its counts are gone, say so
            self.notes.append(f"localbatch stats could not be read: {error!r}")

    def _collect(self) -> dict[str, Any]:
        columns = "dag_id, task_id, run_id, map_index, try_number, max_tries, state, external_executor_id"
        with self.engine.connect() as conn:
            tis = [
                dict(row._mapping)
                for row in conn.execute(
                    sa.text(f"SELECT CAST(id AS TEXT) AS id, {columns} FROM task_instance WHERE dag_id = :d"),
                    {"d": DAG_ID},
                )
            ]
            history = [
                dict(row._mapping)
                for row in conn.execute(
                    sa.text(
                        f"SELECT CAST(task_instance_id AS TEXT) AS id, {columns} FROM task_instance_history "
                        "WHERE dag_id = :d"
                    ),
                    {"d": DAG_ID},
                )
            ]
            # Airflow's audit log of the run's task instances: "state mismatch" (an executor's event
            # Airflow read as the task killed externally) and the executor's own task events.
            events = [
                dict(row._mapping)
                for row in conn.execute(
                    sa.text(
                        "SELECT CAST(dttm AS TEXT) AS dttm, dag_id, task_id, run_id, map_index, try_number, "
                        "event, extra FROM log WHERE dag_id = :d AND (event = :mismatch OR event LIKE :ours)"
                    ),
                    {"d": DAG_ID, "mismatch": count.STATE_MISMATCH, "ours": "aws_batch%"},
                )
            ]
        self.engine.dispose()
        # The harness meets the injected faults too: botocore's standard retries ride over them.
        reader = LocalBatch(
            self.stack.batch.url,
            JOB_QUEUE,
            config=Config(retries={"mode": "standard", "max_attempts": 10}),
            credentials=self.stack.batch.credentials,
        )
        jobs = reader.all_jobs()
        # ListJobs lists array parents, not their children: describe the children by id, and read
        # each array's workload object (named by its command) for the task instance each child ran.
        arrays = [read_array(job) for job in jobs if (job.get("arrayProperties") or {}).get("size")]
        children = reader.describe([f"{a['jobId']}:{i}" for a in arrays for i in range(int(a["size"]))])
        records, bad_lines = read_records(self.record_dir / RECORD_FILE)
        logs = {
            path.name: path.read_text(errors="replace")
            for path in sorted(self.stack.logs_dir.glob("scheduler*.log"))
        }
        return {
            "task_instances": tis,
            "history": history,
            "task_events": events,
            "jobs": jobs,
            "array_children": children,
            "arrays": arrays,
            "records": records,
            "bad_record_lines": bad_lines,
            "scheduler_logs": logs,
        }


def read_array(parent: dict[str, Any]) -> dict[str, Any]:
    """An array parent's id, size, object URL and, per child index, the try its workload names.

    The object is ``{"version": 1, "workloads": [...]}`` with one workload per child in index order
    (README, workload store); nobody deletes an array's object, so it is still there. Only the task
    instance's identity is kept, not the workloads' tokens. ``error`` says why the tries are missing.
    """
    command = (parent.get("container") or {}).get("command") or []
    url = str(command[-1]) if command else ""
    found: dict[str, Any] = {
        "jobId": parent["jobId"],
        "size": parent["arrayProperties"]["size"],
        "object": url,
    }
    if not url.startswith("file://"):
        return {**found, "error": f"the array's command names no file:// object: {command}"}
    try:
        workloads = json.loads(Path(url.removeprefix("file://")).read_text())["workloads"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return {**found, "error": f"unreadable workload object: {error!r}"}
    tries = []
    for workload in workloads:
        ti = (workload.get("ti") or {}) if isinstance(workload, dict) else {}
        keys = ("dag_id", "task_id", "run_id", "map_index", "try_number")
        tries.append({"ti_id": str(ti.get("id")), **{k: ti.get(k) for k in keys}})
    return {**found, "tries": tries}


def read_records(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The execution records, and any line that is not one (there should be none)."""
    if not path.exists():
        return [], []
    records, bad = [], []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            bad.append(line)
    return records, bad


def _component(name: str) -> str:
    return "scheduler" if name.startswith("scheduler") else name


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)
