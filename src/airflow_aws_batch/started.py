"""What Airflow's metadata DB says of task instances: did a try start, which try is current.

Asked on the executor's worker threads, never on the scheduler thread.

The Task SDK starts a task through the execution API (``PATCH /task-instances/{id}/run``), which moves
the task instance from QUEUED (or RESTARTING) to RUNNING, sets its hostname, pid and start date, and
only then runs the task's code. Each try has its own task instance id. So a task instance that is
still QUEUED, with the same id and try number and no deferral to resume (``next_method``), never
started this try: a new job for it cannot run the task twice (and should an old request arrive
late anyway, the execution API refuses the second start, as the task is no longer queued).

Not supported: deployments where the executor's host cannot reach the metadata DB (the scheduler
always can); there the answer is "cannot tell", and the task fails as it would without the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_aws_batch.compat import task_instance_id
from airflow_aws_batch.core.messages import TI_QUEUED
from airflow_aws_batch.core.ownership import TiNow, TryId


def airflow_saw_task_start(ti_id: str, try_number: int) -> bool | None:
    """True: Airflow saw the try start, or no longer has it queued. False: it certainly did not.

    None: the task instance is gone or on another try (cleared, deleted), so there is nothing to tell.
    Database errors propagate; the caller treats them as "cannot tell".
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    query = select(TaskInstance.state, TaskInstance.try_number, TaskInstance.next_method).where(
        TaskInstance.id == task_instance_id(ti_id)
    )
    with create_session() as session:
        row = session.execute(query).one_or_none()
    if row is None:
        return None
    state, current_try, next_method = row
    if current_try != try_number:
        return None
    # A deferred task comes back QUEUED on the same try with next_method set: this try already ran.
    return not (state == TaskInstanceState.QUEUED and next_method is None)


def ti_running(ti_id: str, try_number: int) -> bool:
    """Is task instance ``ti_id`` RUNNING on try ``try_number`` now? Database errors propagate."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    query = select(TaskInstance.state, TaskInstance.try_number).where(
        TaskInstance.id == task_instance_id(ti_id)
    )
    with create_session() as session:
        row = session.execute(query).one_or_none()
    return row is not None and row[1] == try_number and row[0] == TaskInstanceState.RUNNING


def rebuild_workload(ti_id: str, try_number: int, executor: Any) -> Any | None:
    """A new ExecuteTask workload for task instance ``ti_id``, built as the scheduler builds one when
    it queues the task (a fresh token from ``executor.jwt_generator``), when Airflow still has it
    QUEUED on try ``try_number``; None otherwise (it moved on, started, or is gone).

    Database errors propagate.
    """
    from airflow.executors import workloads
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    extra: dict[str, Any] = {}
    try:  # Airflow 3.3 passes the scheduler's Sentry integration to the task; 3.1 and 3.2 have none.
        from airflow.jobs.scheduler_job_runner import _get_sentry_integration

        extra["sentry_integration"] = _get_sentry_integration(executor)
    except ImportError:
        pass
    with create_session() as session:
        ti = session.get(TaskInstance, task_instance_id(ti_id))
        if ti is None or ti.try_number != try_number or ti.state != TaskInstanceState.QUEUED:
            return None
        return workloads.ExecuteTask.make(ti, generator=executor.jwt_generator, **extra)


def task_instances_now(tries: Sequence[TryId]) -> dict[tuple[str, str, str, int], TiNow]:
    """What the metadata DB says now of the task instances ``tries`` name, whatever their try.

    Task instances that no longer exist are left out.
    """
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select, tuple_

    wanted = list({t.ti for t in tries})
    out: dict[tuple[str, str, str, int], TiNow] = {}
    with create_session() as session:
        for i in range(0, len(wanted), 500):
            query = select(
                TI.dag_id,
                TI.task_id,
                TI.run_id,
                TI.map_index,
                TI.try_number,
                TI.state,
                TI.external_executor_id,
            ).where(tuple_(TI.dag_id, TI.task_id, TI.run_id, TI.map_index).in_(wanted[i : i + 500]))
            for dag_id, task_id, run_id, map_index, try_number, state, external_id in session.execute(query):
                out[(dag_id, task_id, run_id, map_index)] = TiNow(
                    try_number=int(try_number),
                    state=None if state is None else str(getattr(state, "value", state)),
                    external_executor_id=str(external_id) if external_id else None,
                )
    return out


#: Task instance states that follow the end of a job of the same try without the try being over: the
#: task asked for its next run (a reschedule-mode sensor's poke, a deferral) and may already be
#: waiting for it in SCHEDULED, where Airflow 3.3 reads an executor's SUCCESS as "killed externally".
MOVED_ON_STATES = frozenset({"up_for_reschedule", "deferred", "scheduled"})


def tis_moved_on(tries: Sequence[tuple[str, int]]) -> dict[str, str]:
    """Of the task instance tries ``(ti_id, try_number)``, those whose task instance is, on the same
    try, in one of :data:`MOVED_ON_STATES` or queued again: id -> state. The core holds back an
    adopted job's success for a try queued again (see ``Core.job_seen``)."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select

    wanted = dict(tries)
    out: dict[str, str] = {}
    ids = list(wanted)
    with create_session() as session:
        for i in range(0, len(ids), 500):
            chunk = [task_instance_id(ti_id) for ti_id in ids[i : i + 500]]
            query = select(TI.id, TI.try_number, TI.state).where(TI.id.in_(chunk))
            for ti_id, try_number, state in session.execute(query):
                name = None if state is None else str(getattr(state, "value", state))
                if wanted.get(str(ti_id)) == int(try_number) and (
                    name in MOVED_ON_STATES or name == TI_QUEUED
                ):
                    out[str(ti_id)] = name
    return out
