"""Job definitions compared by what they mean: the defaults AWS fills in and the orders it may change
taken out, so equal content gets one name and is found again instead of registered again.

A definition read back from DescribeJobDefinitions differs from the request that registered it in
ways that change nothing: flags AWS reports at their default (``privileged: false``), the default
platform (``["EC2"]``), one attempt, Fargate's ``LATEST`` platform version, a private IP, the legacy
``vcpus``/``memory`` members beside or instead of ``resourceRequirements`` (and numbers as numbers or
strings), and lists whose order does not matter (environment, secrets, ...). Comparing or hashing
the raw forms makes a scheduler register a new revision for content Batch already has, again on
every start: the registration storms other Batch integrations report.

Pure; :func:`normalise` never changes what is sent, only what is compared and hashed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

#: Members at the value AWS reports when they were not given: equal to leaving them out.
CONTAINER_DEFAULTS: dict[str, Any] = {
    "privileged": False,
    "readonlyRootFilesystem": False,
    "fargatePlatformConfiguration": {"platformVersion": "LATEST"},
    "networkConfiguration": {"assignPublicIp": "DISABLED"},
}
LINUX_DEFAULTS: dict[str, Any] = {"initProcessEnabled": False}
TOP_DEFAULTS: dict[str, Any] = {
    "propagateTags": False,
    "platformCapabilities": ["EC2"],
    "retryStrategy": {"attempts": 1},
}
#: Lists whose order means nothing, by the member that identifies an item.
UNORDERED: dict[str, tuple[str, ...]] = {
    "environment": ("name",),
    "secrets": ("name",),
    "ulimits": ("name",),
    "volumes": ("name",),
    "mountPoints": ("sourceVolume", "containerPath"),
    "resourceRequirements": ("type",),
}


def _number(value: Any) -> str:
    """``1``, ``"1"`` and ``"1.0"`` alike; anything that is not a number as it is."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _pruned(value: Any) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, raw in value.items():
            item = _pruned(raw)
            if item is None or item in ([], {}):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [_pruned(item) for item in value]
    return value


def _sort_key(item: Any, members: tuple[str, ...]) -> tuple[str, ...]:
    if not isinstance(item, Mapping):
        return (repr(item),)
    return (*(str(item.get(m, "")) for m in members), repr(sorted(item.items())))


def _drop_defaults(target: dict[str, Any], defaults: Mapping[str, Any]) -> None:
    for key, default in defaults.items():
        if key in target and target[key] == default:
            del target[key]


def _container(props: dict[str, Any]) -> dict[str, Any]:
    requirements: dict[str, str] = {}
    for item in props.get("resourceRequirements") or []:
        if isinstance(item, Mapping) and "type" in item:
            requirements[str(item["type"])] = _number(item.get("value"))
    # The legacy members say the same as the requirements (which win where both are given).
    for legacy, kind in (("vcpus", "VCPU"), ("memory", "MEMORY")):
        if legacy in props:
            requirements.setdefault(kind, _number(props.pop(legacy)))
    if requirements:
        props["resourceRequirements"] = [{"type": k, "value": v} for k, v in requirements.items()]
    for key, members in UNORDERED.items():
        if isinstance(props.get(key), list):
            props[key] = sorted(props[key], key=lambda item, m=members: _sort_key(item, m))  # type: ignore[misc]
    _drop_defaults(props, CONTAINER_DEFAULTS)
    linux = props.get("linuxParameters")
    if isinstance(linux, dict):
        _drop_defaults(linux, LINUX_DEFAULTS)
    return props


def normalise(definition: Mapping[str, Any]) -> dict[str, Any]:
    """``definition`` (a RegisterJobDefinition request or a DescribeJobDefinitions entry) as compared:
    defaults AWS fills in removed, unordered lists sorted, numbers in one form, empty members pruned."""
    out: dict[str, Any] = _pruned(copy.deepcopy(dict(definition)))
    props = out.get("containerProperties")
    if isinstance(props, dict):
        out["containerProperties"] = _container(props)
    _drop_defaults(out, TOP_DEFAULTS)
    result: dict[str, Any] = _pruned(out)
    return result
