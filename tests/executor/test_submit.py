"""SubmitJob requests built for one workload: the exact dict, names, queues, tags, errors, limits."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import botocore.session
import botocore.validate
import pytest
from airflow.executors import workloads
from airflow.executors.workloads import BundleInfo, ExecuteTask

from airflow_aws_batch import compat, shapes
from airflow_aws_batch.config import ExecutorConfig, parse_options
from airflow_aws_batch.submit import (
    MAX_CONTAINER_OVERRIDES_CHARS,
    ExecConfigError,
    build_callback_submit_job_request,
    build_submit_job_request,
    job_name_for,
    workload_command,
)

BATCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
SUBMIT_JOB = botocore.session.get_session().get_service_model("batch").operation_model("SubmitJob")


def make_config(**options: str) -> ExecutorConfig:
    raw: dict[str, str | None] = {
        "job_queue": "default-q",
        "job_definition": "airflow-task",
        "job_name": "airflow",
        "region_name": "us-east-1",
    }
    raw.update(options)
    return parse_options(raw)


def build(config: ExecutorConfig | None = None, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "command": ["python", "-m", "x"],
        "dag_id": "etl",
        "task_id": "load",
        "run_id": "manual__2026-01-01T00:00:00+00:00",
        "try_number": 2,
        "map_index": -1,
        "queue": "default",
        "executor_config": None,
    }
    kwargs.update(overrides)
    return build_submit_job_request(config or make_config(), **kwargs)


def assert_botocore_accepts(request: dict[str, Any]) -> None:
    # botocore's own validator is an independent check that boto3 would send this request.
    botocore.validate.validate_parameters(request, SUBMIT_JOB.input_shape)


@pytest.mark.parametrize(
    ("prefix", "dag_id", "task_id", "expected"),
    [
        pytest.param("airflow", "etl", "load", "airflow-etl-load", id="plain"),
        pytest.param("airflow", "etl", "group.load", "airflow-etl-group_load", id="task-group-dot"),
        pytest.param("my job", "d@g", "t!", "my_job-d_g-t_", id="spaces-and-symbols"),
        pytest.param("_x", "dag", "t", "x-dag-t", id="leading-underscore-stripped"),
        pytest.param("", "dag", "t", "dag-t", id="empty-prefix"),
        pytest.param("airflow", "dåg", "tâsk", "airflow-d_g-t_sk", id="non-ascii"),
        pytest.param("", "", "", "airflow", id="nothing-left"),
    ],
)
def test_job_name_for(prefix: str, dag_id: str, task_id: str, expected: str) -> None:
    assert job_name_for(prefix, dag_id, task_id) == expected


@pytest.mark.parametrize(
    ("task_a", "task_b"),
    [
        pytest.param("t" * 200 + "a", "t" * 200 + "b", id="differ-after-cut"),
        pytest.param("x" * 300, "x" * 301, id="differ-in-length"),
    ],
)
def test_long_job_names_are_cut_unique_and_deterministic(task_a: str, task_b: str) -> None:
    name_a = job_name_for("airflow", "dag", task_a)
    name_b = job_name_for("airflow", "dag", task_b)
    for name in (name_a, name_b):
        assert len(name) == 128
        assert BATCH_NAME.fullmatch(name)
    assert name_a != name_b
    assert name_a == job_name_for("airflow", "dag", task_a)


def test_request_is_exactly_what_submit_job_gets() -> None:
    request = build()
    assert request == {
        "jobName": "airflow-etl-load",
        "jobQueue": "default-q",
        "jobDefinition": "airflow-task",
        "containerOverrides": {
            "command": ["python", "-m", "x"],
            "environment": [{"name": "AIRFLOW_IS_EXECUTOR_CONTAINER", "value": "true"}],
        },
        "tags": {
            "dag_id": "etl",
            "task_id": "load",
            "run_id": "manual__2026-01-01T00:00:00+00:00",
            "try_number": "2",
            "map_index": "-1",
        },
        "propagateTags": True,
        "retryStrategy": {"attempts": 1},
    }
    assert_botocore_accepts(request)


def test_jobs_carry_the_deployment_tag_when_it_is_known() -> None:
    request = build(make_config(deployment_id="analytics-prod"))
    assert request["tags"]["deployment"] == "analytics-prod"
    assert "deployment" not in build()["tags"]


@pytest.mark.parametrize(
    ("executor_config", "path"),
    [
        pytest.param({"arrayProperties": {"size": 2}}, "arrayProperties", id="array"),
        pytest.param({"dependsOn": [{"jobId": "j"}]}, "dependsOn", id="depends-on"),
        pytest.param({"retryStrategy": {"attempts": 2}}, "retryStrategy.attempts", id="batch-retries"),
        pytest.param({"nodeOverrides": {"numNodes": 2}}, "nodeOverrides", id="multi-node"),
    ],
)
def test_executor_config_cannot_make_a_try_more_than_one_job(
    executor_config: dict[str, Any], path: str
) -> None:
    with pytest.raises(ExecConfigError) as raised:
        build(executor_config=executor_config)
    assert raised.value.path == path


def test_a_job_definition_retry_strategy_is_overridden_to_one_attempt() -> None:
    request = build(
        executor_config={"retryStrategy": {"evaluateOnExit": [{"onReason": "*", "action": "EXIT"}]}}
    )
    assert request["retryStrategy"] == {
        "attempts": 1,
        "evaluateOnExit": [{"onReason": "*", "action": "EXIT"}],
    }


@pytest.mark.parametrize(
    ("queue_map", "airflow_queue", "executor_config", "expected"),
    [
        pytest.param("{}", "default", None, "default-q", id="unmapped-uses-job_queue"),
        pytest.param('{"gpu": "gpu-q"}', "gpu", None, "gpu-q", id="mapped"),
        pytest.param('{"gpu": "gpu-q"}', "cpu", None, "default-q", id="other-queue-unmapped"),
        pytest.param('{"gpu": "gpu-q"}', None, None, "default-q", id="no-airflow-queue"),
        pytest.param('{"gpu": "gpu-q"}', "gpu", {"jobQueue": "exec-q"}, "exec-q", id="executor_config-wins"),
    ],
)
def test_job_queue_choice(
    queue_map: str, airflow_queue: str | None, executor_config: dict[str, Any] | None, expected: str
) -> None:
    request = build(make_config(queue_map=queue_map), queue=airflow_queue, executor_config=executor_config)
    assert request["jobQueue"] == expected


def test_submit_job_kwargs_queue_is_the_configured_queue() -> None:
    config = make_config(submit_job_kwargs='{"jobQueue": "kw-q"}')
    assert build(config)["jobQueue"] == "kw-q"


@pytest.mark.parametrize(
    ("submit_job_kwargs", "executor_config", "path", "expected"),
    [
        pytest.param(
            '{"containerOverrides": {"vcpus": 1, "environment": [{"name": "A", "value": "1"}]}}',
            {"containerOverrides": {"memory": 512}},
            "containerOverrides",
            {
                "vcpus": 1,
                "memory": 512,
                "environment": [
                    {"name": "A", "value": "1"},
                    {"name": "AIRFLOW_IS_EXECUTOR_CONTAINER", "value": "true"},
                ],
                "command": ["python", "-m", "x"],
            },
            id="dicts-merge-key-by-key",
        ),
        pytest.param(
            '{"containerOverrides": {"environment": [{"name": "A", "value": "1"}]}}',
            {"containerOverrides": {"environment": [{"name": "B", "value": "2"}]}},
            "containerOverrides.environment",
            [{"name": "B", "value": "2"}, {"name": "AIRFLOW_IS_EXECUTOR_CONTAINER", "value": "true"}],
            id="lists-replace",
        ),
        pytest.param(
            '{"timeout": {"attemptDurationSeconds": 600}}',
            {"timeout": {"attemptDurationSeconds": 60}},
            "timeout",
            {"attemptDurationSeconds": 60},
            id="scalars-replace",
        ),
        pytest.param(
            '{"timeout": {"attemptDurationSeconds": 600}}',
            {},
            "timeout",
            {"attemptDurationSeconds": 600},
            id="kwargs-kept",
        ),
        pytest.param("{}", {"jobName": "custom"}, "jobName", "custom-etl-load", id="jobName-is-a-prefix"),
        pytest.param(
            "{}",
            {
                "containerOverrides": {
                    "environment": [{"name": "AIRFLOW_IS_EXECUTOR_CONTAINER", "value": "no"}]
                }
            },
            "containerOverrides.environment",
            [{"name": "AIRFLOW_IS_EXECUTOR_CONTAINER", "value": "true"}],
            id="our-env-var-wins",
        ),
        pytest.param(
            '{"tags": {"team": "data", "dag_id": "spoof"}}',
            {"tags": {"cost": "c1"}},
            "tags",
            {
                "team": "data",
                "cost": "c1",
                "dag_id": "etl",
                "task_id": "load",
                "run_id": "manual__2026-01-01T00:00:00+00:00",
                "try_number": "2",
                "map_index": "-1",
            },
            id="tags-merge-ours-win",
        ),
        pytest.param(
            '{"propagateTags": false}', {"propagateTags": False}, "propagateTags", True, id="propagate"
        ),
    ],
)
def test_recursive_merge(
    submit_job_kwargs: str, executor_config: dict[str, Any], path: str, expected: Any
) -> None:
    request = build(make_config(submit_job_kwargs=submit_job_kwargs), executor_config=executor_config)
    value: Any = request
    for key in path.split("."):
        value = value[key]
    assert value == expected
    assert_botocore_accepts(request)


def test_executor_config_is_not_modified() -> None:
    executor_config = {"containerOverrides": {"environment": [{"name": "B", "value": "2"}]}}
    snapshot = json.dumps(executor_config)
    build(executor_config=executor_config)
    assert json.dumps(executor_config) == snapshot


@pytest.mark.parametrize(
    ("executor_config", "path", "expected", "found"),
    [
        pytest.param(["not", "a", "dict"], "", "an object of SubmitJob parameters", "list", id="not-a-dict"),
        pytest.param(
            {"pod_override": {}},
            "pod_override",
            "a key of SubmitJobRequest",
            "an unknown key",
            id="unknown-key",
        ),
        pytest.param(
            {"containerOverrides": {"cpu": 1}},
            "containerOverrides.cpu",
            "a key of ContainerOverrides",
            "an unknown key",
            id="unknown-nested-key",
        ),
        pytest.param(
            {"ContainerOverrides": {}},
            "ContainerOverrides",
            "did you mean 'containerOverrides'",
            "an unknown key",
            id="unknown-key-with-hint",
        ),
        pytest.param(
            {"containerOverrides": {"memory": "2GB"}},
            "containerOverrides.memory",
            "an integer",
            "'2GB' (str)",
            id="wrong-type",
        ),
        pytest.param(
            {"containerOverrides": []}, "containerOverrides", "an object", "[] (list)", id="wrong-container"
        ),
        pytest.param(
            {"propagateTags": "yes"}, "propagateTags", "true or false", "'yes' (str)", id="wrong-bool"
        ),
        pytest.param({"tags": {"k": 1}}, "tags.k", "a string", "1 (int)", id="tag-value-type"),
        pytest.param(
            {"retryStrategy": {"evaluateOnExit": [{"action": "retry-now"}]}},
            "retryStrategy.evaluateOnExit[0].action",
            "one of: RETRY, EXIT",
            "'retry-now'",
            id="enum",
        ),
        pytest.param(
            {"containerOverrides": {"command": ["echo", "hi"]}},
            "containerOverrides.command",
            "the executor sets the command",
            "['echo', 'hi']",
            id="command",
        ),
        pytest.param(
            {"eksPropertiesOverride": {"podProperties": {}}},
            "eksPropertiesOverride",
            "is a container job definition, which takes no eksPropertiesOverride",
            "eksPropertiesOverride",
            id="eks-on-container-definition",
        ),
        pytest.param(
            {"tags": {f"t{i}": "v" for i in range(46)}},
            "tags",
            "at most 50 entries",
            "51 entries",
            id="too-many-tags-with-ours",
        ),
        pytest.param(
            {"containerOverrides": {"environment": [{"name": "BIG", "value": "x" * 9000}]}},
            "containerOverrides",
            f"at most {MAX_CONTAINER_OVERRIDES_CHARS} characters",
            "characters",
            id="container-overrides-limit",
        ),
        pytest.param(
            {"parameters": {f"p{i}": "x" * 1000 for i in range(31)}},
            "",
            "at most 30720 bytes",
            "bytes",
            id="request-size-limit",
        ),
    ],
)
def test_bad_executor_config(executor_config: Any, path: str, expected: str, found: str) -> None:
    with pytest.raises(ExecConfigError) as raised:
        build(executor_config=executor_config)
    error = raised.value
    assert error.path == path
    assert expected in error.expected
    assert found in error.found
    where = f"executor_config.{path}" if path else "executor_config"
    assert str(error).startswith(f"{where}: expected ")


def test_callback_request() -> None:
    callback_id = "0190d5f0-0000-7000-8000-000000000001"
    request = build_callback_submit_job_request(
        make_config(queue_map='{"alerts": "alerts-q"}'),
        command=["python", "-m", "cb"],
        callback_id=callback_id,
        callback_path="my_company.callbacks.notify_slack",
        dag_id="etl",
        run_id="scheduled__2026-01-01T00:00:00+00:00",
        queue="alerts",
    )
    assert request["jobName"] == "airflow-etl-callback_notify_slack"
    assert request["jobQueue"] == "alerts-q"
    assert request["containerOverrides"]["command"] == ["python", "-m", "cb"]
    assert request["tags"] == {
        "callback_id": callback_id,
        "callback_path": "my_company.callbacks.notify_slack",
        "dag_id": "etl",
        "run_id": "scheduled__2026-01-01T00:00:00+00:00",
    }
    assert_botocore_accepts(request)


def test_callback_without_path_or_dag_is_named_from_its_id() -> None:
    request = build_callback_submit_job_request(
        make_config(), command=["c"], callback_id="abc-123", callback_path=None
    )
    assert request["jobName"] == "airflow-callback-callback_abc-123"
    assert request["tags"] == {"callback_id": "abc-123"}


#: ``TaskInstanceDTO`` from Airflow 3.2, ``TaskInstance`` in 3.1.
TaskInstanceDTO: Any = getattr(workloads, "TaskInstanceDTO", None) or workloads.TaskInstance


def _task_workload() -> ExecuteTask:
    ti = TaskInstanceDTO(
        id=uuid.uuid4(),
        task_id="load",
        dag_id="etl",
        run_id="manual__2026-01-01T00:00:00+00:00",
        try_number=1,
        dag_version_id=uuid.uuid4(),
        pool_slots=1,
        priority_weight=1,
        queue="default",
        executor_config={"containerOverrides": {"memory": 1024}},
    )
    return ExecuteTask(
        ti=ti,
        dag_rel_path=Path("etl.py"),
        token="tok",
        bundle_info=BundleInfo(name="dags-folder"),
        log_path="dag_id=etl/run_id=x/task_id=load/attempt=1.log",
    )


def test_workload_command_for_a_real_execute_task() -> None:
    workload = _task_workload()
    command = workload_command(workload)
    assert command[:4] == ["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string"]
    # What the container parses back is the same workload.
    assert ExecuteTask.model_validate_json(command[4]) == workload.model_copy(
        update={"ti": workload.ti.model_copy(update={"executor_config": None})}
    )
    request = build(
        command=command,
        dag_id=workload.ti.dag_id,
        task_id=workload.ti.task_id,
        run_id=workload.ti.run_id,
        try_number=workload.ti.try_number,
        map_index=workload.ti.map_index,
        queue=workload.ti.queue,
        executor_config=workload.ti.executor_config,
    )
    assert request["containerOverrides"]["memory"] == 1024
    assert request["containerOverrides"]["command"] == command
    assert_botocore_accepts(request)


@pytest.mark.skipif(not compat.QUEUES_CALLBACKS, reason="Airflow 3.1 has no callback workloads")
def test_workload_command_for_a_real_execute_callback() -> None:
    from airflow.executors.workloads import ExecuteCallback
    from airflow.executors.workloads.callback import CallbackDTO, CallbackFetchMethod

    workload = ExecuteCallback(
        callback=CallbackDTO(
            id=str(uuid.uuid4()),
            fetch_method=CallbackFetchMethod.IMPORT_PATH,
            data={"path": "my_company.callbacks.notify", "kwargs": {}},
        ),
        dag_rel_path=Path("etl.py"),
        token="tok",
        bundle_info=BundleInfo(name="dags-folder"),
        log_path="executor_callbacks/etl/r/1",
    )
    command = workload_command(workload)
    assert ExecuteCallback.model_validate_json(command[4]) == workload


@pytest.mark.parametrize(
    ("fragment", "partial", "problem_paths"),
    [
        pytest.param({"jobName": "n", "jobQueue": "q", "jobDefinition": "d"}, False, [], id="minimal-valid"),
        pytest.param({}, False, ["jobName", "jobQueue", "jobDefinition"], id="required-members"),
        pytest.param({}, True, [], id="partial-skips-required"),
        pytest.param({"dependsOn": [{"jobId": 5}]}, True, ["dependsOn[0].jobId"], id="list-item"),
        pytest.param({"arrayProperties": {"size": 1.5}}, True, ["arrayProperties.size"], id="float-for-int"),
        pytest.param(
            {"retryStrategy": {"evaluateOnExit": [{}]}},
            True,
            ["retryStrategy.evaluateOnExit[0].action"],
            id="nested-required",
        ),
    ],
)
def test_shape_validator(fragment: dict[str, Any], partial: bool, problem_paths: list[str]) -> None:
    assert [p.path for p in shapes.validate(fragment, partial=partial)] == problem_paths


def test_token_expiry_is_read_from_the_workload_jwt() -> None:
    import base64

    from airflow_aws_batch.submit import token_expires_at

    def jwt(claims: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return f"eyJhbGciOiJIUzI1NiJ9.{body}.c2ln"

    assert token_expires_at(jwt({"sub": "ti", "exp": 1_900_000_000})) == 1_900_000_000.0
    assert token_expires_at(jwt({"sub": "ti"})) is None
    assert token_expires_at("token") is None
    assert token_expires_at("a.!!!.c") is None
