"""Startup checks, shared by ``AwsBatchExecutor.start()`` and ``airflow aws-batch check``.

``run_checks(api_or_client, config)`` returns one :class:`CheckItem` per check, in this order:

==================  =====================================================  =====
name                ok when                                                fatal
==================  =====================================================  =====
credentials         a DescribeJobQueues call is answered                   yes
job_queue           ``job_queue`` exists, ENABLED and VALID                yes
compute_env:<name>  each compute environment of the queue ENABLED+VALID    yes
queue_map:<queue>   each job queue named in ``queue_map`` exists/ENABLED   yes
job_definition      ``job_definition`` exists with an ACTIVE revision of   yes
                    a kind the executor can run (container or EKS)
definition_queue    only on a mismatch: an EKS definition on a queue of    yes
                    ECS compute environments, or a container one on EKS;
                    or ``submit_job_kwargs`` with the other kind's override
fair_share          the fair-share settings fit the queues' kinds          yes
==================  =====================================================  =====

``airflow aws-batch check`` adds :func:`job_definition_registration_items` (never fatal): whether the
credentials may register the definitions that ``jobDefinitionOverrides`` needs.

Each queue item says whether the queue is fair-share or FIFO, and each compute environment item its
minimum, desired and maximum vCPUs. The kinds read are recorded in ``kinds`` when given, so the
executor knows them before its first SubmitJob. The job definition item says whether the definition
is a container or an EKS one, recorded in ``definitions`` when given (see :mod:`airflow_aws_batch.eks`);
it fails for multi-node or ECS-properties definitions, and for EKS ones whose first container sets
``args``. ``fair_share`` fails when ``share_identifier`` is set
but every queue is FIFO, or when ``submit_job_kwargs`` sets ``shareIdentifier`` and a queue is FIFO.

When the credentials check fails the others are skipped. Callers add their own items (the CLI adds
the environment and execution API URL checks). Not checked at start: IAM permissions beyond the
Describe calls, networking from the compute environment to the API server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_aws_batch.aws.batch import BatchApi, BatchApiError
from airflow_aws_batch.aws.shapes import ComputeEnvironmentInfo, JobDefinitionInfo, JobQueueInfo
from airflow_aws_batch.config import ExecutorConfig
from airflow_aws_batch.eks import DefinitionKind, DefinitionKinds
from airflow_aws_batch.fairshare import DEFAULT_SHARE_TEMPLATE, QueueKind, QueueKinds


@dataclass(frozen=True)
class CheckItem:
    name: str
    ok: bool
    detail: str
    #: A failed fatal item stops the scheduler at start (and makes ``check`` exit non-zero).
    fatal: bool = True


def _api(api_or_client: BatchApi | Any) -> BatchApi:
    if isinstance(api_or_client, BatchApi):
        return api_or_client
    client = api_or_client
    return BatchApi(lambda: client)


def queue_kind(queue: JobQueueInfo) -> QueueKind:
    return QueueKind.FAIR_SHARE if queue.scheduling_policy_arn else QueueKind.FIFO


def run_checks(
    api_or_client: BatchApi | Any,
    config: ExecutorConfig,
    kinds: QueueKinds | None = None,
    definitions: DefinitionKinds | None = None,
) -> list[CheckItem]:
    """Run the checks against a :class:`BatchApi` or a boto3 ``batch`` client. Never raises for AWS errors."""
    api = _api(api_or_client)
    items: list[CheckItem] = []
    seen: dict[str, QueueKind] = {}
    try:
        queue = api.describe_job_queue(config.job_queue)
    except BatchApiError as exc:
        items.append(CheckItem("credentials", False, f"DescribeJobQueues failed: {exc.code}: {exc.message}"))
        return items
    items.append(CheckItem("credentials", True, "DescribeJobQueues answered"))
    _record(seen, kinds, config.job_queue, queue)
    environments: list[ComputeEnvironmentInfo] = []
    items.extend(
        _queue_items(
            "job_queue", config.job_queue, queue, api, with_compute_environments=True, seen=environments
        )
    )
    for airflow_queue, batch_queue in sorted(config.queue_map.items()):
        try:
            mapped = api.describe_job_queue(batch_queue)
        except BatchApiError as exc:
            items.append(CheckItem(f"queue_map:{airflow_queue}", False, f"{batch_queue}: {exc}"))
            continue
        _record(seen, kinds, batch_queue, mapped)
        items.extend(_queue_items(f"queue_map:{airflow_queue}", batch_queue, mapped, api, False))
    items.extend(fair_share_items(config, seen))
    try:
        definition = api.describe_job_definition(config.job_definition)
    except BatchApiError as exc:
        items.append(
            CheckItem("job_definition", False, f"{config.job_definition}: {exc.code}: {exc.message}")
        )
        return items
    if definition is None:
        items.append(
            CheckItem("job_definition", False, f"job definition {config.job_definition!r} does not exist")
        )
    elif definition.status != "ACTIVE":
        items.append(
            CheckItem(
                "job_definition",
                False,
                f"job definition {config.job_definition!r} is {definition.status}, expected ACTIVE",
            )
        )
    else:
        items.append(definition_item(definition))
        mismatch = orchestration_problem(definition, config.job_queue, environments) or kwargs_problem(
            definition, config
        )
        if mismatch:
            items.append(CheckItem("definition_queue", False, mismatch))
        if definitions is not None:
            definitions.record(definition.info, config.job_definition)
    return items


def orchestration_problem(
    definition: JobDefinitionInfo, queue_name: str, environments: list[ComputeEnvironmentInfo]
) -> str | None:
    """Why ``job_definition`` cannot run on ``job_queue`` (EKS definitions need EKS compute environments,
    container ones ECS ones), or None. Pure."""
    kinds = {ce.orchestration for ce in environments}
    if not kinds or definition.info.kind is DefinitionKind.OTHER:
        return None
    wanted = "EKS" if definition.info.kind is DefinitionKind.EKS else "ECS"
    if wanted in kinds:
        return None
    what = "an EKS" if wanted == "EKS" else "a container"
    return (
        f"{definition.name}:{definition.revision} is {what} job definition but the compute environments "
        f"of job queue {queue_name!r} are {'/'.join(sorted(kinds))}: Batch refuses such jobs; use a job "
        f"queue of {wanted} compute environments"
    )


def kwargs_problem(definition: JobDefinitionInfo, config: ExecutorConfig) -> str | None:
    """Why ``submit_job_kwargs`` cannot go with ``job_definition``: the other kind's override. Pure."""
    kind = definition.info.kind
    member = {
        DefinitionKind.CONTAINER: "eksPropertiesOverride",
        DefinitionKind.EKS: "containerOverrides",
    }.get(kind)
    if member is None or not config.submit_job_kwargs.get(member):
        return None
    what = "container" if kind is DefinitionKind.CONTAINER else "EKS"
    return (
        f"submit_job_kwargs sets {member}, which {what} job definition "
        f"{definition.name}:{definition.revision} refuses: every task would fail; move it to the "
        "executor_config of the tasks on job definitions of the other kind"
    )


