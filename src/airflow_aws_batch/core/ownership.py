"""Which Batch job belongs to which task instance try: the rules of adoption and of the orphan sweep.

Every job the executor submits carries tags naming its deployment and its try (``dag_id``,
``task_id``, ``run_id``, ``map_index``, ``try_number``). Airflow keeps a task instance's
``external_executor_id`` when it queues the task again (retry, reschedule poke, deferral resume)
until the new job's id is saved, so an id handed to adoption may name an earlier try's job. These
rules decide from the tags alone; the executor does the I/O.

Multi-team: a team's executor tags its jobs ``airflow_team=<team>``; a global executor's jobs have
no such tag. Found by tags and swept, a job must carry exactly the executor's team (none for a
global executor), so neither ever touches the other's jobs. By the id Airflow saved, a job of
another team is refused too; one without the tag (submitted before the deployment went
multi-team, or without our tags at all) is trusted, as Airflow routed its task instance here.

Not supported: jobs without our tags (submitted by the Amazon provider's executor, another tool or a
release of this executor older than the tags) are never swept, nor found by tags; they are adopted
only by the id Airflow saved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEPLOYMENT_TAG = "deployment"
#: Not ``team``: a user's cost-allocation tag of that name (in ``submit_job_kwargs``) would otherwise
#: make a global executor take its own jobs for a team's and leave them alone.
TEAM_TAG = "airflow_team"
TRY_TAGS = ("dag_id", "task_id", "run_id", "map_index", "try_number")
#: Task instance states in which a job of the same try may legitimately be alive: queued (its
#: SubmitJob may have just returned, on this or another scheduler, before the id was saved) and
#: running. Anything else (success, failed, up_for_retry, deferred, up_for_reschedule, none after a
#: reset, ...) means the try is over or was handed back, and its job has nothing left to do.
LIVE_TI_STATES = frozenset({"queued", "running", "restarting"})


@dataclass(frozen=True, slots=True)
class TryId:
    """One task instance try, as our tags name it."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int

    @property
    def ti(self) -> tuple[str, str, str, int]:
        """The task instance, whatever the try."""
        return (self.dag_id, self.task_id, self.run_id, self.map_index)

    def tags(self) -> dict[str, str]:
        return {
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "map_index": str(self.map_index),
            "try_number": str(self.try_number),
        }


def try_of(tags: Mapping[str, str]) -> TryId | None:
    """The try a job's tags name, or None when they do not name one (a callback, a foreign job).

    Tag values are cut at 256 characters when submitted; ids that long cannot be matched back and
    give None.
    """
    try:
        return TryId(
            dag_id=tags["dag_id"],
            task_id=tags["task_id"],
            run_id=tags["run_id"],
            map_index=int(tags["map_index"]),
            try_number=int(tags["try_number"]),
        )
    except (KeyError, ValueError):
        return None


def is_team_job(tags: Mapping[str, str], team: str | None) -> bool:
    """Was a job with ``tags`` submitted by ``team``'s executor (None: by a global executor)?"""
    return tags.get(TEAM_TAG) == team


def not_another_teams_job(tags: Mapping[str, str], team: str | None) -> bool:
    """A job found by an id Airflow saved: ``team``'s, or one that carries no team tag at all."""
    owner = tags.get(TEAM_TAG)
    return owner is None or owner == team


def is_job_of(
    tags: Mapping[str, str],
    wanted: TryId,
    deployment: str,
    *,
    deployment_required: bool,
    team: str | None = None,
) -> bool:
    """Does a job with ``tags`` run ``wanted``, for this deployment and ``team``?

    ``deployment_required``: False accepts a job without a deployment tag or team tag (an id Airflow
    saved for this task instance), True does not (a job found by its tags on a shared queue). A job
    of another team is never accepted.
    """
    if deployment_required:
        if not is_team_job(tags, team):
            return False
    elif not not_another_teams_job(tags, team):
        return False
    owner = tags.get(DEPLOYMENT_TAG)
    if owner is None:
        if deployment_required:
            return False
    elif owner != deployment:
        return False
    job_try = try_of(tags)
    if job_try is None:
        # Untagged (submitted by the Amazon provider's executor, or an older release of this one):
        # nothing says it is stale, so the id Airflow saved is trusted. A child of an array job
        # carries only the try tags all its siblings share (always try_number): those must match.
        wanted_tags = wanted.tags()
        return not deployment_required and all(
            tags[name] == wanted_tags[name] for name in TRY_TAGS if name in tags
        )
    return job_try == wanted


#: How much earlier than the task instance's ``queued_dttm`` a job of that queueing may say it was
#: created: ``queued_dttm`` is the scheduler host's clock and ``createdAt`` Batch's, and NTP keeps
#: the two well within a second of each other. Kept small because the job of the queueing before
#: (a reschedule sensor's earlier poke, the run before a deferral) was created at least a container
#: start, the task's own run and a scheduler loop before this queueing: seconds, not milliseconds.
QUEUEING_CLOCK_ALLOWANCE_MS = 2_000


