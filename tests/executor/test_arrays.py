"""Which due submits go out as one array job, and what the array's request looks like."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import botocore.session
import botocore.validate
import pytest

from airflow_aws_batch.config import parse_options
from airflow_aws_batch.core.arrays import (
    ARRAY_MAX_CHILDREN,
    SubmitArray,
    array_job_name,
    group_key,
    group_submits,
    parent_of,
)
from airflow_aws_batch.core.messages import Submit
from airflow_aws_batch.core.ownership import TryId, is_job_of
from airflow_aws_batch.core.state import Core
from airflow_aws_batch.submit import build_submit_job_request, stored_workload_command
from airflow_aws_batch.workload_rules import PENDING_KEY as WORKLOADS_KEY

SUBMIT_JOB = botocore.session.get_session().get_service_model("batch").operation_model("SubmitJob")
CONFIG = parse_options(
    {"job_queue": "q", "job_definition": "airflow-task", "job_name": "airflow", "region_name": "us-east-1"}
)


def request(
    *,
    task_id: str = "load",
    map_index: int = -1,
    try_number: int = 1,
    executor_config: dict[str, Any] | None = None,
    dag_id: str = "etl",
) -> dict[str, Any]:
    return build_submit_job_request(
        CONFIG,
        command=stored_workload_command(),
        stored_workloads=[f'{{"task": "{task_id}", "map": {map_index}}}'],
        dag_id=dag_id,
        task_id=task_id,
        run_id="manual__1",
        try_number=try_number,
        map_index=map_index,
        queue="default",
        executor_config=executor_config,
    )


def due(*requests: dict[str, Any]) -> list[Submit]:
    """The Submit commands the core emits for ``requests`` queued together (keys 0..n-1)."""
    core = Core(
        max_attempts=3, clock=lambda: 0.0, new_submission=(f"sub{i}" for i in itertools.count()).__next__
    )
    for key, req in enumerate(requests):
        core.add(key, req)
    return [cmd for cmd in core.commands() if isinstance(cmd, Submit)]


def keys(arrays: list[SubmitArray]) -> list[tuple[Any, ...]]:
    return [array.keys for array in arrays]


def test_mapped_task_becomes_one_array_with_the_shared_tags() -> None:
    arrays, singles = group_submits(
        due(*(request(map_index=i) for i in range(12))), min_size=10, workloads_key=WORKLOADS_KEY
    )
    assert singles == []
    assert keys(arrays) == [tuple(range(12))]
    array = arrays[0]
    assert array.request["jobName"] == "airflow-etl-load"
    # map_index differs per child, so the array cannot carry it; everything shared stays.
    assert array.request["tags"] == {
        "dag_id": "etl",
        "task_id": "load",
        "run_id": "manual__1",
        "try_number": "1",
        "submission": "sub0-array",
    }
    # Its own: the lookup for child 0's SubmitJob, by child 0's value, never finds the array.
    assert array.submission == "sub0-array"
    assert array.submissions == tuple(f"sub{i}" for i in range(12))
    assert array.submission not in array.submissions
    assert array.workloads[3] == '{"task": "load", "map": 3}'
    assert WORKLOADS_KEY not in array.request
    sent = copy.deepcopy(array.request)
    sent["containerOverrides"]["command"] = ["python", "-m", "airflow_aws_batch.launch", "file:///x"]
    sent["arrayProperties"] = {"size": 12}
    botocore.validate.validate_parameters(sent, SUBMIT_JOB.input_shape)


@pytest.mark.parametrize(
    ("requests", "min_size", "expected_arrays", "expected_singles"),
    [
        pytest.param([request(map_index=i) for i in range(9)], 10, [], list(range(9)), id="below-min-size"),
        pytest.param([request(map_index=i) for i in range(10)], 10, [tuple(range(10))], [], id="at-min-size"),
        pytest.param([request(map_index=i) for i in range(12)], 0, [], list(range(12)), id="zero-turns-off"),
        pytest.param(
            [request(map_index=i) for i in range(3)], 1, [(0, 1, 2)], [], id="min-size-below-two-is-two"
        ),
        pytest.param([request()], 1, [], [0], id="never-an-array-of-one"),
        pytest.param(
            [request(task_id=f"t{i % 2}", map_index=i) for i in range(4)],
            2,
            [(0, 2), (1, 3)],
            [],
            id="an-array-is-one-task",
        ),
        pytest.param(
            [request(dag_id=f"d{i % 2}", map_index=i) for i in range(4)],
            2,
            [(0, 2), (1, 3)],
            [],
            id="an-array-is-one-dag",
        ),
        pytest.param(
            [request(map_index=i, try_number=1 + i % 2) for i in range(6)],
            3,
            [(0, 2, 4), (1, 3, 5)],
            [],
            id="try-number-splits-groups",
        ),
        pytest.param(
            [
                request(
                    map_index=i,
                    executor_config={
                        "containerOverrides": {
                            "resourceRequirements": [{"type": "MEMORY", "value": str(1024 * (1 + i % 2))}]
                        }
                    },
                )
                for i in range(6)
            ],
            3,
            [(0, 2, 4), (1, 3, 5)],
            [],
            id="executor-config-splits-groups",
        ),
        pytest.param(
            [request(map_index=i, executor_config={"jobQueue": f"q{i % 2}"}) for i in range(5)],
            3,
            [(0, 2, 4)],
            [1, 3],
            id="other-queue-too-few",
        ),
        pytest.param(
            [request(map_index=i, executor_config={"tags": {"cost": str(i % 2)}}) for i in range(4)],
            2,
            [(0, 2), (1, 3)],
            [],
            id="user-tags-split-groups",
        ),
    ],
)
def test_grouping(
    requests: list[dict[str, Any]],
    min_size: int,
    expected_arrays: list[tuple[int, ...]],
    expected_singles: list[int],
) -> None:
    arrays, singles = group_submits(due(*requests), min_size=min_size, workloads_key=WORKLOADS_KEY)
    assert keys(arrays) == expected_arrays
    assert [s.key for s in singles] == expected_singles


def test_size_cap_splits_and_leaves_a_short_tail_single() -> None:
    template = due(request(map_index=0))[0]
    submits = []
    for i in range(ARRAY_MAX_CHILDREN + 12):
        req = copy.deepcopy(template.request)
        req["tags"]["map_index"] = str(i)
        req["tags"]["submission"] = f"s{i}"
        submits.append(Submit(key=i, request=req))
    arrays, singles = group_submits(submits, min_size=20, workloads_key=WORKLOADS_KEY)
    assert [len(a.keys) for a in arrays] == [ARRAY_MAX_CHILDREN]
    assert [s.key for s in singles] == list(range(ARRAY_MAX_CHILDREN, ARRAY_MAX_CHILDREN + 12))
    arrays, singles = group_submits(submits, min_size=10, max_size=4000, workloads_key=WORKLOADS_KEY)
    assert [len(a.keys) for a in arrays] == [4000, 4000, 2012]
    assert singles == []


def test_without_a_workload_store_nothing_groups() -> None:
    inline = [
        build_submit_job_request(
            CONFIG,
            command=["python", "-m", "x", "--json-string", "{}"],
            dag_id="etl",
            task_id="load",
            run_id="manual__1",
            try_number=1,
            map_index=i,
            queue="default",
            executor_config=None,
        )
        for i in range(12)
    ]
    arrays, singles = group_submits(due(*inline), min_size=10, workloads_key=WORKLOADS_KEY)
    assert arrays == []
    assert [s.key for s in singles] == list(range(12))


def test_retries_and_lookups_go_out_alone() -> None:
    submits = due(*(request(map_index=i) for i in range(12)))
    submits[0] = Submit(key=0, request=submits[0].request, lookup_after_ms=1, lookup_submissions=("x",))
    arrays, singles = group_submits(
        submits, min_size=10, workloads_key=WORKLOADS_KEY, eligible=lambda s: s.key != 1
    )
    assert keys(arrays) == [tuple(range(2, 12))]
    assert [s.key for s in singles] == [0, 1]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(["airflow-etl-load"] * 3, "airflow-etl-load", id="equal"),
        pytest.param(["airflow-etl-load", "airflow-etl-load_more"], "airflow-etl", id="cut-to-a-part"),
        pytest.param(["airflow-etl-a", "airflow-etl-b"], "airflow-etl", id="different-tasks"),
        pytest.param(["a1", "b1"], "airflow-array", id="nothing-shared"),
        pytest.param(["etl", "etlx"], "airflow-array", id="no-whole-part"),
    ],
)
def test_array_job_name(names: list[str], expected: str) -> None:
    assert array_job_name(names) == expected


@pytest.mark.parametrize(
    ("job_id", "parent"),
    [
        pytest.param("abc:3", "abc", id="child"),
        pytest.param("abc", None, id="single"),
        pytest.param("abc:x", None, id="not-an-index"),
    ],
)
def test_parent_of(job_id: str, parent: str | None) -> None:
    assert parent_of(job_id) == parent


WANTED = TryId("etl", "load", "manual__1", 4, 2)


@pytest.mark.parametrize(
    ("tags", "adopted"),
    [
        pytest.param({"dag_id": "etl", "task_id": "load", "try_number": "2"}, True, id="shared-tags-match"),
        pytest.param({"dag_id": "etl", "try_number": "1"}, False, id="stale-try"),
        pytest.param({"dag_id": "other", "try_number": "2"}, False, id="other-dag"),
        pytest.param({}, True, id="untagged-trusted-by-id"),
    ],
)
def test_array_child_adopted_by_id_only_when_its_shared_tags_name_this_try(
    tags: dict[str, str], adopted: bool
) -> None:
    assert is_job_of(tags, WANTED, "dep", deployment_required=False) is adopted
    assert not is_job_of({**tags, "deployment": "dep"}, WANTED, "dep", deployment_required=True)


def test_keys_known_ahead_are_used_and_the_others_computed() -> None:
    """The executor computes grouping keys on its intake thread and passes them in; a submit whose
    key is not known (one held over from an earlier heartbeat) gets it computed the same way."""
    submits = due(*(request(map_index=i) for i in range(12)))
    known = {s.key: group_key(s.request, WORKLOADS_KEY) for s in submits[:6]}
    arrays, singles = group_submits(
        submits, min_size=10, workloads_key=WORKLOADS_KEY, key_of=lambda s: known.get(s.key)
    )
    assert singles == []
    assert keys(arrays) == [tuple(range(12))]
    # A given key is trusted: keys that differ split what would otherwise be one array.
    split = {s.key: (b"a" if s.key < 6 else b"b") for s in submits}
    arrays, singles = group_submits(
        submits, min_size=5, workloads_key=WORKLOADS_KEY, key_of=lambda s: split[s.key]
    )
    assert keys(arrays) == [tuple(range(6)), tuple(range(6, 12))]
