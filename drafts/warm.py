"""Warm interpreters: run ``python -m MODULE ARGS...`` jobs as forks of a process that imported MODULE.

``localbatch serve --preload MODULE`` (repeatable) enables it. A job whose command is exactly
``python|python3|<the interpreter> -m MODULE ARGS...`` with MODULE listed is forked from a zygote
(``localbatch.zygote``) instead of started as a new interpreter, which saves the import time of large
modules for every job (AWS Batch has the same idea in warm instances). Any other command, or a module the
zygote failed to import, runs as a normal subprocess.

One zygote serves each distinct job environment (ignoring the ``AWS_BATCH_*`` variables, which differ per
job), started with that environment so that modules reading the environment at import see the job's.
The child then applies the job's full environment, working directory and output, in its own session
(process group), so TerminateJob and timeouts signal it exactly like a subprocess.

Not supported: stdin (children read /dev/null), and modules with import-time side effects that must
happen once per job (they happen once per zygote).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = struct.Struct(">I")
MAX_ZYGOTES = 4
PYTHON_NAMES = frozenset({"python", "python3", f"python3.{sys.version_info.minor}"})


class WarmProcess:
    """The part of ``asyncio.subprocess.Process`` a job runner uses: pid, stdout, wait()."""

    def __init__(self, pid: int, stdout: asyncio.StreamReader, exited: asyncio.Future[int]) -> None:
        self.pid = pid
        self.stdout = stdout
        self._exited = exited
        self.returncode: int | None = None

    async def wait(self) -> int:
        self.returncode = await asyncio.shield(self._exited)
        return self.returncode


@dataclass
class _Zygote:
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    sock: socket.socket | None = None
    reader: asyncio.StreamReader | None = None
    # Kept only so the transport stays open: a collected StreamWriter closes it.
    writer: asyncio.StreamWriter | None = None
    failed: dict[str, str] = field(default_factory=dict)
    pending: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    exits: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    early_exits: dict[int, int] = field(default_factory=dict)
    ready: asyncio.Future[None] | None = None
    task: asyncio.Task[None] | None = None
    next_id: int = 0


class WarmRunner:
    zygote_module = "localbatch.zygote"

    def __init__(self, modules: Sequence[str], python: str = sys.executable) -> None:
        self.modules = tuple(modules)
        self.python = python
        self._zygotes: dict[tuple[tuple[str, str], ...], _Zygote] = {}
        self._lock = asyncio.Lock()

    def module_of(self, command: Sequence[str]) -> str | None:
        """MODULE when ``command`` is ``python -m MODULE ...`` and MODULE (or its package) is preloaded."""
        if len(command) < 3 or command[1] != "-m":
            return None
        if not any(command[2] == m or command[2].startswith(m + ".") for m in self.modules):
            return None
        program = command[0]
        if program == self.python or Path(program).name in PYTHON_NAMES:
            return command[2]
        return None

    async def spawn(
        self, command: Sequence[str], env: Mapping[str, str], cwd: str | None = None
    ) -> WarmProcess | None:
        """Fork the job from a warm zygote; None when it cannot (the caller starts a subprocess)."""
        module = self.module_of(command)
        if module is None:
            return None
        zygote = await self._zygote(env)
        if zygote is None or module in zygote.failed or zygote.sock is None:
            return None
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        zygote.next_id += 1
        request_id = zygote.next_id
        started: asyncio.Future[int] = loop.create_future()
        zygote.pending[request_id] = started
        message = {"id": request_id, "module": module, "args": list(command[3:]), "env": dict(env), "cwd": cwd}
        data = json.dumps(message).encode()
        try:
            await self._send(zygote.sock, HEADER.pack(len(data)) + data, write_fd)
        except OSError:
            zygote.pending.pop(request_id, None)
            os.close(read_fd)
            os.close(write_fd)
            return None
        finally:
            with contextlib.suppress(OSError):
                os.close(write_fd)
        try:
            pid = await started
        except RuntimeError:
            os.close(read_fd)
            return None
        stdout = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdout), os.fdopen(read_fd, "rb", buffering=0)
        )
        exited = zygote.exits.setdefault(pid, loop.create_future())
        if pid in zygote.early_exits:
            exited.set_result(zygote.early_exits.pop(pid))
        return WarmProcess(pid, stdout, exited)

    async def _send(self, sock: socket.socket, frame: bytes, fd: int) -> None:
        # The socket is non-blocking (asyncio reads it); frames are small, so a full buffer is rare.
        while True:
            try:
                sent = socket.send_fds(sock, [frame], [fd])
                break
            except BlockingIOError:
                await asyncio.sleep(0.005)
        while sent < len(frame):
            try:
                sent += sock.send(frame[sent:])
            except BlockingIOError:
                await asyncio.sleep(0.005)

    async def _zygote(self, env: Mapping[str, str]) -> _Zygote | None:
        key = tuple(sorted((k, v) for k, v in env.items() if not k.startswith("AWS_BATCH_")))
        async with self._lock:
            zygote = self._zygotes.get(key)
            if zygote is None:
                if len(self._zygotes) >= MAX_ZYGOTES:
                    oldest = next(iter(self._zygotes))
                    await self._stop(self._zygotes.pop(oldest))
                zygote = _Zygote(env=dict(key))
                self._zygotes[key] = zygote
                await self._start(zygote)
        assert zygote.ready is not None
        try:
            await zygote.ready
        except RuntimeError:
            return None
        return zygote

    async def _start(self, zygote: _Zygote) -> None:
        loop = asyncio.get_running_loop()
        zygote.ready = loop.create_future()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            zygote.process = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                self.zygote_module,
                str(theirs.fileno()),
                *self.modules,
                pass_fds=(theirs.fileno(),),
                env=zygote.env,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as error:
            zygote.ready.set_exception(RuntimeError(str(error)))
            ours.close()
            return
        finally:
            theirs.close()
        ours.setblocking(False)
        zygote.sock = ours
        zygote.reader, zygote.writer = await asyncio.open_unix_connection(sock=ours)
        zygote.task = asyncio.create_task(self._read(zygote))

    async def _read(self, zygote: _Zygote) -> None:
        assert zygote.reader is not None and zygote.ready is not None
        try:
            while True:
                header = await zygote.reader.readexactly(HEADER.size)
                (length,) = HEADER.unpack(header)
                message: dict[str, Any] = json.loads(await zygote.reader.readexactly(length))
                if message.get("ready"):
                    zygote.failed = dict(message.get("failed") or {})
                    zygote.ready.set_result(None)
                elif "exit" in message:
                    pid, code = int(message["exit"]), int(message["code"])
                    future = zygote.exits.pop(pid, None)
                    if future is None:
                        zygote.early_exits[pid] = code
                    elif not future.done():
                        future.set_result(code)
                elif "id" in message:
                    started = zygote.pending.pop(int(message["id"]), None)
                    if started is not None and not started.done():
                        if "pid" in message:
                            started.set_result(int(message["pid"]))
                        else:
                            started.set_exception(RuntimeError(str(message.get("error"))))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            # The zygote died: jobs not yet started fall back; running children are orphans whose
            # exit status nobody can read any more, so report them as killed.
            error = RuntimeError("warm interpreter exited")
            if not zygote.ready.done():
                zygote.ready.set_exception(error)
            for started in zygote.pending.values():
                if not started.done():
                    started.set_exception(error)
            for future in zygote.exits.values():
                if not future.done():
                    future.set_result(-9)
            for key, value in list(self._zygotes.items()):
                if value is zygote:
                    del self._zygotes[key]

    async def _stop(self, zygote: _Zygote) -> None:
        if zygote.sock is not None:
            zygote.sock.close()
        if zygote.process is not None and zygote.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                zygote.process.terminate()
            try:
                await asyncio.wait_for(zygote.process.wait(), 10)
            except asyncio.TimeoutError:
                zygote.process.kill()
                await zygote.process.wait()
        if zygote.task is not None:
            zygote.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await zygote.task

    async def close(self) -> None:
        for zygote in list(self._zygotes.values()):
            await self._stop(zygote)
        self._zygotes.clear()
