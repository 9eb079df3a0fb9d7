"""EKS job definitions: where the task's command goes, and what the executor refuses. Pure apart from
:class:`DefinitionKinds`, a lock-guarded cache (no I/O of its own: callers pass the call that reads).

A job definition whose latest ACTIVE revision has ``eksProperties`` runs its job as a Kubernetes pod;
SubmitJob then takes the task's command in ``eksPropertiesOverride.podProperties.containers[0]``
(``command``, ``env``, ``resources``), never in ``containerOverrides``, which Batch refuses for such a
definition (and ``eksPropertiesOverride`` for a container one). The executor learns each
definition's kind once: at start in the health check, else on a submit thread before the first
SubmitJob naming it (one DescribeJobDefinitions per definition, within the status-call budget). A
kind once read is kept for the life of the executor: a new revision of another kind under the same
name needs a scheduler restart.

While a definition's kind is not known, the request builder leaves the task's command and environment
under :data:`PENDING_KEY`; :func:`place_task_container` puts them where the kind wants them.

Not supported: ``args`` of the first container, in ``executor_config`` or in the job definition
(Kubernetes appends them to the command, which would break the task's command line), and a command
set anywhere but by the executor.
"""

from __future__ import annotations

import copy
import enum
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Request member holding the task's command and environment until the definition's kind is known.
PENDING_KEY = "x-airflow-task-container"
EKS_OVERRIDE = "eksPropertiesOverride"
CONTAINER_OVERRIDE = "containerOverrides"
#: Resource names Batch accepts in an EKS container's ``limits``/``requests``.
EKS_RESOURCE_NAMES = ("cpu", "memory", "nvidia.com/gpu")
_MEMORY = re.compile(r"[1-9][0-9]*Mi")
_GPU = re.compile(r"[0-9]+")


class DefinitionKind(enum.Enum):
    CONTAINER = "container"
    EKS = "eks"
    #: Multi-node or ECS-properties definitions: the executor cannot place a command there.
    OTHER = "other"


@dataclass(frozen=True)
class DefinitionInfo:
    """What the executor needs of a job definition to place the task's command."""

    kind: DefinitionKind
    #: EKS: the name of the pod's first container ("" when it has none).
    first_container: str = ""
    #: EKS: whether the first container sets ``args`` (the executor then refuses to submit).
    first_container_args: bool = False
    #: Shown in messages: ``name:revision``.
    label: str = ""


CONTAINER = DefinitionInfo(DefinitionKind.CONTAINER)

#: ``(path, expected, found)``, as in ``config.one_job_per_try_problems``.
Problem = tuple[str, str, str]


def definition_info(raw: Mapping[str, Any]) -> DefinitionInfo:
    """The kind of one DescribeJobDefinitions entry."""
    label = f"{raw.get('jobDefinitionName', '')}:{raw.get('revision', '')}"
    eks = raw.get("eksProperties")
    if isinstance(eks, Mapping):
        containers = (eks.get("podProperties") or {}).get("containers") or [{}]
        first = containers[0] if isinstance(containers[0], Mapping) else {}
        return DefinitionInfo(
            DefinitionKind.EKS,
            first_container=str(first.get("name") or ""),
            first_container_args=bool(first.get("args")),
            label=label,
        )
    if raw.get("type") == "multinode" or raw.get("ecsProperties") or raw.get("nodeProperties"):
        return DefinitionInfo(DefinitionKind.OTHER, label=label)
    return DefinitionInfo(DefinitionKind.CONTAINER, label=label)