def of_this_queueing(
    *, created_at_ms: int | None, queued_at_ms: int | None, terminated: bool, cancelled: bool
) -> bool:
    """Can a job of the right try be the submission of the task instance's current queueing?

    Airflow queues one try again and again (a deferred task that resumes, a reschedule-mode sensor's
    next poke) and keeps its ``external_executor_id`` until the new job's id is saved, so the saved
    id may name the job of an earlier queueing of this very try. Such a job was created before the
    task instance was queued this time (``queued_at_ms``, its ``queued_dttm``), give or take
    :data:`QUEUEING_CLOCK_ALLOWANCE_MS`. A job that was terminated or cancelled was ended by a
    revoke, a shutdown or a sweep (ours or an operator's): it runs no submission any more.
    A time that is not known decides nothing.
    """
    if terminated or cancelled:
        return False
    if created_at_ms is None or queued_at_ms is None:
        return True
    return created_at_ms >= queued_at_ms - QUEUEING_CLOCK_ALLOWANCE_MS


#: The try tags every child of an array job shares with its siblings: an array is one try of one
#: task's mapped instances in one DAG run (see ``core.arrays``); only ``map_index`` differs.
ARRAY_TRY_TAGS = ("dag_id", "task_id", "run_id", "try_number")


def array_child_tries(tags: Mapping[str, str], workloads: Sequence[Any]) -> list[TryId | None]:
    """The try child ``i`` of an array job runs, from its workload object (``workloads[i]``, decoded).

    Batch gives every child its parent's tags, which name no map index: the workload object the
    executor wrote for the array is the only record of which task instance each child runs. None
    for a child whose workload names no task instance try, or one outside the array's own
    ``ARRAY_TRY_TAGS`` (an object that does not belong to this array: nothing is decided from it).
    """
    found: list[TryId | None] = []
    for workload in workloads:
        ti = workload.get("ti") if isinstance(workload, Mapping) else None
        if not isinstance(ti, Mapping):
            found.append(None)
            continue
        try:
            child = TryId(
                str(ti["dag_id"]),
                str(ti["task_id"]),
                str(ti["run_id"]),
                int(ti["map_index"]),
                int(ti["try_number"]),
            )
        except (KeyError, TypeError, ValueError):  # a field missing, or not a number
            found.append(None)
            continue
        shared = child.tags()
        found.append(child if all(tags.get(name) == shared[name] for name in ARRAY_TRY_TAGS) else None)
    return found


@dataclass(frozen=True, slots=True)
class TiNow:
    """What Airflow's metadata DB says of a task instance now."""

    try_number: int
    state: str | None
    external_executor_id: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a job is to be terminated; ``confirm``: only once a later sweep finds the same."""

    reason: str
    confirm: bool = False


def orphan_reason(
    job_id: str, tags: Mapping[str, str], deployment: str, now: TiNow | None, *, team: str | None = None
) -> Verdict | None:
    """Why an active job of ours has nobody to watch it (terminate it), or None to leave it alone.

    ``now`` is the task instance the job's tags name (None: it no longer exists). A job of another
    deployment or of another team (``team``: the executor's, None for a global one) is left alone.
    """
    if tags.get(DEPLOYMENT_TAG) != deployment or not is_team_job(tags, team):
        return None
    job_try = try_of(tags)
    if job_try is None:
        return None
    name = f"{job_try.dag_id}.{job_try.task_id} run {job_try.run_id} map {job_try.map_index}"
    if now is None:
        return Verdict(f"Orphaned Batch job: task instance {name} no longer exists")
    if now.try_number != job_try.try_number:
        return Verdict(
            f"Orphaned Batch job: task instance {name} is at try {now.try_number}, this job ran try "
            f"{job_try.try_number}"
        )
    state = (now.state or "none").lower()
    if state not in LIVE_TI_STATES and now.external_executor_id != job_id:
        return Verdict(f"Orphaned Batch job: task instance {name} try {job_try.try_number} is {state}")
    if state not in LIVE_TI_STATES:
        # The saved job of a finished try: usually ending on its own (its supervisor exits a moment
        # after the task), so only a job still active at the next sweep is taken for hung.
        return Verdict(
            f"Task instance {name} try {job_try.try_number} is {state}; its job is still active",
            confirm=True,
        )
    return None


def waiting_array_children(
    child_tries: Sequence[TryId | None],
    waiting: Mapping[TryId, int | None],
    *,
    created_at_ms: int | None,
) -> dict[int, TryId]:
    """Which children of one array job run a try Airflow waits for: ``{child index: try}``.

    ``child_tries``: the try each child runs (:func:`array_child_tries`); ``waiting``: the tries
    being adopted, each with its task instance's ``queued_dttm`` in epoch milliseconds (None: not
    known). A child is one of them only if the array was created in that try's current queueing
    (:func:`of_this_queueing`): an array of an earlier queueing of the same try (a deferred task
    that resumed, a sensor's earlier poke) runs nothing Airflow waits for. The array is active, so
    it was neither terminated nor cancelled as a whole; each child's own end is the caller's to read.
    """
    found: dict[int, TryId] = {}
    for index, child in enumerate(child_tries):
        if child is None or child not in waiting:
            continue
        if of_this_queueing(
            created_at_ms=created_at_ms, queued_at_ms=waiting[child], terminated=False, cancelled=False
        ):
            found[index] = child
    return found
