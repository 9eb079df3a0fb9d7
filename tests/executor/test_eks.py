"""EKS job definitions: where the task's command goes, what is refused, how EKS jobs are read."""

from __future__ import annotations

from typing import Any

import botocore.session
import botocore.validate
import pytest

from airflow_aws_batch import eks
from airflow_aws_batch.aws.shapes import JobDefinitionInfo, JobDetail
from airflow_aws_batch.config import ConfigError, ExecutorConfig, parse_options
from airflow_aws_batch.eks import DefinitionInfo, DefinitionKind, DefinitionKinds
from airflow_aws_batch.health import definition_item
from airflow_aws_batch.submit import ExecConfigError, build_submit_job_request, finish_request

SUBMIT_JOB = botocore.session.get_session().get_service_model("batch").operation_model("SubmitJob")
COMMAND = ["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string", "{}"]
OUR_ENV = {"name": "AIRFLOW_IS_EXECUTOR_CONTAINER", "value": "true"}
EKS_MAIN = DefinitionInfo(DefinitionKind.EKS, first_container="main", label="eks-def:3")
EKS_UNNAMED = DefinitionInfo(DefinitionKind.EKS, label="eks-def:3")
CONTAINER = DefinitionInfo(DefinitionKind.CONTAINER, label="airflow-task:1")


def make_config(**options: str) -> ExecutorConfig:
    raw: dict[str, str | None] = {
        "job_queue": "q",
        "job_definition": "airflow-task",
        "job_name": "airflow",
        "region_name": "us-east-1",
    }
    raw.update(options)
    return parse_options(raw)


def build(
    info: DefinitionInfo | None, executor_config: Any = None, config: ExecutorConfig | None = None
) -> dict[str, Any]:
    return build_submit_job_request(
        config or make_config(),
        command=COMMAND,
        dag_id="etl",
        task_id="load",
        run_id="r1",
        try_number=1,
        map_index=-1,
        queue=None,
        executor_config=executor_config,
        definition_kind=lambda _name: info,
    )


def test_eks_definition_gets_command_env_and_resources_in_the_first_container() -> None:
    request = build(
        EKS_MAIN,
        {
            "eksPropertiesOverride": {
                "podProperties": {
                    "containers": [
                        {
                            "env": [
                                {"name": "STAGE", "value": "prod"},
                                {"name": OUR_ENV["name"], "value": "x"},
                            ],
                            "resources": {
                                "limits": {"cpu": "1", "memory": "2048Mi"},
                                "requests": {"cpu": "0.5"},
                            },
                        }
                    ]
                }
            }
        },
    )
    assert "containerOverrides" not in request
    assert request["eksPropertiesOverride"] == {
        "podProperties": {
            "containers": [
                {
                    "name": "main",
                    "command": COMMAND,
                    "env": [{"name": "STAGE", "value": "prod"}, OUR_ENV],
                    "resources": {"limits": {"cpu": "1", "memory": "2048Mi"}, "requests": {"cpu": "0.5"}},
                }
            ]
        }
    }
    assert request["retryStrategy"] == {"attempts": 1}
    assert eks.PENDING_KEY not in request
    botocore.validate.validate_parameters(request, SUBMIT_JOB.input_shape)


def test_eks_definition_without_container_names_and_no_executor_config() -> None:
    request = build(EKS_UNNAMED)
    assert request["eksPropertiesOverride"] == {
        "podProperties": {"containers": [{"command": COMMAND, "env": [OUR_ENV]}]}
    }


def test_a_user_named_first_container_keeps_its_name_and_sidecars_keep_their_overrides() -> None:
    sidecar = {"name": "proxy", "command": ["envoy"], "env": [{"name": "A", "value": "1"}]}
    request = build(
        EKS_MAIN, {"eksPropertiesOverride": {"podProperties": {"containers": [{"name": "worker"}, sidecar]}}}
    )
    containers = request["eksPropertiesOverride"]["podProperties"]["containers"]
    assert containers[0] == {"name": "worker", "command": COMMAND, "env": [OUR_ENV]}
    assert containers[1] == sidecar


def test_empty_overrides_of_the_other_kind_are_dropped() -> None:
    # The Amazon provider's configurations carry containerOverrides {"command": []}, left as {} at load.
    config = make_config(submit_job_kwargs='{"containerOverrides": {"command": []}}')
    request = build(EKS_UNNAMED, config=config)
    assert "containerOverrides" not in request
    assert request["eksPropertiesOverride"]["podProperties"]["containers"][0]["command"] == COMMAND
    assert "eksPropertiesOverride" not in build(CONTAINER, {"eksPropertiesOverride": {}})