def definition_item(definition: JobDefinitionInfo) -> CheckItem:
    """The ``job_definition`` item of an ACTIVE definition: its kind, and whether the executor can use it."""
    info = definition.info
    name = f"{definition.name}:{definition.revision}"
    if info.kind is DefinitionKind.OTHER:
        return CheckItem(
            "job_definition",
            False,
            f"{name} is a multi-node or ECS-properties job definition; the executor runs tasks on container "
            "or EKS job definitions only",
        )
    if info.kind is DefinitionKind.CONTAINER:
        return CheckItem(
            "job_definition", True, f"{name} is ACTIVE, a container job definition ({definition.arn})"
        )
    if info.first_container_args:
        return CheckItem(
            "job_definition",
            False,
            f"{name} is an EKS job definition whose first container sets args, which Kubernetes would "
            "append to the task's command: remove them",
        )
    container = f"container {info.first_container!r}" if info.first_container else "its first container"
    return CheckItem(
        "job_definition",
        True,
        f"{name} is ACTIVE, an EKS job definition: tasks run in {container} of its pod ({definition.arn})",
    )


def _record(seen: dict[str, QueueKind], kinds: QueueKinds | None, name: str, queue: Any) -> None:
    if queue is None:
        return
    kind = queue_kind(queue)
    seen[name] = kind
    if kinds is not None:
        kinds.record(kind, name, queue.name, queue.arn)


