"""RequestTemplates: the map indexes of one task built from one checked template give exactly the
requests a full build gives, and nothing downstream changes a shared member in place."""

from __future__ import annotations

import copy
import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from airflow_aws_batch.config import ExecutorConfig, parse_options
from airflow_aws_batch.core import Core
from airflow_aws_batch.eks import DefinitionInfo, DefinitionKind
from airflow_aws_batch.fairshare import QueueKind
from airflow_aws_batch.submit import (
    ExecConfigError,
    RequestTemplates,
    build_submit_job_request,
    stored_workload_command,
)
from airflow_aws_batch.workloads import open_store, place_workloads

EKS = DefinitionInfo(DefinitionKind.EKS, first_container="main", label="eks-def:1")
CONTAINER = DefinitionInfo(DefinitionKind.CONTAINER, label="airflow-task:1")


def config(**options: str) -> ExecutorConfig:
    raw: dict[str, str | None] = {
        "job_queue": "default-q",
        "job_definition": "airflow-task",
        "job_name": "airflow",
        "region_name": "us-east-1",
        "workload_store": "file:///tmp/unused",
    }
    raw.update(options)
    return parse_options(raw)


def fields(map_index: int, **overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "dag_id": "etl",
        "task_id": "load",
        "run_id": "manual__2026-01-01T00:00:00+00:00",
        "try_number": 1,
        "map_index": map_index,
        "queue": "default",
        "executor_config": None,
        "priority_weight": 3,
        "pool": None,
        "team": None,
    }
    out.update(overrides)
    return out


def full(cfg: ExecutorConfig, workload: str, **kw: Any) -> dict[str, Any]:
    return build_submit_job_request(cfg, command=stored_workload_command(), stored_workloads=[workload], **kw)


CASES = [
    pytest.param({}, {}, None, None, id="plain"),
    pytest.param(
        {},
        {
            "executor_config": {
                "containerOverrides": {"vcpus": 2, "environment": [{"name": "A", "value": "1"}]}
            }
        },
        None,
        None,
        id="executor-config",
    ),
    pytest.param({}, {}, QueueKind.FAIR_SHARE, CONTAINER, id="fair-share-known"),
    pytest.param({}, {}, None, EKS, id="eks"),
    pytest.param({"job_definition": "eks-def"}, {}, QueueKind.FIFO, None, id="kind-unknown"),
    pytest.param(
        {
            "submit_job_kwargs": json.dumps(
                {"tags": {"team": "data"}, "jobDefinitionOverrides": {"image": "i:2"}}
            )
        },
        {"executor_config": {"jobDefinitionOverrides": {"vcpus": 4}}},
        None,
        None,
        id="job-definition-overrides",
    ),
]


@pytest.mark.parametrize(("options", "overrides", "queue_kind", "definition"), CASES)
def test_map_indexes_from_a_template_equal_full_builds(
    options: dict[str, str], overrides: dict[str, Any], queue_kind: QueueKind | None, definition: Any
) -> None:
    cfg = config(**options)
    templates = RequestTemplates()
    lookups: dict[str, Any] = {
        "queue_kind": lambda _q: queue_kind,
        "definition_kind": lambda _d: definition,
    }
    # Map indexes of every length: the size checks see the same bytes as a full build's.
    for map_index in (0, 7, 10, 99, 100, 4321, 9999, 3, 12):
        workload = json.dumps({"map_index": map_index, "token": f"t{map_index}"})
        kw = {**fields(map_index, **overrides), **lookups}
        got = templates.build(cfg, stored_workloads=[workload], **kw)
        assert got == full(cfg, workload, **kw)


def test_a_template_is_rebuilt_when_a_kind_is_learnt() -> None:
    cfg = config()
    templates = RequestTemplates()
    kinds: dict[str, QueueKind] = {}
    lookups: dict[str, Any] = {"queue_kind": kinds.get, "definition_kind": lambda _d: CONTAINER}
    first = templates.build(cfg, stored_workloads=["w0"], **fields(0), **lookups)
    kinds["default-q"] = QueueKind.FAIR_SHARE
    second = templates.build(cfg, stored_workloads=["w1"], **fields(1), **lookups)
    assert second == full(cfg, "w1", **fields(1), **lookups)
    assert "shareIdentifier" in second and "shareIdentifier" not in first