def test_container_definition_is_unchanged() -> None:
    request = build(CONTAINER)
    assert request["containerOverrides"] == {"command": COMMAND, "environment": [OUR_ENV]}
    assert "eksPropertiesOverride" not in request


@pytest.mark.parametrize(
    ("info", "executor_config", "path", "expected"),
    [
        pytest.param(
            EKS_MAIN,
            {"eksPropertiesOverride": {"podProperties": {"containers": [{"command": ["sh"]}]}}},
            "eksPropertiesOverride.podProperties.containers[0].command",
            "the executor sets the command",
            id="command",
        ),
        pytest.param(
            EKS_MAIN,
            {"eksPropertiesOverride": {"podProperties": {"containers": [{"args": ["-x"]}]}}},
            "eksPropertiesOverride.podProperties.containers[0].args",
            "no args",
            id="args",
        ),
        pytest.param(
            EKS_MAIN,
            {"containerOverrides": {"vcpus": 2}},
            "containerOverrides",
            "eks-def:3 is an EKS job definition, which takes no containerOverrides",
            id="container-overrides-on-eks",
        ),
        pytest.param(
            CONTAINER,
            {"eksPropertiesOverride": {"podProperties": {"containers": [{"env": []}]}}},
            "eksPropertiesOverride",
            "airflow-task:1 is a container job definition, which takes no eksPropertiesOverride",
            id="eks-override-on-container",
        ),
        pytest.param(
            EKS_MAIN,
            {"containerOverrides": {"vcpus": 2}, "eksPropertiesOverride": {"podProperties": {}}},
            "eksPropertiesOverride",
            "not both",
            id="both",
        ),
        pytest.param(
            EKS_MAIN,
            {
                "eksPropertiesOverride": {
                    "podProperties": {"containers": [{"resources": {"limits": {"memory": "2G"}}}]}
                }
            },
            "eksPropertiesOverride.podProperties.containers[0].resources.limits.memory",
            "whole MiB with the suffix Mi",
            id="memory-unit",
        ),
        pytest.param(
            EKS_MAIN,
            {
                "eksPropertiesOverride": {
                    "podProperties": {"containers": [{"resources": {"requests": {"cpu": "0.3"}}}]}
                }
            },
            "eksPropertiesOverride.podProperties.containers[0].resources.requests.cpu",
            "a multiple of 0.25",
            id="cpu-quarter",
        ),
        pytest.param(
            EKS_MAIN,
            {
                "eksPropertiesOverride": {
                    "podProperties": {"containers": [{"resources": {"limits": {"vcpu": "1"}}}]}
                }
            },
            "eksPropertiesOverride.podProperties.containers[0].resources.limits.vcpu",
            "a resource of cpu, memory, nvidia.com/gpu",
            id="unknown-resource",
        ),
        pytest.param(
            EKS_MAIN,
            {
                "eksPropertiesOverride": {
                    "podProperties": {
                        "containers": [
                            {"resources": {"limits": {"memory": "1024Mi"}, "requests": {"memory": "512Mi"}}}
                        ]
                    }
                }
            },
            "eksPropertiesOverride.podProperties.containers[0].resources.limits.memory",
            "the same value as requests.memory",
            id="memory-limit-differs",
        ),
        pytest.param(
            EKS_MAIN,
            {
                "eksPropertiesOverride": {
                    "podProperties": {
                        "containers": [{"resources": {"limits": {"cpu": "0.5"}, "requests": {"cpu": "1"}}}]
                    }
                }
            },
            "eksPropertiesOverride.podProperties.containers[0].resources.limits.cpu",
            "at least requests.cpu",
            id="cpu-limit-below-request",
        ),
        pytest.param(
            EKS_MAIN,
            {"eksPropertiesOverride": {"podProperties": {"containers": [{"env": [{"value": "no name"}]}]}}},
            "eksPropertiesOverride.podProperties.containers[0].env[0].name",
            "required",
            id="botocore-model",
        ),
        pytest.param(
            DefinitionInfo(DefinitionKind.EKS, first_container_args=True, label="eks-def:4"),
            None,
            "jobDefinition",
            "remove args from eks-def:4",
            id="definition-args",
        ),
        pytest.param(
            DefinitionInfo(DefinitionKind.OTHER, label="mnp:1"),
            None,
            "jobDefinition",
            "a container or EKS job definition",
            id="multi-node-definition",
        ),
    ],
)
def test_refused(info: DefinitionInfo, executor_config: Any, path: str, expected: str) -> None:
    with pytest.raises(ExecConfigError) as raised:
        build(info, executor_config)
    assert raised.value.path == path
    assert expected in raised.value.expected
    assert str(raised.value).startswith(f"executor_config.{path}: expected")


