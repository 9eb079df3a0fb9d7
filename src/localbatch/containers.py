"""A job's container as SubmitJob makes it: the definition's properties with the submit's overrides
and parameters applied, and the vCPUs and memory it asks for (container and EKS jobs)."""

from __future__ import annotations

import copy
import re
from typing import Any

from localbatch.errors import ClientException

EKS_MEMORY_RE = re.compile(r"^(\d+)Mi$")


def resources(container: dict[str, Any]) -> tuple[float | None, int | None]:
    vcpus: float | None = None
    memory: int | None = None
    for req in container.get("resourceRequirements") or []:
        if req.get("type") == "VCPU":
            vcpus = float(req["value"])
        elif req.get("type") == "MEMORY":
            memory = int(float(req["value"]))
    if vcpus is None and container.get("vcpus") is not None:
        vcpus = float(container["vcpus"])
    if memory is None and container.get("memory") is not None:
        memory = int(container["memory"])
    return vcpus, memory


def eks_resources(container: dict[str, Any]) -> tuple[float | None, int | None]:
    """vCPUs and MiB of an EKS container's ``resources`` (requests, else limits)."""
    resources = container.get("resources") or {}
    vcpus: float | None = None
    memory: int | None = None
    for part in ("limits", "requests"):
        values = resources.get(part) or {}
        if "cpu" in values:
            try:
                vcpus = float(values["cpu"])
            except ValueError:
                raise ClientException(f"resources.{part}.cpu must be a number of CPUs") from None
        if "memory" in values:
            match = EKS_MEMORY_RE.match(str(values["memory"]))
            if match is None:
                raise ClientException(f"resources.{part}.memory must be whole MiB with a Mi suffix")
            memory = int(match.group(1))
    return vcpus, memory


def _merge_eks_containers(
    base: list[dict[str, Any]], overrides: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The pod's containers with SubmitJob's container overrides applied (by name, else by position)."""
    merged = [copy.deepcopy(c) for c in base]
    by_name = {c.get("name"): i for i, c in enumerate(merged) if c.get("name")}
    for position, override in enumerate(overrides):
        name = override.get("name")
        if name:
            if name not in by_name:
                raise ClientException(
                    f"eksPropertiesOverride: no container named {name} in the job definition"
                )
            index = by_name[name]
        elif position < len(merged):
            index = position
        else:
            raise ClientException("eksPropertiesOverride has more containers than the job definition")
        target = merged[index]
        for key in ("image", "command", "args"):
            if key in override:
                target[key] = list(override[key]) if isinstance(override[key], list) else override[key]
        if "env" in override:
            target["env"] = _merge_env(target.get("env", []), override["env"])
        if "resources" in override:
            resources = target.setdefault("resources", {})
            for part in ("limits", "requests"):
                if part in override["resources"]:
                    resources[part] = {**resources.get(part, {}), **override["resources"][part]}
    return merged


def _merge_env(base: list[dict[str, str]], override: list[dict[str, str]]) -> list[dict[str, str]]:
    merged = {e["name"]: e.get("value", "") for e in base}
    merged.update({e["name"]: e.get("value", "") for e in override})
    return [{"name": k, "value": v} for k, v in merged.items()]


def _merge_requirements(base: list[dict[str, str]], override: list[dict[str, str]]) -> list[dict[str, str]]:
    merged = {r["type"]: r for r in base}
    merged.update({r["type"]: r for r in override})
    return list(merged.values())


def _substitute(command: list[str], parameters: dict[str, str]) -> list[str]:
    out = []
    for arg in command:
        if arg.startswith("Ref::") and arg[5:] in parameters:
            out.append(parameters[arg[5:]])
        else:
            out.append(arg)
    return out


def container_job(
    jd: dict[str, Any], overrides: dict[str, Any], parameters: dict[str, str]
) -> dict[str, Any]:
    """A container job's ``container`` as DescribeJobs reports it (overrides applied)."""
    props = jd["containerProperties"]
    command = overrides.get("command") or props.get("command") or []
    container: dict[str, Any] = {
        "image": props["image"],
        "command": _substitute(list(command), parameters),
        "environment": _merge_env(props.get("environment", []), overrides.get("environment", [])),
        "resourceRequirements": _merge_requirements(
            props.get("resourceRequirements", []), overrides.get("resourceRequirements", [])
        ),
        "volumes": props.get("volumes", []),
        "mountPoints": props.get("mountPoints", []),
        "ulimits": props.get("ulimits", []),
        "secrets": props.get("secrets", []),
        "networkInterfaces": [],
    }
    for key in ("jobRoleArn", "executionRoleArn", "user", "logConfiguration", "linuxParameters"):
        if key in props:
            container[key] = props[key]
    for key in ("vcpus", "memory"):
        if key in overrides:
            container[key] = overrides[key]
        elif key in props:
            container[key] = props[key]
    if "instanceType" in overrides:
        container["instanceType"] = overrides["instanceType"]
    return container


def eks_job(
    jd: dict[str, Any], overrides: dict[str, Any], parameters: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An EKS job's ``eksProperties`` (overrides applied) and what the runner needs of it."""
    props = copy.deepcopy(jd["eksProperties"])
    pod = props.setdefault("podProperties", {})
    pod_overrides = overrides.get("podProperties") or {}
    pod["containers"] = _merge_eks_containers(
        pod.get("containers") or [], pod_overrides.get("containers") or []
    )
    if "metadata" in pod_overrides:
        labels = {
            **(pod.get("metadata") or {}).get("labels", {}),
            **pod_overrides["metadata"].get("labels", {}),
        }
        pod["metadata"] = {**pod.get("metadata", {}), **pod_overrides["metadata"], "labels": labels}
    for c in pod["containers"]:
        c.setdefault("command", [])
        c.setdefault("args", [])
        c.setdefault("env", [])
        eks_resources(c)
    first = pod["containers"][0]
    command = _substitute(list(first.get("command") or []) + list(first.get("args") or []), parameters)
    container = {
        "image": first.get("image", ""),
        "command": command,
        "environment": [{"name": e["name"], "value": e.get("value", "")} for e in first.get("env", [])],
    }
    return props, container
