"""The orphan sweep: the active jobs of this deployment and team that no live try points at, to
terminate. The rules are :func:`core.ownership.orphan_reason`'s; this reads Batch and Airflow's
metadata DB around them. It runs on the runtime's terminator thread.

Not supported: jobs on a job queue that only a task's ``executor_config`` names (the sweep reads
``job_queue`` and the values of ``queue_map``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableSet, Sequence

from airflow_aws_batch.adoption import BeforeCall, active_jobs, array_tries, describe_all
from airflow_aws_batch.aws.batch import BatchApi
from airflow_aws_batch.core.messages import ACTIVE_STATUSES, Terminate
from airflow_aws_batch.core.ownership import (
    DEPLOYMENT_TAG,
    TiNow,
    TryId,
    Verdict,
    is_team_job,
    orphan_reason,
    try_of,
)
from airflow_aws_batch.workloads import WorkloadStore

#: ``(tries) -> {task instance: what the DB says}``, keyed by :attr:`TryId.ti`.
TiLookup = Callable[[Sequence[TryId]], dict[tuple[str, str, str, int], TiNow]]


class LookupFailed(Exception):
    """Airflow's metadata DB could not say where the task instances are: nothing is terminated."""


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
                for index, child_try in enumerate(array_tries(store, detail)):
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