def override_problems(request: Mapping[str, Any]) -> list[Problem]:
    """What the executor refuses in an ``eksPropertiesOverride`` on its own (``executor_config``,
    ``submit_job_kwargs``): a command or args of the first container, resources Batch would refuse,
    and both overrides at once. Types are left to the botocore model check."""
    problems: list[Problem] = []
    if request.get(CONTAINER_OVERRIDE) and request.get(EKS_OVERRIDE):
        problems.append(
            (
                EKS_OVERRIDE,
                "either containerOverrides (container job definitions) or eksPropertiesOverride (EKS job "
                "definitions), not both",
                "both",
            )
        )
    override = request.get(EKS_OVERRIDE)
    if not isinstance(override, Mapping):
        return problems
    pod = override.get("podProperties")
    if not isinstance(pod, Mapping):
        return problems
    containers = pod.get("containers")
    if not isinstance(containers, list):
        return problems
    for index, container in enumerate(containers):
        if not isinstance(container, Mapping):
            continue
        path = f"{EKS_OVERRIDE}.podProperties.containers[{index}]"
        if index == 0:
            for key, why in (
                ("command", "no command (the executor sets the command of every job)"),
                ("args", "no args (Kubernetes would append them to the task's command)"),
            ):
                if key in container:
                    problems.append((f"{path}.{key}", why, repr(container[key])[:60]))
        resources = container.get("resources")
        if isinstance(resources, Mapping):
            problems.extend(resource_problems(resources, f"{path}.resources"))
    return problems


def resource_problems(resources: Mapping[str, Any], path: str) -> list[Problem]:
    """Batch's rules for an EKS container's ``limits`` and ``requests``."""
    problems: list[Problem] = []
    parts: dict[str, Mapping[str, Any]] = {}
    for part in ("limits", "requests"):
        values = resources.get(part)
        if not isinstance(values, Mapping):
            continue
        parts[part] = values
        for name, value in values.items():
            where = f"{path}.{part}.{name}"
            if name not in EKS_RESOURCE_NAMES:
                problems.append((where, "a resource of " + ", ".join(EKS_RESOURCE_NAMES), repr(name)))
            elif not isinstance(value, str):
                continue  # the botocore model check reports the type
            elif name == "memory" and not _MEMORY.fullmatch(value):
                problems.append((where, "whole MiB with the suffix Mi, e.g. '2048Mi'", repr(value)))
            elif name == "cpu" and not _quarter_cpus(value):
                problems.append((where, "a number of CPUs, a multiple of 0.25, e.g. '0.5'", repr(value)))
            elif name == "nvidia.com/gpu" and not _GPU.fullmatch(value):
                problems.append((where, "a whole number of GPUs", repr(value)))
    limits, requests = parts.get("limits", {}), parts.get("requests", {})
    for name in ("memory", "nvidia.com/gpu"):
        if name in limits and name in requests and limits[name] != requests[name]:
            problems.append(
                (
                    f"{path}.limits.{name}",
                    f"the same value as requests.{name} (Batch's rule)",
                    f"{limits[name]!r} and {requests[name]!r}",
                )
            )
    cpu_limit, cpu_request = limits.get("cpu"), requests.get("cpu")
    if (
        isinstance(cpu_limit, str)
        and isinstance(cpu_request, str)
        and _quarter_cpus(cpu_limit)
        and _quarter_cpus(cpu_request)
        and float(cpu_limit) < float(cpu_request)
    ):
        problems.append(
            (f"{path}.limits.cpu", "at least requests.cpu (Batch's rule)", f"{cpu_limit!r} < {cpu_request!r}")
        )
    return problems


