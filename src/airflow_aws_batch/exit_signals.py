"""A scheduler's SIGTERM/SIGINT that Python swallowed is delivered again from the next heartbeat.

Airflow's scheduler stops on SIGTERM by raising ``SystemExit`` from its signal handler. Python runs a
signal handler in the main thread between two bytecodes, wherever that thread is: when that is inside
a weakref callback or a finalizer (SQLAlchemy's session and connection cleanup runs many), the
exception cannot propagate, Python prints "Exception ignored in ..." and the scheduler carries on as
if nothing had happened. It then runs until something SIGKILLs it: no ``end()``, no hand-over, and a
deployment's stop takes its whole grace period (seen in 2 of 7 ``make chaos-quick`` runs on Airflow
3.3.2, where the harness SIGKILLed the scheduler after 90 s).

:class:`ExitSignalGuard` wraps the handler the scheduler installed before it started its executors,
notes each signal, and calls the scheduler's handler once more from ``heartbeat()`` (a plain frame of
the scheduler loop, where its ``SystemExit`` does propagate) when the scheduler is still running.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[int, FrameType | None], Any]
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ExitSignalGuard:
    """Installed by the executor's ``start()`` in the scheduler's main thread; removed by ``end()``."""

    def __init__(self) -> None:
        #: signal -> the handler we wrapped (the scheduler's).
        self._wrapped: dict[int, Handler] = {}
        self._ours: dict[int, Handler] = {}
        #: Signals received and not yet seen to stop the scheduler.
        self._received: list[int] = []

    def install(self) -> None:
        """Wrap each exit signal's Python handler; not from other threads (Python allows none there),
        and not over Python's defaults (nothing of the scheduler's to deliver again)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in EXIT_SIGNALS:
            current = signal.getsignal(signum)
            if not callable(current) or current is signal.default_int_handler:
                continue
            previous: Handler = current

            def handler(number: int, frame: FrameType | None, previous: Handler = previous) -> None:
                self._received.append(number)
                previous(number, frame)

            signal.signal(signum, handler)
            self._wrapped[signum] = previous
            self._ours[signum] = handler

    def redeliver(self) -> None:
        """Called at the top of ``heartbeat()``: a signal received earlier did not stop the scheduler
        (it is still heartbeating), so its handler runs again here, where it can raise."""
        if not self._received:
            return
        signum = self._received[-1]
        self._received.clear()
        handler = self._wrapped.get(signum)
        if handler is None:
            return
        log.warning(
            "Signal %s did not stop the scheduler (Python drops an exception raised while a weakref "
            "callback runs); delivering it again",
            signal.Signals(signum).name,
        )
        handler(signum, None)

    def uninstall(self) -> None:
        """Put the scheduler's handlers back where ours are still installed."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._ours.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, self._wrapped[signum])
        self._ours.clear()
        self._wrapped.clear()
        self._received.clear()
