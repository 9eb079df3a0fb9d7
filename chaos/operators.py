"""The chaos DAG's deferring task and reschedule-mode sensor (imported by the generated DAG file).

Each execution of their code is recorded like the mapped task's (:func:`chaos.tasks.record_execution`),
with a ``phase`` that names which of a try's legitimate executions it is, so that the counts can tell a
resume or a next poke from the same piece of code run twice.

Both start at a time spread over the run by their map index (``lane``): every lane first waits until
``lane / lanes * stagger_s`` seconds after the DAG run started (by deferral, or by rescheduling its
first poke), so that the fault steps, spread over the run, meet deferrals and pokes in flight rather
than finding them done. Counted from the run's start, not from the task's: a lane that got its first
slot late would otherwise wait its whole stagger again and outlast the run.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowRescheduleException

from chaos.tasks import DEFER, DONE, RESCHEDULE, record_execution

#: Seconds each deferral waits in the triggerer after the first.
TRIGGER_S = 3.0
#: Seconds of task code per phase: short, as a phase is mostly start-up and hand-back.
PHASE_S = 0.3
#: The last phase runs this long, so that a duplicate of it would overlap and be seen.
LAST_PHASE_S = 1.0
#: The sensors' poke interval: shorter than the executor's detection delay under faults (a poll every
#: second, plus 5xx answers, plus the scheduler's loop), so that a poke's SUCCESS often reaches Airflow
#: after the task instance was already rescheduled for its next poke.
POKE_INTERVAL_S = 1.0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def stagger(lane: int, lanes: int, stagger_s: float) -> float:
    """Seconds after the DAG run's start at which lane ``lane`` of ``lanes`` starts its work."""
    return lane / max(lanes, 1) * stagger_s


def wait_left(context: Any, lane: int, lanes: int, stagger_s: float) -> float:
    """Seconds from now until the lane's start (0 when it has passed or the run's start is unknown)."""
    started = getattr(context.get("dag_run"), "start_date", None)
    if started is None:
        return 0.0
    at = started + timedelta(seconds=stagger(lane, lanes, stagger_s))
    return max(0.0, float((at - _utcnow()).total_seconds()))


class DeferAndResume(BaseOperator):  # type: ignore[misc]  # Airflow is not type-checked here
    """Defers ``rounds`` times (the first after its lane's stagger), then ends after its last resume."""

    def __init__(self, *, lane: int, lanes: int, stagger_s: float, rounds: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lane, self.lanes, self.stagger_s, self.rounds = lane, lanes, stagger_s, rounds

    def execute(self, context: Any) -> None:
        record_execution(context, PHASE_S, phase="execute", outcome=DEFER)
        self._defer(1, wait_left(context, self.lane, self.lanes, self.stagger_s) + TRIGGER_S)

    def resume(self, context: Any, event: Any = None, resumed: int = 1) -> None:
        if resumed < self.rounds:
            record_execution(context, PHASE_S, phase=f"resume {resumed}", outcome=DEFER)
            self._defer(resumed + 1, TRIGGER_S)
        record_execution(context, LAST_PHASE_S, phase=f"resume {resumed}", outcome=DONE)

    def _defer(self, resumed: int, seconds: float) -> None:
        self.defer(
            trigger=DateTimeTrigger(moment=_utcnow() + timedelta(seconds=seconds)),
            method_name="resume",
            kwargs={"resumed": resumed},
        )


class PokeUntil(BaseSensorOperator):  # type: ignore[misc]  # Airflow is not type-checked here
    """A reschedule-mode sensor: its first poke reschedules to its lane's start, the ``pokes``-th after
    that succeeds. Each poke's phase is ``poke <n>``, ``n`` the try's reschedules so far."""

    def __init__(self, *, lane: int, lanes: int, stagger_s: float, pokes: int, **kwargs: Any) -> None:
        super().__init__(mode="reschedule", poke_interval=POKE_INTERVAL_S, **kwargs)
        self.lane, self.lanes, self.stagger_s, self.pokes = lane, lanes, stagger_s, pokes

    def poke(self, context: Any) -> bool:
        done_after = self.pokes + self.lane % 3
        n = int(context.get("task_reschedule_count") or 0)
        wait = wait_left(context, self.lane, self.lanes, self.stagger_s) if n == 0 else 0.0
        done = n >= done_after and not wait
        outcome = DONE if done else RESCHEDULE
        record_execution(context, LAST_PHASE_S if done else PHASE_S, phase=f"poke {n}", outcome=outcome)
        if wait:
            raise AirflowRescheduleException(_utcnow() + timedelta(seconds=wait))
        return done
