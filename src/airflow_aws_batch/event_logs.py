"""Task event log rows (Airflow's ``log`` table) held until the scheduler has saved them.

Airflow 3.3's scheduler saves these rows with bulk_save_objects over a generator that pops them off
the executor's deque, so nothing else holds the ORM objects: they are collected mid-save and the
INSERT goes out without columns ("NOT NULL constraint failed: log.event"), losing the event. The
executor holds a reference to each row until the scheduler has drained the deque (see ``sync()``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any


class EventLogs:
    """The rows pinned while they wait in the executor's deque of task event logs."""

    def __init__(self, waiting: Callable[[], deque[Any]]) -> None:
        #: The executor's deque of rows the scheduler has yet to save (``task_event_logs``).
        self._waiting = waiting
        #: Rows added to the deque and not yet seen gone from it.
        self.pinned: list[Any] = []

    def pin_latest(self) -> None:
        """After ``log_task_event`` added a row: hold it."""
        waiting = self._waiting()
        if waiting:
            self.pinned.append(waiting[-1])

    def unpin_saved(self) -> None:
        """At ``sync()``: let go of the rows the scheduler has taken off the deque."""
        if self.pinned:
            waiting = {id(row) for row in self._waiting()}
            self.pinned = [row for row in self.pinned if id(row) in waiting]
