"""Intake: queued workloads taken off Airflow's queue and their SubmitJob requests built.

The heartbeat only hands queued workloads over: the intake thread builds their requests (see
``runtime``), so a burst of thousands is taken off Airflow's queue in a heartbeat or two (Airflow sorts
the whole queue on every heartbeat while it is not empty). A few are built at once, on the scheduler
thread, as before: a thread hop would only add latency to the usual handful.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from airflow_aws_batch.compat import RUNS_CALLBACKS, callback_refusal, is_task, workload_key
from airflow_aws_batch.core.arrays import group_key
from airflow_aws_batch.dispatch import Dispatcher
from airflow_aws_batch.runtime import Accepted
from airflow_aws_batch.submit import (
    ExecConfigError,
    build_callback_submit_job_request,
    build_submit_job_request,
    stored_workload_command,
    token_expires_at,
    workload_command,
)
from airflow_aws_batch.wiring import Airflow, Wiring, monotonic_deadline
from airflow_aws_batch.workloads import PENDING_KEY as WORKLOADS_KEY

log = logging.getLogger(__name__)

# The budget counts from the start of the heartbeat, so Airflow's sort of a long queue (about 1 us a
# task) is part of it, but never leaves less than ``ACCEPT_MIN_S``: a queue of thousands would otherwise
# be taken a few at a time.
ACCEPT_BUDGET_S = 0.007
ACCEPT_MIN_S = 0.004
INLINE_ACCEPT = 16


class Intake:
    """Takes workloads off Airflow's queue and hands the core their requests."""

    def __init__(self, wiring: Wiring, airflow: Airflow, dispatch: Dispatcher) -> None:
        self._wiring = wiring
        self._airflow = airflow
        self._dispatch = dispatch
        #: Workloads handed over and not yet taken in, by key: the hand-over's number (a revoke or a
        #: later queueing of the key drops or replaces it, so a stale build is ignored).
        self._waiting: dict[Any, int] = {}
        self._seq = 0
        #: When the heartbeat under way started (``perf_counter``); None outside ``heartbeat()``.
        self.heartbeat_started: float | None = None
        #: Builds handed to the intake thread whose result has not been read yet.
        self.building = 0
        #: The pools of the tasks queued but not yet taken in, when ``share_identifier`` uses ``{pool}``.
        self._pools: dict[Any, str | None] = {}

    def note_pool(self, workload: Any, session: Any) -> None:
        """At ``queue_workload``: the task's pool, when the share identifier uses it."""
        if not self._wiring.share_uses_pool or session is None:
            return
        if is_task(workload):
            try:
                self._pools[workload.ti.key] = _task_pool(session, workload.ti)
            except Exception:
                # The share then reads "default" for the pool; queueing the task must not fail.
                log.warning("Could not read the pool of %s", workload.ti.key, exc_info=True)

    def forget(self, key: Any) -> None:
        """Not built yet, or being built: no job is ever submitted for it."""
        self._waiting.pop(key, None)

    def clear(self) -> None:
        """Nothing handed over is taken in (the executor stops)."""
        self._waiting.clear()

    def process(self, workload_items: Sequence[Any]) -> None:
        """``_process_workloads``: take ``workload_items`` off Airflow's queue within the budget."""
        runtime = self._wiring.runtime
        airflow = self._airflow
        now = time.perf_counter()
        deadline = max((self.heartbeat_started or now) + ACCEPT_BUDGET_S, now + ACCEPT_MIN_S)
        inline = runtime is None or (self.building == 0 and len(workload_items) <= INLINE_ACCEPT)
        handed: list[tuple[Any, int, Any]] = []
        core = self._wiring.started_core
        for workload in workload_items:
            if handed and time.perf_counter() > deadline:
                break  # the rest stays queued for the next heartbeat
            key = workload_key(workload)
            if is_task(workload):
                airflow.queued_tasks.pop(key, None)
            else:
                airflow.queued_callbacks.pop(key, None)
            airflow.running.add(key)
            self._seq += 1
            seq = self._waiting[key] = self._seq
            # A key the core still tracks (queued again) is replaced at once, as the core always did.
            if inline or (core is not None and key in core):
                self.take(self.accept(key, seq, workload))
            else:
                handed.append((key, seq, workload))
        if handed and runtime is not None:
            self.building += len(handed)
            runtime.intake(handed, self.accept)

    def accept(self, key: Any, seq: int, workload: Any) -> Accepted:
        """The request of ``workload`` (on the intake thread, or inline for a few)."""
        task = is_task(workload)
        if not task and not RUNS_CALLBACKS:
            return Accepted(key, seq, error=callback_refusal(), event="aws_batch_callback_unsupported")
        try:
            request = self.build_request(workload)
        except ExecConfigError as exc:
            message = f"Bad executor_config, task not submitted: {exc}"
            return Accepted(key, seq, error=message, event="aws_batch_bad_executor_config")
        except Exception as exc:
            message = f"Could not build the SubmitJob request: {exc}"
            log.exception("%s (%s)", message, key)
            return Accepted(key, seq, error=message, event="aws_batch_submit_failed")
        log_path = getattr(workload, "log_path", None)
        # Only a task instance can be checked for "did Airflow see it start"; callbacks cannot.
        ti = workload.ti if task else None
        waiting = request.get(WORKLOADS_KEY)
        group = None
        if self._wiring.array_min_size > 0 and isinstance(waiting, list) and len(waiting) == 1:
            group = group_key(request, WORKLOADS_KEY)
        return Accepted(
            key,
            seq,
            request,
            log_path=str(log_path) if log_path else None,
            ti_id=_uuid_bytes(ti.id) if ti is not None else None,
            try_number=ti.try_number if ti is not None else 0,
            expires_at=monotonic_deadline(token_expires_at(str(getattr(workload, "token", "") or ""))),
            group=group,
        )

    def built(self, result: Accepted) -> None:
        """A request the intake thread built (from the results queue)."""
        self.building -= 1
        self.take(result)

    def take(self, result: Accepted) -> None:
        key = result.key
        if self._waiting.get(key) != result.seq:
            return  # revoked, failed by Airflow or queued again while it was being built
        del self._waiting[key]
        if result.request is None:
            self._airflow.log_task_event(event=result.event, extra=result.error, ti_key=key)
            self._airflow.fail(key, result.error)
            return
        self._wiring.core.add(
            key,
            result.request,
            log_path=result.log_path,
            ti_id=result.ti_id,
            try_number=result.try_number,
            expires_at=result.expires_at,
        )
        if result.group is not None:
            self._dispatch.note_group(key, result.group)

    def build_request(self, workload: Any) -> dict[str, Any]:
        """The SubmitJob request of a task's or a callback's workload."""
        wiring = self._wiring
        config = wiring.config
        if is_task(workload):
            ti = workload.ti
            fields: dict[str, Any] = {
                "dag_id": ti.dag_id,
                "task_id": ti.task_id,
                "run_id": ti.run_id,
                "try_number": ti.try_number,
                "map_index": ti.map_index,
                "queue": ti.queue,
                "executor_config": ti.executor_config,
                "priority_weight": ti.priority_weight,
                # Only filled in when the share template uses {pool}: the key is not free to build.
                "pool": self._pools.pop(ti.key, None) if self._pools else None,
                "team": config.team,
                "queue_kind": wiring.queue_kinds.get,
                "definition_kind": wiring.definition_kinds.get,
            }
            if config.workload_store:
                # The token stays out of the request: the submit thread writes the workload to the
                # store. The command is then the same for every task, and map indexes share a template.
                return wiring.templates.build(config, stored_workloads=[workload.model_dump_json()], **fields)
            return build_submit_job_request(config, command=workload_command(workload), **fields)
        stored: list[str] | None = None
        if config.workload_store:
            command = stored_workload_command()
            stored = [workload.model_dump_json()]
        else:
            command = workload_command(workload)
        callback = workload.callback
        data = callback.data or {}
        return build_callback_submit_job_request(
            config,
            command=command,
            callback_id=str(callback.id),
            callback_path=data.get("path"),
            dag_id=data.get("dag_id"),
            run_id=data.get("run_id"),
            team=config.team,
            queue_kind=wiring.queue_kinds.get,
            definition_kind=wiring.definition_kinds.get,
            stored_workloads=stored,
        )


def _uuid_bytes(value: Any) -> bytes:
    return (value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))).bytes


def _task_pool(session: Any, ti: Any) -> str | None:
    """The pool of the task instance a workload names, from the scheduler's own session.

    Airflow 3.1-3.3 workloads carry ``pool_slots`` but not the pool. The scheduler queues a workload
    right after loading and updating its task instance in this session, so ``session.get`` finds the
    row in the session's identity map, normally without a query.
    """
    pool = getattr(ti, "pool", None)
    if pool:
        return str(pool)
    from airflow.models.taskinstance import TaskInstance

    row = session.get(TaskInstance, ti.id)
    return str(row.pool) if row is not None and row.pool else None
