"""Dispatch: the core's commands handed to the worker threads, due submits as single and array jobs.

With arrays on (``array_min_size``, a workload store), first attempts of tasks alike (one grouping key,
computed by the intake) go out as one array SubmitJob; a group too small is held back up to the
executor's ``array_hold_s`` for more tasks like it.
"""

from __future__ import annotations

import time
from typing import Any

from airflow_aws_batch.core.arrays import group_submits
from airflow_aws_batch.core.messages import (
    CheckStarted,
    Submit,
    SubmitOutcome,
    Terminate,
    TerminateLookup,
    Track,
    Untrack,
)
from airflow_aws_batch.runtime import SubmitDone
from airflow_aws_batch.wiring import Airflow, Wiring
from airflow_aws_batch.workloads import PENDING_KEY as WORKLOADS_KEY


class Dispatcher:
    """Hands the core's commands to the threads; holds submits that may still join an array."""

    def __init__(self, wiring: Wiring, airflow: Airflow) -> None:
        self._wiring = wiring
        self._airflow = airflow
        #: Array grouping keys of requests taken in since the last dispatch (and of held submits).
        self._group_keys: dict[Any, bytes] = {}
        #: Due submits of too small a group, held back (with when) for tasks like them to come.
        self._held: list[tuple[Submit, float]] = []

    def note_group(self, key: Any, group: bytes) -> None:
        """The array grouping key of a request the core just took (see ``intake``)."""
        self._group_keys[key] = group

    def dispatch(self, max_submits: int | None = None) -> None:
        """Hand the core's commands to the worker threads; ``max_submits`` bounds the due submits taken
        (0: only what earlier results produced)."""
        runtime = self._wiring.runtime
        if runtime is None:
            return
        core = self._wiring.core
        submits: list[Submit] = []
        for cmd in core.commands(max_submits):
            if isinstance(cmd, Submit):
                submits.append(cmd)
            elif isinstance(cmd, Terminate | TerminateLookup):
                runtime.terminate(cmd)
            elif isinstance(cmd, Track | Untrack):
                runtime.track(cmd)
            elif isinstance(cmd, CheckStarted):
                runtime.check_started(cmd)
        held, self._held = self._held, []
        if not submits and not held:
            return
        now = time.monotonic()
        since = {id(submit): at for submit, at in held}
        groups = self._group_keys
        # Only first attempts become array children: a child that failed goes out again alone.
        arrays, singles = group_submits(
            [submit for submit, _ in held] + submits,
            min_size=self._wiring.array_min_size,
            workloads_key=WORKLOADS_KEY,
            eligible=lambda s: core.attempts(s.key) == 0,
            key_of=lambda s: groups.get(s.key),
        )
        for array in arrays:
            runtime.submit(array)
        for submit in singles:
            at = since.get(id(submit), now)
            if self._may_join_an_array(submit) and now - at < self._airflow.array_hold_s:
                self._held.append((submit, at))
            else:
                runtime.submit(submit)
        # Kept only for what may still join an array; the rest is computed again if ever needed.
        self._group_keys = {s.key: groups[s.key] for s, _ in self._held if s.key in groups}

    def _may_join_an_array(self, submit: Submit) -> bool:
        """Could ``submit`` still become an array child if more tasks like it came?"""
        return (
            self._wiring.array_min_size > 0
            and submit.lookup_after_ms is None
            and isinstance(submit.request.get(WORKLOADS_KEY), list)
            and self._wiring.core.attempts(submit.key) == 0
        )

    def release_held(self) -> None:
        """Held submits go back to the core as not sent (the executor is stopping)."""
        held, self._held = self._held, []
        runtime = self._wiring.runtime
        if runtime is not None:
            for submit, _ in held:
                runtime.report(SubmitDone(submit.key, SubmitOutcome.WAIT, reason="executor stopping"))

    def drop_held(self) -> None:
        """Held submits are never sent (the executor terminates: the core forgets their tasks)."""
        self._held = []
