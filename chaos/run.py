"""``python -m chaos``: per seed a fresh stack, the fault matrix and the figures; one table, one JSON file."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chaos import count, settings
from chaos.dag import DAG_ID, write_dag
from chaos.drive import Harness
from chaos.table import render
from devstack.procs import git_commit


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_seed(profile: settings.Profile, seed: int, work_dir: Path, db_url: str) -> dict[str, Any]:
    """One stack, one DAG run under the whole matrix; returns what the harness collected."""
    from bench.dag import PRELOAD
    from devstack import Stack

    work_dir = work_dir.resolve()  # the workload store's file:// URL needs an absolute path
    if work_dir.exists():
        shutil.rmtree(work_dir)
    record_dir = work_dir / "records"
    record_dir.mkdir(parents=True)
    dags = work_dir / "dags"
    write_dag(
        dags,
        tasks=profile.tasks,
        parallelism=settings.PARALLELISM,
        retries=settings.RETRIES,
        retry_delay_s=settings.RETRY_DELAY_S,
        deferrals=profile.deferrals,
        sensors=profile.sensors,
        stagger_s=profile.stagger_s,
        pokes=profile.pokes,
    )
    began = time.monotonic()
    stack = Stack(
        work_dir / "stack",
        db_url=db_url,
        executor="aws_batch",
        dags_folder=dags,
        env=settings.airflow_env(work_dir),
        task_env=settings.task_env(record_dir),
        # Warm task processes (see bench.dag): a cold Task SDK costs seconds of CPU per task here.
        # With the workload store every job runs the launcher, so it is preloaded too: without it each
        # job ran cold, 8.6 s (median) from job start to the task's code with 8 tasks on 2 cores.
        localbatch_args=[
            arg for module in (*PRELOAD, settings.LAUNCH_MODULE) for arg in ("--preload", module)
        ],
        job_name="chaos",
        max_vcpus=settings.MAX_VCPUS,
        on_step=lambda message: log(f"seed {seed}: {message}"),
        # The executor takes job state changes from events; the matrix strikes some of them.
        status_events=True,
    )
    with stack:
        stack.airflow.wait_for_dags([DAG_ID], timeout=300)
        stack.airflow.unpause(DAG_ID)
        log(f"seed {seed}: stack up in {time.monotonic() - began:.0f} s (work dir {work_dir})")
        raw = Harness(stack, profile, seed, log, record_dir).run()
    # Everything collected, for post-mortems; chaos-results.json keeps the figures and evidence.
    keep = (
        "task_instances",
        "history",
        "task_events",
        "jobs",
        "array_children",
        "arrays",
        "events",
        "exits",
        "stats_parts",
        "status_events_parts",
    )
    (work_dir / "raw.json").write_text(json.dumps({k: raw[k] for k in keep}, indent=1, default=str))
    raw["logs_dir"] = str(stack.logs_dir)
    raw["work_dir"] = str(work_dir)
    raw["seed_s"] = round(time.monotonic() - began, 1)
    return raw


def environment(profile: settings.Profile) -> dict[str, Any]:
    commit = git_commit()
    return {
        "profile": asdict(profile),
        "parallelism": settings.PARALLELISM,
        "max_vcpus": settings.MAX_VCPUS,
        "retries": settings.RETRIES,
        "retry_delay_s": settings.RETRY_DELAY_S,
        "airflow_env": {
            k: v for k, v in settings.airflow_env(Path("/<work dir>")).items() if k != "PYTHONPATH"
        },
        "array_min_size": settings.ARRAY_MIN_SIZE,
        "faults": settings.fault_config(0, "server_error") | {"seed": "per seed"},
        "sigterm_wait_s": settings.SIGTERM_WAIT_S,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git_commit": commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 tasks, one seed, a shorter orphan wait")
    parser.add_argument("--seeds", help="comma-separated fault seeds (default: 1,2,3; quick: 1)")
    parser.add_argument("--tasks", type=int, help="mapped tasks in the DAG (default: 500; quick: 100)")
    parser.add_argument("--deferrals", type=int, help="deferring task instances (default: 30; quick: 8)")
    parser.add_argument(
        "--sensors", type=int, help="reschedule-mode sensor instances (default: 30; quick: 8)"
    )
    parser.add_argument("--orphan-wait", type=float, help="seconds after the run before counting live jobs")
    parser.add_argument("--out", type=Path, default=Path("chaos-results.json"))
    parser.add_argument("--work-dir", type=Path, help="logs and records go here (default: a new temp dir)")
    parser.add_argument("--db-url", default=settings.POSTGRES_URL, help="PostgreSQL server for the stacks")
    args = parser.parse_args(argv)
    profile = settings.QUICK if args.quick else settings.FULL
    if args.seeds:
        profile = _replace(profile, seeds=tuple(int(s) for s in args.seeds.split(",") if s.strip()))
    if args.tasks:
        profile = _replace(profile, tasks=args.tasks)
    if args.deferrals is not None:
        profile = _replace(profile, deferrals=args.deferrals)
    if args.sensors is not None:
        profile = _replace(profile, sensors=args.sensors)
    if args.orphan_wait is not None:
        profile = _replace(profile, orphan_wait_s=args.orphan_wait)
    root = args.work_dir or Path(tempfile.mkdtemp(prefix="chaos-"))
    log(
        f"{profile.name}: {profile.tasks} tasks, {profile.deferrals} deferring, {profile.sensors} sensors,"
        f" seeds {list(profile.seeds)}; logs kept in {root}"
    )
    started = time.monotonic()
    results: dict[str, Any] = {"env": environment(profile), "seeds": {}}
    table: dict[str, dict[str, Any]] = {}
    misses: dict[str, list[str]] = {}
    for seed in profile.seeds:
        key = str(seed)
        try:
            raw = run_seed(profile, seed, root / f"seed-{seed}", args.db_url)
        except Exception as error:  # one broken seed must not hide the others' figures
            log(f"seed {seed}: ERROR {error!r}")
            results["seeds"][key] = {"error": "".join(traceback.format_exception(error))[-4000:]}
            table[key] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
            misses[key] = [f"the seed did not complete: {type(error).__name__}"]
            continue
        figures, evidence = count.figures(raw, profile.task_instances)
        table[key] = figures
        misses[key] = count.misses(figures)
        results["seeds"][key] = {
            "figures": figures,
            "misses": misses[key],
            "evidence": evidence,
            "events": raw["events"],
            "exits": raw["exits"],
            "notes": raw["notes"],
            "bad_record_lines": raw["bad_record_lines"],
            "run_id": raw["run_id"],
            "seed_s": raw["seed_s"],
            "logs_dir": raw["logs_dir"],
            "records_file": str(Path(raw["work_dir"]) / "records"),
        }
        log(f"seed {seed}: done in {raw['seed_s']:.0f} s; misses: {misses[key] or 'none'}")
    results["env"]["total_s"] = round(time.monotonic() - started, 1)
    results["targets_met"] = not any(misses.values())
    results["misses"] = misses
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(render(table))
    print(f"\nwrote {args.out} in {results['env']['total_s']:.0f} s; logs in {root}")
    for key, found in misses.items():
        for miss in found:
            print(f"seed {key}: MISS {miss}")
    return 0 if results["targets_met"] else 1


def _replace(profile: settings.Profile, **changes: Any) -> settings.Profile:
    from dataclasses import replace

    return replace(profile, **changes)


if __name__ == "__main__":
    raise SystemExit(main())
