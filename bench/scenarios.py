"""Sizes and localbatch settings of each scenario, full and quick (a tenth of the sizes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# AWS Batch's published quota: 50 SubmitJob calls a second per account, 429 beyond.
SUBMIT_QUOTA = 50
LATENCY_MS = 50
SEED = 1


@dataclass(frozen=True)
class Sizes:
    burst_tasks: int
    burst_array_tasks: int
    steady_tasks: int
    steady_settle_s: int
    steady_window_s: int
    steady_finish_per_s: int
    memory_tasks: int
    #: Steady at scale: this many long-running jobs tracked (memory, heartbeat, status calls, detection).
    scale_tasks: int
    #: Jobs running when the scheduler restarts: its new executor adopts them all.
    restart_tasks: int
    #: How long the theirs' try_adopt_task_instances may run before it is reported capped.
    restart_cap_s: int
    dag_tasks: int
    dag_parallelism: int


FULL = Sizes(
    burst_tasks=1000,
    burst_array_tasks=5000,
    steady_tasks=5000,
    steady_settle_s=10,
    steady_window_s=60,
    steady_finish_per_s=10,
    memory_tasks=5000,
    scale_tasks=20000,
    restart_tasks=20000,
    restart_cap_s=300,
    dag_tasks=300,
    dag_parallelism=16,
)
QUICK = Sizes(
    burst_tasks=100,
    burst_array_tasks=500,
    steady_tasks=500,
    steady_settle_s=3,
    steady_window_s=10,
    steady_finish_per_s=5,
    memory_tasks=500,
    scale_tasks=2000,
    restart_tasks=2000,
    restart_cap_s=120,
    dag_tasks=30,
    dag_parallelism=16,
)


def burst_faults() -> dict[str, Any]:
    # Jobs "run" for 0 s without a process: the burst measures submission, not execution.
    return {
        "seed": SEED,
        "latency_ms": LATENCY_MS,
        "quotas": {"SubmitJob": SUBMIT_QUOTA},
        "simulate": {"seconds": 0},
    }


def burst_array_faults() -> dict[str, Any]:
    # The burst's service (50 ms a call, SubmitJob at AWS's 50/s quota), for a burst that ours sends as
    # array jobs: what counts is how few SubmitJobs carry how many tasks.
    return burst_faults()


def steady_setup_faults() -> dict[str, Any]:
    # Filling localbatch with thousands of jobs is set-up, not measurement: no latency, no quota.
    # Simulated jobs with no duration run until the benchmark ends them (POST /_localbatch/simulate/finish).
    return {"seed": SEED, "latency_ms": 0, "quotas": {}, "simulate": {"seconds": None}}


def steady_measure_faults() -> dict[str, Any]:
    return {"seed": SEED, "latency_ms": LATENCY_MS, "quotas": {}, "simulate": {"seconds": None}}


def memory_faults() -> dict[str, Any]:
    return steady_setup_faults()


def scale_faults() -> dict[str, Any]:
    return steady_setup_faults()


#: The scenarios that run with status events (ours only: the Amazon provider's executor has none).
EVENTS_SCENARIOS = ("steady-events", "scale-events", "scale-events-lossy")
#: scale-events-lossy: the share of job state change events localbatch drops on their way to the
#: queue, from the executor's start to the end of the window (a lossy delivery is lossy throughout).
LOSSY_DROP_RATE = 0.10
#: In OURS_OPTIONS: replaced by the URL of the scenario's own SQS queue, which the harness creates in
#: localbatch with an EventBridge rule sending it the job state changes of the scenario's job queue.
STATUS_EVENTS_QUEUE = "<the scenario's SQS queue URL>"
#: With status events a lost end is only reported when reconciling polls its job: at most the
#: poller's quiet_s (60 s) after the job's last news, plus a cycle. The window's grace period covers
#: that, so that a late report is measured rather than left out.
EVENTS_GRACE_S = 90


#: scale-events-lossy: how long the executor runs, once every job is tracked, before the window
#: begins. It needs the poller's quiet_s (60 s) after a job's last news, plus its miss_after_s (15 s)
#: and a cycle, to find the fill's lost events by reconciling and notice that events are being lost.
#: The window then measures a lossy delivery's steady state at either size (at a tenth of the sizes
#: the fill is over so soon that a settle like the others' put the window inside that first minute,
#: where a lost end waits for reconciling: p95 25 s in one quick run, against 0.5 s without drops).
LOSSY_SETTLE_S = 90


def lossy_events_faults(faults: dict[str, Any]) -> dict[str, Any]:
    """``faults`` with LOSSY_DROP_RATE of the job state change events dropped."""
    return {**faults, "events": {"drop_rate": LOSSY_DROP_RATE}}


def restart_faults() -> dict[str, Any]:
    # Filled like scale; the adoption is measured against the steady window's service (50 ms a call).
    return steady_setup_faults()


# Options of our executor per scenario. Everything not listed keeps its default (submit_rate 50,
# status_calls_per_second 5). The steady and memory scenarios only raise submit_rate to fill localbatch
# quickly; their figures are taken after submission is over. The Amazon provider's executor has no such
# options and reads the same [aws_batch_executor] section for the rest. The scale scenario fills like memory.
# The events scenarios are ours only: theirs has no status events mode.
OURS_OPTIONS: dict[str, dict[str, Any]] = {
    "burst": {},
    # "{tmp}": a fresh directory per run. Simulated jobs never read their workloads; the executor
    # still writes every array's object there before its SubmitJob.
    "burst-array": {"workload_store": "file://{tmp}", "array_min_size": 10},
    "steady": {"submit_rate": 1000},
    "memory": {"submit_rate": 1000},
    "scale": {"submit_rate": 1000},
    "restart": {"submit_rate": 1000},
    "dag": {},
    # steady and scale again, with the executor taking job state changes from status events.
    "steady-events": {"submit_rate": 1000, "status_events": STATUS_EVENTS_QUEUE},
    "scale-events": {"submit_rate": 1000, "status_events": STATUS_EVENTS_QUEUE},
    "scale-events-lossy": {"submit_rate": 1000, "status_events": STATUS_EVENTS_QUEUE},
}
