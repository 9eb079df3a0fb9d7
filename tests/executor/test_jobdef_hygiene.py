"""Derived job definitions compared by meaning (AWS's defaults and list orders aside), and tagged as used."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_aws_batch.jobdef_normal import normalise
from airflow_aws_batch.jobdefs import OVERRIDES_KEY, JobDefinitions, derive, matches

BASE: dict[str, Any] = {
    "jobDefinitionName": "airflow-task",
    "jobDefinitionArn": "arn:jd/airflow-task:3",
    "revision": 3,
    "status": "ACTIVE",
    "type": "container",
    "containerProperties": {
        "image": "airflow:1",
        "vcpus": 1,
        "memory": 2048,
        "privileged": False,
        "readonlyRootFilesystem": False,
        "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    },
    "platformCapabilities": ["EC2"],
    "propagateTags": False,
}


@pytest.mark.parametrize(
    ("one", "two"),
    [
        pytest.param(
            {"environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"environment": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]},
            id="environment-order",
        ),
        pytest.param(
            {"vcpus": 2, "memory": 4096},
            {"resourceRequirements": [{"type": "MEMORY", "value": "4096"}, {"type": "VCPU", "value": "2"}]},
            id="legacy-members-and-requirements",
        ),
        pytest.param(
            {"resourceRequirements": [{"type": "VCPU", "value": "1.0"}]},
            {"resourceRequirements": [{"type": "VCPU", "value": "1"}]},
            id="number-forms",
        ),
        pytest.param({"privileged": False, "readonlyRootFilesystem": False}, {}, id="false-flags"),
        pytest.param({"linuxParameters": {"initProcessEnabled": False}}, {}, id="init-process-default"),
        pytest.param(
            {
                "fargatePlatformConfiguration": {"platformVersion": "LATEST"},
                "networkConfiguration": {"assignPublicIp": "DISABLED"},
            },
            {},
            id="fargate-defaults",
        ),
        pytest.param({"mountPoints": [], "ulimits": [], "secrets": []}, {}, id="empty-lists"),
    ],
)
def test_equal_content_normalises_equal(one: dict[str, Any], two: dict[str, Any]) -> None:
    assert normalise({"containerProperties": one}) == normalise({"containerProperties": two})


@pytest.mark.parametrize(
    ("top", "same"),
    [
        ({"platformCapabilities": ["EC2"]}, True),
        ({"retryStrategy": {"attempts": 1}}, True),
        ({"propagateTags": False}, True),
        ({"platformCapabilities": ["FARGATE"]}, False),
        ({"retryStrategy": {"attempts": 2}}, False),
    ],
)
def test_top_level_defaults(top: dict[str, Any], same: bool) -> None:
    assert (normalise(top) == normalise({})) is same


def test_different_content_stays_different() -> None:
    a = {"containerProperties": {"environment": [{"name": "A", "value": "1"}]}}
    b = {"containerProperties": {"environment": [{"name": "A", "value": "2"}]}}
    assert normalise(a) != normalise(b)
    assert normalise({"containerProperties": {"privileged": True}}) != normalise({})


def test_equal_content_gets_one_name() -> None:
    one = derive(BASE, {"environment": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]})
    two = derive(BASE, {"environment": [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]})
    assert one.name == two.name


def test_a_definition_aws_reports_with_its_defaults_left_out_is_found() -> None:
    """The base (as AWS described it) says privileged: false; the revision AWS registered from it
    leaves the flag out and reports resourceRequirements for vcpus/memory: still the same content."""
    derived = derive(BASE, {"image": "python:3.12"})
    props = dict(derived.request["containerProperties"])
    for flag in ("privileged", "readonlyRootFilesystem", "vcpus", "memory"):
        props.pop(flag, None)
    props["resourceRequirements"] = [{"type": "MEMORY", "value": "2048"}, {"type": "VCPU", "value": "1"}]
    props["environment"] = list(reversed(props["environment"]))
    found = {
        **{k: v for k, v in derived.request.items() if k not in ("platformCapabilities", "propagateTags")},
        "containerProperties": props,
        "jobDefinitionArn": f"arn:jd/{derived.name}:1",
        "revision": 1,
        "status": "ACTIVE",
        "tags": {"deployment": "someone", "last_used": "2026-01-01"},
    }
    assert matches(found, derived)


class Registry:
    """A minimal in-memory registry for the cache's tagging logic (contract tests use real servers)."""

    def __init__(self) -> None:
        self.defs: list[dict[str, Any]] = [dict(BASE)]
        self.registered: list[dict[str, Any]] = []
        self.tagged: list[tuple[str, dict[str, str]]] = []

    def describe(self, **kwargs: Any) -> list[dict[str, Any]]:
        return [d for d in self.defs if d["jobDefinitionName"] == kwargs.get("jobDefinitionName")]

    def register(self, request: dict[str, Any]) -> str:
        arn = f"arn:jd/{request['jobDefinitionName']}:1"
        self.defs.append({**request, "jobDefinitionArn": arn, "revision": 1, "status": "ACTIVE"})
        self.registered.append(request)
        return arn

    def tag(self, arn: str, tags: dict[str, str]) -> None:
        self.tagged.append((arn, tags))


def _request(image: str = "python:3.12") -> dict[str, Any]:
    return {
        "jobName": "j",
        "jobQueue": "q",
        "jobDefinition": "airflow-task",
        "tags": {"deployment": "db-1"},
        OVERRIDES_KEY: {"image": image},
    }


def test_registered_with_the_deployment_and_the_day_then_tagged_once_a_day() -> None:
    registry = Registry()
    day = ["2026-03-01"]
    cache = JobDefinitions(registry, lambda exc: None, today=lambda: day[0])
    arn = cache.resolve(_request())["jobDefinition"]
    assert registry.registered[0]["tags"] == {"deployment": "db-1", "last_used": "2026-03-01"}
    cache.resolve(_request())
    assert registry.tagged == []  # registered today with the tag: nothing more to say
    day[0] = "2026-03-02"
    cache.resolve(_request())
    cache.resolve(_request())
    assert registry.tagged == [(arn, {"last_used": "2026-03-02"})]
    # Another scheduler that finds it tags it on its first use of the day.
    other = JobDefinitions(registry, lambda exc: None, today=lambda: "2026-03-02")
    assert other.resolve(_request())["jobDefinition"] == arn
    assert registry.tagged[-1] == (arn, {"last_used": "2026-03-02"})
    assert len(registry.registered) == 1


def test_a_failed_tag_never_fails_the_task() -> None:
    registry = Registry()

    def refuse(arn: str, tags: dict[str, str]) -> None:
        raise RuntimeError("AccessDenied: batch:TagResource")

    cache = JobDefinitions(registry, lambda exc: None, today=lambda: "2026-03-01")
    cache.resolve(_request())
    registry.tag = refuse  # type: ignore[method-assign]
    later = JobDefinitions(registry, lambda exc: None, today=lambda: "2026-03-05")
    assert later.resolve(_request())["jobDefinition"].endswith(":1")


def test_credentials_that_may_not_tag_still_register() -> None:
    registry = Registry()
    plain_register = registry.register

    def register(request: dict[str, Any]) -> str:
        if "tags" in request:
            raise RuntimeError("AccessDeniedException: not authorized to perform: batch:TagResource")
        return plain_register(request)

    registry.register = register  # type: ignore[method-assign]
    cache = JobDefinitions(registry, str, today=lambda: "2026-03-01")
    assert cache.resolve(_request())["jobDefinition"].endswith(":1")
    assert registry.registered[0].get("tags") is None