def test_unknown_kind_waits_for_the_submit_thread() -> None:
    overlay = {
        "eksPropertiesOverride": {"podProperties": {"containers": [{"env": [{"name": "A", "value": "1"}]}]}}
    }
    request = build(None, overlay)
    assert request[eks.PENDING_KEY] == {"command": COMMAND, "environment": [OUR_ENV]}
    assert "command" not in request["eksPropertiesOverride"]["podProperties"]["containers"][0]

    placed = finish_request(request, EKS_MAIN)
    assert eks.PENDING_KEY not in placed
    assert placed["eksPropertiesOverride"]["podProperties"]["containers"][0] == {
        "name": "main",
        "env": [{"name": "A", "value": "1"}, OUR_ENV],
        "command": COMMAND,
    }
    assert eks.PENDING_KEY in request, "the stored request is left as it was, for a later attempt"
    botocore.validate.validate_parameters(placed, SUBMIT_JOB.input_shape)

    # The same request on a definition that turns out to be a container one fails with a clear reason.
    with pytest.raises(
        ExecConfigError, match="is a container job definition, which takes no eksPropertiesOverride"
    ):
        finish_request(request, CONTAINER)


def test_unknown_kind_without_overrides_is_placed_for_either_kind() -> None:
    request = build(None)
    assert "containerOverrides" not in request and "eksPropertiesOverride" not in request
    assert finish_request(request, None)["containerOverrides"] == {
        "command": COMMAND,
        "environment": [OUR_ENV],
    }
    assert finish_request(request, EKS_UNNAMED)["eksPropertiesOverride"] == {
        "podProperties": {"containers": [{"command": COMMAND, "env": [OUR_ENV]}]}
    }


def test_limits_are_checked_before_the_kind_is_known() -> None:
    big = [{"name": f"V{i}", "value": "x" * 100} for i in range(90)]
    with pytest.raises(ExecConfigError, match="at most 8192 characters"):
        build(None, {"eksPropertiesOverride": {"podProperties": {"containers": [{"env": big}]}}})


@pytest.mark.parametrize(
    ("kwargs", "path", "expected"),
    [
        pytest.param(
            '{"eksPropertiesOverride": {"podProperties": {"containers": [{"command": ["x"]}]}}}',
            "eksPropertiesOverride.podProperties.containers[0].command",
            "the executor sets the command",
            id="command",
        ),
        pytest.param(
            '{"eksPropertiesOverride": {"podProperties": {"containers": '
            '[{"resources": {"limits": {"memory": "1G"}}}]}}}',
            "eksPropertiesOverride.podProperties.containers[0].resources.limits.memory",
            "Mi",
            id="memory",
        ),
    ],
)
def test_submit_job_kwargs_eks_override_checked_at_start(kwargs: str, path: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_config(submit_job_kwargs=kwargs)
    assert f"submit_job_kwargs, key {path}: expected" in str(raised.value)
    assert expected in str(raised.value)


def test_submit_job_kwargs_eks_resources_reach_every_eks_job() -> None:
    config = make_config(
        submit_job_kwargs='{"eksPropertiesOverride": {"podProperties": {"containers": '
        '[{"resources": {"requests": {"cpu": "1", "memory": "1024Mi"}}}]}}}'
    )
    request = build(EKS_MAIN, config=config)
    assert request["eksPropertiesOverride"]["podProperties"]["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "memory": "1024Mi"}
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {
                "jobDefinitionName": "d",
                "revision": 2,
                "type": "container",
                "eksProperties": {
                    "podProperties": {"containers": [{"name": "main", "image": "i"}, {"image": "s"}]}
                },
            },
            DefinitionInfo(DefinitionKind.EKS, first_container="main", label="d:2"),
            id="eks",
        ),
        pytest.param(
            {
                "jobDefinitionName": "d",
                "revision": 1,
                "type": "container",
                "eksProperties": {"podProperties": {"containers": [{"image": "i", "args": ["-v"]}]}},
            },
            DefinitionInfo(DefinitionKind.EKS, first_container_args=True, label="d:1"),
            id="eks-args",
        ),
        pytest.param(
            {
                "jobDefinitionName": "d",
                "revision": 1,
                "type": "container",
                "containerProperties": {"image": "i"},
            },
            DefinitionInfo(DefinitionKind.CONTAINER, label="d:1"),
            id="container",
        ),
        pytest.param(
            {"jobDefinitionName": "d", "revision": 1, "type": "multinode", "nodeProperties": {}},
            DefinitionInfo(DefinitionKind.OTHER, label="d:1"),
            id="multinode",
        ),
    ],
)
def test_definition_info(raw: dict[str, Any], expected: DefinitionInfo) -> None:
    assert eks.definition_info(raw) == expected