def fair_share_items(config: ExecutorConfig, seen: dict[str, QueueKind]) -> list[CheckItem]:
    """Whether the fair-share settings can work on the queues read (``seen``: queue -> kind). Pure."""
    if not seen:
        return []
    fifo = sorted(name for name, kind in seen.items() if kind is QueueKind.FIFO)
    fair = sorted(name for name, kind in seen.items() if kind is QueueKind.FAIR_SHARE)
    problems: list[str] = []
    if config.share_identifier is not None and not fair:
        problems.append(
            f"[aws_batch_executor] share_identifier is set ({config.share_identifier!r}) but every job "
            f"queue is FIFO ({', '.join(repr(q) for q in fifo)}), where no share identifier is sent: use a "
            "job queue with a scheduling policy, or unset share_identifier"
        )
    if "shareIdentifier" in config.submit_job_kwargs and fifo:
        problems.append(
            "[aws_batch_executor] submit_job_kwargs sets shareIdentifier, which FIFO job queue(s) "
            f"{', '.join(repr(q) for q in fifo)} refuse: move it to share_identifier (sent to fair-share "
            "queues only) or to the executor_config of tasks on fair-share queues"
        )
    if problems:
        return [CheckItem("fair_share", False, "; ".join(problems))]
    if not fair:
        return [
            CheckItem("fair_share", True, "every job queue is FIFO: no share identifiers or priorities sent")
        ]
    template = config.share_identifier or f"{DEFAULT_SHARE_TEMPLATE} (default)"
    priority = "priority_weight clamped to 0..9999" if config.scheduling_priority == "clamp" else "none"
    return [
        CheckItem(
            "fair_share",
            True,
            f"fair-share queue(s) {', '.join(repr(q) for q in fair)}: shareIdentifier {template}, "
            f"schedulingPriorityOverride {priority}",
        )
    ]


def _queue_items(
    name: str,
    queue_name: str,
    queue: Any,
    api: BatchApi,
    with_compute_environments: bool,
    *,
    seen: list[ComputeEnvironmentInfo] | None = None,
) -> list[CheckItem]:
    if queue is None:
        return [CheckItem(name, False, f"job queue {queue_name!r} does not exist")]
    if (queue.state, queue.status) != ("ENABLED", "VALID"):
        reason = f" ({queue.status_reason})" if queue.status_reason else ""
        return [
            CheckItem(
                name,
                False,
                f"job queue {queue_name!r} is {queue.state}/{queue.status}{reason}, expected ENABLED/VALID",
            )
        ]
    if queue.scheduling_policy_arn:
        kind = f"fair-share (scheduling policy {queue.scheduling_policy_arn})"
    else:
        kind = "FIFO (no scheduling policy)"
    items = [CheckItem(name, True, f"job queue {queue_name!r} is ENABLED/VALID, {kind}")]
    if not with_compute_environments:
        return items
    try:
        environments = api.describe_compute_environments(list(queue.compute_environments))
    except BatchApiError as exc:
        return [
            *items,
            CheckItem("compute_environments", False, f"DescribeComputeEnvironments failed: {exc}"),
        ]
    if seen is not None:
        seen.extend(environments)
    if not environments:
        items.append(
            CheckItem("compute_environments", False, f"job queue {queue_name!r} has no compute environment")
        )
    for ce in environments:
        ok = (ce.state, ce.status) == ("ENABLED", "VALID")
        reason = f" ({ce.status_reason})" if ce.status_reason and not ok else ""
        detail = f"compute environment {ce.name!r} is {ce.state}/{ce.status}{reason}"
        if ce.min_vcpus is not None:
            detail += f", vCPUs min {ce.min_vcpus} desired {ce.desired_vcpus} max {ce.max_vcpus}"
        if ce.orchestration == "EKS":
            detail += f", EKS (namespace {ce.kubernetes_namespace!r})"
        items.append(
            CheckItem(f"compute_env:{ce.name}", ok, detail if ok else f"{detail}, expected ENABLED/VALID")
        )
    return items


def format_failures(config: ExecutorConfig, failures: list[CheckItem], region: str | None = None) -> str:
    """One message naming the region, each failing resource and what is wrong."""
    where = region or config.region_name or "(region from the connection)"
    problems = "; ".join(f"{item.name}: {item.detail}" for item in failures)
    whose = f" (team {config.team!r})" if config.team is not None else ""
    return (
        f"AwsBatchExecutor{whose} startup check failed in region {where} "
        f"(connection {config.conn_id!r}): {problems}. "
        f"Fix the resource, or set [aws_batch_executor] check_health_on_startup = False{whose} to skip "
        "this check."
    )


#: Error codes that mean "these credentials may not make this call".
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


