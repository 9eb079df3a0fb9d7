"""The warm interpreter: a process that imported some modules once and forks a child per job.

Started by ``localbatch.warm`` as ``python -m localbatch.zygote FD MODULE...`` where FD is one end of a
Unix socket pair. It imports the modules, says it is ready, then serves spawn requests until the socket
closes. Like an AWS Batch warm instance, the expensive start-up is paid once; each job still gets its own
process, session, environment, working directory and output.

Protocol (both directions): a 4-byte big-endian length, then a JSON object.
- zygote -> client, once: ``{"ready": true, "failed": {"module": "error", ...}}``
- client -> zygote: ``{"id": N, "module": M, "args": [...], "env": {...}, "cwd": "..."}`` with one file
  descriptor attached (SCM_RIGHTS), the child's stdout and stderr.
- zygote -> client: ``{"id": N, "pid": PID}`` (or ``{"id": N, "error": "..."}``), later
  ``{"exit": PID, "code": RC}`` where RC is the exit status, or minus the signal number.

Only stdlib is imported here before the preloaded modules, so the zygote holds nothing of localbatch.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import traceback
from typing import Any

HEADER = struct.Struct(">I")


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    frame = HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(sock, [frame], fds)
    else:
        sock.sendall(frame)


def _run_child(request: dict[str, Any], out_fd: int, sock: socket.socket, wakeup_r: int) -> None:
    """In the forked child: become the job's process, run the module as __main__, never return."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        sock.close()
        os.close(wakeup_r)
        os.setsid()
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.environ.clear()
        os.environ.update(request["env"])
        if request.get("cwd"):
            os.chdir(request["cwd"])
        sys.argv = [request["module"], *request["args"]]
        # runpy warns when the module to run as __main__ is already imported; the child needs a fresh copy.
        sys.modules.pop(request["module"], None)
        gc.unfreeze()
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            if exit_.code is None:
                code = 0
            elif isinstance(exit_.code, int):
                code = exit_.code
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code & 0xFF if code >= 0 else 1)


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        send(sock, {"exit": pid, "code": code})


def serve(sock: socket.socket, modules: list[str]) -> None:
    failed: dict[str, str] = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except BaseException as error:  # a broken module must not take the runner down: jobs fall back
            failed[module] = f"{type(error).__name__}: {error}"
    # Objects imported so far are shared with every child copy-on-write; keep the collector off them.
    gc.collect()
    gc.freeze()
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    os.set_blocking(wakeup_r, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    send(sock, {"ready": True, "failed": failed})
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "sock")
    selector.register(wakeup_r, selectors.EVENT_READ, "wakeup")
    buffer = b""
    fds: list[int] = []
    while True:
        for key, _ in selector.select():
            if key.data == "wakeup":
                try:
                    os.read(wakeup_r, 4096)
                except BlockingIOError:
                    pass
                _reap(sock)
                continue
            try:
                data, new_fds, _, _ = socket.recv_fds(sock, 1 << 20, 16)
            except InterruptedError:
                continue
            if not data:
                return
            buffer += data
            fds.extend(new_fds)
            while len(buffer) >= HEADER.size:
                (length,) = HEADER.unpack_from(buffer)
                if len(buffer) < HEADER.size + length:
                    break
                request = json.loads(buffer[HEADER.size : HEADER.size + length])
                buffer = buffer[HEADER.size + length :]
                out_fd = fds.pop(0)
                try:
                    pid = os.fork()
                except OSError as error:
                    os.close(out_fd)
                    send(sock, {"id": request["id"], "error": str(error)})
                    continue
                if pid == 0:
                    _run_child(request, out_fd, sock, wakeup_r)
                os.close(out_fd)
                send(sock, {"id": request["id"], "pid": pid})
        _reap(sock)


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.setblocking(True)
    # The runner's process group is signalled on shutdown; children live in their own sessions.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(sock, sys.argv[2:])
    except (BrokenPipeError, ConnectionResetError):
        pass


if __name__ == "__main__":
    main()
