"""Warm interpreters: run ``python -m MODULE ARGS...`` jobs as forks of a process that imported MODULE.

``localbatch serve --preload MODULE`` (repeatable) turns it on. A job whose command is
``python|python3|python3.X|<localbatch's interpreter> -m MODULE ARGS...``, where MODULE is a preloaded
module or inside a preloaded package, is forked from a zygote (``localbatch.zygote``) that imported the
preloaded modules once, instead of starting a new interpreter that imports them again. Like the warm
instances of AWS Batch, this saves the start-up of every job but the first; each job still gets its own
process and session (so TerminateJob and timeouts signal its process group as usual), its own environment,
working directory and output, and its exit code.

One zygote serves each distinct base environment (the runner passes the job definition's environment
without containerOverrides and without the per-job ``AWS_BATCH_*`` variables): it is started with that
environment, so modules that read the environment while being imported see the job definition's values;
the child then switches to the job's full environment. While a zygote starts (importing takes seconds), jobs run as ordinary
subprocesses; so does any job whose command has another form, or whose module failed to import.

Not supported: stdin (children read /dev/null); per-job effects of module import (they happen once per
zygote); more than ``MAX_ZYGOTES`` distinct environments at once (the oldest zygote is stopped; its
running jobs keep running but their exit codes are reported as killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = struct.Struct(">I")
MAX_ZYGOTES = 4
REPLY_TIMEOUT_S = 10.0
BROKEN_RETRY_S = 60.0
KILLED = -int(signal.SIGKILL)


def _python_names() -> frozenset[str]:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return frozenset({"python", f"python{sys.version_info.major}", version})


@dataclass
class _Zygote:
    key: tuple[tuple[str, str], ...]
    process: subprocess.Popen[bytes]
    sock: socket.socket
    ready: bool = False
    dead: bool = False
    failed: dict[str, str] = field(default_factory=dict)
    buffer: bytes = b""
    replies: dict[int, dict[str, Any]] = field(default_factory=dict)
    children: set[int] = field(default_factory=set)
    next_id: int = 0


class WarmChild:
    """The part of ``subprocess.Popen`` the runner uses, for a job forked by a zygote."""

    def __init__(self, pool: WarmPool, zygote: _Zygote, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pool = pool
        self._zygote = zygote

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Block until the zygote reports the exit (used only when localbatch stops)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            if self._zygote.dead:
                self.returncode = KILLED
                break
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired([str(self.pid)], timeout or 0.0)
            select.select([self._zygote.sock], [], [], 0.5)
            self._pool._pump(self._zygote)
        return self.returncode


class WarmPool:
    """Zygotes keyed by job environment; ``on_exit(pid, returncode)`` is called on the event loop."""

    zygote_module = "localbatch.zygote"

    def __init__(
        self,
        modules: Sequence[str],
        on_exit: Callable[[WarmChild], None],
        *,
        python: str = sys.executable,
        cwd: Path | None = None,
    ) -> None:
        self.modules = tuple(modules)
        self.on_exit = on_exit
        self.python = python
        self.cwd = cwd
        self._names = _python_names()
        self._zygotes: dict[tuple[tuple[str, str], ...], _Zygote] = {}
        self._children: dict[int, WarmChild] = {}
        # Environments whose zygote died before it was ready: not retried until this monotonic time.
        self._broken: dict[tuple[tuple[str, str], ...], float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def module_of(self, command: Sequence[str]) -> str | None:
        """MODULE when ``command`` is ``python -m MODULE ...`` and MODULE (or its package) is preloaded."""
        if len(command) < 3 or command[1] != "-m":
            return None
        if command[0] != self.python and Path(command[0]).name not in self._names:
            return None
        module = command[2]
        if any(module == m or module.startswith(m + ".") for m in self.modules):
            return module
        return None

    # -- spawning ------------------------------------------------------------------------------------
    def spawn(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        out_fd: int,
        base_env: Mapping[str, str] | None = None,
    ) -> WarmChild | None:
        """Fork the job from the zygote of ``base_env``; None when the caller should start a subprocess.

        ``base_env`` (default: ``env`` without ``AWS_BATCH_*``) is what the zygote imports with; ``env``
        is what the job runs with.
        """
        module = self.module_of(command)
        if module is None or self._loop is None:
            return None
        if base_env is None:
            base_env = {k: v for k, v in env.items() if not k.startswith("AWS_BATCH_")}
        key = tuple(sorted(base_env.items()))
        zygote = self._zygotes.get(key)
        if zygote is None or zygote.dead:
            if self._broken.get(key, 0.0) <= time.monotonic():
                self._start(key)
            return None
        if not zygote.ready or module in zygote.failed:
            return None
        zygote.next_id += 1
        request_id = zygote.next_id
        request = {"id": request_id, "module": module, "args": list(command[3:]), "env": dict(env)}
        request["cwd"] = str(cwd)
        data = json.dumps(request).encode()
        try:
            self._send(zygote, HEADER.pack(len(data)) + data, out_fd)
            reply = self._await_reply(zygote, request_id)
        except OSError:
            self._lost(zygote)
            return None
        if reply is None or "pid" not in reply:
            return None
        child = WarmChild(self, zygote, int(reply["pid"]))
        zygote.children.add(child.pid)
        self._children[child.pid] = child
        return child

    def _send(self, zygote: _Zygote, frame: bytes, fd: int) -> None:
        sent = 0
        while sent < len(frame):
            select.select([], [zygote.sock], [], REPLY_TIMEOUT_S)
            try:
                if sent == 0:
                    sent = socket.send_fds(zygote.sock, [frame], [fd])
                else:
                    sent += zygote.sock.send(frame[sent:])
            except BlockingIOError:
                continue

    def _await_reply(self, zygote: _Zygote, request_id: int) -> dict[str, Any] | None:
        # A fork takes milliseconds, like the fork of a subprocess this replaces, so waiting here on
        # the event loop thread costs no more than subprocess.Popen would.
        waited = 0.0
        while request_id not in zygote.replies:
            if zygote.dead or waited > REPLY_TIMEOUT_S:
                return None
            select.select([zygote.sock], [], [], 0.5)
            waited += 0.5
            self._pump(zygote)
        return zygote.replies.pop(request_id)

    # -- zygote lifecycle ----------------------------------------------------------------------------
    def _start(self, key: tuple[tuple[str, str], ...]) -> None:
        if len(self._zygotes) >= MAX_ZYGOTES:
            oldest = next(iter(self._zygotes))
            self._stop(self._zygotes.pop(oldest))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen(
                [self.python, "-m", self.zygote_module, str(theirs.fileno()), *self.modules],
                pass_fds=(theirs.fileno(),),
                env=dict(key),
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            ours.close()
            return
        finally:
            theirs.close()
        ours.setblocking(False)
        zygote = _Zygote(key, process, ours)
        self._zygotes[key] = zygote
        assert self._loop is not None
        self._loop.add_reader(ours.fileno(), self._pump, zygote)

    def _pump(self, zygote: _Zygote) -> None:
        """Read what the zygote sent and act on every complete message."""
        while not zygote.dead:
            try:
                data = zygote.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self._lost(zygote)
                return
            zygote.buffer += data
        while len(zygote.buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(zygote.buffer)
            if len(zygote.buffer) < HEADER.size + length:
                break
            message = json.loads(zygote.buffer[HEADER.size : HEADER.size + length])
            zygote.buffer = zygote.buffer[HEADER.size + length :]
            if message.get("ready"):
                zygote.ready = True
                zygote.failed = dict(message.get("failed") or {})
            elif "exit" in message:
                self._exited(zygote, int(message["exit"]), int(message["code"]))
            elif "id" in message:
                zygote.replies[int(message["id"])] = message

    def _exited(self, zygote: _Zygote, pid: int, code: int) -> None:
        zygote.children.discard(pid)
        child = self._children.pop(pid, None)
        if child is None:
            return
        child.returncode = code
        assert self._loop is not None
        # Not from inside spawn() or wait(): the runner's handler may start other jobs.
        self._loop.call_soon(self.on_exit, child)

    def _lost(self, zygote: _Zygote) -> None:
        """The zygote died: its children's exit codes can no longer be read; report them as killed."""
        if zygote.dead:
            return
        zygote.dead = True
        if not zygote.ready:
            self._broken[zygote.key] = time.monotonic() + BROKEN_RETRY_S
        self._detach(zygote)
        # Reap it; a zygote that lost its socket exits by itself.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(zygote.process.pid, signal.SIGTERM)
        for pid in list(zygote.children):
            self._exited(zygote, pid, KILLED)
        if self._zygotes.get(zygote.key) is zygote:
            del self._zygotes[zygote.key]

    def _detach(self, zygote: _Zygote) -> None:
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(zygote.sock.fileno())
        zygote.sock.close()

    def _stop(self, zygote: _Zygote) -> None:
        if not zygote.dead:
            zygote.dead = True
            self._detach(zygote)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(zygote.process.pid, signal.SIGTERM)
        try:
            zygote.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(zygote.process.pid, signal.SIGKILL)
            zygote.process.wait()
        for pid in list(zygote.children):
            self._exited(zygote, pid, KILLED)

    def close(self) -> None:
        for zygote in list(self._zygotes.values()):
            self._stop(zygote)
        self._zygotes.clear()
