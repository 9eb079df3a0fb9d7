"""``make bench`` / ``make bench-quick``: every scenario for both executors, one table, one JSON file.

Each executor gets its own localbatch process, started with identical flags and faults, and its own
driver process (``bench.drive``), so neither executor's jobs, threads or memory touch the other's
figures. Its scenarios run one after another in that process, with garbage collected in between.
The dag scenario runs real Airflow through ``devstack`` (``bench.dag``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.service import COMPUTE_ENVIRONMENT, JOB_DEFINITION, JOB_QUEUE, localbatch
from bench.table import render
from devstack import LocalBatch
from devstack.procs import git_commit

EXECUTOR_NAMES = ("ours", "theirs")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def op_stats(stats: dict[str, Any], operation: str) -> dict[str, int]:
    """Counters of one operation from ``GET /_localbatch/stats`` (zeros when it was never called)."""
    operations = stats.get("operations", stats)
    found = operations.get(operation) or {}
    return {
        "requests": int(found.get("requests", 0)),
        "throttled": int(found.get("throttled", 0)),
        "server_errors": int(found.get("server_errors", 0)),
        "client_errors": int(found.get("client_errors", 0)),
    }


def delta(after: dict[str, Any], before: dict[str, Any], operation: str) -> dict[str, int]:
    a, b = op_stats(after, operation), op_stats(before, operation)
    return {key: a[key] - b[key] for key in a}


def run_driver(params: dict[str, Any], work_dir: Path, timeout_s: float) -> dict[str, Any]:
    params_file = work_dir / "params.json"
    out_file = work_dir / "result.json"
    # It holds localbatch's keys and admin token: the driver's eyes only.
    params_file.unlink(missing_ok=True)
    with os.fdopen(os.open(params_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(json.dumps(params))
    with (work_dir / "driver.log").open("wb") as driver_log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.drive", str(params_file), str(out_file)],
            stdout=driver_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return {
                "error": f"driver did not finish within {timeout_s:.0f} s (log: {work_dir / 'driver.log'})"
            }
    if not out_file.exists():
        return {
            "error": f"driver exited {process.returncode} without a result (log: {work_dir / 'driver.log'})"
        }
    result: dict[str, Any] = json.loads(out_file.read_text())
    return result


def job_summaries(service: LocalBatch, queue: str) -> list[dict[str, Any]]:
    """Every job on ``queue``, any status (ListJobs without a status returns only RUNNING)."""
    client = service.batch
    jobs: list[dict[str, Any]] = []
    for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"):
        for page in client.get_paginator("list_jobs").paginate(
            jobQueue=queue, jobStatus=status, PaginationConfig={"PageSize": 1000}
        ):
            jobs.extend(page["jobSummaryList"])
    return jobs


IN_PROCESS = (
    "memory",
    "burst",
    "burst-array",
    "steady",
    "steady-events",
    "scale",
    "scale-events",
    "scale-events-lossy",
    "restart",
)
QUEUES = {name: f"bench-{name}" for name in IN_PROCESS}


def _create_queues(service: LocalBatch) -> dict[str, str]:
    """One job queue per scenario on the bench compute environment, so no scenario sees another's jobs;
    for each events scenario, its SQS queue and the EventBridge rule that sends it the job state
    changes of that job queue only. Returns scenario -> SQS queue URL."""
    client = service.batch
    for queue in QUEUES.values():
        if queue == JOB_QUEUE:
            continue
        client.create_job_queue(
            jobQueueName=queue,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": COMPUTE_ENVIRONMENT}],
        )
    return {
        name: service.subscribe_status_events(f"{QUEUES[name]}-status", QUEUES[name])
        for name in scenarios.EVENTS_SCENARIOS
    }


def driver_params(
    executor: str, sizes: scenarios.Sizes, service: LocalBatch, events_queues: dict[str, str]
) -> dict[str, Any]:
    def options(name: str) -> dict[str, Any]:
        if executor != "ours":
            return {}
        return {
            key: events_queues[name] if value == scenarios.STATUS_EVENTS_QUEUE else value
            for key, value in scenarios.OURS_OPTIONS[name].items()
        }

    def window(
        name: str, tasks: int, faults: dict[str, Any], measure_faults: dict[str, Any]
    ) -> dict[str, Any]:
        """steady's and scale's parameters: fill ``tasks`` jobs, then the steady window."""
        return {
            "job_queue": QUEUES[name],
            "faults": faults,
            "measure_faults": measure_faults,
            "executor_options": options(name),
            "tasks": tasks,
            "setup_timeout_s": 30 + tasks * 0.05,
            "settle_s": sizes.steady_settle_s,
            "window_s": sizes.steady_window_s,
            "finish_per_s": sizes.steady_finish_per_s,
            "grace_s": scenarios.EVENTS_GRACE_S if name in scenarios.EVENTS_SCENARIOS else 30,
            "status_events": name in scenarios.EVENTS_SCENARIOS,
            # The last settle, right before the window.
            "settle_before_window_s": (
                scenarios.LOSSY_SETTLE_S if name == "scale-events-lossy" else sizes.steady_settle_s
            ),
        }

    lossy = scenarios.lossy_events_faults
    return {
        "executor": executor,
        "endpoint": service.url,
        "credentials": service.credentials,
        "admin_token": service.admin_token,
        "job_definition": JOB_DEFINITION,
        "seed": scenarios.SEED,
        "scenarios": {
            "memory": {
                "job_queue": QUEUES["memory"],
                "faults": scenarios.memory_faults(),
                "executor_options": options("memory"),
                "tasks": sizes.memory_tasks,
                "setup_timeout_s": 30 + sizes.memory_tasks * 0.05,
                "settle_s": 3,
            },
            "burst": {
                "job_queue": QUEUES["burst"],
                "faults": scenarios.burst_faults(),
                "executor_options": options("burst"),
                "tasks": sizes.burst_tasks,
                "timeout_s": 60 + sizes.burst_tasks * 0.3,
            },
            "burst-array": {
                "job_queue": QUEUES["burst-array"],
                "faults": scenarios.burst_array_faults(),
                "executor_options": options("burst-array"),
                "tasks": sizes.burst_array_tasks,
                "mapped": True,
                "timeout_s": 60 + sizes.burst_array_tasks * 0.3,
            },
            "steady": window(
                "steady",
                sizes.steady_tasks,
                scenarios.steady_setup_faults(),
                scenarios.steady_measure_faults(),
            ),
            "steady-events": window(
                "steady-events",
                sizes.steady_tasks,
                scenarios.steady_setup_faults(),
                scenarios.steady_measure_faults(),
            ),
            "scale": window(
                "scale", sizes.scale_tasks, scenarios.scale_faults(), scenarios.steady_measure_faults()
            ),
            "scale-events": window(
                "scale-events", sizes.scale_tasks, scenarios.scale_faults(), scenarios.steady_measure_faults()
            ),
            "scale-events-lossy": window(
                "scale-events-lossy",
                sizes.scale_tasks,
                lossy(scenarios.scale_faults()),
                lossy(scenarios.steady_measure_faults()),
            ),
            "restart": {
                "job_queue": QUEUES["restart"],
                "faults": scenarios.restart_faults(),
                "measure_faults": scenarios.steady_measure_faults(),
                "executor_options": options("restart"),
                "tasks": sizes.restart_tasks,
                "setup_timeout_s": 30 + sizes.restart_tasks * 0.05,
                "cap_s": sizes.restart_cap_s,
                "verify_timeout_s": 60 + sizes.restart_tasks * 0.01,
                # The adoption's cap and what follows it (verification, drain) for the driver's budget.
                "timeout_s": sizes.restart_cap_s + 60 + sizes.restart_tasks * 0.01 + 180,
            },
        },
    }


def burst_figures(result: dict[str, Any], jobs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    submit = delta(result["stats_scenario_after"], result["stats_scenario_before"], "SubmitJob")
    # The provider names every job alike and tags none, so tasks cannot be told apart at localbatch:
    # all N are submitted when the N-th job is created (nothing fails in this scenario to resubmit).
    created = sorted(job["createdAt"] / 1000 for job in jobs)
    submitted_s = created[n - 1] - result["started_at"] if len(created) >= n else None
    return {
        "tasks": n,
        "submit_s": submitted_s,
        "submit_per_s": (n / submitted_s) if submitted_s else None,
        "heartbeat_p50_ms": result["heartbeat_p50_ms"],
        "heartbeat_p99_ms": result["heartbeat_p99_ms"],
        "heartbeat_max_ms": result["heartbeat_max_ms"],
        "heartbeats": result["heartbeats"],
        "throttled_failures": result["tasks_failed"] + result["tasks_lost"],
        "tasks_succeeded": result["tasks_succeeded"],
        "drain_s": result["drain_s"],
        "jobs_created": len(created),
        "submit_calls": submit["requests"],
        "submit_429": submit["throttled"],
        "elapsed_s": result["elapsed_s"],
    }


def burst_array_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The burst's figures read from the executor's side: array children are not in ListJobs, so when
    every task was submitted is when its job id reached the event buffer."""
    submit = delta(result["stats_scenario_after"], result["stats_scenario_before"], "SubmitJob")
    n = result["tasks"]
    return {
        "tasks": n,
        "submit_s": result.get("all_job_ids_s"),
        "heartbeat_p50_ms": result["heartbeat_p50_ms"],
        "heartbeat_p99_ms": result["heartbeat_p99_ms"],
        "heartbeat_max_ms": result["heartbeat_max_ms"],
        "heartbeats": result["heartbeats"],
        "throttled_failures": result["tasks_failed"] + result["tasks_lost"],
        "tasks_succeeded": result["tasks_succeeded"],
        "drain_s": result["drain_s"],
        "submit_calls": submit["requests"],
        "submit_calls_per_task": submit["requests"] / n if n else None,
        "submit_429": submit["throttled"],
        "elapsed_s": result["elapsed_s"],
    }


