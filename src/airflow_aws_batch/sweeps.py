"""Sweeps: on the terminator thread, jobs of ours that no live try points at are terminated (see
:func:`airflow_aws_batch.adoption.sweep`), after start, after each adoption and every
``sweep_interval_s`` of the executor."""

from __future__ import annotations

import logging
import threading
import time

from airflow_aws_batch.adoption import LookupFailed, OutOfBudget, deadline_limiter, sweep
from airflow_aws_batch.aws.batch import BatchApiError
from airflow_aws_batch.wiring import Airflow, Wiring

log = logging.getLogger(__name__)

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
