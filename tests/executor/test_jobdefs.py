"""Per-task job definitions: derivation, naming, validation, the find-or-register cache."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import pytest

from airflow_aws_batch import jobdefs, shapes
from airflow_aws_batch.config import ConfigError, parse_options
from airflow_aws_batch.jobdefs import OVERRIDES_KEY, DerivationError, JobDefinitions, derive, derived_name
from airflow_aws_batch.submit import ExecConfigError, build_submit_job_request

NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")

BASE: dict[str, Any] = {
    "jobDefinitionName": "airflow-task",
    "jobDefinitionArn": "arn:aws:batch:us-east-1:123456789012:job-definition/airflow-task:3",
    "revision": 3,
    "status": "ACTIVE",
    "type": "container",
    "parameters": {},
    "containerProperties": {
        "image": "apache/airflow:3.3.2",
        "vcpus": 1,
        "memory": 2048,
        "environment": [{"name": "A", "value": "1"}],
        "volumes": [],
        "mountPoints": [],
        "linuxParameters": {"initProcessEnabled": True, "sharedMemorySize": 64},
    },
    "tags": {"team": "data"},
    "retryStrategy": {"attempts": 2},
    "platformCapabilities": ["EC2"],
}


def test_the_key_is_no_submit_job_member() -> None:
    assert OVERRIDES_KEY not in shapes.input_members("SubmitJob")


def test_derivation_merges_recursively_and_copies_the_base() -> None:
    derived = derive(
        BASE,
        {
            "image": "python:3.12",
            "linuxParameters": {"sharedMemorySize": 128},
            "environment": [{"name": "B", "value": "2"}],
        },
    )
    assert derived.request == {
        "jobDefinitionName": derived.name,
        "type": "container",
        "containerProperties": {
            "image": "python:3.12",
            "vcpus": 1,
            "memory": 2048,
            # lists replace, dicts merge key by key: the same rules as executor_config over SubmitJob
            "environment": [{"name": "B", "value": "2"}],
            "linuxParameters": {"initProcessEnabled": True, "sharedMemorySize": 128},
        },
        "retryStrategy": {"attempts": 2},
        "platformCapabilities": ["EC2"],
    }
    assert derived.base_arn == BASE["jobDefinitionArn"]
    assert derived.name.startswith("airflow-task-")


def test_the_name_is_deterministic_and_ignores_key_order_and_empty_members() -> None:
    one = derive(BASE, {"image": "python:3.12", "user": "nobody"})
    reordered = dict(reversed(list(BASE.items())))
    reordered["containerProperties"] = dict(reversed(list(BASE["containerProperties"].items())))
    two = derive(reordered, {"user": "nobody", "image": "python:3.12", "secrets": []})
    assert one.name == two.name
    assert one.request == two.request
    assert derive(BASE, {"image": "python:3.12", "user": "airflow"}).name != one.name
    # The same content from another revision of the base is the same definition.
    assert (
        derive(
            {**BASE, "revision": 4, "jobDefinitionArn": "x:4"}, {"image": "python:3.12", "user": "nobody"}
        ).name
        == one.name
    )


def test_the_same_result_from_different_overrides_is_one_definition() -> None:
    assert derive(BASE, {"memory": 2048, "image": "i:1"}).name == derive(BASE, {"image": "i:1"}).name


@pytest.mark.parametrize(
    "base_name",
    [
        pytest.param("d", id="short"),
        pytest.param("x" * 128, id="longest-base"),
        pytest.param("a.b c", id="odd-chars"),
    ],
)
def test_names_fit_batch(base_name: str) -> None:
    name = derived_name(base_name, "f" * 64)
    assert NAME.fullmatch(name), name
    assert name.endswith("-" + "f" * jobdefs.HASH_CHARS)


@pytest.mark.parametrize(
    ("overrides", "path", "expected"),
    [
        pytest.param({"imagee": "x"}, "jobDefinitionOverrides.imagee", "did you mean 'image'", id="unknown"),
        pytest.param({"image": 3}, "jobDefinitionOverrides.image", "a string", id="wrong-type"),
        pytest.param({"volumes": {"name": "v"}}, "jobDefinitionOverrides.volumes", "a list", id="not-a-list"),
        pytest.param(
            {"mountPoints": [{"sourceVolume": "v", "readOnly": "yes"}]},
            "jobDefinitionOverrides.mountPoints[0].readOnly",
            "true or false",
            id="nested",
        ),
        pytest.param({"command": ["x"]}, "jobDefinitionOverrides.command", "no command", id="command"),
        pytest.param(["image"], "jobDefinitionOverrides", "an object", id="not-an-object"),
    ],
)
def test_bad_overrides_fail_the_task_before_any_call(overrides: Any, path: str, expected: str) -> None:
    with pytest.raises(ExecConfigError) as info:
        build(executor_config={OVERRIDES_KEY: overrides})
    assert info.value.path == path
    assert expected in info.value.expected


def test_a_base_of_another_kind_is_refused() -> None:
    eks = {"jobDefinitionName": "e", "type": "container", "eksProperties": {"podProperties": {}}}
    with pytest.raises(DerivationError, match="type container with containerProperties"):
        derive(eks, {"image": "x"})


def build(**options: Any) -> dict[str, Any]:
    raw: dict[str, str | None] = {
        "job_queue": "q",
        "job_definition": "airflow-task",
        "job_name": "airflow",
        "region_name": "us-east-1",
    }
    raw.update(options.pop("config", {}))
    kwargs: dict[str, Any] = {
        "command": ["python"],
        "dag_id": "d",
        "task_id": "t",
        "run_id": "r",
        "try_number": 1,
        "map_index": -1,
        "queue": None,
        "executor_config": None,
    }
    kwargs.update(options)
    return build_submit_job_request(parse_options(raw), **kwargs)


def test_the_builder_merges_the_task_over_the_deployment_default() -> None:
    config = {
        "submit_job_kwargs": (
            '{"jobDefinitionOverrides": {"jobRoleArn": "arn:aws:iam::1:role/r", '
            '"linuxParameters": {"sharedMemorySize": 64, "initProcessEnabled": true}}}'
        )
    }
    request = build(
        config=config,
        executor_config={
            OVERRIDES_KEY: {"image": "python:3.12", "linuxParameters": {"sharedMemorySize": 128}}
        },
    )
    assert request[OVERRIDES_KEY] == {
        "jobRoleArn": "arn:aws:iam::1:role/r",
        "image": "python:3.12",
        "linuxParameters": {"sharedMemorySize": 128, "initProcessEnabled": True},
    }
    assert request["jobDefinition"] == "airflow-task"
    # Without the key nothing is left for the submit thread.
    assert OVERRIDES_KEY not in build()


def test_a_bad_deployment_default_stops_the_start() -> None:
    with pytest.raises(ConfigError, match=r"submit_job_kwargs.*jobDefinitionOverrides\.imag"):
        build(config={"submit_job_kwargs": '{"jobDefinitionOverrides": {"imag": "x"}}'})


HOST_ACCESS_CASES = [
    pytest.param({"privileged": True}, "privileged", "privileged", id="privileged"),
    pytest.param(
        {
            "volumes": [{"name": "root", "host": {"sourcePath": "/"}}],
            "mountPoints": [{"sourceVolume": "root"}],
        },
        "volumes[0].host.sourcePath",
        "host_volumes",
        id="host-volume",
    ),
    pytest.param(
        {"linuxParameters": {"devices": [{"hostPath": "/dev/sda"}]}},
        "linuxParameters.devices",
        "devices",
        id="devices",
    ),
    pytest.param({"user": "root"}, "user", "root_user", id="user-root"),
    pytest.param({"user": "0:0"}, "user", "root_user", id="user-0"),
]


@pytest.mark.parametrize(("overrides", "path", "kind"), HOST_ACCESS_CASES)
def test_overrides_that_reach_the_host_fail_the_task_naming_field_and_option(
    overrides: dict[str, Any], path: str, kind: str
) -> None:
    with pytest.raises(ExecConfigError) as info:
        build(executor_config={OVERRIDES_KEY: overrides})
    assert info.value.path == f"{OVERRIDES_KEY}.{path}"
    message = str(info.value)
    assert f"allowed_job_definition_overrides includes {kind}" in message
    # The same refusal where the submit thread derives the definition, and at start for a default.
    with pytest.raises(DerivationError, match=f"{OVERRIDES_KEY}.{re.escape(path)}: .*includes {kind}"):
        derive(BASE, overrides)
    with pytest.raises(ConfigError, match=f"allowed_job_definition_overrides includes {kind}"):
        build(config={"submit_job_kwargs": json.dumps({OVERRIDES_KEY: overrides})})
    # Allowed by the option: built and derived as asked.
    allowed = {"allowed_job_definition_overrides": f"devices, {kind}"}
    request = build(config=allowed, executor_config={OVERRIDES_KEY: overrides})
    assert request[OVERRIDES_KEY] == overrides
    derive(BASE, overrides, frozenset({kind}))


def test_a_mount_of_the_base_definitions_host_volume_is_refused() -> None:
    # The overrides add only a mount point; the host volume it names is the base definition's.
    base = {**BASE, "containerProperties": {**BASE["containerProperties"], "volumes": [
        {"name": "docker", "host": {"sourcePath": "/var/run/docker.sock"}}
    ]}}  # fmt: skip
    overrides = {"mountPoints": [{"sourceVolume": "docker", "containerPath": "/var/run/docker.sock"}]}
    with pytest.raises(DerivationError, match=r"mountPoints\[0\].sourceVolume: .*includes host_volumes"):
        derive(base, overrides)
    derive(base, overrides, frozenset({"host_volumes"}))
    # An EFS or task-local volume is no host path: mounting it is fine.
    efs = {"mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}],
           "volumes": [{"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]}  # fmt: skip
    derive(BASE, efs)


def test_unknown_allowed_kinds_stop_the_start() -> None:
    with pytest.raises(ConfigError, match="allowed_job_definition_overrides"):
        build(config={"allowed_job_definition_overrides": "privileged,everything"})


class FakeBatch:
    """An in-memory job definition registry (for the cache's own logic; the contract tests use real
    servers). ``gate`` holds every DescribeJobDefinitions until set, to line threads up."""

    def __init__(self, refuse: str | None = None) -> None:
        self.defs: list[dict[str, Any]] = [dict(BASE)]
        self.registered: list[dict[str, Any]] = []
        self.tagged: list[tuple[str, dict[str, str]]] = []
        self.described = 0
        self.refuse = refuse
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def describe(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.gate.wait(5)
        with self.lock:
            self.described += 1
            if "jobDefinitions" in kwargs:
                return [d for d in self.defs if d["jobDefinitionArn"] in kwargs["jobDefinitions"]]
            return [
                d
                for d in self.defs
                if d["jobDefinitionName"] == kwargs["jobDefinitionName"] and d["status"] == kwargs["status"]
            ]

    def register(self, request: dict[str, Any]) -> str:
        with self.lock:
            if self.refuse:
                raise RuntimeError(self.refuse)
            revision = 1 + sum(1 for d in self.defs if d["jobDefinitionName"] == request["jobDefinitionName"])
            arn = f"arn:jd/{request['jobDefinitionName']}:{revision}"
            entry = {**request, "jobDefinitionArn": arn, "revision": revision, "status": "ACTIVE"}
            entry["containerProperties"] = {"volumes": [], "secrets": [], **request["containerProperties"]}
            self.defs.append(entry)
            self.registered.append(request)
            return arn

    def tag(self, arn: str, tags: dict[str, str]) -> None:
        with self.lock:
            self.tagged.append((arn, dict(tags)))


def refusal(exc: Exception) -> str | None:
    return str(exc) if isinstance(exc, RuntimeError) else None


def request_for(image: str) -> dict[str, Any]:
    return {"jobName": "j", "jobQueue": "q", "jobDefinition": "airflow-task", OVERRIDES_KEY: {"image": image}}


def test_find_before_register_and_remember() -> None:
    batch = FakeBatch()
    first = JobDefinitions(batch, refusal)
    sent = first.resolve(request_for("python:3.12"))
    assert OVERRIDES_KEY not in sent
    assert sent["jobDefinition"].endswith(":1")
    assert len(batch.registered) == 1
    calls = batch.described
    assert first.resolve(request_for("python:3.12")) == sent
    assert batch.described == calls  # remembered: no call at all
    # A second scheduler finds the first one's definition instead of registering another.
    second = JobDefinitions(batch, refusal)
    assert second.resolve(request_for("python:3.12")) == sent
    assert len(batch.registered) == 1
    assert second.registered == 0


def test_a_definition_of_that_name_with_other_properties_is_not_ours() -> None:
    batch = FakeBatch()
    derived = derive(BASE, {"image": "python:3.12"})
    batch.defs.append(
        {
            **derived.request,
            "containerProperties": {**derived.request["containerProperties"], "user": "root"},
            "jobDefinitionArn": "arn:jd/other:1",
            "revision": 1,
            "status": "ACTIVE",
        }
    )
    sent = JobDefinitions(batch, refusal).resolve(request_for("python:3.12"))
    assert sent["jobDefinition"] != "arn:jd/other:1"
    assert len(batch.registered) == 1


def test_two_threads_deriving_one_definition_register_it_once() -> None:
    batch = FakeBatch()
    batch.gate.clear()
    cache = JobDefinitions(batch, refusal)
    answers: list[str] = []
    threads = [
        threading.Thread(target=lambda: answers.append(cache.resolve(request_for("i:1"))["jobDefinition"]))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    batch.gate.set()
    for thread in threads:
        thread.join(10)
    assert len(answers) == 6 and len(set(answers)) == 1
    assert len(batch.registered) == 1


def test_a_refused_registration_fails_with_batchs_reason_and_is_remembered() -> None:
    batch = FakeBatch(refuse="ClientException: Invalid image name")
    cache = JobDefinitions(batch, refusal)
    for _ in range(2):
        with pytest.raises(
            DerivationError, match=r"RegisterJobDefinition of airflow-task-\w+ .*Invalid image"
        ):
            cache.resolve(request_for("bad image"))
    assert cache.registered == 1  # the second task failed without a call
    # Another definition is not affected.
    batch.refuse = None
    assert cache.resolve(request_for("good:1"))["jobDefinition"].startswith("arn:jd/")


def test_an_error_that_may_pass_is_raised_as_it_is() -> None:
    batch = FakeBatch(refuse="x")
    cache = JobDefinitions(batch, lambda exc: None)
    with pytest.raises(RuntimeError):
        cache.resolve(request_for("i:2"))


def test_a_base_without_active_revision_fails() -> None:
    batch = FakeBatch()
    request = {**request_for("i:1"), "jobDefinition": "missing"}
    with pytest.raises(DerivationError, match="'missing' has no ACTIVE revision"):
        JobDefinitions(batch, refusal).resolve(request)


def test_check_asks_iam_when_it_may() -> None:
    # No server here answers iam:SimulatePrincipalPolicy, so botocore's Stubber stands in for IAM.
    import boto3
    from botocore.stub import Stubber

    from airflow_aws_batch.health import job_definition_registration_items

    session = boto3.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
    batch, iam, sts = (session.client(s) for s in ("batch", "iam", "sts"))
    role = "arn:aws:iam::123456789012:role/task"
    with Stubber(batch) as b, Stubber(iam) as i, Stubber(sts) as s:
        entry = {**BASE, "containerProperties": {"image": "x", "jobRoleArn": role}}
        b.add_response("describe_job_definitions", {"jobDefinitions": [entry]})
        b.add_response("describe_job_definitions", {"jobDefinitions": [entry]})
        s.add_response(
            "get_caller_identity",
            {"Arn": "arn:aws:sts::123456789012:assumed-role/scheduler/i-1", "Account": "1", "UserId": "u"},
        )
        principal = "arn:aws:iam::123456789012:role/scheduler"
        i.add_response(
            "simulate_principal_policy",
            {
                "EvaluationResults": [
                    {"EvalActionName": "batch:RegisterJobDefinition", "EvalDecision": "allowed"}
                ]
            },
            {
                "PolicySourceArn": principal,
                "ActionNames": ["batch:RegisterJobDefinition"],
                # Asked as the rendered policy allows it: a non-privileged definition of the base image.
                "ContextEntries": [
                    {
                        "ContextKeyName": "batch:Privileged",
                        "ContextKeyValues": ["false"],
                        "ContextKeyType": "boolean",
                    },
                    {"ContextKeyName": "batch:Image", "ContextKeyValues": ["x"], "ContextKeyType": "string"},
                ],
            },
        )
        i.add_response(
            "simulate_principal_policy",
            {
                "EvaluationResults": [
                    {
                        "EvalActionName": "iam:PassRole",
                        "EvalResourceName": role,
                        "EvalDecision": "implicitDeny",
                    }
                ]
            },
            {"PolicySourceArn": principal, "ActionNames": ["iam:PassRole"], "ResourceArns": [role]},
        )
        config = parse_options({"job_queue": "q", "job_definition": "airflow-task", "job_name": "a"})
        register, pass_role = job_definition_registration_items(batch, config, iam, sts)
    assert register.ok and "batch:RegisterJobDefinition allowed" in register.detail
    assert (pass_role.ok, pass_role.detail) == (False, f"iam:PassRole denied on {role}")