def test_definition_kinds_read_once_and_unknown_not_cached() -> None:
    kinds = DefinitionKinds()
    reads: list[str] = []

    def read(name: str) -> DefinitionInfo | None:
        reads.append(name)
        return EKS_MAIN if name == "eks-def" else None

    assert kinds.ensure("eks-def", read) == EKS_MAIN
    assert kinds.ensure("eks-def", read) == EKS_MAIN
    assert kinds.ensure("missing", read) is None
    assert kinds.ensure("missing", read) is None
    assert reads == ["eks-def", "missing", "missing"]
    assert kinds.get("eks-def") == EKS_MAIN


def test_eks_job_detail_reads_the_first_container_of_the_last_attempt() -> None:
    raw = {
        "jobId": "j1",
        "jobName": "airflow-etl-load",
        "jobQueue": "arn:q",
        "status": "FAILED",
        "statusReason": "Essential container in pod exited",
        "startedAt": 5,
        "eksProperties": {
            "podProperties": {"containers": [{"name": "main", "exitCode": 3}], "podName": "p2"}
        },
        "eksAttempts": [
            {"podName": "p1", "podNamespace": "batch", "containers": [{"name": "main", "exitCode": 137}]},
            {
                "podName": "p2",
                "podNamespace": "batch",
                "containers": [
                    {"name": "main", "exitCode": 3, "reason": "Error"},
                    {"name": "sidecar", "exitCode": 0},
                ],
            },
        ],
        "tags": {"dag_id": "etl"},
    }
    detail = JobDetail.parse(raw)
    assert detail.is_eks
    assert (detail.exit_code, detail.container_reason) == (3, "Error")
    assert detail.pod_names == ("p1", "p2")
    assert detail.pod_namespace == "batch"
    assert detail.log_stream_names == ()
    assert "exitCode: 3" in detail.view().reason()
    assert "container reason: Error" in detail.view().reason()


def test_eks_job_detail_before_any_attempt() -> None:
    detail = JobDetail.parse(
        {
            "jobId": "j",
            "status": "RUNNABLE",
            "eksProperties": {"podProperties": {"containers": [{"name": "m"}]}},
        }
    )
    assert detail.is_eks and detail.exit_code is None and detail.pod_names == ()


@pytest.mark.parametrize(
    ("info", "ok", "text"),
    [
        pytest.param(EKS_MAIN, True, "an EKS job definition: tasks run in container 'main'", id="eks"),
        pytest.param(CONTAINER, True, "a container job definition", id="container"),
        pytest.param(
            DefinitionInfo(DefinitionKind.EKS, first_container_args=True), False, "sets args", id="eks-args"
        ),
        pytest.param(DefinitionInfo(DefinitionKind.OTHER), False, "multi-node or ECS-properties", id="other"),
    ],
)
def test_health_item_names_the_definition_kind(info: DefinitionInfo, ok: bool, text: str) -> None:
    item = definition_item(JobDefinitionInfo("d", "arn:d", 1, "ACTIVE", {}, info))
    assert item.ok is ok
    assert text in item.detail


@pytest.mark.parametrize(
    ("info", "kwargs", "problem"),
    [
        pytest.param(
            CONTAINER,
            '{"eksPropertiesOverride": {"podProperties": {}}}',
            "sets eksPropertiesOverride",
            id="eks-kwargs",
        ),
        pytest.param(
            EKS_MAIN, '{"containerOverrides": {"vcpus": 1}}', "sets containerOverrides", id="container-kwargs"
        ),
        pytest.param(EKS_MAIN, '{"containerOverrides": {"command": []}}', None, id="provider-placeholder"),
        pytest.param(CONTAINER, '{"containerOverrides": {"vcpus": 1}}', None, id="same-kind"),
    ],
)
def test_startup_check_refuses_submit_job_kwargs_of_the_other_kind(
    info: DefinitionInfo, kwargs: str, problem: str | None
) -> None:
    from airflow_aws_batch.health import kwargs_problem

    found = kwargs_problem(
        JobDefinitionInfo("d", "arn:d", 1, "ACTIVE", {}, info), make_config(submit_job_kwargs=kwargs)
    )
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found and "every task would fail" in found
