"""Warm interpreters (`localbatch serve --preload MODULE`): `python -m MODULE ...` jobs forked, not started.

Like the warm instances of AWS Batch, the expensive start is paid once: a zygote process
(`localbatch.zygote`, same interpreter as localbatch) imports the preloaded modules, then forks one
child per job whose command is exactly `python -m MODULE ARGS...` (`python`, `python3`,
`python3.X` resolved through the job's PATH to localbatch's interpreter directory, or that
interpreter's path) with MODULE preloaded or inside a preloaded package. Each child gets its own
session (process group), working directory, output pipe and environment, so logs, TerminateJob,
timeouts and host-lost faults treat it exactly like a process started cold.

One zygote serves each distinct job environment, ignoring the `AWS_BATCH_*` variables that differ
per job, and is started with that environment: modules that read the environment when imported
(Airflow's configuration does) see the job's values. At most MAX_ZYGOTES live at once; an idle one
is replaced when another environment needs a zygote; when all are busy, the job runs cold.

Everything here runs on localbatch's event loop: the zygote's socket is registered with it, and
the runner is told through callbacks when a child started, could not be forked, or exited.

Not emulated, or different from a cold start:
- import-time side effects of preloaded modules happen once per zygote, not once per job, and
  whatever they read from the environment is the zygote's (jobs with a different environment get
  a different zygote, but a module that caches e.g. the process id or the time at import sees the
  zygote's);
- options between `python` and `-m` (`python -u -m M`) are not recognised: such jobs run cold;
- `PYTHON*` variables that act at interpreter start (PYTHONPATH, PYTHONHASHSEED, ...) are the
  zygote's, i.e. those of the job environment it was started with.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_ZYGOTES = 4
ZYGOTE_MODULE = "localbatch.zygote"


def set_batch_policy(pid: int) -> None:
    """Put process `pid` (and so the processes it forks later) under Linux's SCHED_BATCH policy.

    As the airflow-aws-batch image's entrypoint does: such a process does not preempt the running one
    when it wakes up. Airflow's task supervisor, woken by its task process closing
    its sockets, would otherwise preempt that process before it has exited, find it alive, and sleep
    until its next heartbeat tick (`[workers] min_heartbeat_interval`) before noticing: up to seconds
    per job. Needs no privilege; a process already gone, or a kernel that refuses, is left as it is.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0))


PER_JOB_PREFIX = "AWS_BATCH_"
MAX_MESSAGE = 1 << 20
log = logging.getLogger("localbatch.warm")

EnvKey = tuple[tuple[str, str], ...]


@dataclass
class Zygote:
    key: EnvKey
    popen: subprocess.Popen[bytes]
    sock: socket.socket
    ready: bool = False
    failed: dict[str, str] = field(default_factory=dict)
    next_id: int = 0
    forked: int = 0
    waiting: dict[int, str] = field(default_factory=dict)  # request id -> job id, not forked yet
    children: dict[int, str] = field(default_factory=dict)  # pid -> job id
    outbox: collections.deque[tuple[bytes, int]] = field(default_factory=collections.deque)
    used_at: float = field(default_factory=time.monotonic)

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.children or self.outbox)


@dataclass
class WarmCallbacks:
    started: Callable[[str, int], None]  # job id, pid
    not_forked: Callable[[str, str], None]  # job id, why: the runner starts it cold
    exited: Callable[[str, int], None]  # job id, return code as subprocess reports it
    lost: Callable[[str], None]  # job id whose zygote died while it ran: exit code unknown


