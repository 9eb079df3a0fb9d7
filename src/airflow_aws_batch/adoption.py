"""Adoption planning: the AWS reads around :mod:`core.ownership`'s rules that decide which job each
adopted task instance watches, and the reads the orphan sweep (:mod:`airflow_aws_batch.sweep`) and
the resolution of lost submissions (:mod:`airflow_aws_batch.lost`) share with it.

Adoption runs on the scheduler thread, inside Airflow's ``adopt_or_reset_orphaned_tasks``, because
Airflow needs the answer (adopted or handed back) before it returns; it is bounded by a deadline
and by ``status_calls_per_second``. What the deadline leaves unread is adopted *unconfirmed*
(``provisional``): a task instance whose saved job was not read, or whose job must be looked up by
its tags when the listing did not fit. Those are verified later, off the scheduler thread (see
:func:`check_saved` and :func:`~airflow_aws_batch.lost.resolve_lost`).

Not supported: jobs on a job queue that only a task's ``executor_config`` names (adoption by tags
reads ``job_queue`` and the values of ``queue_map``).
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_aws_batch.aws.batch import DESCRIBE_MAX_IDS, BatchApi, BatchApiError
from airflow_aws_batch.aws.shapes import JobDetail
from airflow_aws_batch.core.arrays import child_job_id
from airflow_aws_batch.core.messages import ACTIVE_STATUSES, Terminate
from airflow_aws_batch.core.ownership import (
    ARRAY_TRY_TAGS,
    DEPLOYMENT_TAG,
    TryId,
    array_child_tries,
    is_job_of,
    is_team_job,
    not_another_teams_job,
    of_this_queueing,
    try_of,
    waiting_array_children,
)
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


class OutOfBudget(Exception):
    """The deadline or the call budget ran out before every read was done."""


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
    #: the listing did not fit the deadline: adopted and looked up later (``lost.resolve_lost``).
    lookup: dict[Any, JobDetail | None] = field(default_factory=dict)


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
    if not job_of_this_queueing(detail, queued_ms):
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


def job_of_this_queueing(detail: JobDetail, queued_ms: int | None) -> bool:
    """Can ``detail``'s job be the submission of the task instance's queueing at ``queued_ms``
    (see :func:`~airflow_aws_batch.core.ownership.of_this_queueing`)?"""
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
            if job_of_this_queueing(detail, queued[ti.key]):
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
                        and job_of_this_queueing(d, queued[ti.key])
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
            array_tries(store, parent), waiting, created_at_ms=parent.created_at
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


def array_tries(store: WorkloadStore, parent: JobDetail) -> list[TryId | None]:
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
