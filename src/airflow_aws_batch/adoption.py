"""Adoption and the orphan sweep: the AWS and metadata-DB reads around :mod:`core.ownership`'s rules.

Adoption runs on the scheduler thread, inside Airflow's ``adopt_or_reset_orphaned_tasks``, because
Airflow needs the answer (adopted or handed back) before it returns; it is bounded by a deadline
and by ``status_calls_per_second``. What the deadline leaves unread is adopted *unconfirmed*
(``provisional``): a task instance whose saved job was not read, or whose job must be looked up by
its tags when the listing did not fit. Those are verified later, off the scheduler thread (see
:func:`check_saved` and :func:`resolve_lost`). The sweep runs on the runtime's terminator thread.

Not supported: jobs on a job queue that only a task's ``executor_config`` names (adoption by tags
and the sweep read ``job_queue`` and the values of ``queue_map``).
"""

from __future__ import annotations

import enum
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, MutableSet, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_aws_batch.aws.batch import DESCRIBE_MAX_IDS, BatchApi, BatchApiError, JobDetail
from airflow_aws_batch.core.arrays import child_job_id
from airflow_aws_batch.core.messages import ACTIVE_STATUSES, Terminate
from airflow_aws_batch.core.ownership import (
    ARRAY_TRY_TAGS,
    DEPLOYMENT_TAG,
    TiNow,
    TryId,
    Verdict,
    array_child_tries,
    is_job_of,
    is_team_job,
    not_another_teams_job,
    of_this_queueing,
    orphan_reason,
    try_of,
    waiting_array_children,
)
from airflow_aws_batch.submit import token_expires_at
from airflow_aws_batch.workloads import (
    StoreError,
    WorkloadStore,
    decode_object,
    parse_object_url,
    parse_store_url,
)

log = logging.getLogger(__name__)

#: ``before_call()``: may the next status call go out now? (waits on the rate limiter; False: give up)
BeforeCall = Callable[[], bool]
#: ``(tries) -> {task instance: what the DB says}``, keyed by :attr:`TryId.ti`.
TiLookup = Callable[[Sequence[TryId]], dict[tuple[str, str, str, int], TiNow]]


class OutOfBudget(Exception):
    """The deadline or the call budget ran out before every read was done."""


class LookupFailed(Exception):
    """Airflow's metadata DB could not say where the task instances are: nothing is terminated."""