class WarmPool:
    def __init__(
        self,
        modules: list[str],
        workdir: Path,
        callbacks: WarmCallbacks,
        *,
        sched_batch: bool = True,
    ) -> None:
        self.modules = list(dict.fromkeys(modules))
        self.sched_batch = sched_batch
        self.workdir = workdir
        self.callbacks = callbacks
        self.zygotes: dict[EnvKey, Zygote] = {}
        # Environments whose zygote died before it was ready: starting another would die the same way.
        self.broken: set[EnvKey] = set()
        self.interpreter_dir = os.path.dirname(sys.executable)
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # -- which jobs ---------------------------------------------------------------------------------
    def module_for(self, command: list[str], env: dict[str, str]) -> str | None:
        """MODULE when `command` is `python -m MODULE ...` for our interpreter and MODULE is preloaded."""
        if not self.modules or len(command) < 3 or command[1] != "-m":
            return None
        module = command[2]
        if not any(module == m or module.startswith(m + ".") for m in self.modules):
            return None
        program = command[0]
        if program == sys.executable:
            return module
        if os.sep in program or not program.startswith("python"):
            return None
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None or os.path.dirname(found) != self.interpreter_dir:
            return None
        return module

    # -- spawning -----------------------------------------------------------------------------------
    def spawn(self, job_id: str, module: str, command: list[str], env: dict[str, str], out_fd: int) -> bool:
        """Ask a zygote to fork the job; False when it cannot be asked (the caller starts it cold).

        `out_fd` is the write end of the job's output pipe; it is sent to the zygote and stays
        the caller's to close. The answer arrives later through the callbacks.
        """
        zygote = self._zygote_for(env)
        if zygote is None:
            return False
        zygote.next_id += 1
        request = {
            "id": zygote.next_id,
            "module": module,
            "argv": command[3:],
            "env": env,
            "cwd": str(self.workdir),
        }
        data = json.dumps(request).encode()
        if len(data) > MAX_MESSAGE:
            return False
        zygote.waiting[zygote.next_id] = job_id
        zygote.outbox.append((data, os.dup(out_fd)))
        zygote.used_at = time.monotonic()
        self._flush(zygote)
        return True

    def _zygote_for(self, env: dict[str, str]) -> Zygote | None:
        key: EnvKey = tuple(sorted((k, v) for k, v in env.items() if not k.startswith(PER_JOB_PREFIX)))
        zygote = self.zygotes.get(key)
        if zygote is not None:
            return zygote
        if key in self.broken:
            return None
        if len(self.zygotes) >= MAX_ZYGOTES:
            idle = [z for z in self.zygotes.values() if not z.busy]
            if not idle:
                return None
            self._close(min(idle, key=lambda z: z.used_at))
        try:
            zygote = self._start(key)
        except OSError as error:
            log.warning("could not start a warm interpreter: %s", error)
            return None
        self.zygotes[key] = zygote
        return zygote

    def _start(self, key: EnvKey) -> Zygote:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", ZYGOTE_MODULE, str(theirs.fileno()), *self.modules],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=dict(key),
                cwd=self.workdir,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        if self.sched_batch:
            set_batch_policy(popen.pid)  # its forks, the jobs, inherit it
        zygote = Zygote(key, popen, ours)
        assert self._loop is not None
        self._loop.add_reader(ours.fileno(), self._on_message, zygote)
        return zygote

    def _flush(self, zygote: Zygote) -> None:
        assert self._loop is not None
        while zygote.outbox:
            data, fd = zygote.outbox[0]
            try:
                socket.send_fds(zygote.sock, [data], [fd])
            except BlockingIOError:
                # The zygote is still importing or busy forking: send the rest when it reads.
                self._loop.add_writer(zygote.sock.fileno(), self._flush, zygote)
                return
            except OSError:
                return  # the zygote died; _on_message sees the end of the socket
            zygote.outbox.popleft()
            os.close(fd)
        self._loop.remove_writer(zygote.sock.fileno())

    # -- answers ------------------------------------------------------------------------------------
    def _on_message(self, zygote: Zygote) -> None:
        for _ in range(256):
            try:
                data = zygote.sock.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost(zygote)
                return
            message: dict[str, Any] = json.loads(data)
            if "exit" in message:
                job_id = zygote.children.pop(int(message["exit"]), None)
                if job_id is not None:
                    self.callbacks.exited(job_id, int(message["code"]))
            elif "pid" in message:
                pid = int(message["pid"])
                zygote.forked += 1
                job_id = zygote.waiting.pop(int(message["id"]), None)
                if job_id is None:  # forgotten: no one would watch it
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                    continue
                zygote.children[pid] = job_id
                self.callbacks.started(job_id, pid)
            elif "error" in message:
                job_id = zygote.waiting.pop(int(message["id"]), None)
                if job_id is not None:
                    self.callbacks.not_forked(job_id, str(message["error"]))
            elif message.get("ready"):
                zygote.ready = True
                zygote.failed = dict(message.get("failed") or {})
                for module, error in zygote.failed.items():
                    log.warning("warm interpreter could not import %s (its jobs run cold): %s", module, error)

    def _lost(self, zygote: Zygote) -> None:
        """The zygote died (or its socket closed): drop it; the next job starts a new one."""
        if self.zygotes.get(zygote.key) is zygote:
            del self.zygotes[zygote.key]
        self._release(zygote)
        code = zygote.popen.poll()
        if not zygote.ready:
            self.broken.add(zygote.key)
        log.warning(
            "warm interpreter exited (code %s)%s", code, "" if zygote.ready else " before it was ready"
        )
        waiting, children = list(zygote.waiting.values()), list(zygote.children.values())
        zygote.waiting.clear()
        zygote.children.clear()
        for job_id in waiting:
            self.callbacks.not_forked(job_id, "warm interpreter exited")
        for job_id in children:
            self.callbacks.lost(job_id)

    def _release(self, zygote: Zygote) -> None:
        assert self._loop is not None
        self._loop.remove_reader(zygote.sock.fileno())
        self._loop.remove_writer(zygote.sock.fileno())
        while zygote.outbox:
            os.close(zygote.outbox.popleft()[1])
        zygote.sock.close()
        if zygote.popen.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                # With its socket closed the zygote leaves its loop at once.
                zygote.popen.wait(timeout=2)
        if zygote.popen.poll() is None:
            zygote.popen.kill()
            zygote.popen.wait()

    def _close(self, zygote: Zygote) -> None:
        del self.zygotes[zygote.key]
        self._release(zygote)

    def forget(self, job_id: str) -> None:
        """The runner no longer waits for this job's answers (localbatch is stopping)."""
        for zygote in self.zygotes.values():
            for table in (zygote.waiting, zygote.children):
                for k, v in list(table.items()):
                    if v == job_id:
                        del table[k]

    def close(self) -> None:
        for zygote in list(self.zygotes.values()):
            self._close(zygote)

    def stats(self) -> dict[str, Any]:
        return {
            "modules": self.modules,
            "zygotes": [
                {
                    "pid": z.popen.pid,
                    "ready": z.ready,
                    "failed": z.failed,
                    "running": len(z.children),
                    "waiting": len(z.waiting),
                    "forked": z.forked,
                }
                for z in self.zygotes.values()
            ],
        }
