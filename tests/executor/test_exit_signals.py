"""A SIGTERM whose SystemExit Python swallowed is delivered again from the next heartbeat.

Real signals, raised in this process: the scheduler's handler (like Airflow's) raises SystemExit;
raised while a weakref callback runs, Python can only report it as unraisable, and the process would
carry on.
"""

from __future__ import annotations

import signal
import sys
import weakref
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from airflow_aws_batch.exit_signals import ExitSignalGuard


class Scheduler:
    """Stands for Airflow's SchedulerJobRunner: its handler logs and raises SystemExit."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def _exit_gracefully(self, signum: int, frame: FrameType | None) -> None:
        self.calls.append(signum)
        sys.exit(0)


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    runner = Scheduler()
    previous = signal.signal(signal.SIGTERM, runner._exit_gracefully)
    try:
        yield runner
    finally:
        signal.signal(signal.SIGTERM, previous)


def swallowed_sigterm() -> list[Any]:
    """SIGTERM handled while a weakref callback runs; what Python reported as unraisable."""
    unraisable: list[Any] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:

        class Session:
            pass

        session = Session()
        ref = weakref.ref(session, lambda _: signal.raise_signal(signal.SIGTERM))
        del session  # the callback runs now; raise_signal runs the handler before it returns
        assert ref() is None
    finally:
        sys.unraisablehook = previous_hook
    return unraisable


def test_python_swallows_the_schedulers_exit_inside_a_weakref_callback(scheduler: Scheduler) -> None:
    # Why the guard exists: without it, nothing stops the scheduler.
    (report,) = swallowed_sigterm()
    assert isinstance(report.exc_value, SystemExit)
    assert scheduler.calls == [signal.SIGTERM]


def test_the_next_heartbeat_delivers_it_again(scheduler: Scheduler) -> None:
    guard = ExitSignalGuard()
    guard.install()
    try:
        assert len(swallowed_sigterm()) == 1
        with pytest.raises(SystemExit):
            guard.redeliver()
        assert scheduler.calls == [signal.SIGTERM, signal.SIGTERM]
        guard.redeliver()  # once delivered, not again
        assert len(scheduler.calls) == 2
    finally:
        guard.uninstall()
    assert signal.getsignal(signal.SIGTERM) == scheduler._exit_gracefully


def test_a_sigterm_that_stopped_the_scheduler_is_not_delivered_twice(scheduler: Scheduler) -> None:
    guard = ExitSignalGuard()
    guard.install()
    try:
        with pytest.raises(SystemExit):
            signal.raise_signal(signal.SIGTERM)
    finally:
        guard.uninstall()  # what end() does, in the scheduler's finally
    guard.redeliver()
    assert scheduler.calls == [signal.SIGTERM]


def test_pythons_defaults_are_left_alone() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    guard = ExitSignalGuard()
    guard.install()
    try:
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    finally:
        guard.uninstall()
