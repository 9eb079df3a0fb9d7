"""The intake thread: builds the SubmitJob requests of a burst of queued workloads (about 30 us each,
pure CPU), so that the heartbeat which takes the burst in only hands it over (see :class:`Accepted`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_aws_batch.runtime.protocol import Threads

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A queued workload taken in: its SubmitJob request, or why none could be built (``request`` None).

    ``seq`` tells this hand-over from a later one of the same key: Airflow may queue a key again, or
    revoke it, while its request is being built.
    """

    key: Any
    seq: int
    request: dict[str, Any] | None = None
    log_path: str | None = None
    ti_id: bytes | None = None
    try_number: int = 0
    #: When the workload's token expires (monotonic clock); None when unknown.
    expires_at: float | None = None
    #: Why there is no request, and the task event that says so.
    error: str = ""
    event: str = ""
    #: The request's array grouping key, computed here rather than on the scheduler thread.
    group: bytes | None = None


#: Builds the :class:`Accepted` of ``(key, seq, workload)``; runs on the intake thread.
Build = Callable[[Any, int, Any], Accepted]


def intake_loop(threads: Threads) -> None:
    """Report ``build(key, seq, workload)`` of each item put on :attr:`Threads.intake_q`, in order."""
    while True:
        batch = threads.intake_q.get()
        if batch is None or threads.stopping.is_set():
            return
        items, build = batch
        for key, seq, workload in items:
            threads.gate.wait()
            if threads.stopping.is_set():
                return
            try:
                result: Accepted = build(key, seq, workload)
            except Exception as exc:  # the task is failed, not left queued forever
                log.exception("Unexpected error taking in %s", key)
                result = Accepted(key, seq, error=f"unexpected error: {exc}", event="aws_batch_submit_failed")
            threads.report(result)