def steady_figures(result: dict[str, Any]) -> dict[str, Any]:
    window = result["window_s"]
    describe = delta(result["stats_after"], result["stats_before"], "DescribeJobs")["requests"]
    listed = delta(result["stats_after"], result["stats_before"], "ListJobs")["requests"]
    return {
        "tasks": result["tasks"],
        "tracked": result["tracked"],
        "window_s": window,
        # Every Batch call spent on status (DescribeJobs + ListJobs), per second of the window.
        "describe_calls_per_s": (describe + listed) / window,
        "describe_jobs_per_s": describe / window,
        "list_jobs_per_s": listed / window,
        "jobs_ended": result["jobs_ended"],
        "jobs_detected": result["jobs_detected"],
        "detect_p50_s": result["detect_p50_s"],
        "detect_p95_s": result["detect_p95_s"],
        "detect_max_s": result["detect_max_s"],
        "heartbeat_p99_ms": result["heartbeat_p99_ms"],
        "elapsed_s": result["elapsed_s"],
    }


def scale_figures(result: dict[str, Any]) -> dict[str, Any]:
    return {
        **steady_figures(result),
        "bytes_per_job": result["bytes_per_job"],
        "rss_bytes_per_job": result["rss_bytes_per_job"],
    }


#: The SQS calls of the events thread (a receive long-polls up to 20 s; deletes go ten at a time).
SQS_OPERATIONS = ("ReceiveMessage", "DeleteMessage", "DeleteMessageBatch")