def _quarter_cpus(value: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return number > 0 and (number * 4).is_integer()


def place_task_container(
    request: dict[str, Any], info: DefinitionInfo, command: list[str], environment: list[dict[str, str]]
) -> list[Problem]:
    """Put the task's ``command`` and ``environment`` (entries replacing same-named ones) where a job
    definition of ``info`` takes them, in place. Returns what makes that impossible (nothing placed)."""
    definition = info.label or repr(request.get("jobDefinition"))
    if info.kind is DefinitionKind.OTHER:
        return [
            (
                "jobDefinition",
                "a container or EKS job definition (the executor puts the task's command in "
                "containerOverrides or eksPropertiesOverride)",
                f"{definition}, a multi-node or ECS-properties job definition",
            )
        ]
    # An empty override says nothing (the Amazon provider's configurations carry
    # ``containerOverrides: {"command": []}``, which loading the options leaves as ``{}``): dropped.
    for member in (CONTAINER_OVERRIDE, EKS_OVERRIDE):
        if member in request and not request[member]:
            del request[member]
    if info.kind is DefinitionKind.CONTAINER:
        if EKS_OVERRIDE in request:
            return [
                (
                    EKS_OVERRIDE,
                    f"containerOverrides: job definition {definition} is a container job definition, which "
                    "takes no eksPropertiesOverride",
                    "eksPropertiesOverride",
                )
            ]
        overrides: dict[str, Any] = request.setdefault(CONTAINER_OVERRIDE, {})
        overrides["command"] = list(command)
        overrides["environment"] = _with_env(overrides.get("environment", []), environment)
        return []
    if CONTAINER_OVERRIDE in request:
        return [
            (
                CONTAINER_OVERRIDE,
                f"eksPropertiesOverride.podProperties.containers[0]: job definition {definition} is an EKS "
                "job definition, which takes no containerOverrides (env and resources go into "
                "eksPropertiesOverride)",
                "containerOverrides",
            )
        ]
    if info.first_container_args:
        return [
            (
                "jobDefinition",
                f"an EKS job definition whose first container sets no args (Kubernetes appends them to "
                f"the task's command): remove args from {definition}",
                "args",
            )
        ]
    override: dict[str, Any] = request.setdefault(EKS_OVERRIDE, {})
    pod: dict[str, Any] = override.setdefault("podProperties", {})
    containers: list[dict[str, Any]] = pod.setdefault("containers", [])
    if not containers:
        containers.append({})
    first = containers[0]
    if info.first_container and "name" not in first:
        # Batch matches container overrides by name; naming the first container keeps the override
        # on it whatever else the pod holds.
        first["name"] = info.first_container
    first["command"] = list(command)
    first["env"] = _with_env(first.get("env", []), environment)
    return []


def _with_env(current: list[dict[str, str]], ours: list[dict[str, str]]) -> list[dict[str, str]]:
    names = {entry["name"] for entry in ours}
    return [entry for entry in current if entry.get("name") not in names] + copy.deepcopy(ours)


def guess_info(request: Mapping[str, Any]) -> DefinitionInfo:
    """The kind a request implies while its definition's kind is not known: EKS when it carries an
    ``eksPropertiesOverride``, else container. Only used to check the request's size and shape early."""
    if request.get(EKS_OVERRIDE):
        return DefinitionInfo(DefinitionKind.EKS)
    return CONTAINER


#: Reads one job definition: its info, or None when there is no such definition.
DefinitionReader = Callable[[str], "DefinitionInfo | None"]


class DefinitionKinds:
    """Kinds of the job definitions seen so far, by the name the requests use; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._infos: dict[str, DefinitionInfo] = {}
        self._reading: dict[str, threading.Lock] = {}

    def record(self, info: DefinitionInfo, *names: str) -> None:
        with self._lock:
            for name in names:
                if name:
                    self._infos[name] = info

    def get(self, name: str) -> DefinitionInfo | None:
        with self._lock:
            return self._infos.get(name)

    def ensure(self, name: str, read: DefinitionReader) -> DefinitionInfo | None:
        """The info of ``name``, read with ``read(name)`` when not known yet; one read per definition
        however many threads ask. ``read`` may raise; None: no such definition (not cached)."""
        info = self.get(name)
        if info is not None:
            return info
        with self._lock:
            reading = self._reading.setdefault(name, threading.Lock())
        with reading:
            info = self.get(name)
            if info is not None:
                return info
            info = read(name)
            if info is not None:
                self.record(info, name)
            return info