def test_other_tasks_runs_and_tries_get_their_own_templates() -> None:
    cfg = config()
    templates = RequestTemplates(size=2)
    for change in ({"task_id": "other"}, {"run_id": "r2"}, {"try_number": 2}, {"queue": "gpu"}, {}):
        kw = fields(5, **change)
        assert templates.build(cfg, stored_workloads=["w"], **kw) == full(cfg, "w", **kw)


def test_a_bad_executor_config_fails_every_time() -> None:
    cfg = config()
    templates = RequestTemplates()
    for map_index in (0, 1):
        with pytest.raises(ExecConfigError, match=r"containerOverrides\.command"):
            templates.build(
                cfg,
                stored_workloads=["w"],
                **fields(map_index, executor_config={"containerOverrides": {"command": ["x"]}}),
            )


@pytest.mark.parametrize("definition", [CONTAINER, EKS], ids=["container", "eks"])
def test_the_way_to_batch_changes_no_shared_member(tmp_path: Path, definition: DefinitionInfo) -> None:
    """The core keeps the requests it took as given and hands out new top levels; placing the
    workloads, as the submit thread does, must leave the template's members as they were."""
    cfg = config()
    templates = RequestTemplates()
    lookups: dict[str, Any] = {
        "queue_kind": lambda _q: QueueKind.FIFO,
        "definition_kind": lambda _d: definition,
    }
    core = Core(max_attempts=3, clock=lambda: 0.0)
    taken = []
    for map_index in range(3):
        request = templates.build(
            cfg, stored_workloads=[_workload(map_index)], **fields(map_index), **lookups
        )
        taken.append(copy.deepcopy(request))
        core.add(("k", map_index), request)
    snapshot = copy.deepcopy(taken)
    store = open_store(f"file://{tmp_path}")
    submits = core.commands(None)
    assert len(submits) == 3
    for index, submit in enumerate(submits):
        assert place_workloads(submit.request, store, f"dep/job/{index}") is not None  # type: ignore[union-attr]
    # Compaction packs what was kept as given; the next copies come back as they went in.
    while core.compact(1):
        pass
    assert core.unpacked == 0
    fresh = templates.build(cfg, stored_workloads=[_workload(0)], **fields(0), **lookups)
    assert fresh == snapshot[0]


def test_compaction_skips_dropped_and_replaced_entries() -> None:
    core = Core(max_attempts=3, clock=lambda: 0.0)
    core.add("a", {"jobQueue": "q", "jobName": "a", "tags": {}})
    core.add("b", {"jobQueue": "q", "jobName": "b", "tags": {}})
    core.add("b", {"jobQueue": "q", "jobName": "b2", "tags": {}})
    assert core.compact(10) == 2  # "a" and the second "b"
    assert core.compact(10) == 0
    names = sorted(str(s.request["jobName"]) for s in core.commands(None))  # type: ignore[union-attr]
    assert names == ["a", "b2"]


def _workload(map_index: int) -> str:
    return json.dumps({"type": "ExecuteTask", "token": f"t{map_index}"})


def test_two_threads_building_at_once_get_full_builds() -> None:
    """The executor's intake thread builds a burst while the scheduler thread may build a few inline:
    with one template slot, each thread's builds evict the other's template between its lookup and
    its use, and every request must still equal a full build."""
    cfg = config()
    templates = RequestTemplates(size=1)
    lookups: dict[str, Any] = {"queue_kind": lambda _q: None, "definition_kind": lambda _d: CONTAINER}
    errors: list[BaseException] = []
    wrong: list[tuple[str, int]] = []

    def build_many(task_id: str) -> None:
        try:
            for map_index in range(300):
                kw = {**fields(map_index, task_id=task_id), **lookups}
                got = templates.build(cfg, stored_workloads=[f"w{map_index}"], **kw)
                if map_index % 50 == 0 and got != full(cfg, f"w{map_index}", **kw):
                    wrong.append((task_id, map_index))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    # Switch threads as often as the interpreter allows, so lookups and evictions interleave.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=build_many, args=(name,)) for name in ("load", "other")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert errors == []
    assert wrong == []