def events_figures(result: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``base`` (steady's or scale's figures) plus what status events did in the window."""
    window = result["window_s"]
    sqs_calls = sum(
        delta(result["stats_after"], result["stats_before"], op)["requests"] for op in SQS_OPERATIONS
    )
    events_before = result["events_before"]
    events_after = result["events_after"]
    counted = ("emitted", "delivered", "dropped", "duplicated", "delayed", "reordered")
    return {
        **base,
        # Ends the grace period after the window did not see reported (the p50/p95 leave them out).
        "ends_unreported": result["jobs_ended"] - result["jobs_detected"],
        # The events thread's SQS calls per second of the window (not Batch calls: no status budget).
        "sqs_calls_per_s": sqs_calls / window,
        # localbatch's job state change events in the window: matched by the rule, delivered to the
        # queue, dropped (scale-events-lossy), ...
        **{f"events_{key}": events_after.get(key, 0) - events_before.get(key, 0) for key in counted},
        # The executor's own account (its poller): changes polling found that no event had brought,
        # in the window; and whether polling only reconciled (events arriving, none found lost for
        # missed_hold_s) when the window began and when it ended, rather than polling every job.
        "poller_found_missed_events": result["poller_after"]["events_missed"]
        - result["poller_before"]["events_missed"],
        "poller_reconciling_at_start": result["poller_before"]["reconciling"],
        "poller_reconciling_at_end": result["poller_after"]["reconciling"],
    }


def restart_figures(result: dict[str, Any]) -> dict[str, Any]:
    def calls(after: str) -> int:
        before = result["stats_before"]
        return sum(delta(result[after], before, op)["requests"] for op in ("DescribeJobs", "ListJobs"))

    return {
        "tasks": result["tasks"],
        "filled": result["filled"],
        "adopted": result["adopted"],
        "handed_back": result["handed_back"],
        "capped": result["capped"],
        "cap_s": result["cap_s"],
        # The try_adopt_task_instances call's wall time (the cap when it was cut off).
        "thread_held_s": result["thread_held_s"],
        "status_calls": calls("stats_after_call"),
        # Ours: until every job adopted unconfirmed was verified (the start's orphan sweep shares the budget).
        "status_calls_to_verify": calls("stats_after_verify") if result["verified_s"] is not None else None,
        "verified_s": result["verified_s"],
        "failed_after_adoption": result["failed_after_adoption"],
        "heartbeat_max_ms": result["heartbeat_max_ms"],
        "elapsed_s": result["elapsed_s"],
    }


def memory_figures(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("tasks", "tracked", "bytes_per_job", "bytes_per_1000_jobs", "rss_bytes_per_job", "elapsed_s")
    return {key: result[key] for key in keys}


def run_executor(
    executor: str, sizes: scenarios.Sizes, selected: list[str], work_dir: Path
) -> dict[str, Any]:
    """The in-process scenarios of ``selected`` for one executor, in one driver process against its
    own localbatch (theirs never runs the events scenarios: it has no status events mode)."""
    if executor != "ours":
        selected = [name for name in selected if name not in scenarios.EVENTS_SCENARIOS]
    biggest = max(
        sizes.memory_tasks,
        sizes.burst_tasks,
        sizes.burst_array_tasks,
        sizes.steady_tasks,
        sizes.scale_tasks,
        sizes.restart_tasks,
    )
    with localbatch(work_dir, {}, max_vcpus=biggest) as service:
        events_queues = _create_queues(service)
        params = driver_params(executor, sizes, service, events_queues)
        params["scenarios"] = {k: v for k, v in params["scenarios"].items() if k in selected}
        budget = 120 + sum(
            v.get("timeout_s", 0)
            + v.get("setup_timeout_s", 0)
            + v.get("window_s", 0)
            + v.get("grace_s", 0)
            + v.get("settle_before_window_s", 0)
            + 90
            for v in params["scenarios"].values()
        )
        results = run_driver(params, work_dir, timeout_s=budget)
        burst_jobs = [j for j in job_summaries(service, QUEUES["burst"])] if "burst" in results else []
    figures: dict[str, Any] = {}
    for name in IN_PROCESS:
        result = results.get(name)
        if name not in selected:
            figures[name] = {}
        elif result is None or "error" in result:
            figures[name] = {"error": (result or results).get("error", "no result")}
        elif name == "burst":
            figures[name] = burst_figures(result, burst_jobs, sizes.burst_tasks)
        elif name == "burst-array":
            figures[name] = burst_array_figures(result)
        elif name == "steady":
            figures[name] = steady_figures(result)
        elif name == "scale":
            figures[name] = scale_figures(result)
        elif name == "steady-events":
            figures[name] = events_figures(result, steady_figures(result))
        elif name in ("scale-events", "scale-events-lossy"):
            figures[name] = events_figures(result, scale_figures(result))
        elif name == "restart":
            figures[name] = restart_figures(result)
        else:
            figures[name] = memory_figures(result)
    return figures


def environment(sizes: scenarios.Sizes, size_name: str) -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    commit = git_commit()
    return {
        "size": size_name,
        "sizes": asdict(sizes),
        "cpu_count": os.cpu_count(),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            dist: version(dist)
            for dist in (
                "apache-airflow",
                "apache-airflow-providers-amazon",
                "aws-batch-airflow",
                "boto3",
                "botocore",
            )
        },
        "git_commit": commit,
        "localbatch": {
            "latency_ms": scenarios.LATENCY_MS,
            "submit_quota_per_s": scenarios.SUBMIT_QUOTA,
            "seed": scenarios.SEED,
            "lossy_event_drop_rate": scenarios.LOSSY_DROP_RATE,
        },
        "ours_options": scenarios.OURS_OPTIONS,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes (make bench-quick)")
    parser.add_argument("--out", default="bench-results.json", type=Path)
    parser.add_argument(
        "--only",
        default="burst,burst-array,steady,steady-events,memory,scale,scale-events,scale-events-lossy,"
        "restart,dag",
        help="comma-separated scenarios to run (the JSON keeps every key, null where not run)",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="keep logs here (default: a temp dir)")
    parser.add_argument(
        "--executors",
        default="ours,theirs",
        help="executors of the in-process scenarios, all but dag (comma-separated; the events "
        "scenarios run for ours only)",
    )
    parser.add_argument(
        "--dag-executors",
        default="localexecutor,ours,theirs",
        help="executors of the dag scenario (comma-separated aliases)",
    )
    args = parser.parse_args(argv)
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in selected if name not in (*IN_PROCESS, "dag")]
    if unknown:
        parser.error(
            f"--only: unknown scenario(s) {', '.join(unknown)}; known: {', '.join((*IN_PROCESS, 'dag'))}"
        )
    started = time.monotonic()
    results: dict[str, Any] = {
        "ours": {},
        "theirs": {},
        "localexecutor": {"dag": {"drain_s": None}},
        "env": environment(sizes, "quick" if args.quick else "full"),
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        root = args.work_dir or Path(tmp)
        for executor in args.executors.split(","):
            names = [n for n in IN_PROCESS if n in selected]
            if executor != "ours":
                names = [n for n in names if n not in scenarios.EVENTS_SCENARIOS]
            if not names:
                continue
            log(f"{executor}: {', '.join(names)} ...")
            began = time.monotonic()
            figures = run_executor(executor, sizes, selected, root / executor)
            results[executor].update(figures)
            log(f"{executor}: done in {time.monotonic() - began:.0f} s: {json.dumps(figures)}")
        for executor in EXECUTOR_NAMES:
            for name in IN_PROCESS:
                results[executor].setdefault(name, {})
        if "dag" in selected:
            from bench.dag import run_dag

            dag = run_dag(sizes, root / "dag", log, tuple(args.dag_executors.split(",")))
            for executor in ("ours", "theirs", "localexecutor"):
                results[executor]["dag"] = dag.get(executor, {"drain_s": None})
        else:
            for executor in EXECUTOR_NAMES:
                results[executor]["dag"] = {}
    results["env"]["total_s"] = time.monotonic() - started
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(render(results))
    print(f"\nwrote {args.out} in {results['env']['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