def job_definition_registration_items(
    batch_client: Any, config: ExecutorConfig, iam_client: Any = None, sts_client: Any = None
) -> list[CheckItem]:
    """Whether the credentials may register the job definitions that ``jobDefinitionOverrides``
    needs (``airflow aws-batch check`` only; never fatal: tasks without the key need none of it).

    First asks IAM (``iam:SimulatePrincipalPolicy`` on the caller from ``sts:GetCallerIdentity``) about
    ``batch:RegisterJobDefinition`` and ``iam:PassRole`` on the roles of ``job_definition``. Where IAM
    will not answer, probes Batch: a RegisterJobDefinition without container properties, which Batch
    refuses for its content when the call is allowed and with AccessDenied when it is not (a
    definition registered all the same is deregistered). PassRole is then reported as not verified.
    """
    roles: list[str] = []
    image: str | None = None
    try:
        definition = _api(batch_client).describe_job_definition(config.job_definition)
        if definition is not None:
            raw = batch_client.describe_job_definitions(jobDefinitions=[definition.arn])["jobDefinitions"]
            props = (raw[0].get("containerProperties") or {}) if raw else {}
            roles = [str(props[k]) for k in ("jobRoleArn", "executionRoleArn") if props.get(k)]
            image = str(props["image"]) if props.get("image") else None
    except Exception:
        pass  # the job_definition item reports what is wrong with it; no roles to ask about then
    simulated = _simulate(iam_client, sts_client, roles, image)
    if simulated is not None:
        return simulated
    probe = _probe_register(batch_client, f"{config.job_definition}-permission-probe")
    passrole = CheckItem(
        "pass_role",
        False,
        "not verified (iam:SimulatePrincipalPolicy not answered): a definition that names a job or "
        "execution role needs iam:PassRole on it",
        fatal=False,
    )
    return [probe, passrole]


def _principal(arn: str) -> str:
    """The IAM principal of a caller ARN: an assumed-role session's role (paths are not in the session
    ARN, so a role with a path is simulated under its name only)."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        return f"{parts[0]}:{parts[1]}:iam::{parts[4]}:role/{role}"
    return arn


def _simulate(
    iam_client: Any, sts_client: Any, roles: list[str], image: str | None = None
) -> list[CheckItem] | None:
    if iam_client is None or sts_client is None:
        return None
    # What a derived definition is: not privileged (the executor refuses that by default, and the
    # rendered policy allows registering only such), and as a rule with the base definition's image.
    context = [
        {"ContextKeyName": "batch:Privileged", "ContextKeyValues": ["false"], "ContextKeyType": "boolean"}
    ]
    if image:
        context.append(
            {"ContextKeyName": "batch:Image", "ContextKeyValues": [image], "ContextKeyType": "string"}
        )
    try:
        principal = _principal(str(sts_client.get_caller_identity()["Arn"]))
        register = iam_client.simulate_principal_policy(
            PolicySourceArn=principal, ActionNames=["batch:RegisterJobDefinition"], ContextEntries=context
        )["EvaluationResults"]
        passes = (
            iam_client.simulate_principal_policy(
                PolicySourceArn=principal, ActionNames=["iam:PassRole"], ResourceArns=roles
            )["EvaluationResults"]
            if roles
            else []
        )
    except Exception:
        return None  # no permission to simulate, or no IAM here: probe instead
    items = []
    decision = register[0]["EvalDecision"] if register else "implicitDeny"
    items.append(
        CheckItem(
            "register_job_definitions",
            decision == "allowed",
            f"IAM simulation for {principal}: batch:RegisterJobDefinition {decision}"
            + ("" if decision == "allowed" else "; tasks with jobDefinitionOverrides would fail"),
            fatal=False,
        )
    )
    denied = [r.get("EvalResourceName", "?") for r in passes if r.get("EvalDecision") != "allowed"]
    if not roles:
        detail = "the job definition names no job or execution role"
    elif denied:
        detail = f"iam:PassRole denied on {', '.join(denied)}"
    else:
        detail = f"iam:PassRole allowed on {', '.join(roles)}"
    items.append(CheckItem("pass_role", not denied, detail, fatal=False))
    return items


def _probe_register(batch_client: Any, name: str) -> CheckItem:
    try:
        answer = batch_client.register_job_definition(jobDefinitionName=name, type="container")
    except Exception as exc:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__))
        if code in DENIED_CODES:
            return CheckItem(
                "register_job_definitions",
                False,
                f"RegisterJobDefinition denied ({code}): tasks with jobDefinitionOverrides would fail",
                fatal=False,
            )
        if code == "ClientException":
            return CheckItem(
                "register_job_definitions",
                True,
                "RegisterJobDefinition allowed (a probe without container properties was refused for "
                "its content, not for permissions; nothing was registered)",
                fatal=False,
            )
        return CheckItem(
            "register_job_definitions", False, f"not verified: the probe got {code}", fatal=False
        )
    arn = answer.get("jobDefinitionArn")
    try:
        batch_client.deregister_job_definition(jobDefinition=arn)
        cleanup = "then deregistered it"
    except Exception as exc:
        cleanup = f"which could not be deregistered ({exc}): deregister it by hand"
    return CheckItem(
        "register_job_definitions",
        True,
        f"RegisterJobDefinition allowed (the probe registered {arn}, {cleanup})",
        fatal=False,
    )
