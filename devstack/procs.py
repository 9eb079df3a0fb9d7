"""Child processes of a dev stack: started in their own process group, stopped as a group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Written to a component's log before each start; :meth:`Process.tail` reads what follows the last one.
START_MARKER = "=== devstack: starting "


class StackError(RuntimeError):
    """A process of the dev stack could not start; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Process:
    """One long-running command, its output appended to ``log_path``.

    It runs in a new session so that stopping it also stops whatever it spawned (uvicorn workers,
    LocalExecutor workers, task supervisors) without touching anything else.
    """

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path):
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n{START_MARKER}{' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def poll(self) -> int | None:
        """The exit code if the process has ended, else None (also None if never started)."""
        return self.popen.poll() if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL what is left."""
        if self.popen is None:
            return
        self.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)
        # The leader may be gone while children of its group linger; SIGKILL reaches them too.
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        # The log is appended to on every start: only this start's output counts.
        current = text.rsplit(START_MARKER, 1)[-1]
        return "\n".join(current.splitlines()[-lines:])


def pids_with_env_marker(marker: str) -> list[int]:
    """Processes of this user whose environment holds ``marker`` (a ``KEY=VALUE`` string).

    Every process a stack starts, down to task processes that localbatch launches in their own
    sessions, inherits the marker; this finds the ones that outlived their parents.
    """
    needle = marker.encode() + b"\0"
    found: list[int] = []
    me = os.getpid()
    uid = os.getuid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ or environ.endswith(marker.encode()):
            found.append(int(entry.name))
    return found


def kill_marked(marker: str, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, the processes carrying ``marker``; returns the pids found."""
    pids = pids_with_env_marker(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pids_with_env_marker(marker):
        time.sleep(0.2)
    for pid in pids_with_env_marker(marker):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


def git_commit() -> str | None:
    """The short commit of this checkout, for the environment block of a results file."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
