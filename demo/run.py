"""Run the demo: start the stack, trigger ``batch_demo``, show progress and a summary table.

Environment: ``DEMO_DB_URL`` (a PostgreSQL URL; SQLite otherwise), ``DEMO_PORT`` (default 8080),
``DEMO_EXIT=1`` (exit after the summary even on a terminal).
Exit code: 0 when every task ended as designed, 1 otherwise, 2 when the stack could not start.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from devstack import Stack, StackError, WaitTimeout, ti_label
from devstack.procs import port_is_free

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "batch_demo"
USERNAME = "admin"
PASSWORD = "admin"
RUN_TIMEOUT = 600.0
#: The image batch_demo's train task asks for (demo/dags/batch_demo.py); kept in step by hand, since
#: the DAG file is Airflow's to import, not ours.
TRAIN_IMAGE = "python:3.12-slim"


@dataclass
class Row:
    task: str
    state: str
    tries: int
    job_id: str
    job_status: str
    jobs: int
    job_definition: str
    note: str


def say(message: str = "") -> None:
    print(message, flush=True)


def pick_port() -> int:
    wanted = int(os.environ.get("DEMO_PORT", "8080"))
    if port_is_free(wanted):
        return wanted
    from devstack.procs import free_port

    port = free_port()
    say(f"!! Port {wanted} is busy (another Airflow or web server?); the UI will be on port {port} instead.")
    say(f"   Stop whatever holds {wanted}, or set DEMO_PORT, to choose the port.")
    return port


def show_progress(stack: Stack, run_id: str) -> dict[str, Any]:
    """Print a line whenever the task states change; return the finished run."""
    started = time.monotonic()
    last = ""
    deadline = started + RUN_TIMEOUT
    while True:
        stack.check_alive()
        run = stack.airflow.dag_run(DAG_ID, run_id)
        states = stack.airflow.task_states(DAG_ID, run_id).values()
        counts = Counter(str(state or "not yet scheduled") for state in states)
        line = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        if line != last:
            say(f"  {time.monotonic() - started:5.0f}s  run {run['state']}: {line}")
            last = line
        if run["state"] in ("success", "failed"):
            return dict(run)
        if time.monotonic() > deadline:
            raise WaitTimeout(f"the demo run did not finish in {RUN_TIMEOUT:.0f}s; last: {line}")
        time.sleep(2)


def summarize(stack: Stack, run_id: str) -> tuple[list[Row], list[str]]:
    """One row per task instance, and the list of things that did not go as designed."""
    jobs_by_ti: dict[str, list[dict[str, Any]]] = {}
    for job in stack.batch.wait_final(DAG_ID, run_id=run_id):
        tags = job.get("tags", {})
        label = ti_label({"task_id": tags.get("task_id"), "map_index": int(tags.get("map_index", -1))})
        jobs_by_ti.setdefault(label, []).append(job)
    rows: list[Row] = []
    problems: list[str] = []
    for ti in sorted(stack.airflow.task_instances(DAG_ID, run_id), key=lambda t: str(t["start_date"])):
        label = ti_label(ti)
        jobs = jobs_by_ti.get(label, [])
        last = jobs[-1] if jobs else {}
        note = ""
        if ti["task_id"] == "publish":
            note = "failed on try 1 by design, Airflow retried"
            if ti["try_number"] != 2:
                problems.append(f"{label}: expected 2 tries, got {ti['try_number']}")
        if ti["task_id"] == "train" and last:
            req = {r["type"]: r["value"] for r in last.get("container", {}).get("resourceRequirements", [])}
            image = last.get("container", {}).get("image")
            note = f"executor_config: {req.get('VCPU')} vCPU, {req.get('MEMORY')} MiB, image {image}"
            if (req.get("VCPU"), req.get("MEMORY")) != ("2", "2048"):
                problems.append(f"{label}: Batch job did not get the executor_config resources: {req}")
            if image != TRAIN_IMAGE:
                problems.append(f"{label}: Batch job ran image {image!r}, not {TRAIN_IMAGE!r}")
        if ti["state"] != "success":
            problems.append(f"{label}: ended {ti['state']}")
        if not jobs:
            problems.append(f"{label}: no Batch job found")
        elif last.get("status") != "SUCCEEDED":
            problems.append(f"{label}: last Batch job {last.get('jobId')} is {last.get('status')}")
        rows.append(
            Row(
                label,
                str(ti["state"]),
                int(ti["try_number"]),
                str(last.get("jobId", "-")),
                str(last.get("status", "-")),
                len(jobs),
                # The job definition's name:revision (the train task's is derived for its image).
                str(last.get("jobDefinition", "-")).rsplit("/", 1)[-1],
                note,
            )
        )
    return rows, problems


def print_table(rows: list[Row]) -> None:
    header = (
        "task",
        "Airflow state",
        "tries",
        "Batch job id",
        "Batch status",
        "Batch jobs",
        "job definition",
        "",
    )
    cells = [header] + [
        (r.task, r.state, str(r.tries), r.job_id, r.job_status, str(r.jobs), r.job_definition, r.note)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for index, row in enumerate(cells):
        say("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            say("  " + "  ".join("-" * width for width in widths[:-1]))


def wait_for_ctrl_c(stack: Stack) -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            stack.check_alive()
            time.sleep(2)
    except KeyboardInterrupt:
        say("\nStopping every process (this takes a few seconds)...")


def main() -> int:
    interactive = sys.stdin.isatty() and os.environ.get("DEMO_EXIT") != "1"
    # DEMO_DIR: another work dir (make test-compat runs one demo per Airflow minor).
    work_dir = Path(os.environ.get("DEMO_DIR") or REPO / ".demo").resolve()
    shutil.rmtree(work_dir, ignore_errors=True)
    db_url = os.environ.get("DEMO_DB_URL") or None
    port = pick_port()
    say("airflow-aws-batch demo: Airflow 3 with AwsBatchExecutor, jobs run by localbatch on this machine")
    say(f"  work dir and logs: {work_dir}")
    stack = Stack(
        work_dir,
        db_url=db_url,
        executor="aws_batch",
        dags_folder=REPO / "demo" / "dags",
        api_port=port,
        job_name="demo",
        username=USERNAME,
        password=PASSWORD,
        # Workloads (and their tokens) go to files the jobs read, not into the Batch requests.
        env={"AIRFLOW__AWS_BATCH_EXECUTOR__WORKLOAD_STORE": f"file://{work_dir / 'workloads'}"},
        on_step=lambda step: say(f"- {step}"),
    )
    started = time.monotonic()
    try:
        with stack:
            say(f"- Airflow is up after {time.monotonic() - started:.0f}s; waiting for the DAG to be parsed")
            stack.airflow.wait_for_dags([DAG_ID], timeout=180)
            stack.airflow.unpause(DAG_ID)
            run_id = stack.airflow.trigger(DAG_ID)
            say(f"- triggered {DAG_ID} (run {run_id}); progress:")
            run = show_progress(stack, run_id)
            rows, problems = summarize(stack, run_id)
            say(f"\nRun {run['state']} after {time.monotonic() - started:.0f}s in total. One row per task:\n")
            print_table(rows)
            say("")
            if problems:
                say("Not as designed:")
                for problem in problems:
                    say(f"  - {problem}")
            else:
                say("Every task ended as designed.")
            say(f"\nAirflow UI: {stack.ui_url}   login: {USERNAME} / {PASSWORD}")
            say(f"localbatch (AWS Batch API, use with boto3 endpoint_url): {stack.localbatch_url}")
            say(f"  with the keys it checks signatures against: KEY:SECRET in {stack.batch.credentials_file}")
            say(f"logs of every process: {stack.logs_dir}")
            say(
                f"workload store: file://{work_dir / 'workloads'} (each job's command names its object, "
                "the token stays out of the Batch request)"
            )
            if interactive:
                say("Press Ctrl-C to stop everything.")
                wait_for_ctrl_c(stack)
            return 1 if problems else 0
    except (StackError, WaitTimeout) as error:
        say(f"\nThe demo failed: {error}")
        say(f"Logs of every process are in {stack.logs_dir}")
        return 2
    finally:
        say("Stopped.")
