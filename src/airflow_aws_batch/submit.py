"""Build the exact SubmitJob kwargs for one workload. Pure: no I/O, no Airflow imports.

Per task, in order:
1. the configured base request (options + ``submit_job_kwargs``);
2. the job queue of the task's Airflow ``queue`` from ``queue_map``, if mapped;
3. the task's ``executor_config`` merged recursively (dicts key by key; lists and scalars replace),
   so an ``executor_config`` ``jobQueue`` wins over both of the above;
4. ours, always: the job name ``<jobName>-<dag_id>-<task_id>`` (``jobName`` is a prefix wherever it
   is set), the command (``containerOverrides.command``, or for an EKS job definition
   ``eksPropertiesOverride.podProperties.containers[0].command``: :mod:`airflow_aws_batch.eks`), the
   tags ``dag_id``, ``task_id``, ``run_id``, ``try_number``, ``map_index``, ``deployment`` and, for a
   team's executor, ``airflow_team`` (winning over user tags of the same key; the core adds
   ``submission`` per call), ``propagateTags: true``, ``retryStrategy.attempts: 1`` and the environment
   variable ``AIRFLOW_IS_EXECUTOR_CONTAINER=true``; with ``workload_store`` set, the command is the
   launcher's with a placeholder URL and the workload waits under ``workload_rules.PENDING_KEY`` for the
   submit thread (see :mod:`airflow_aws_batch.workloads`);
5. the task's ``jobDefinitionOverrides`` (merged over ``submit_job_kwargs``' as in step 3) left in
   the request for the submit thread, which replaces ``jobDefinition`` by a definition derived from
   it (see :mod:`airflow_aws_batch.jobdefs`);
6. on a fair-share job queue only, where steps 1-3 set neither: ``shareIdentifier`` rendered from
   ``share_identifier`` and ``schedulingPriorityOverride`` from the task's ``priority_weight``
   (``scheduling_priority``). When the queue's kind is not known yet they wait under
   ``fairshare.PENDING_KEY`` for the submit thread (see :mod:`airflow_aws_batch.fairshare`).

The result is checked against botocore's SubmitJob model and Batch's size limits.
Not supported: multi-node or ECS-properties job definitions (``nodeOverrides``,
``ecsPropertiesOverride`` are refused), and anything that makes a task
try more or other than one job run once (``arrayProperties``, ``dependsOn``, a ``retryStrategy`` of
more than one attempt are refused).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from airflow_aws_batch import eks, shapes
from airflow_aws_batch.config import UNSUPPORTED_SUBMIT_JOB_KEYS, ExecutorConfig, one_job_per_try_problems
from airflow_aws_batch.core.ownership import DEPLOYMENT_TAG, TEAM_TAG
from airflow_aws_batch.fairshare import (
    DEFAULT_SHARE_TEMPLATE,
    PENDING_KEY,
    FairShareMismatch,
    QueueKind,
    apply_kind,
    fair_share_member_problems,
    priority_override,
    render_share_identifier,
)
from airflow_aws_batch.jobdefs import OVERRIDES_KEY, host_access, host_access_expected, overrides_problems
from airflow_aws_batch.workload_rules import PENDING_KEY as WORKLOADS_KEY
from airflow_aws_batch.workload_rules import PLACEHOLDER_URL, launch_command

MAX_JOB_NAME = 128
MAX_CONTAINER_OVERRIDES_CHARS = 8192
MAX_REQUEST_BYTES = 30 * 1024
EXECUTOR_CONTAINER_ENV = "AIRFLOW_IS_EXECUTOR_CONTAINER"
TAG_VALUE_MAX = 256

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")


class ExecConfigError(ValueError):
    """A task's ``executor_config`` (or the request it produces) is unusable; only that task fails.

    ``path`` is the dotted key path inside the request (``""`` for the whole value).
    """

    def __init__(self, path: str, expected: str, found: str) -> None:
        self.path = path
        self.expected = expected
        self.found = found
        where = f"executor_config.{path}" if path else "executor_config"
        super().__init__(f"{where}: expected {expected}, found {found}")


class SupportsModelDumpJson(Protocol):
    def model_dump_json(self) -> str: ...


def workload_command(workload: SupportsModelDumpJson) -> list[str]:
    """The Task SDK command that runs ``workload`` (ExecuteTask or ExecuteCallback) in the job."""
    return [
        "python",
        "-m",
        "airflow.sdk.execution_time.execute_workload",
        "--json-string",
        workload.model_dump_json(),
    ]


def stored_workload_command() -> list[str]:
    """The command of a request whose workload goes to the workload store, until it is written there.

    As long as a real one, so the request's size checks hold for the command that is sent.
    """
    return launch_command(PLACEHOLDER_URL)


def job_name_for(prefix: str, dag_id: str, task_id: str) -> str:
    """``<prefix>-<dag_id>-<task_id>`` fitted to Batch: ``[A-Za-z0-9][A-Za-z0-9_-]{0,127}``.

    Other characters become ``_``. Deterministic; a name over 128 characters is cut and ends in
    ``-`` plus 8 hex digits of a hash of the untouched input, so distinct long names stay distinct.
    """
    raw = "-".join(part for part in (prefix, dag_id, task_id) if part)
    name = _NOT_ALLOWED.sub("_", raw).lstrip("_-")
    if not name:
        name = "airflow"
    elif not name[0].isalnum():
        # isalnum() is true for non-ASCII letters, which the substitution above already removed.
        name = "a" + name
    if len(name) > MAX_JOB_NAME:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: MAX_JOB_NAME - 9]}-{digest}"
    return name


def build_submit_job_request(
    config: ExecutorConfig,
    *,
    command: Sequence[str],
    dag_id: str,
    task_id: str,
    run_id: str,
    try_number: int,
    map_index: int,
    queue: str | None,
    executor_config: Mapping[str, Any] | None,
    priority_weight: int | None = None,
    pool: str | None = None,
    team: str | None = None,
    queue_kind: QueueKindLookup | None = None,
    definition_kind: DefinitionLookup | None = None,
    stored_workloads: Sequence[str] | None = None,
) -> dict[str, Any]:
    """SubmitJob kwargs for one task instance; raises :class:`ExecConfigError` for a bad
    ``executor_config`` or a request over Batch's limits.

    Without ``queue_kind`` every queue is taken as FIFO and nothing of fair-share is added (the
    request is exactly the configured one). With it, see :func:`_fair_share`. Without
    ``definition_kind`` every job definition is taken as a container one; with it, a definition of
    unknown kind leaves the command under ``eks.PENDING_KEY`` (see :func:`finish_request`).
    """
    tags = {
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": run_id,
        "try_number": str(try_number),
        "map_index": str(map_index),
    }
    return _build(
        config,
        command=command,
        name_parts=(dag_id, task_id),
        our_tags=tags,
        queue=queue,
        executor_config=executor_config,
        share_fields={"dag_id": dag_id, "task_id": task_id, "queue": queue, "pool": pool, "team": team},
        priority_weight=priority_weight,
        queue_kind=queue_kind,
        definition_kind=definition_kind,
        stored_workloads=stored_workloads,
    )


class RequestTemplates:
    """:func:`build_submit_job_request` for the map indexes of one mapped task at the cost of a copy.

    With a workload store the command is the launcher's, the same for every task, so the requests of
    one task's map indexes in one run and try differ only in the ``map_index`` tag and the workload
    waiting for the store: the first is built and checked in full, the others copy it. A burst of
    thousands of map indexes is accepted on the scheduler thread, where a full build (merging,
    checking against botocore's model) costs several times the copy.

    Used only for requests with stored workloads; anything else is built in full. The key holds every
    other input, the map index's length included (the size checks see the same bytes), and a template
    is used only while the queue's and the job definition's kinds are what they were when it was built.
    Thread-safe: the executor's intake thread builds a burst's requests while the scheduler thread may
    build a few inline.
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._templates: OrderedDict[tuple[Any, ...], _Template] = OrderedDict()
        self._lock = threading.Lock()

    def build(
        self,
        config: ExecutorConfig,
        *,
        stored_workloads: Sequence[str],
        map_index: int,
        queue: str | None,
        executor_config: Mapping[str, Any] | None,
        queue_kind: QueueKindLookup | None = None,
        definition_kind: DefinitionLookup | None = None,
        **rest: Any,
    ) -> dict[str, Any]:
        """As :func:`build_submit_job_request` with the launcher's command (``stored_workloads`` set)."""
        key = self._key(config, map_index, queue, executor_config, rest)

        def fresh() -> dict[str, Any]:
            return build_submit_job_request(
                config,
                command=stored_workload_command(),
                map_index=map_index,
                queue=queue,
                executor_config=executor_config,
                queue_kind=queue_kind,
                definition_kind=definition_kind,
                stored_workloads=stored_workloads,
                **rest,
            )

        if key is None:
            return fresh()
        with self._lock:
            template = self._templates.get(key)
        if template is None or not template.still_holds(queue_kind, definition_kind):
            # Built outside the lock; two threads building the same key both get a valid request.
            template = _Template(fresh(), queue_kind, definition_kind)
            with self._lock:
                self._templates[key] = template
                while len(self._templates) > self._size:
                    self._templates.popitem(last=False)
        with self._lock:
            if key in self._templates:
                self._templates.move_to_end(key)
        # A new top level, tags and workloads; the nested members are the template's, which is safe
        # because the core packs a request (serialises it) as it takes it and never changes it before.
        request = dict(template.request)
        request["tags"] = {**template.request["tags"], "map_index": str(map_index)}
        request[WORKLOADS_KEY] = list(stored_workloads)
        return request

    @staticmethod
    def _key(
        config: ExecutorConfig,
        map_index: int,
        queue: str | None,
        executor_config: Mapping[str, Any] | None,
        rest: Mapping[str, Any],
    ) -> tuple[Any, ...] | None:
        if not executor_config:
            overlay = ""
        else:
            try:
                overlay = json.dumps(executor_config, sort_keys=True, separators=(",", ":"))
            except (TypeError, ValueError):
                return None  # not JSON: checking it fails, and the full build says why
        return (id(config), len(str(map_index)), queue, overlay, tuple(sorted(rest.items())))


class _Template:
    """A request built in full, and the kinds of its queue and definition it was built for."""

    __slots__ = ("definition", "queue", "request")

    def __init__(
        self,
        request: dict[str, Any],
        queue_kind: QueueKindLookup | None,
        definition_kind: DefinitionLookup | None,
    ) -> None:
        self.request = request
        self.queue = _ask(queue_kind, request["jobQueue"])
        self.definition = _ask(definition_kind, request["jobDefinition"])

    def still_holds(
        self, queue_kind: QueueKindLookup | None, definition_kind: DefinitionLookup | None
    ) -> bool:
        return bool(
            _ask(queue_kind, self.request["jobQueue"]) == self.queue
            and _ask(definition_kind, self.request["jobDefinition"]) == self.definition
        )


def _ask(lookup: Callable[[str], Any] | None, name: Any) -> Any:
    return None if lookup is None else (lookup(str(name)),)


def build_callback_submit_job_request(
    config: ExecutorConfig,
    *,
    command: Sequence[str],
    callback_id: str,
    callback_path: str | None,
    dag_id: str | None = None,
    run_id: str | None = None,
    queue: str | None = None,
    executor_config: Mapping[str, Any] | None = None,
    team: str | None = None,
    queue_kind: QueueKindLookup | None = None,
    definition_kind: DefinitionLookup | None = None,
    stored_workloads: Sequence[str] | None = None,
) -> dict[str, Any]:
    """SubmitJob kwargs for an ``ExecuteCallback`` workload (Airflow >= 3.3).

    Named ``<jobName>-<dag_id or "callback">-callback_<function name or id>``; tagged
    ``callback_id``, ``callback_path`` and, when known, ``dag_id`` and ``run_id``.
    """
    short = callback_path.rsplit(".", 1)[-1] if callback_path else callback_id
    tags = {"callback_id": callback_id}
    if callback_path:
        tags["callback_path"] = callback_path
    if dag_id:
        tags["dag_id"] = dag_id
    if run_id:
        tags["run_id"] = run_id
    return _build(
        config,
        command=command,
        name_parts=(dag_id or "callback", f"callback_{short}"),
        our_tags=tags,
        queue=queue,
        executor_config=executor_config,
        share_fields={
            "dag_id": dag_id or "callback",
            "task_id": f"callback_{short}",
            "queue": queue,
            "pool": None,
            "team": team,
        },
        priority_weight=None,
        queue_kind=queue_kind,
        definition_kind=definition_kind,
        stored_workloads=stored_workloads,
    )


def check_executor_config(executor_config: Any) -> dict[str, Any]:
    """Validate a task's ``executor_config`` on its own (a partial SubmitJob request)."""
    if executor_config is None:
        return {}
    if not isinstance(executor_config, Mapping):
        raise ExecConfigError("", "an object of SubmitJob parameters", shapes.describe_found(executor_config))
    overrides = executor_config.get("containerOverrides")
    if isinstance(overrides, Mapping) and "command" in overrides:
        raise ExecConfigError(
            "containerOverrides.command",
            "no command (the executor sets the command of every job)",
            shapes.describe_found(overrides["command"]),
        )
    for key in UNSUPPORTED_SUBMIT_JOB_KEYS:
        if key in executor_config:
            raise ExecConfigError(
                key, "no such key (only container and EKS job definitions are supported)", "a value"
            )
    for path, expected, found in eks.override_problems(executor_config):
        raise ExecConfigError(path, expected, found)
    for path, expected, found in one_job_per_try_problems(executor_config):
        raise ExecConfigError(path, expected, found)
    for path, expected, found in fair_share_member_problems(executor_config):
        raise ExecConfigError(path, expected, found)
    if OVERRIDES_KEY in executor_config:
        for path, expected, found in overrides_problems(executor_config[OVERRIDES_KEY]):
            raise ExecConfigError(path, expected, found)
    submit_members = {k: v for k, v in executor_config.items() if k != OVERRIDES_KEY}
    problems = shapes.validate(submit_members, partial=True)
    if problems:
        first = problems[0]
        raise ExecConfigError(first.path, first.expected, first.found)
    return dict(executor_config)


def _build(
    config: ExecutorConfig,
    *,
    command: Sequence[str],
    name_parts: tuple[str, str],
    our_tags: dict[str, str],
    queue: str | None,
    executor_config: Mapping[str, Any] | None,
    share_fields: Mapping[str, str | None],
    priority_weight: int | None,
    queue_kind: QueueKindLookup | None,
    definition_kind: DefinitionLookup | None = None,
    stored_workloads: Sequence[str] | None = None,
) -> dict[str, Any]:
    overlay = check_executor_config(executor_config)
    base = config.base_request()
    base["jobQueue"] = config.job_queue_for(queue)
    request = shapes.deep_merge(base, overlay)
    # Job definition properties are not SubmitJob members: the submit thread derives a definition.
    definition_overrides = request.pop(OVERRIDES_KEY, None)
    if isinstance(definition_overrides, Mapping):
        allowed = config.allowed_job_definition_overrides
        for path, kind, found in host_access(definition_overrides, allowed):
            raise ExecConfigError(f"{OVERRIDES_KEY}.{path}", host_access_expected(kind), found)

    request["jobName"] = job_name_for(str(request["jobName"]), *name_parts)
    for path, expected, found in eks.override_problems(request):
        raise ExecConfigError(path, expected, found)
    if config.deployment_id:
        our_tags = {**our_tags, DEPLOYMENT_TAG: config.deployment_id}
    if config.team is not None:
        our_tags = {**our_tags, TEAM_TAG: config.team}
    request["tags"] = {**request.get("tags", {}), **{k: v[:TAG_VALUE_MAX] for k, v in our_tags.items()}}
    request["propagateTags"] = True
    # One container run per job: a retryStrategy of the job definition would otherwise apply.
    request["retryStrategy"] = {**request.get("retryStrategy", {}), "attempts": 1}
    pending = _fair_share(config, request, share_fields, priority_weight, queue_kind)

    task_container = {"command": list(command), "environment": [dict(EXECUTOR_ENV_ENTRY)]}
    info = eks.CONTAINER if definition_kind is None else definition_kind(str(request["jobDefinition"]))
    if info is None:
        # Checked as the kind the request implies; the submit thread places it for the real kind.
        trial = shapes.deep_merge(request, {})
        _place(trial, eks.guess_info(trial), task_container)
        _check_limits(trial)
        request[eks.PENDING_KEY] = task_container
    else:
        _place(request, info, task_container)
        _check_limits(request)
    if pending is not None:
        request[PENDING_KEY] = pending
    if definition_overrides:
        request[OVERRIDES_KEY] = definition_overrides
    if stored_workloads is not None:
        # The command names a placeholder until the submit thread has written these to the store.
        request[WORKLOADS_KEY] = list(stored_workloads)
    return request


EXECUTOR_ENV_ENTRY = {"name": EXECUTOR_CONTAINER_ENV, "value": "true"}


def _place(request: dict[str, Any], info: eks.DefinitionInfo, task_container: Mapping[str, Any]) -> None:
    problems = eks.place_task_container(
        request, info, list(task_container["command"]), list(task_container["environment"])
    )
    for path, expected, found in problems:
        raise ExecConfigError(path, expected, found)


def _check_limits(request: dict[str, Any]) -> None:
    """The complete request against botocore's SubmitJob model and Batch's size limits."""
    problems = shapes.validate(request)
    if problems:
        first = problems[0]
        raise ExecConfigError(first.path, first.expected, first.found)
    for member in (eks.CONTAINER_OVERRIDE, eks.EKS_OVERRIDE):
        if member not in request:
            continue
        overrides_chars = len(json.dumps(request[member], separators=(",", ":")))
        if overrides_chars > MAX_CONTAINER_OVERRIDES_CHARS:
            raise ExecConfigError(
                member,
                f"at most {MAX_CONTAINER_OVERRIDES_CHARS} characters of container overrides (Batch limit, "
                "command included)",
                f"{overrides_chars} characters",
            )
    request_bytes = len(json.dumps(request, separators=(",", ":")).encode())
    if request_bytes > MAX_REQUEST_BYTES:
        raise ExecConfigError(
            "",
            f"a SubmitJob request of at most {MAX_REQUEST_BYTES} bytes (Batch limit)",
            f"{request_bytes} bytes",
        )


def finish_request(request: dict[str, Any], info: eks.DefinitionInfo | None) -> dict[str, Any]:
    """``request`` with the task's command placed for its job definition's kind (``info``; None: no such
    definition, taken as a container one so that Batch says what is wrong). On a submit thread, for
    requests built while the kind was unknown; raises :class:`ExecConfigError`."""
    if eks.PENDING_KEY not in request:
        return request
    request = shapes.deep_merge(request, {})
    task_container = request.pop(eks.PENDING_KEY)
    # Not SubmitJob members: kept aside while the request is checked, for later steps on this thread.
    private = {key: request.pop(key) for key in (OVERRIDES_KEY, WORKLOADS_KEY) if key in request}
    _place(request, info or eks.CONTAINER, task_container)
    _check_limits(request)
    request.update(private)
    return request


#: The job definition info of a definition name as far as known now, without I/O; None when unknown.
DefinitionLookup = Callable[[str], "eks.DefinitionInfo | None"]


#: The kind of a job queue (name or ARN) as far as known now, without I/O; None when not known yet.
QueueKindLookup = Callable[[str], "QueueKind | None"]


def _fair_share(
    config: ExecutorConfig,
    request: dict[str, Any],
    share_fields: Mapping[str, str | None],
    priority_weight: int | None,
    queue_kind: QueueKindLookup | None,
) -> dict[str, Any] | None:
    """Add what a fair-share queue needs to ``request`` (in place) when its queue's kind is known;
    otherwise return it, for the submit thread to apply once the kind is read (``fairshare``).

    A ``shareIdentifier`` or ``schedulingPriorityOverride`` already in the request (submit_job_kwargs,
    executor_config) wins over the options. On a FIFO queue the options add nothing.
    """
    if queue_kind is None:
        return None
    kind = queue_kind(str(request["jobQueue"]))
    if kind is QueueKind.FIFO:
        # Nothing of ours goes to a FIFO queue: rendering the share identifier for every task of a
        # burst (most deployments have no fair-share queue) is wasted work on the scheduler thread.
        try:
            apply_kind(request, kind, {})
        except FairShareMismatch as exc:
            raise ExecConfigError(
                "shareIdentifier", "no shareIdentifier on a FIFO job queue", str(exc)
            ) from None
        return None
    ours: dict[str, Any] = {}
    if "shareIdentifier" not in request:
        template = config.share_identifier or DEFAULT_SHARE_TEMPLATE
        fields = {name: share_fields.get(name) for name in ("queue", "pool", "team")}
        ours["shareIdentifier"] = render_share_identifier(
            template,
            dag_id=str(share_fields.get("dag_id") or ""),
            task_id=str(share_fields.get("task_id") or ""),
            **fields,
        )
    if "schedulingPriorityOverride" not in request:
        priority = priority_override(config.scheduling_priority, priority_weight)
        if priority is not None:
            ours["schedulingPriorityOverride"] = priority
    if kind is None:
        return ours
    try:
        apply_kind(request, kind, ours)
    except FairShareMismatch as exc:
        raise ExecConfigError("shareIdentifier", "no shareIdentifier on a FIFO job queue", str(exc)) from None
    return None


def token_expires_at(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a workload's JWT, read without checking its signature.

    Only used to stop resubmitting a workload whose token can no longer start its task; the API
    server is what checks tokens. None when the token is not a JWT with an ``exp``.
    """
    import base64

    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
    except (IndexError, ValueError, AttributeError):
        return None
    return float(exp) if isinstance(exp, int | float) else None
