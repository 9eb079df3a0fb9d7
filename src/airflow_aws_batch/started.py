"""Did Airflow see a task instance try start? Asked of Airflow's metadata DB, never on the scheduler thread.

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

import uuid


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
        TaskInstance.id == uuid.UUID(ti_id)
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
