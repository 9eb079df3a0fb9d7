"""Multi-team against localbatch: two team executors in one process, each on its own job queue.

Each team's options come from Airflow's team lookup (``AIRFLOW__<TEAM>___AWS_BATCH_EXECUTOR__*``),
each executor is health-checked on its own at ``start()``, tags its jobs ``airflow_team``, and its
adoption and sweep leave the other team's (and the global executor's) jobs alone, even on a shared
queue.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_aws_batch import compat
from airflow_aws_batch.config import ConfigError, team_env_var
from airflow_aws_batch.core.ownership import TiNow
from airflow_aws_batch.sweep import sweep
from airflow_aws_batch.wiring import HealthCheckFailed
from devstack import LocalBatchServer

from ._airflow import FastExecutor, Recorder, configure, task_workload
from .test_executor_localbatch import FakeTi, held, job_of

pytestmark = [
    pytest.mark.contract,
    pytest.mark.skipif(not compat.MULTI_TEAM, reason="Airflow 3.1 has no multi-team executors"),
]

DEFINITION = "team-def"
QUEUES = {"team_a": "team-a-queue", "team_b": "team-b-queue"}
SHARED = "shared-queue"


@pytest.fixture(scope="module")
def localbatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBatchServer]:
    server = LocalBatchServer(tmp_path_factory.mktemp("localbatch"), args=["--kill-grace-seconds", "1"])
    with server:
        for team, queue in QUEUES.items():
            server.setup(compute_environment=f"{team}-ce", job_queue=queue, job_definition=DEFINITION)
        server.setup(compute_environment="shared-ce", job_queue=SHARED, job_definition=DEFINITION)
        yield server


def configure_team(monkeypatch: pytest.MonkeyPatch, team: str, **options: str) -> None:
    for option, value in {
        "job_definition": DEFINITION,
        "job_name": team,
        "region_name": "us-east-1",
        **options,
    }.items():
        monkeypatch.setenv(team_env_var(option, team), value)


@pytest.fixture
def teams(localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, FastExecutor]]:
    """Started executors of team_a and team_b, and the global one (key ``""``), on ``SHARED`` queues too."""
    for name in list(os.environ):
        if "___AWS_BATCH_EXECUTOR__" in name:
            monkeypatch.delenv(name)
    configure(monkeypatch, localbatch, job_queue=SHARED, job_definition=DEFINITION)
    for team, queue in QUEUES.items():
        configure_team(monkeypatch, team, job_queue=queue, queue_map=f'{{"shared": "{SHARED}"}}')
    executors = {
        "team_a": FastExecutor(parallelism=16, team_name="team_a"),
        "team_b": FastExecutor(parallelism=16, team_name="team_b"),
        "": FastExecutor(parallelism=16),
    }
    for executor in executors.values():
        executor.start()
    try:
        yield executors
    finally:
        for executor in executors.values():
            executor.terminate()
        localbatch.set_faults({})


def submit_tagged(
    batch: Any, queue: str, task_id: str, try_number: int, *, deployment: str, team: str | None
) -> str:
    tags = {
        "dag_id": "dag",
        "task_id": task_id,
        "run_id": "manual__1",
        "map_index": "-1",
        "try_number": str(try_number),
        "deployment": deployment,
    }
    if team is not None:
        tags["airflow_team"] = team
    job_id: str = batch.submit_job(
        jobName=f"mt-dag-{task_id}",
        jobQueue=queue,
        jobDefinition=DEFINITION,
        containerOverrides={"command": ["true"]},
        tags=tags,
    )["jobId"]
    return job_id


def test_each_team_submits_to_its_own_queue_with_its_team_tag(
    teams: dict[str, FastExecutor], localbatch: LocalBatchServer
) -> None:
    localbatch.set_faults(held("mtsubmit"))
    seen: dict[str, tuple[str, str | None]] = {}
    for team, executor in teams.items():
        rec = Recorder(executor)
        w = task_workload(f"mtsubmit_{team or 'global'}")
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        rec.until(
            lambda rec=rec, key=w.ti.key: bool(rec.states(key)),  # type: ignore[misc]
            what=f"the job of {team or 'the global executor'}",
        )
        job = job_of(localbatch.batch, rec.info(w.ti.key, "running"))
        seen[team] = (job["jobQueue"].rsplit("/", 1)[-1], job["tags"].get("airflow_team"))
        localbatch.batch.terminate_job(jobId=job["jobId"], reason="test cleanup")
    assert seen == {
        "team_a": ("team-a-queue", "team_a"),
        "team_b": ("team-b-queue", "team_b"),
        "": (SHARED, None),
    }


def test_adoption_never_takes_or_terminates_another_teams_job(
    teams: dict[str, FastExecutor], localbatch: LocalBatchServer
) -> None:
    localbatch.set_faults(held("mtadopt"))
    batch = localbatch.batch
    deployment = str(teams["team_a"].config.deployment_id)
    # The same try, submitted by team_b's and the global executor on the queue both teams map to.
    of_b = submit_tagged(batch, SHARED, "mtadopt_task", 2, deployment=deployment, team="team_b")
    of_global = submit_tagged(batch, SHARED, "mtadopt_task", 2, deployment=deployment, team=None)
    # An earlier try of team_b, the id Airflow still holds: "stale" for team_a, but not its job.
    stale_of_b = submit_tagged(batch, SHARED, "mtadopt_task", 1, deployment=deployment, team="team_b")

    handed_back = teams["team_a"].try_adopt_task_instances(
        [FakeTi("dag", "mtadopt_task", 2, None), FakeTi("dag", "mtadopt_saved", 2, of_b)]
    )
    assert sorted(ti.task_id for ti in handed_back) == ["mtadopt_saved", "mtadopt_task"]
    handed_back = teams["team_a"].try_adopt_task_instances([FakeTi("dag", "mtadopt_task", 2, stale_of_b)])
    assert [ti.task_id for ti in handed_back] == ["mtadopt_task"]
    # The global executor, handed team_b's job id, refuses it and finds its own job by its tags.
    ti_global = FakeTi("dag", "mtadopt_task", 2, of_b)
    assert teams[""].try_adopt_task_instances([ti_global]) == []
    assert teams[""].core.job_id(ti_global.key) == of_global
    # team_b finds its own.
    ti_b = FakeTi("dag", "mtadopt_task", 2, None)
    assert teams["team_b"].try_adopt_task_instances([ti_b]) == []
    assert teams["team_b"].core.job_id(ti_b.key) == of_b

    for job_id in (of_b, of_global, stale_of_b):
        assert job_of(batch, job_id)["status"] == "RUNNABLE", job_id
        batch.terminate_job(jobId=job_id, reason="test cleanup")


def test_each_sweep_terminates_only_its_own_teams_orphans(
    teams: dict[str, FastExecutor], localbatch: LocalBatchServer
) -> None:
    localbatch.set_faults(held("mtsweep"))
    batch = localbatch.batch
    deployment = str(teams["team_a"].config.deployment_id)
    jobs = {
        owner: submit_tagged(
            batch, SHARED, f"mtsweep_{owner or 'global'}", 1, deployment=deployment, team=owner
        )
        for owner in ("team_a", "team_b", None)
    }
    # Every try has moved on: each job is an orphan, but only for the executor that owns it.
    airflow_now = {
        ("dag", f"mtsweep_{o or 'global'}", "manual__1", -1): TiNow(2, "queued", None) for o in jobs
    }
    swept: dict[str | None, set[str]] = {}
    for owner in jobs:
        executor = teams[owner or ""]
        commands = sweep(
            executor.api,
            queues=[SHARED, *QUEUES.values()],
            deployment=deployment,
            tracked=lambda job_id: False,
            lookup=lambda tries: airflow_now,
            before_call=lambda: True,
            team=executor.config.team,
        )
        swept[owner] = {cmd.job_id for cmd in commands}
    assert swept == {owner: {job_id} for owner, job_id in jobs.items()}
    for job_id in jobs.values():
        assert job_of(batch, job_id)["status"] == "RUNNABLE"
        batch.terminate_job(jobId=job_id, reason="test cleanup")


def test_each_team_is_checked_on_its_own_and_errors_name_it(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, localbatch, job_queue=SHARED, job_definition=DEFINITION)
    configure_team(monkeypatch, "team_a", job_queue=QUEUES["team_a"])
    configure_team(monkeypatch, "team_b", job_queue="no-such-queue")
    good = FastExecutor(parallelism=4, team_name="team_a")
    good.start()
    good.terminate()
    with pytest.raises(HealthCheckFailed) as raised:
        FastExecutor(parallelism=4, team_name="team_b").start()
    assert str(raised.value).startswith("AwsBatchExecutor (team 'team_b') startup check failed"), raised.value
    assert "no-such-queue" in str(raised.value)
    monkeypatch.setenv(team_env_var("max_submit_job_attempts", "team_b"), "0")
    with pytest.raises(ConfigError, match=r"max_submit_job_attempts \(team 'team_b'\): expected"):
        FastExecutor(parallelism=4, team_name="team_b").start()
