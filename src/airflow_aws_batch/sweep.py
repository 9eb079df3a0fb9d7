"""The orphan sweep: the active jobs of this deployment and team that no live try points at, to
terminate. The rules are :func:`core.ownership.orphan_reason`'s; :func:`sweep` reads Batch and
Airflow's metadata DB around them. It runs on the runtime's terminator thread; :class:`Sweeps` says
when: after start, after each adoption and every ``sweep_interval_s`` of the executor.

Not supported: jobs on a job queue that only a task's ``executor_config`` names (the sweep reads
``job_queue`` and the values of ``queue_map``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, MutableSet, Sequence
from typing import TYPE_CHECKING

from airflow_aws_batch.adoption import (
    BeforeCall,
    OutOfBudget,
    active_jobs,
    array_tries,
    deadline_limiter,
    describe_all,
)
from airflow_aws_batch.aws.batch import BatchApi, BatchApiError
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

if TYPE_CHECKING:
    from airflow_aws_batch.wiring import Airflow, Wiring

#: ``(tries) -> {task instance: what the DB says}``, keyed by :attr:`TryId.ti`.
TiLookup = Callable[[Sequence[TryId]], dict[tuple[str, str, str, int], TiNow]]


log = logging.getLogger(__name__)


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


#: The sweep after an adoption waits for Airflow to commit the resets of what was handed back.
SWEEP_AFTER_ADOPTION_S = 10.0
SWEEP_BUDGET_S = 120.0


class Sweeps:
    """Schedules the sweeps for orphaned jobs and remembers what one found suspect for the next."""

    def __init__(self, wiring: Wiring, airflow: Airflow) -> None:
        self._wiring = wiring
        self._airflow = airflow
        self._timers: list[threading.Timer] = []
        #: Sweeps scheduled and not yet begun (the periodic one is skipped while one waits), and when
        #: the next periodic one is due (monotonic).
        self._waiting = 0
        self._next_at = float("inf")
        #: Jobs a sweep found active for a finished try; terminated if the next sweep finds them too.
        #: Touched only by the terminator thread, which runs the sweeps one after another.
        self._suspects: set[str] = set()

    def start(self) -> None:
        """At ``start()``: jobs left by earlier schedulers whose try has moved on, nobody else would
        end them. Not at once: Airflow adopts right after a restart, and the sweep's reads would take
        the status budget that adoption's bounded reads need."""
        self.schedule(SWEEP_AFTER_ADOPTION_S)
        self._next_at = time.monotonic() + self._airflow.sweep_interval_s

    def sweep_if_due(self) -> None:
        """Each ``sync()``: the periodic sweep, unless one is waiting to begin already."""
        if time.monotonic() >= self._next_at:
            self._next_at = time.monotonic() + self._airflow.sweep_interval_s
            if not self._waiting:
                self.schedule(0.0)

    def job_queues(self) -> list[str]:
        config = self._wiring.config
        return list(dict.fromkeys([config.job_queue, *config.queue_map.values()]))

    def schedule(self, delay_s: float) -> None:
        """Terminate, on the terminator thread after ``delay_s``, jobs of ours no live try points at."""
        wiring = self._wiring
        runtime, core = wiring.runtime, wiring.started_core
        if runtime is None or core is None:
            return
        config = wiring.config

        self._waiting += 1

        def chore() -> None:
            self._waiting -= 1
            before_call = deadline_limiter(
                lambda timeout: runtime.status_limiter.acquire(timeout=timeout),
                time.monotonic() + SWEEP_BUDGET_S,
            )
            try:
                commands = sweep(
                    wiring.api,
                    queues=self.job_queues(),
                    deployment=str(config.deployment_id),
                    tracked=core.tracks_job,
                    lookup=self._airflow.ti_lookup,
                    before_call=before_call,
                    suspects=self._suspects,
                    team=config.team,
                    store=wiring.store,
                )
            except (BatchApiError, OutOfBudget, LookupFailed) as exc:
                # The next adoption round sweeps again; nothing is terminated on a guess.
                log.warning("The sweep for orphaned Batch jobs could not finish: %s", exc)
                return
            for cmd in commands:
                log.warning("Terminating Batch job %s: %s", cmd.job_id, cmd.reason)
                runtime.terminate(cmd)

        if delay_s <= 0:
            runtime.run_later(chore)
            return
        timer = threading.Timer(delay_s, runtime.run_later, args=(chore,))
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def cancel(self) -> None:
        """The sweeps not begun are dropped (the executor stops)."""
        for timer in self._timers:
            timer.cancel()
        self._timers = []