@dataclass
class AdoptionPlan:
    """What to do with the task instances handed to ``try_adopt_task_instances``."""

    #: key -> job id to watch.
    adopt: dict[Any, str] = field(default_factory=dict)
    #: Keys adopted through a job found by its tags: Airflow must be told the job id (RunningState).
    found: set[Any] = field(default_factory=set)
    #: Jobs that belong to no try Airflow is waiting for (stale ids, duplicates).
    terminate: list[Terminate] = field(default_factory=list)
    #: Task instances to hand back to Airflow (it resets them, and they run as their next try).
    not_adopted: list[Any] = field(default_factory=list)
    #: key -> what DescribeJobs said of the adopted job (whether it started; its request).
    details: dict[Any, JobDetail] = field(default_factory=dict)
    #: (``provisional``) key -> the saved job id, not read within the deadline: adopted unconfirmed.
    unconfirmed: dict[Any, str] = field(default_factory=dict)
    #: (``provisional``) key -> the saved job (None: DescribeJobs does not know it) that is not of the
    #: current queueing, or FAILED before it started, whose try must be looked up by its tags when
    #: the listing did not fit the deadline: adopted and looked up later (:func:`resolve_lost`).
    lookup: dict[Any, JobDetail | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Awaited:
    """A task instance adopted before its job was confirmed: what verifying it takes."""

    key: Any
    wanted: TryId
    queued_ms: int | None
    ti_id: str | None
    #: Airflow had the task instance QUEUED (not RUNNING) when it was adopted: no task of this
    #: queueing can have started, so an earlier queueing's request may be sent again.
    queued: bool
    #: The job Airflow saved for it, as read (None: not read, or unknown to DescribeJobs).
    saved: JobDetail | None = None


class Saved(enum.Enum):
    """What the job by a saved id is to the task instance (see :func:`check_saved`)."""

    #: This try's job of the current queueing: adopt it.
    CONFIRMED = "confirmed"
    #: This try's job of the current queueing that FAILED before it started: adopt it only when no
    #: newer job of the try is found by its tags (the scheduler may have resubmitted it and died).
    UNSTARTED = "unstarted"
    #: Not this submission (another try, an earlier queueing, terminated, another deployment).
    STALE = "stale"


def check_saved(
    detail: JobDetail, wanted: TryId, queued_ms: int | None, deployment: str, team: str | None
) -> Saved:
    if not is_job_of(detail.tags, wanted, deployment, deployment_required=False, team=team):
        return Saved.STALE
    if not _of_this_queueing(detail, queued_ms):
        return Saved.STALE
    if detail.status == "FAILED" and not detail.started_at:
        return Saved.UNSTARTED
    return Saved.CONFIRMED


def stale_job_terminate(
    detail: JobDetail, wanted: TryId, deployment: str, team: str | None
) -> Terminate | None:
    """TerminateJob for a saved job that is still active but runs an earlier try of the task instance."""
    if (
        detail.status in ACTIVE_STATUSES
        and detail.tags.get(DEPLOYMENT_TAG) in (None, deployment)
        and not_another_teams_job(detail.tags, team)
    ):
        job_try = try_of(detail.tags)
        if job_try is not None and job_try.ti == wanted.ti and job_try.try_number != wanted.try_number:
            return Terminate(
                detail.job_id,
                f"Stale Batch job of try {job_try.try_number}: task instance is at try {wanted.try_number}",
            )
    return None


def try_id(ti: Any) -> TryId:
    return TryId(str(ti.dag_id), str(ti.task_id), str(ti.run_id), int(ti.map_index), int(ti.try_number))


def describe_all(api: BatchApi, job_ids: Iterable[str], before_call: BeforeCall) -> dict[str, JobDetail]:
    ids = list(dict.fromkeys(job_ids))
    details: dict[str, JobDetail] = {}
    for i in range(0, len(ids), DESCRIBE_MAX_IDS):
        if not before_call():
            raise OutOfBudget("DescribeJobs")
        for detail in api.describe_jobs(ids[i : i + DESCRIBE_MAX_IDS]):
            details[detail.job_id] = detail
    return details


def active_jobs(api: BatchApi, queues: Iterable[str], before_call: BeforeCall) -> dict[str, JobDetail]:
    """Every job in SUBMITTED..RUNNING on ``queues``, described (its tags are not in ListJobs)."""
    ids: list[str] = []
    for job_queue in dict.fromkeys(queues):
        try:
            ids.extend(s.job_id for s in api.list_active_jobs(job_queue, before_call))
        except BatchApiError as exc:
            if exc.code == "Incomplete":
                raise OutOfBudget("ListJobs") from exc
            raise
    return {j: d for j, d in describe_all(api, ids, before_call).items() if d.status in ACTIVE_STATUSES}


def queued_at_ms(ti: Any) -> int | None:
    """The task instance's ``queued_dttm`` (when Airflow queued it this time) in epoch milliseconds."""
    queued = getattr(ti, "queued_dttm", None)
    if queued is None or not hasattr(queued, "timestamp"):
        return None
    return int(queued.timestamp() * 1000)


def _of_this_queueing(detail: JobDetail, queued_ms: int | None) -> bool:
    return of_this_queueing(
        created_at_ms=detail.created_at,
        queued_at_ms=queued_ms,
        terminated=detail.is_terminated,
        cancelled=detail.is_cancelled,
    )


def plan_adoption(
    api: BatchApi,
    tis: Sequence[Any],
    *,
    queues: Iterable[str],
    deployment: str,
    before_call: BeforeCall,
    team: str | None = None,
    store: WorkloadStore | None = None,
    provisional: bool = False,
) -> AdoptionPlan:
    """Adopt each task instance's job of *this* submission: by its saved id when the job's tags name
    this try and the job is of the task instance's current queueing (see
    :func:`~airflow_aws_batch.core.ownership.of_this_queueing`), else by its tags among the active
    jobs of ``queues`` (of this queueing too); hand back the rest.

    A saved job of this queueing that FAILED before it started is adopted only when no active job of
    the try is found by its tags: the scheduler may have died after resubmitting it and before the
    new id was saved. Adopted so, the executor resubmits it like any other.

    ``team``: the executor's team (None for a global executor); a job of another team is never
    adopted nor terminated, and one found by tags must carry exactly this team.

    Array children carry their parent's tags, which name no map index: among the active jobs, an
    array of this deployment and team is looked into through its workload object in ``store`` (see
    :func:`find_array_children`), and each child that runs a try being looked up, in its current
    queueing, is a match like a single job found by its tags (adopted by its child id). Children
    of no try handed here are left to the sweep, which asks Airflow's DB about each.

    When the budget runs out (or Batch fails) part way, the jobs already confirmed by their saved id
    are adopted and only the rest is handed back. Raises :class:`BatchApiError` or
    :class:`OutOfBudget` when nothing could be confirmed: the caller then hands every task instance
    back rather than guess.

    ``provisional``: nothing with a saved id is handed back nor raised for. A saved id not read goes
    to :attr:`AdoptionPlan.unconfirmed`, and one whose try needs the listing by tags that did not fit
    to :attr:`AdoptionPlan.lookup`; only task instances without a saved id and not found are handed
    back.
    """
    plan = AdoptionPlan()
    wanted = {ti.key: try_id(ti) for ti in tis}
    queued = {ti.key: queued_at_ms(ti) for ti in tis}
    by_id = {ti.key: str(ti.external_executor_id) for ti in tis if ti.external_executor_id}
    ids = list(dict.fromkeys(by_id.values()))
    details: dict[str, JobDetail] = {}
    described: set[str] = set()
    short = False
    try:
        for i in range(0, len(ids), DESCRIBE_MAX_IDS):
            chunk = ids[i : i + DESCRIBE_MAX_IDS]
            if not before_call():
                raise OutOfBudget("DescribeJobs")
            details.update((d.job_id, d) for d in api.describe_jobs(chunk))
            described.update(chunk)
    except (OutOfBudget, BatchApiError) as exc:
        if not described and not provisional:
            raise
        # What was read is adopted: handing it back would have Airflow reset tasks whose job runs.
        log.warning("Adoption read %d of %d saved job ids (%s)", len(described), len(ids), exc)
        short = True
    to_find: list[Any] = []
    #: key -> the saved job, FAILED before it started: adopted if nothing newer is found.
    unstarted: dict[Any, JobDetail] = {}
    for ti in tis:
        job_id = by_id.get(ti.key)
        if job_id is not None and job_id not in described:
            if provisional:
                plan.unconfirmed[ti.key] = job_id
            else:
                plan.not_adopted.append(ti)
            continue
        detail = details.get(job_id) if job_id else None
        if detail is not None and is_job_of(
            detail.tags, wanted[ti.key], deployment, deployment_required=False, team=team
        ):
            if _of_this_queueing(detail, queued[ti.key]):
                if detail.status == "FAILED" and not detail.started_at:
                    unstarted[ti.key] = detail
                    to_find.append(ti)
                    continue
                plan.adopt[ti.key] = detail.job_id
                plan.details[ti.key] = detail
                continue
            log.info(
                "Batch job %s of %s is not of its current queueing (created %s, queued %s, "
                "terminated %s, cancelled %s): looking for that one by its tags",
                detail.job_id,
                ti.key,
                detail.created_at,
                queued[ti.key],
                detail.is_terminated,
                detail.is_cancelled,
            )
        elif detail is not None and (stale := stale_job_terminate(detail, wanted[ti.key], deployment, team)):
            plan.terminate.append(stale)
        to_find.append(ti)
    if to_find:
        try:
            if short:
                raise OutOfBudget("DescribeJobs")
            active = active_jobs(api, queues, before_call)
            children = find_array_children(
                api,
                store,
                active.values(),
                {wanted[ti.key]: queued[ti.key] for ti in to_find},
                deployment=deployment,
                team=team,
                before_call=before_call,
            )
        except (OutOfBudget, BatchApiError) as exc:
            if not plan.adopt and not provisional:
                raise
            log.warning(
                "Adoption could not look up %d task instance(s) by their tags (%s); %s, the %d confirmed "
                "by their saved id are adopted",
                len(to_find),
                exc,
                "those with a saved id are looked up later" if provisional else "they are handed back",
                len(plan.adopt),
            )
            for ti in to_find:
                if provisional and ti.key in by_id:
                    plan.lookup[ti.key] = details.get(by_id[ti.key])
                else:
                    plan.not_adopted.append(ti)
            return plan
        for ti in to_find:
            matches = sorted(
                [
                    *(
                        d
                        for d in active.values()
                        if is_job_of(d.tags, wanted[ti.key], deployment, deployment_required=True, team=team)
                        and _of_this_queueing(d, queued[ti.key])
                    ),
                    # A child of an array has no tags of its own: its array's object named its try.
                    *children.get(wanted[ti.key], ()),
                ],
                key=lambda d: d.created_at or 0,
            )
            if not matches:
                failed = unstarted.get(ti.key)
                if failed is None:
                    plan.not_adopted.append(ti)
                else:
                    plan.adopt[ti.key] = failed.job_id
                    plan.details[ti.key] = failed
                continue
            newest = matches[-1]
            plan.adopt[ti.key] = newest.job_id
            plan.details[ti.key] = newest
            plan.found.add(ti.key)
            for duplicate in matches[:-1]:
                plan.terminate.append(Terminate(duplicate.job_id, "Duplicate Batch job of one task try"))
    return plan


def find_array_children(
    api: BatchApi,
    store: WorkloadStore | None,
    active: Iterable[JobDetail],
    waiting: dict[TryId, int | None],
    *,
    deployment: str,
    team: str | None,
    before_call: BeforeCall,
) -> dict[TryId, list[JobDetail]]:
    """The children of the active arrays of this deployment and ``team`` that run a try of
    ``waiting`` (try -> its task instance's ``queued_dttm`` in epoch milliseconds) in its current
    queueing, described (so their own end is known): ``{try: [child, ...]}``.

    Only arrays whose shared try tags (all but ``map_index``) are those of a waiting try are looked
    into: one object read each, then one DescribeJobs per 100 children found. Without ``store`` no
    object can be read (an array's command names an object, nothing per child): its children are
    not found, and their task instances are handed back.
    """
    shared = {tuple(t.tags()[name] for name in ARRAY_TRY_TAGS) for t in waiting}
    arrays = [
        d
        for d in active
        if d.array_size
        and d.tags.get(DEPLOYMENT_TAG) == deployment
        and is_team_job(d.tags, team)
        and tuple(d.tags.get(name) for name in ARRAY_TRY_TAGS) in shared
    ]
    if not arrays:
        return {}
    if store is None:
        log.warning(
            "Array job(s) %s may run task instances being adopted, but no workload store is configured "
            "to read which child runs which: those task instances are handed back",
            ", ".join(d.job_id for d in arrays),
        )
        return {}
    picked: dict[str, TryId] = {}
    for parent in arrays:
        for index, child_try in waiting_array_children(
            _array_tries(store, parent), waiting, created_at_ms=parent.created_at
        ).items():
            picked[child_job_id(parent.job_id, index)] = child_try
    found: dict[TryId, list[JobDetail]] = {}
    for child_id, detail in describe_all(api, picked, before_call).items():
        if detail.is_terminated or detail.is_cancelled:
            continue  # ended by a revoke, a shutdown or a sweep: it runs no submission any more
        if detail.status == "FAILED" and not detail.started_at:
            # Its task never started, and a child cannot be resubmitted alone by what Batch says of
            # it: handed back, Airflow runs the try again without having run it once.
            continue
        found.setdefault(picked[child_id], []).append(detail)
    return found


def provisional_plan(tis: Sequence[Any]) -> AdoptionPlan:
    """Nothing read: every task instance with a saved id adopted unconfirmed, the others handed back."""
    plan = AdoptionPlan()
    for ti in tis:
        if ti.external_executor_id:
            plan.unconfirmed[ti.key] = str(ti.external_executor_id)
        else:
            plan.not_adopted.append(ti)
    return plan


#: A resubmit needs the workload's token to outlive a job's start by this much.
RESUBMIT_TOKEN_MARGIN_S = 60.0


@dataclass
class Resolution:
    """What the lookup by tags decided for task instances adopted before their job was known."""

    #: key -> the newest active job of this try and queueing, found by its tags: adopt it and tell
    #: Airflow its id.
    found: dict[Any, JobDetail] = field(default_factory=dict)
    #: key -> the saved job, of this queueing but FAILED before it started: adopt it (it resubmits).
    unstarted: dict[Any, JobDetail] = field(default_factory=dict)
    #: key -> (request, token expiry in epoch seconds): the saved job is this try's from an earlier
    #: queueing (a deferral's resume, a sensor's next poke) and nothing newer exists: send its request
    #: again, since no job runs the current queueing.
    resubmit: dict[Any, tuple[dict[str, Any], float]] = field(default_factory=dict)
    #: key -> why no job can run it: the task instance fails with this reason.
    fail: dict[Any, str] = field(default_factory=dict)
    #: key -> a new workload for a task instance Airflow still has QUEUED on this try with no job of
    #: its current queueing (nothing ran it): built from Airflow's DB as the scheduler builds one when
    #: it queues a task, and submitted like any other (taken out of ``fail``).
    rebuilt: dict[Any, Any] = field(default_factory=dict)
    #: Duplicates among the jobs found.
    terminate: list[Terminate] = field(default_factory=list)


def resolve_lost(
    active: dict[str, JobDetail],
    lost: Sequence[Awaited],
    *,
    deployment: str,
    team: str | None,
    now_s: float,
    children: dict[TryId, list[JobDetail]] | None = None,
) -> Resolution:
    """Decide, from the active jobs of the queues (:func:`active_jobs`), what becomes of each task
    instance adopted unconfirmed whose saved job turned out not to be its current submission.

    In order: the newest active job of this try, deployment and team created for the current queueing
    (found by its tags); else the saved job if it is of the current queueing but FAILED before it
    started (the executor resubmits it); else, for a task instance Airflow had QUEUED, the saved
    job's request sent again when that job is this try's from an earlier queueing and its workload
    (in its command) holds a token valid for ``RESUBMIT_TOKEN_MARGIN_S`` more; else it fails, with a
    reason that says what was found. A finished job of an earlier queueing is never reported.
    ``children``: array children found for the tries (:func:`find_array_children`), matches too.
    """
    out = Resolution()
    for item in lost:
        matches = sorted(
            [
                *(
                    d
                    for d in active.values()
                    if is_job_of(d.tags, item.wanted, deployment, deployment_required=True, team=team)
                    and _of_this_queueing(d, item.queued_ms)
                ),
                *(children or {}).get(item.wanted, ()),
            ],
            key=lambda d: d.created_at or 0,
        )
        if matches:
            out.found[item.key] = matches[-1]
            out.terminate.extend(
                Terminate(d.job_id, "Duplicate Batch job of one task try") for d in matches[:-1]
            )
            continue
        saved = item.saved
        if saved is None:
            out.fail[item.key] = (
                "After a scheduler restart, the Batch job Airflow saved for this try is unknown to AWS "
                "Batch and no active job of this try was found by its tags; Airflow's retries decide "
                "what happens next"
            )
            continue
        verdict = check_saved(saved, item.wanted, item.queued_ms, deployment, team)
        if verdict is Saved.UNSTARTED:
            out.unstarted[item.key] = saved
            continue
        what = _saved_is(saved, item)
        same_try = is_job_of(saved.tags, item.wanted, deployment, deployment_required=False, team=team)
        request = resubmit_request(saved) if same_try else None
        expires = workload_expires_at(saved) if request is not None else None
        if not item.queued:
            why = "the task instance is running in Airflow, so a job of it may have run its task"
        elif not same_try:
            why = "that job is not of this try, so it holds no request for it"
        elif request is None:
            why = "that job's request cannot be sent again (an array child)"
        elif expires is None:
            why = "its workload is not in its command (workload store), so it cannot be sent again"
        elif expires < now_s + RESUBMIT_TOKEN_MARGIN_S:
            why = "its workload's token has expired, so it cannot be sent again"
        else:
            out.resubmit[item.key] = (request, expires)
            continue
        out.fail[item.key] = (
            f"After a scheduler restart, Batch job {saved.job_id} (the one Airflow saved) {what}, no "
            f"active job of this try was found by its tags, and {why}; Airflow's retries decide what "
            "happens next"
        )
    return out


def _saved_is(saved: JobDetail, item: Awaited) -> str:
    """What the saved job is, said for a task instance's failure reason."""
    if saved.is_terminated or saved.is_cancelled:
        return f"was {'terminated' if saved.is_terminated else 'cancelled'} ({saved.status})"
    job_try = try_of(saved.tags)
    if job_try is not None and job_try != item.wanted:
        return f"runs try {job_try.try_number} ({saved.status})"
    return (
        f"is of an earlier queueing of this try ({saved.status}, created at {saved.created_at} ms, the "
        f"task instance queued at {item.queued_ms} ms)"
    )


#: SubmitJob members a resubmit copies from the job's DescribeJobs entry as they are.
_RESUBMIT_MEMBERS = (
    "jobName",
    "jobQueue",
    "jobDefinition",
    "parameters",
    "tags",
    "propagateTags",
    "shareIdentifier",
    "schedulingPriority",
    "retryStrategy",
    "timeout",
)
#: Environment variables Batch sets itself and refuses in an override.
_BATCH_ENV_PREFIX = "AWS_BATCH_"


def resubmit_request(detail: JobDetail) -> dict[str, Any] | None:
    """The SubmitJob request that sends ``detail``'s job again, rebuilt from its DescribeJobs entry;
    None when it cannot be (an array child: its command names the array's object, whose workload for
    it the launcher finds by an array index that a single job does not have).

    The task's command (its workload, or with the workload store the object the job never read) and
    its environment come from the job's container (EKS: the pod's containers).
    """
    raw = detail.raw
    if not raw or ":" in detail.job_id or detail.array_size is not None:
        return None
    if "index" in (raw.get("arrayProperties") or {}):
        return None
    request: dict[str, Any] = {
        name: raw[name] for name in _RESUBMIT_MEMBERS if raw.get(name) not in (None, {}, [], "")
    }
    if not {"jobName", "jobQueue", "jobDefinition"} <= request.keys():
        return None
    if "tags" in request:  # "aws:" tags are Batch's own, refused in a request
        request["tags"] = {k: v for k, v in request["tags"].items() if not str(k).startswith("aws:")}
    retry = request.get("retryStrategy")
    if isinstance(retry, dict) and not retry.get("evaluateOnExit"):
        request["retryStrategy"] = {k: v for k, v in retry.items() if k != "evaluateOnExit"}
    container = raw.get("container")
    pod = (raw.get("eksProperties") or {}).get("podProperties")
    if isinstance(pod, dict):
        containers = []
        for found in pod.get("containers") or []:
            kept = {k: found[k] for k in ("name", "command", "args", "resources") if found.get(k)}
            env = [
                e for e in found.get("env") or [] if not str(e.get("name", "")).startswith(_BATCH_ENV_PREFIX)
            ]
            if env:
                kept["env"] = env
            containers.append(kept)
        if containers:
            request["eksPropertiesOverride"] = {"podProperties": {"containers": containers}}
    elif isinstance(container, dict):
        overrides = {k: container[k] for k in ("command", "resourceRequirements") if container.get(k)}
        env = [
            e
            for e in container.get("environment") or []
            if not str(e.get("name", "")).startswith(_BATCH_ENV_PREFIX)
        ]
        if env:
            overrides["environment"] = env
        if overrides:
            request["containerOverrides"] = overrides
    return request


def workload_expires_at(detail: JobDetail) -> float | None:
    """When the token of the workload in the job's command expires (epoch seconds); None when the
    command holds no workload (it names a stored object) or its token says no expiry."""
    for part in detail.command:
        if part.startswith("{") and '"token"' in part:
            try:
                token = json.loads(part).get("token")
            except ValueError:
                return None
            return token_expires_at(token) if isinstance(token, str) else None
    return None


def sweep(
    api: BatchApi,
    *,
    queues: Iterable[str],
    deployment: str,
    tracked: Callable[[str], bool],
    lookup: TiLookup,
    before_call: BeforeCall,
    suspects: MutableSet[str] | None = None,
    team: str | None = None,
    store: WorkloadStore | None = None,
) -> list[Terminate]:
    """TerminateJob commands for the active jobs of this deployment and ``team`` (None: a global
    executor, whose jobs carry no team tag) that no live try points at.

    ``tracked(job_id)``: this executor watches the job (it is left alone whatever the DB says: the
    poller reports how it ends). A job whose try is queued or running in Airflow is always left
    alone: another scheduler may have just submitted it and not saved its id yet. ``suspects``
    carries, from one sweep to the next, the jobs whose verdict waits for confirmation (updated in
    place); without it they are never terminated.

    Array children: ListJobs lists only their parent, whose tags name no map index. With ``store``
    (the workload store the arrays' objects are in), each active array's object says which try
    every child runs, and a child is judged like a single job of that try; only the children so
    judged are described, to learn whether they are still active. An object that cannot be read
    (expired, or not under ``store``) leaves its children alone.
    """
    active = active_jobs(api, queues, before_call)
    ours = {
        job_id: detail
        for job_id, detail in active.items()
        if detail.tags.get(DEPLOYMENT_TAG) == deployment
        and is_team_job(detail.tags, team)
        and try_of(detail.tags) is not None
    }
    children: dict[str, tuple[TryId, dict[str, str]]] = {}
    if store is not None:
        for parent_id, detail in active.items():
            if (
                detail.array_size
                and detail.tags.get(DEPLOYMENT_TAG) == deployment
                and is_team_job(detail.tags, team)
            ):
                for index, child_try in enumerate(_array_tries(store, detail)):
                    if child_try is not None:
                        children[f"{parent_id}:{index}"] = (child_try, {**detail.tags, **child_try.tags()})
    if not ours and not children:
        return []
    tries = [t for t in (try_of(d.tags) for d in ours.values()) if t is not None]
    tries += [child_try for child_try, _ in children.values()]
    try:
        now = lookup(tries)
    except Exception as exc:
        raise LookupFailed(f"{type(exc).__name__}: {exc}"[:500]) from exc
    out: list[Terminate] = []
    seen_before = set(suspects or ())
    if suspects is not None:
        suspects.clear()

    def judge(job_id: str, verdict: Verdict | None) -> None:
        if verdict is None:
            return
        if verdict.confirm and job_id not in seen_before:
            if suspects is not None:
                suspects.add(job_id)
            return
        out.append(Terminate(job_id, verdict.reason))

    for job_id, detail in ours.items():
        if tracked(job_id):
            continue
        job_try = try_of(detail.tags)
        assert job_try is not None
        judge(job_id, orphan_reason(job_id, detail.tags, deployment, now.get(job_try.ti), team=team))
    verdicts = {
        child_id: verdict
        for child_id, (child_try, tags) in children.items()
        if not tracked(child_id)
        and (verdict := orphan_reason(child_id, tags, deployment, now.get(child_try.ti), team=team))
        is not None
    }
    if verdicts:
        for child_id, detail in describe_all(api, verdicts, before_call).items():
            if detail.status in ACTIVE_STATUSES:
                judge(child_id, verdicts[child_id])
    return out


def _array_tries(store: WorkloadStore, parent: JobDetail) -> list[TryId | None]:
    """The try each child of the array ``parent`` runs, from the object its command names (the last
    element, as the launcher reads it); empty when that object cannot be read."""
    url = parent.command[-1] if parent.command else ""
    if not in_store(store.url, url):
        log.info(
            "Array job %s names no object of the workload store (%s): its children cannot be told apart",
            parent.job_id,
            url,
        )
        return []
    try:
        workloads = decode_object(store.read(url))
    except (StoreError, ValueError) as exc:
        log.info(
            "Cannot read the workload object of array job %s, its children cannot be told apart: %s",
            parent.job_id,
            exc,
        )
        return []
    return array_child_tries(parent.tags, workloads)[: parent.array_size]


def in_store(store_url: str, url: str) -> bool:
    """Whether ``url`` names an object inside the store ``store_url``, judged on the normalised path (a
    job's command is whatever its job says: ``file://<store>/../x`` is outside, whatever it starts with)."""
    try:
        store = parse_store_url(store_url)
        location = parse_object_url(url)
    except ValueError:
        return False
    if location.scheme != store.scheme or location.bucket != store.bucket:
        return False
    if location.scheme == "file":
        root = os.path.normpath(store.key)
        return location.key != root and os.path.commonpath([root, location.key]) == root
    # S3 keys are not paths: no "..", and the key must be under the prefix.
    segments = location.key.split("/")
    return ".." not in segments and (not store.key or location.key.startswith(store.key + "/"))


def deadline_limiter(acquire: Callable[[float], bool], deadline: float) -> BeforeCall:
    """A ``before_call`` that waits on ``acquire(timeout)`` but never past ``deadline`` (monotonic)."""

    def before_call() -> bool:
        left = deadline - time.monotonic()
        return left > 0 and acquire(left)

    return before_call
