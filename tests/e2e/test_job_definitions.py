"""Per-task images through ``jobDefinitionOverrides``, with real Airflow and localbatch: three runs of
a DAG whose two tasks ask for two images register exactly two job definitions (the later runs, some
concurrent with the first, find them); bad properties fail only
their task, with the reason in its event log."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from devstack import JOB_DEFINITION

from .conftest import E2E
from .dags.e2e_images import IMAGES

pytestmark = pytest.mark.e2e

RUNS = 3


def _registered(e2e: E2E) -> int:
    """RegisterJobDefinition calls localbatch accepted so far."""
    stats = e2e.stack.batch.stats()["operations"].get("RegisterJobDefinition", {})
    return int(stats.get("requests", 0)) - int(stats.get("client_errors", 0))


def _derived(e2e: E2E) -> dict[str, dict[str, Any]]:
    """Derived definitions (every revision) by name."""
    found: dict[str, dict[str, Any]] = {}
    pages = e2e.stack.batch.batch.get_paginator("describe_job_definitions").paginate()
    for page in pages:
        for definition in page["jobDefinitions"]:
            if definition["jobDefinitionName"].startswith(f"{JOB_DEFINITION}-"):
                found[definition["jobDefinitionArn"]] = definition
    return found


def _events_text(events: list[dict[str, Any]]) -> str:
    return "\n".join(f"{event['event']}: {event.get('extra') or ''}" for event in events)


def test_runs_of_two_images_register_two_definitions(e2e: E2E) -> None:
    e2e.need_batch()
    airflow = e2e.stack.airflow
    registered_before = _registered(e2e)
    derived_before = _derived(e2e)
    run_ids = [airflow.trigger("e2e_images") for _ in range(RUNS)]
    for run_id in run_ids:
        assert airflow.wait_for_run("e2e_images", run_id, timeout=600)["state"] == "success"
        assert airflow.task_states("e2e_images", run_id) == {"first": "success", "second": "success"}

    assert _registered(e2e) - registered_before == 2
    new = {arn: d for arn, d in _derived(e2e).items() if arn not in derived_before}
    assert sorted(d["containerProperties"]["image"] for d in new.values()) == sorted(IMAGES.values())
    used: Counter[tuple[str, str, str]] = Counter()
    for run_id in run_ids:
        for job in e2e.stack.batch.wait_final("e2e_images", run_id=run_id):
            assert job["status"] == "SUCCEEDED", job
            used[(job["tags"]["task_id"], job["jobDefinition"], job["container"]["image"])] += 1
    # Each task ran all its jobs under one derived definition carrying its image.
    assert sorted(used.values()) == [RUNS, RUNS], used
    for (task_id, arn, image), _count in used.items():
        assert arn in new, (task_id, arn)
        assert image == IMAGES[task_id] == new[arn]["containerProperties"]["image"]


def test_bad_job_definition_properties_fail_only_their_task(e2e: E2E) -> None:
    e2e.need_batch()
    airflow = e2e.stack.airflow
    run_id = airflow.trigger("e2e_bad_job_definition")
    assert airflow.wait_for_run("e2e_bad_job_definition", run_id, timeout=600)["state"] == "failed"
    assert airflow.task_states("e2e_bad_job_definition", run_id) == {
        "unknown_property": "failed",
        "refused_image": "failed",
        "good": "success",
    }
    jobs = e2e.stack.batch.wait_final("e2e_bad_job_definition", run_id=run_id)
    assert [job["tags"]["task_id"] for job in jobs] == ["good"]

    unknown = _events_text(
        airflow.event_logs(dag_id="e2e_bad_job_definition", task_id="unknown_property", run_id=run_id)
    )
    assert "executor_config.jobDefinitionOverrides.imageName" in unknown, unknown
    refused = _events_text(
        airflow.event_logs(dag_id="e2e_bad_job_definition", task_id="refused_image", run_id=run_id)
    )
    assert "RegisterJobDefinition of " in refused and "Invalid image name" in refused, refused
