"""The adoption desk: ``try_adopt_task_instances``' work, within a bound on the scheduler thread, and
the task instances adopted unconfirmed or lost, settled off it (see :mod:`airflow_aws_batch.adoption`
for the reads and the rules)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from airflow_aws_batch.adoption import (
    AdoptionPlan,
    OutOfBudget,
    Saved,
    active_jobs,
    check_saved,
    deadline_limiter,
    find_array_children,
    plan_adoption,
    provisional_plan,
    queued_at_ms,
    stale_job_terminate,
    try_id,
)
from airflow_aws_batch.aws.batch import BatchApiError
from airflow_aws_batch.core.messages import Fail, TaskEvent
from airflow_aws_batch.dispatch import Dispatcher
from airflow_aws_batch.intake import Intake
from airflow_aws_batch.lost import Awaited, Resolution, resolve_lost, resubmit_request, workload_expires_at
from airflow_aws_batch.reports import Reporter
from airflow_aws_batch.runtime import AdoptedSeen, LostResolved
from airflow_aws_batch.sweep import SWEEP_AFTER_ADOPTION_S, SWEEP_BUDGET_S, Sweeps
from airflow_aws_batch.wiring import Airflow, Wiring, monotonic_deadline, state_name

log = logging.getLogger(__name__)

#: How long one ``try_adopt_task_instances`` reads Batch (no call starts later), and how long the
#: scheduler thread waits for those reads at most: a call Batch is slow to answer is not waited for
#: (see ``_plan_within_bound``). Beyond the wait, the thread only does bookkeeping, 30-80 us per task
#: instance (under 2 s for 20,000 on a busy 2-vCPU host): the call holds the scheduler thread under
#: 5 s, well under Airflow's scheduler_health_check_threshold (30 s by default).
ADOPT_BUDGET_S = 2.5
ADOPT_BOUND_S = 3.0
#: A lookup by tags of task instances adopted unconfirmed that could not be done (Batch failed) is
#: tried again after this long.
LOST_LOOKUP_RETRY_S = 30.0


class AdoptDesk:
    """Adopts task instances after a restart and settles those it could not confirm at once."""

    def __init__(
        self,
        wiring: Wiring,
        airflow: Airflow,
        *,
        reporter: Reporter,
        dispatch: Dispatcher,
        intake: Intake,
        sweeps: Sweeps,
    ) -> None:
        self._wiring = wiring
        self._airflow = airflow
        self._reporter = reporter
        self._dispatch = dispatch
        self._intake = intake
        self._sweeps = sweeps
        #: Adopted unconfirmed, by job id: verified on their first description (see ``AdoptedSeen``).
        self.unconfirmed: dict[str, Awaited] = {}
        #: Adopted, whose saved job is not their submission: waiting for the lookup by tags, by key.
        self.lost: dict[Any, Awaited] = {}
        #: A lookup of ``lost`` is under way; when the next may start after one failed (monotonic).
        self._lost_lookup_waiting = False
        self._lost_retry_at = 0.0

    def forget(self, key: Any) -> None:
        """Revoked or failed by Airflow: nothing more is decided for it here."""
        self.lost.pop(key, None)
        core = self._wiring.started_core
        if core is not None:
            self.unconfirmed.pop(core.job_id(key) or "", None)

    def adopt(self, tis: Sequence[Any]) -> Sequence[Any]:
        """``try_adopt_task_instances``: what is not adopted, handed back."""
        core, runtime = self._wiring.started_core, self._wiring.runtime
        if core is None or runtime is None or not tis:
            return list(tis)
        airflow = self._airflow
        try:
            plan = self._plan_within_bound(tis)
        except Exception:
            # A bug here must not take the scheduler down: what is handed back runs again as its next try.
            log.exception("Adoption failed; handing %d task instance(s) back to Airflow", len(tis))
            self._sweeps.schedule(SWEEP_AFTER_ADOPTION_S)
            return list(tis)
        for ti in tis:
            job_id = plan.adopt.get(ti.key)
            if job_id is None:
                self._adopt_unconfirmed(ti, plan)
                continue
            detail = plan.details.get(ti.key)
            ti_id = getattr(ti, "id", None)
            if detail is None:
                core.adopt(ti.key, job_id)
            else:
                core.adopt(
                    ti.key,
                    job_id,
                    request=resubmit_request(detail),
                    started=bool(detail.started_at) or detail.status == "RUNNING",
                    ti_id=ti_id,
                    try_number=int(ti.try_number),
                    expires_at=monotonic_deadline(workload_expires_at(detail)),
                )
            airflow.running.add(ti.key)
            if ti.key in plan.found:
                # Found by its tags: Airflow has not saved this id (or holds a stale one).
                airflow.running_state(ti.key, job_id)
                airflow.log_task_event(
                    event="aws_batch_job_adopted",
                    extra=f"Batch job {job_id} of this try found by its tags and adopted",
                    ti_key=ti.key,
                )
        for cmd in plan.terminate:
            runtime.terminate(cmd)
        if plan.unconfirmed or plan.lookup:
            log.warning(
                "Adopted %d task instance(s) whose Batch job could not be read within %.0f s; they are "
                "verified in the background (%d by their saved id, %d by their tags)",
                len(plan.unconfirmed) + len(plan.lookup),
                ADOPT_BOUND_S,
                len(plan.unconfirmed),
                len(plan.lookup),
            )
        self.look_up_lost()
        self._dispatch.dispatch(max_submits=0)
        self._sweeps.schedule(SWEEP_AFTER_ADOPTION_S)
        return plan.not_adopted

    def _plan_within_bound(self, tis: Sequence[Any]) -> AdoptionPlan:
        """:func:`plan_adoption` with ``provisional``, read on a thread of its own that the scheduler
        thread waits for ``ADOPT_BOUND_S`` at most: no call starts after ``ADOPT_BUDGET_S``, and a call
        still unanswered at the bound is not waited for (its answer is dropped). Then every task
        instance with a saved id is adopted unconfirmed (:func:`provisional_plan`)."""
        wiring = self._wiring
        config = wiring.config
        runtime = wiring.runtime
        assert runtime is not None
        began = time.monotonic()
        before_call = deadline_limiter(
            lambda timeout: runtime.status_limiter.acquire(timeout=timeout), began + ADOPT_BUDGET_S
        )
        answer: list[AdoptionPlan | BaseException] = []

        def read() -> None:
            try:
                answer.append(
                    plan_adoption(
                        wiring.api,
                        tis,
                        queues=self._sweeps.job_queues(),
                        deployment=str(config.deployment_id),
                        team=config.team,
                        before_call=before_call,
                        store=wiring.store,
                        provisional=True,
                    )
                )
            except BaseException as exc:  # handed to the waiting thread
                answer.append(exc)

        reader = threading.Thread(target=read, name="aws-batch-adopt", daemon=True)
        reader.start()
        reader.join(max(0.0, began + ADOPT_BOUND_S - time.monotonic()))
        if not answer:
            log.warning(
                "AWS Batch did not answer within %.0f s: adopting the %d task instance(s) with a saved "
                "job id unconfirmed",
                ADOPT_BOUND_S,
                sum(1 for ti in tis if ti.external_executor_id),
            )
            return provisional_plan(tis)
        found = answer[0]
        if isinstance(found, (BatchApiError, OutOfBudget)):
            log.warning("Could not read AWS Batch to adopt (%s): adopting unconfirmed", found)
            return provisional_plan(tis)
        if isinstance(found, BaseException):
            raise found
        return found

    def _adopt_unconfirmed(self, ti: Any, plan: AdoptionPlan) -> None:
        """Adopt ``ti`` if the plan left its job to be verified or looked up later (see ``Awaited``)."""
        job_id = plan.unconfirmed.get(ti.key)
        if job_id is None and ti.key not in plan.lookup:
            return
        ti_id = getattr(ti, "id", None)
        awaited = Awaited(
            key=ti.key,
            wanted=try_id(ti),
            queued_ms=queued_at_ms(ti),
            ti_id=str(ti_id) if ti_id is not None else None,
            queued=state_name(getattr(ti, "state", None)) == "queued",
            saved=plan.lookup.get(ti.key),
        )
        if job_id is not None:
            self._wiring.core.adopt(
                ti.key,
                job_id,
                started=False,
                ti_id=ti_id,
                try_number=int(ti.try_number),
                unconfirmed=True,
            )
            self.unconfirmed[job_id] = awaited
        else:
            self.lost[ti.key] = awaited
        self._airflow.running.add(ti.key)

    def verify_adopted(self, result: AdoptedSeen) -> None:
        """The first description of jobs adopted unconfirmed: the poller's, at the status budget."""
        config = self._wiring.config
        deployment = str(config.deployment_id)
        core = self._wiring.core
        for detail, view in result.seen:
            awaited = self.unconfirmed.pop(detail.job_id, None)
            if awaited is None or core.job_id(awaited.key) != detail.job_id:
                continue  # revoked or finished meanwhile
            verdict = check_saved(detail, awaited.wanted, awaited.queued_ms, deployment, config.team)
            if verdict is Saved.CONFIRMED:
                core.confirm_adopted(
                    awaited.key,
                    detail.job_id,
                    request=resubmit_request(detail),
                    expires_at=monotonic_deadline(workload_expires_at(detail)),
                )
                self._reporter.report(core.job_seen(view))
                continue
            core.release(awaited.key)
            stale = stale_job_terminate(detail, awaited.wanted, deployment, config.team)
            runtime = self._wiring.runtime
            if stale is not None and runtime is not None:
                runtime.terminate(stale)
            log.info(
                "Adopted Batch job %s is not the current submission of %s (%s): looking it up by tags",
                detail.job_id,
                awaited.key,
                verdict.value,
            )
            self.lost[awaited.key] = dataclasses.replace(awaited, saved=detail)
        for job_id in result.missing:
            awaited = self.unconfirmed.pop(job_id, None)
            if awaited is None or core.job_id(awaited.key) != job_id:
                continue
            core.release(awaited.key)
            self.lost[awaited.key] = awaited
        self.look_up_lost()
        self._dispatch.dispatch(max_submits=0)

    def look_up_lost(self) -> None:
        """Look up, on the terminator thread and at the status budget, the jobs of the task
        instances waiting in ``lost``: one listing of the active jobs for all of them."""
        wiring = self._wiring
        runtime = wiring.runtime
        if (
            runtime is None
            or not self.lost
            or self._lost_lookup_waiting
            or time.monotonic() < self._lost_retry_at
        ):
            return
        self._lost_lookup_waiting = True
        config = wiring.config
        api = wiring.api
        queues = self._sweeps.job_queues()
        store = wiring.store
        lost = list(self.lost.values())

        def chore() -> None:
            before_call = deadline_limiter(
                lambda timeout: runtime.status_limiter.acquire(timeout=timeout),
                time.monotonic() + SWEEP_BUDGET_S,
            )
            deployment = str(config.deployment_id)
            try:
                active = active_jobs(api, queues, before_call)
                children = find_array_children(
                    api,
                    store,
                    active.values(),
                    {awaited.wanted: awaited.queued_ms for awaited in lost},
                    deployment=deployment,
                    team=config.team,
                    before_call=before_call,
                )
            except (BatchApiError, OutOfBudget) as exc:
                runtime.report(LostResolved(lost, None, str(exc)))
                return
            resolution = resolve_lost(
                active, lost, deployment=deployment, team=config.team, now_s=time.time(), children=children
            )
            self._rebuild_queued(lost, resolution)
            runtime.report(LostResolved(lost, resolution, ""))

        runtime.run_later(chore)

    def _rebuild_queued(self, lost: Sequence[Awaited], resolution: Resolution) -> None:
        """On the terminator thread: a new workload, instead of a failure, for each task instance left
        to fail that Airflow still has QUEUED on its try (no job of this queueing exists and none ran
        it: the scheduler died between queueing it and submitting its job, and the saved job was an
        earlier queueing's whose request cannot be sent again)."""
        airflow = self._airflow
        for awaited in lost:
            if awaited.key not in resolution.fail or not awaited.queued or not awaited.ti_id:
                continue
            try:
                workload = airflow.workload_rebuilder(awaited.ti_id, awaited.wanted.try_number, airflow)
            except Exception:
                log.warning(
                    "Could not build a new workload for %s from Airflow's DB; it fails instead",
                    awaited.key,
                    exc_info=True,
                )
                continue
            if workload is not None:
                resolution.rebuilt[awaited.key] = workload
                del resolution.fail[awaited.key]

    def take_lost_resolved(self, result: LostResolved) -> None:
        self._lost_lookup_waiting = False
        resolution = result.resolution
        if resolution is None:
            # Nothing is decided on a guess: the task instances stay adopted until a lookup works.
            log.warning(
                "Could not look up %d adopted task instance(s) by their tags (%s); trying again in %.0f s",
                len(result.lost),
                result.error,
                LOST_LOOKUP_RETRY_S,
            )
            self._lost_retry_at = time.monotonic() + LOST_LOOKUP_RETRY_S
            return
        core = self._wiring.core
        airflow = self._airflow
        for awaited in result.lost:
            key = awaited.key
            if self.lost.get(key) is not awaited:
                continue  # revoked since
            del self.lost[key]
            if key in core:
                continue  # queued again since: the new workload is the one to run
            found = resolution.found.get(key) or resolution.unstarted.get(key)
            if found is not None:
                core.adopt(
                    key,
                    found.job_id,
                    request=resubmit_request(found),
                    started=bool(found.started_at) or found.status == "RUNNING",
                    ti_id=awaited.ti_id,
                    try_number=awaited.wanted.try_number,
                    expires_at=monotonic_deadline(workload_expires_at(found)),
                )
                airflow.running_state(key, found.job_id)
                airflow.log_task_event(
                    event="aws_batch_job_adopted",
                    extra=f"Batch job {found.job_id} of this try found by its tags and adopted",
                    ti_key=key,
                )
            elif key in resolution.resubmit:
                request, expires = resolution.resubmit[key]
                core.add(
                    key,
                    request,
                    ti_id=awaited.ti_id,
                    try_number=awaited.wanted.try_number,
                    expires_at=monotonic_deadline(expires),
                )
                airflow.log_task_event(
                    event="aws_batch_adopted_resubmitted",
                    extra="No job of this queueing was found after a scheduler restart: the request of "
                    f"its earlier queueing's job {awaited.saved.job_id if awaited.saved else ''} is sent "
                    "again",
                    ti_key=key,
                )
            elif key in resolution.rebuilt:
                airflow.log_task_event(
                    event="aws_batch_adopted_requeued",
                    extra="No job of this queueing was found after a scheduler restart and the task "
                    "instance is still queued (nothing ran it): it is submitted with a new workload",
                    ti_key=key,
                )
                self._intake.process([resolution.rebuilt[key]])
            else:
                reason = resolution.fail.get(key, "After a scheduler restart, no Batch job was found")
                self._reporter.report([TaskEvent(key, "aws_batch_task_failed", reason), Fail(key, reason)])
        runtime = self._wiring.runtime
        if runtime is not None:
            for cmd in resolution.terminate:
                runtime.terminate(cmd)
        self.look_up_lost()  # those that joined after the listing was taken
        self._dispatch.dispatch(max_submits=0)
