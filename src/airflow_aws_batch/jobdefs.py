"""Per-task job definitions: the container properties that SubmitJob cannot override.

SubmitJob overrides a container's command, environment, vCPUs, memory and instance type, but not its
image, job role, volumes, user or secrets. A task asks for those under :data:`OVERRIDES_KEY` in its
``executor_config`` (``submit_job_kwargs`` may carry a deployment-wide default; the task's is merged
over it, dicts key by key, lists and scalars replace). The executor then derives a job definition:

1. the latest ACTIVE revision of the task's job definition (``jobDefinition``: a name, ``name:rev``
   or an ARN, which then is used as it is), read once per scheduler;
2. its ``containerProperties`` with the overrides merged over them, with the same rules;
3. named ``<base name>-<16 hex digits of a SHA-256 of the whole definition>`` (canonical JSON: key
   order and empty members do not change the name), at most 128 characters;
4. found among the ACTIVE revisions of that name with the same properties, or registered when there
   is none; the answer is kept for the life of the scheduler, so a restarted scheduler finds the
   definition again instead of registering a duplicate. The name's hash and the comparison both
   read definitions through :func:`airflow_aws_batch.jobdef_normal.normalise` (defaults AWS fills
   in, list orders), so equal content is never registered twice;
5. registered with the tags ``deployment`` (the registering deployment) and ``last_used`` (a UTC
   day), and ``last_used`` is brought up to date, at most once a day, by every scheduler that uses
   it: ``airflow aws-batch prune`` (:mod:`airflow_aws_batch.prune`) deregisters the revisions nobody
   used for a while.

Overrides that would reach the job's host (``privileged``, host volumes and their mount points,
``linuxParameters.devices``, ``user`` root) are refused unless ``allowed_job_definition_overrides``
names them (:func:`host_access`): by the request builder, at start for ``submit_job_kwargs``, and
again here where the base definition's volumes are known.

Pure apart from :class:`JobDefinitions`, a lock-guarded cache whose I/O is passed in (the executor
runs it on its submit threads within the status-call budget). Not supported: job definitions of
other kinds than ``container`` (multi-node, EKS, ECS properties), and top-level members of the
definition (``retryStrategy``, ``timeout``, ...): they are copied from the base definition.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_aws_batch import shapes
from airflow_aws_batch.core.ownership import DEPLOYMENT_TAG
from airflow_aws_batch.jobdef_normal import normalise

#: The ``executor_config`` / ``submit_job_kwargs`` member holding container properties of the job
#: definition. Not a SubmitJob member (checked against botocore's model by the tests).
OVERRIDES_KEY = "jobDefinitionOverrides"
MAX_NAME = 128
HASH_CHARS = 16
#: Top-level members of a definition carried over from the base (the rest are not re-registrable,
#: e.g. ``revision``, ``status``, or are left out on purpose: ``tags`` need ``batch:TagResource``).
COPIED_MEMBERS = ("parameters", "schedulingPriority", "retryStrategy", "propagateTags", "timeout")
#: Properties that make a definition what it is: one found under the derived name that sets one of
#: them where ours does not is somebody else's, not ours.
IDENTITY_PROPERTIES = (
    "image",
    "jobRoleArn",
    "executionRoleArn",
    "user",
    "volumes",
    "mountPoints",
    "secrets",
    "linuxParameters",
    "repositoryCredentials",
    "privileged",
    "readonlyRootFilesystem",
)
#: Tag of a derived definition: the UTC day (``YYYY-MM-DD``) a scheduler last used it. It also
#: carries the registering deployment's :data:`DEPLOYMENT_TAG` (the jobs' tag).
LAST_USED_TAG = "last_used"
#: How long a registration Batch refused is remembered (tasks asking for it fail without a call).
REFUSAL_MEMORY_S = 60.0

log = logging.getLogger(__name__)
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")

#: The option that lets ``jobDefinitionOverrides`` reach the host, and what each of its values allows.
ALLOW_OPTION = "allowed_job_definition_overrides"
HOST_ACCESS = {
    "privileged": "privileged: true (a container with every capability of the host)",
    "host_volumes": "volumes with host.sourcePath, and mountPoints of such volumes (host directories)",
    "devices": "linuxParameters.devices (host devices)",
    "root_user": "user root or 0",
}


def host_access(
    overrides: Mapping[str, Any],
    allowed: frozenset[str] = frozenset(),
    merged: Mapping[str, Any] | None = None,
) -> list[tuple[str, str, str]]:
    """``(path, kind, found)`` for each way ``overrides`` (a DAG author's container properties) would
    let a job reach its host, unless ``allowed`` (values of :data:`HOST_ACCESS`) allows that kind.

    ``merged``: the container properties the overrides make with the base definition, when known: a
    mountPoint of the overrides may name a host volume of the base definition.
    """
    found: list[tuple[str, str, str]] = []
    if overrides.get("privileged") and "privileged" not in allowed:
        found.append(("privileged", "privileged", shapes.describe_found(overrides["privileged"])))
    linux = overrides.get("linuxParameters")
    if isinstance(linux, Mapping) and linux.get("devices") and "devices" not in allowed:
        found.append(("linuxParameters.devices", "devices", shapes.describe_found(linux["devices"])))
    user = overrides.get("user")
    root = isinstance(user, str | int) and str(user).split(":")[0].strip() in ("root", "0")
    if root and "root_user" not in allowed:
        found.append(("user", "root_user", repr(user)))
    if "host_volumes" not in allowed:
        volumes = (merged or {}).get("volumes", overrides.get("volumes")) or []
        host_volumes = {str(v.get("name")) for v in volumes if _host_path(v)}
        for index, volume in enumerate(overrides.get("volumes") or []):
            path = _host_path(volume)
            if path:
                found.append((f"volumes[{index}].host.sourcePath", "host_volumes", repr(path)))
        for index, mount in enumerate(overrides.get("mountPoints") or []):
            if isinstance(mount, Mapping) and str(mount.get("sourceVolume")) in host_volumes:
                found.append(
                    (f"mountPoints[{index}].sourceVolume", "host_volumes", repr(mount["sourceVolume"]))
                )
    return found


def _host_path(volume: Any) -> Any:
    host = volume.get("host") if isinstance(volume, Mapping) else None
    return host.get("sourcePath") if isinstance(host, Mapping) else None


def host_access_expected(kind: str) -> str:
    """What a refusal of ``kind`` says is expected: no such property, and how to allow it."""
    return f"no {HOST_ACCESS[kind]}: refused unless [aws_batch_executor] {ALLOW_OPTION} includes {kind}"


class DerivationError(ValueError):
    """The definition cannot be derived or registered; the task asking for it fails with this message."""


def overrides_problems(value: Any) -> list[tuple[str, str, str]]:
    """``(path, expected, found)`` for each problem of a :data:`OVERRIDES_KEY` value, checked against
    botocore's ``RegisterJobDefinition`` ``containerProperties`` shape; paths start at the key."""
    if not isinstance(value, Mapping):
        return [(OVERRIDES_KEY, "an object of container properties", shapes.describe_found(value))]
    if "command" in value:
        return [
            (
                f"{OVERRIDES_KEY}.command",
                "no command (the executor sets the command of every job)",
                shapes.describe_found(value["command"]),
            )
        ]
    problems = shapes.validate({"containerProperties": dict(value)}, "RegisterJobDefinition", partial=True)
    prefix = "containerProperties"
    return [(OVERRIDES_KEY + p.path[len(prefix) :], p.expected, p.found) for p in problems]


def prune(value: Any) -> Any:
    """``value`` without None, empty lists and empty objects inside objects (recursively).

    Batch echoes unset list members back as ``[]``; pruning makes a definition's hash depend on what
    it means, not on how a service presents it.
    """
    if isinstance(value, Mapping):
        out = {}
        for key, raw in value.items():
            item = prune(raw)
            if item is None or item in ([], {}):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [prune(item) for item in value]
    return value


def canonical(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal for equal content, whatever the key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(definition: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(normalise(definition)).encode()).hexdigest()


def derived_name(base_name: str, digest: str) -> str:
    """``<base_name>-<HASH_CHARS hex digits>`` fitted to Batch's names (``[A-Za-z0-9_-]{1,128}``)."""
    stem = _NOT_ALLOWED.sub("_", base_name)[: MAX_NAME - HASH_CHARS - 1] or "airflow"
    return f"{stem}-{digest[:HASH_CHARS]}"


@dataclass(frozen=True, slots=True)
class Derived:
    """A derived definition: its name and the RegisterJobDefinition kwargs that make it."""

    name: str
    request: dict[str, Any]
    base_arn: str


def derive(
    base: Mapping[str, Any], overrides: Mapping[str, Any], allowed: frozenset[str] = frozenset()
) -> Derived:
    """The definition ``overrides`` make of ``base`` (a DescribeJobDefinitions entry).

    Raises :class:`DerivationError` for a base of another kind than ``container``, overrides that
    reach the host in a way ``allowed`` does not allow (see :func:`host_access`), or a result that
    botocore's RegisterJobDefinition model refuses.
    """
    base_name = str(base.get("jobDefinitionName") or "")
    base_ref = str(base.get("jobDefinitionArn") or base_name)
    container_props = base.get("containerProperties")
    if base.get("type", "container") != "container" or not isinstance(container_props, Mapping):
        raise DerivationError(
            f"{OVERRIDES_KEY} needs a job definition of type container with containerProperties; "
            f"{base_ref} has none (multi-node, EKS and ECS job definitions are not supported)"
        )
    known = shapes.operation_model("RegisterJobDefinition").input_shape
    assert known is not None
    container_members = known.members["containerProperties"].members  # type: ignore[attr-defined]
    # Keep only what RegisterJobDefinition takes: a newer service may answer with more.
    container = {k: v for k, v in container_props.items() if k in container_members}
    merged = prune(shapes.deep_merge(container, overrides))
    for path, kind, found in host_access(overrides, allowed, merged):
        raise DerivationError(f"{OVERRIDES_KEY}.{path}: expected {host_access_expected(kind)}, found {found}")
    request: dict[str, Any] = {"type": "container", "containerProperties": merged}
    for member in COPIED_MEMBERS:
        if member in base:
            request[member] = copy.deepcopy(base[member])
    capabilities = base.get("platformCapabilities")
    if capabilities:
        request["platformCapabilities"] = list(capabilities)
    request = prune(request)
    name = derived_name(base_name, content_hash(request))
    request = {"jobDefinitionName": name, **request}
    problems = shapes.validate(request, "RegisterJobDefinition")
    if problems:
        first = problems[0]
        path = first.path.replace("containerProperties", OVERRIDES_KEY, 1)
        raise DerivationError(
            f"{OVERRIDES_KEY} merged over {base_ref}: {path}: expected {first.expected}, found {first.found}"
        )
    return Derived(name=name, request=request, base_arn=base_ref)


def _covers(found: Any, wanted: Any) -> bool:
    """Whether ``found`` (a service's answer) says at least what ``wanted`` says."""
    if isinstance(wanted, Mapping):
        return isinstance(found, Mapping) and all(_covers(found.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(found, list)
            and len(found) == len(wanted)
            and all(_covers(f, w) for f, w in zip(found, wanted, strict=True))
        )
    if isinstance(wanted, bool) or isinstance(found, bool):
        return found is wanted
    if isinstance(wanted, int | float) and isinstance(found, int | float):
        return float(found) == float(wanted)
    return bool(found == wanted)


def matches(found: Mapping[str, Any], derived: Derived) -> bool:
    """Whether ``found`` (a DescribeJobDefinitions entry) is an ACTIVE definition of ``derived``.

    A service adds defaults to what it was given (empty lists, default flags), so ``found`` must
    cover ``derived`` and set none of the :data:`IDENTITY_PROPERTIES` that ``derived`` leaves unset.
    """
    if found.get("status") != "ACTIVE" or found.get("jobDefinitionName") != derived.name:
        return False
    wanted = {k: v for k, v in derived.request.items() if k not in ("jobDefinitionName", "tags")}
    if not _covers(normalise(found), normalise(wanted)):
        return False
    container = prune(found.get("containerProperties") or {})
    ours = derived.request.get("containerProperties", {})
    return all(key in ours for key in IDENTITY_PROPERTIES if container.get(key) not in (None, False))


class DefinitionCalls(Protocol):
    """The I/O :class:`JobDefinitions` needs; each call may raise the AWS layer's errors."""

    def describe(self, **kwargs: Any) -> list[dict[str, Any]]:
        """Every DescribeJobDefinitions entry for ``kwargs`` (all pages)."""
        ...

    def register(self, request: dict[str, Any]) -> str:
        """RegisterJobDefinition; the new revision's ARN."""
        ...

    def tag(self, arn: str, tags: dict[str, str]) -> None:
        """TagResource of a job definition."""
        ...


#: Turns an error of a call into a DerivationError (the request was refused) or None (try again later).
RefusalCheck = Callable[[Exception], "str | None"]


class JobDefinitions:
    """Derived definitions found or registered so far; safe to use from any thread.

    One lock per base definition and one per derived name: two threads asking for the same
    definition at once make one set of calls, and the second one uses the first one's answer.
    """

    def __init__(
        self,
        calls: DefinitionCalls,
        refusal: RefusalCheck,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], str] = lambda: time.strftime("%Y-%m-%d", time.gmtime()),
    ) -> None:
        self._calls = calls
        self._today = today
        #: derived name -> the day its ``last_used`` tag was last set by this scheduler
        self._used: dict[str, str] = {}
        self._refusal = refusal
        self._clock = clock
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._bases: dict[str, dict[str, Any]] = {}
        self._arns: dict[str, str] = {}  # derived name -> ARN of the revision used
        self._refused: dict[str, tuple[str, float]] = {}  # derived name -> (message, until)
        self._registered = 0

    @property
    def registered(self) -> int:
        """How many RegisterJobDefinition calls this cache made (for logs and tests)."""
        with self._lock:
            return self._registered

    def known(self) -> dict[str, str]:
        """Derived name -> ARN, for everything found or registered so far."""
        with self._lock:
            return dict(self._arns)

    def _lock_for(self, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def resolve(self, request: dict[str, Any], allowed: frozenset[str] = frozenset()) -> dict[str, Any]:
        """``request`` ready to send: a :data:`OVERRIDES_KEY` member replaced by the ARN of the derived
        definition in ``jobDefinition``. Raises :class:`DerivationError` (``allowed``: see
        :func:`host_access`), or what the calls raise when they may work later (throttling, server
        errors)."""
        if OVERRIDES_KEY not in request:
            return request
        request = dict(request)
        overrides = request.pop(OVERRIDES_KEY) or {}
        if not overrides:
            return request
        base = self.base(str(request["jobDefinition"]))
        derived = derive(base, overrides, allowed)
        deployment = (request.get("tags") or {}).get(DEPLOYMENT_TAG)
        arn = request["jobDefinition"] = self.ensure(derived, deployment)
        self._note_use(derived.name, arn)
        return request

    def _note_use(self, name: str, arn: str) -> None:
        """Bring the definition's ``last_used`` tag up to date, once a day: what prune reads."""
        today = self._today()
        with self._lock:
            if self._used.get(name) == today:
                return
            self._used[name] = today
        try:
            self._calls.tag(arn, {LAST_USED_TAG: today})
        except Exception as exc:
            # Never fails a task: the tag is tried again tomorrow, long before prune could act on it.
            log.warning("Could not tag job definition %s as used today: %s", arn, exc)

    def base(self, ref: str) -> dict[str, Any]:
        """The DescribeJobDefinitions entry of ``ref``: the latest ACTIVE revision of a name, else the
        exact ``name:revision`` or ARN (which must be ACTIVE)."""
        with self._lock:
            found = self._bases.get(ref)
        if found is not None:
            return found
        with self._lock_for("base\0" + ref):
            with self._lock:
                found = self._bases.get(ref)
            if found is not None:
                return found
            if ref.startswith("arn:") or ":" in ref:
                entries = self._calls.describe(jobDefinitions=[ref])
            else:
                entries = self._calls.describe(jobDefinitionName=ref, status="ACTIVE")
            active = [e for e in entries if e.get("status") == "ACTIVE"]
            if not active:
                raise DerivationError(
                    f"job definition {ref!r} has no ACTIVE revision to derive the task's definition from"
                )
            found = max(active, key=lambda e: int(e.get("revision", 0)))
            with self._lock:
                self._bases[ref] = found
            return found

    def ensure(self, derived: Derived, deployment: str | None = None) -> str:
        """The ARN of an ACTIVE definition of ``derived``, found or else registered (once), tagged with
        ``deployment`` and today's :data:`LAST_USED_TAG` when registered."""
        name = derived.name
        with self._lock:
            arn = self._arns.get(name)
        if arn is not None:
            return arn
        with self._lock_for("name\0" + name):
            with self._lock:
                arn = self._arns.get(name)
                refused = self._refused.get(name)
            if arn is not None:
                return arn
            if refused is not None and self._clock() < refused[1]:
                raise DerivationError(refused[0])
            entries = self._calls.describe(jobDefinitionName=name, status="ACTIVE")
            ours = [e for e in entries if matches(e, derived)]
            if ours:
                arn = str(max(ours, key=lambda e: int(e.get("revision", 0)))["jobDefinitionArn"])
            else:
                tags = {LAST_USED_TAG: self._today()}
                if deployment:
                    tags[DEPLOYMENT_TAG] = deployment
                try:
                    arn = self._register_tagged(derived, tags)
                except Exception as exc:
                    reason = self._refusal(exc)
                    if reason is None:
                        raise
                    message = (
                        f"RegisterJobDefinition of {name} (derived from {derived.base_arn} with "
                        f"{OVERRIDES_KEY}) refused: {reason}"
                    )
                    with self._lock:
                        self._refused[name] = (message, self._clock() + REFUSAL_MEMORY_S)
                    raise DerivationError(message) from None
                finally:
                    with self._lock:
                        self._registered += 1
            with self._lock:
                self._arns[name] = arn
                self._refused.pop(name, None)
            return arn

    def _register_tagged(self, derived: Derived, tags: dict[str, str]) -> str:
        """Register ``derived`` with ``tags``; credentials that may register but not tag (no
        ``batch:TagResource``) register it untagged: the task runs, and prune will not see it."""
        try:
            arn = self._calls.register({**copy.deepcopy(derived.request), "tags": tags})
        except Exception as exc:
            reason = self._refusal(exc) or ""
            if "AccessDenied" not in reason or "TagResource" not in reason:
                raise
            log.warning("Registering %s without tags (%s): prune will not see it", derived.name, reason)
            return self._calls.register(copy.deepcopy(derived.request))
        with self._lock:
            self._used[derived.name] = tags[LAST_USED_TAG]
        return arn


class PagedCalls:
    """:class:`DefinitionCalls` over the AWS layer (``api()`` gives the ``BatchApi``, built when first
    needed): ``acquire()`` is called before every call (the executor passes its status-call budget)
    and raises when no call may be made now."""

    def __init__(self, api: Callable[[], Any], acquire: Callable[[], None]) -> None:
        self._api = api
        self._acquire = acquire

    def describe(self, **kwargs: Any) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            self._acquire()
            page, token = self._api().describe_job_definitions_page(kwargs, token)
            entries.extend(page)
            if not token:
                return entries

    def register(self, request: dict[str, Any]) -> str:
        self._acquire()
        arn: str = self._api().register_job_definition(request)
        return arn

    def tag(self, arn: str, tags: dict[str, str]) -> None:
        self._acquire()
        self._api().tag_resource(arn, tags)
