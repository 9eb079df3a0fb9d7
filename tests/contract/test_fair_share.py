"""Fair-share and FIFO job queues: the startup check against moto, the jobs sent against localbatch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.executors import workloads

from airflow_aws_batch.fairshare import QueueKind, QueueKinds
from airflow_aws_batch.health import run_checks
from devstack import LocalBatchServer

from ._airflow import FastExecutor, Recorder, configure, task_workload
from .conftest import BatchResources, Moto, create_resources

pytestmark = pytest.mark.contract


def add_fair_share_queue(batch: Any, name: str, compute_environment: str) -> str:
    """A job queue with a fair-share scheduling policy on ``compute_environment``; its name."""
    policy = batch.create_scheduling_policy(
        name=f"{name}-policy",
        fairsharePolicy={"shareDecaySeconds": 3600, "shareDistribution": [{"shareIdentifier": "default"}]},
    )["arn"]
    batch.create_job_queue(
        jobQueueName=name,
        state="ENABLED",
        priority=1,
        schedulingPolicyArn=policy,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": compute_environment}],
    )
    return name


@pytest.fixture(scope="module")
def moto_queues(moto_server: Moto) -> tuple[BatchResources, str]:
    """A FIFO queue (with its definition) and a fair-share queue, in moto."""
    fifo = create_resources(moto_server, "fairshare")
    fair = add_fair_share_queue(moto_server.client("batch"), "fairshare-fair-queue", fifo.compute_environment)
    return fifo, fair


@pytest.mark.parametrize(
    ("queues", "options", "problem"),
    [
        pytest.param(
            ("fifo", None),
            {"share_identifier": "{dag_id}"},
            "share_identifier is set",
            id="template-on-fifo-only",
        ),
        pytest.param(
            ("fifo", None),
            {"submit_job_kwargs": '{"shareIdentifier": "all"}'},
            "submit_job_kwargs sets shareIdentifier",
            id="forced-share-on-fifo",
        ),
        pytest.param(
            ("fair", "fifo"),
            {"submit_job_kwargs": '{"shareIdentifier": "all"}'},
            "submit_job_kwargs sets shareIdentifier",
            id="forced-share-on-a-mapped-fifo-queue",
        ),
    ],
)
def test_start_refuses_share_settings_a_fifo_queue_cannot_take(
    *,
    moto_server: Moto,
    moto_queues: tuple[BatchResources, str],
    monkeypatch: pytest.MonkeyPatch,
    queues: tuple[str, str | None],
    options: dict[str, str],
    problem: str,
) -> None:
    from airflow_aws_batch.wiring import HealthCheckFailed

    fifo, fair = moto_queues
    by_kind = {"fifo": fifo.job_queue, "fair": fair}
    main, mapped = by_kind[queues[0]], by_kind[queues[1]] if queues[1] else None
    if mapped:
        options = {**options, "queue_map": json.dumps({"gpu": mapped})}
    configure(monkeypatch, moto_server.url, job_queue=main, job_definition=fifo.job_definition, **options)
    with pytest.raises(HealthCheckFailed) as info:
        FastExecutor().start()
    message = str(info.value)
    assert problem in message
    assert repr(fifo.job_queue) in message
    assert "fair_share" in message


@pytest.mark.parametrize(
    ("main", "mapped", "options"),
    [
        pytest.param("fair", None, {}, id="fair-defaults"),
        pytest.param("fifo", None, {}, id="fifo-defaults"),
        pytest.param(
            "fifo", "fair", {"share_identifier": "{team}_{queue}"}, id="template-with-one-fair-queue"
        ),
    ],
)
def test_check_reports_queue_kinds_and_records_them(
    moto_server: Moto,
    moto_queues: tuple[BatchResources, str],
    main: str,
    mapped: str | None,
    options: dict[str, str],
) -> None:
    from airflow_aws_batch.config import parse_options

    fifo, fair = moto_queues
    by_kind = {"fifo": fifo.job_queue, "fair": fair}
    raw: dict[str, str | None] = {
        "job_queue": by_kind[main],
        "job_definition": fifo.job_definition,
        "job_name": "airflow",
        "region_name": "us-east-1",
        **options,
    }
    if mapped:
        raw["queue_map"] = json.dumps({"gpu": by_kind[mapped]})
    kinds = QueueKinds()
    items = run_checks(moto_server.client("batch"), parse_options(raw), kinds)
    assert all(item.ok for item in items), [item for item in items if not item.ok]
    details = {item.name: item.detail for item in items}
    expected = {by_kind[main]: main}
    if mapped:
        expected[by_kind[mapped]] = mapped
    for queue, kind in expected.items():
        assert kinds.get(queue) is (QueueKind.FAIR_SHARE if kind == "fair" else QueueKind.FIFO)
    assert ("fair-share (scheduling policy arn:" in details["job_queue"]) is (main == "fair")
    assert ("FIFO" in details["job_queue"]) is (main == "fifo")
    assert details["compute_env:" + fifo.compute_environment].startswith("compute environment")


# ------------------------------------------------------------------------------ jobs sent (localbatch)

FIFO_QUEUE = "fs-fifo"
FAIR_QUEUE = "fs-fair"
DEFINITION = "fs-def"


@pytest.fixture(scope="module")
def localbatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBatchServer]:
    server = LocalBatchServer(tmp_path_factory.mktemp("localbatch-fs"), args=["--kill-grace-seconds", "1"])
    with server:
        server.setup(compute_environment="fs-ce", job_queue=FIFO_QUEUE, job_definition=DEFINITION)
        add_fair_share_queue(server.client("batch"), FAIR_QUEUE, "fs-ce")
        yield server


def weighted(task_id: str, priority_weight: int, **kwargs: Any) -> workloads.ExecuteTask:
    work = task_workload(task_id, **kwargs)
    return work.model_copy(update={"ti": work.ti.model_copy(update={"priority_weight": priority_weight})})


@pytest.mark.parametrize(
    "check_health", [pytest.param("True", id="kinds-from-check"), pytest.param("False", id="kinds-on-submit")]
)
def test_jobs_carry_share_and_priority_only_on_the_fair_share_queue(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, check_health: str
) -> None:
    configure(
        monkeypatch,
        localbatch,
        job_queue=FIFO_QUEUE,
        job_definition=DEFINITION,
        queue_map=json.dumps({"fair": FAIR_QUEUE}),
        check_health_on_startup=check_health,
    )
    executor = FastExecutor(parallelism=16)
    executor.start()
    try:
        rec = Recorder(executor)
        fair = weighted("fair_task", 20000)
        fair = fair.model_copy(update={"ti": fair.ti.model_copy(update={"queue": "fair"})})
        fifo = weighted("fifo_task", 20000)
        bad = weighted("bad_priority", 1, executor_config={"schedulingPriorityOverride": 10000})
        forced_fifo = weighted("share_on_fifo", 1, executor_config={"shareIdentifier": "mine"})
        for work in (fair, fifo, bad, forced_fifo):
            executor.queue_workload(work, session=None)  # type: ignore[arg-type]
        rec.until(
            lambda: (
                all("running" in rec.states(w.ti.key) for w in (fair, fifo))
                and all("failed" in rec.states(w.ti.key) for w in (bad, forced_fifo))
            ),
            what="two jobs running and two tasks failed",
        )
        batch = localbatch.client("batch")
        (fair_job,) = batch.describe_jobs(jobs=[rec.info(fair.ti.key, "running")])["jobs"]
        (fifo_job,) = batch.describe_jobs(jobs=[rec.info(fifo.ti.key, "running")])["jobs"]
        assert fair_job["shareIdentifier"] == "dag"
        assert fair_job["schedulingPriority"] == 9999
        assert "shareIdentifier" not in fifo_job
        assert "schedulingPriority" not in fifo_job
        assert "0 to 9999" in str(rec.info(bad.ti.key, "failed"))
        assert "is FIFO" in str(rec.info(forced_fifo.ti.key, "failed"))
        # The reason is in each failed task's own event log, and only there.
        assert any("0 to 9999" in event for event in rec.task_events(bad.ti.key))
        assert any("is FIFO" in event for event in rec.task_events(forced_fifo.ti.key))
        assert not any("is FIFO" in event for event in rec.task_events(fifo.ti.key))
    finally:
        executor.terminate()
