"""The warm interpreter: a process that imports some modules once, then forks one child per job.

Started by `localbatch.warm` as `python -m localbatch.zygote FD MODULE...`, where FD is its end of a
SOCK_SEQPACKET socket pair (one message per datagram-like packet, so no framing). It imports the
modules, reports which failed, and serves spawn requests until the socket closes.

Messages are JSON objects:
- zygote -> localbatch, once: `{"ready": true, "failed": {"module": "error", ...}}`;
- localbatch -> zygote: `{"id": N, "module": M, "argv": [...], "env": {...}, "cwd": "..."}` with one
  file descriptor attached (SCM_RIGHTS): the write end of the job's output pipe;
- zygote -> localbatch: `{"id": N, "pid": PID}` or `{"id": N, "error": "..."}`, and later
  `{"exit": PID, "code": C}` with C as `subprocess` reports it (negative: killed by that signal).

Only the standard library is imported here before the preloaded modules. The child runs the module as
`__main__` and then ends the way the interpreter would (:func:`_finish`): an uncaught exception is
printed, a SystemExit gives the exit status, non-daemon threads are waited for, atexit handlers run and
output is flushed, exactly as with `python -m MODULE`. Only the last step of a normal exit is skipped:
tearing down every module. In a forked child that step writes to nearly every inherited object and so
copies most of the zygote's memory, a cost a container never pays (the README's "Warm interpreters"
gives the figures).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

MAX_MESSAGE = 1 << 20


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def _become_job(request: dict[str, Any], out_fd: int) -> NoReturn:
    """In the forked child: take on the job's session, output, environment and directory; run it."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)
    # Modules imported by the zygote read the zygote's environment (the job's, minus AWS_BATCH_*)
    # at import; from here on the job sees exactly its own.
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    if os.environ.get("PYTHONUNBUFFERED"):
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(write_through=True)  # type: ignore[union-attr]
    sys.argv = [request["module"], *request["argv"]]
    sys.path[0] = os.getcwd()  # what `python -m` puts first
    # runpy warns when the module to run is already imported; __main__ gets a fresh copy, as in a cold run.
    sys.modules.pop(request["module"], None)
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        _finish(_exit_status(exit_.code))
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        _finish(None)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        _finish(1)
    _finish(0)


def _exit_status(code: object) -> int:
    """The status the interpreter exits with for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _finish(status: int | None) -> NoReturn:
    """End the job as the interpreter's shutdown would, without tearing down modules.

    ``status`` None: killed by SIGINT, as an interpreter ends on an uncaught KeyboardInterrupt.
    """
    threading._shutdown()  # type: ignore[attr-defined]  # what Py_FinalizeEx calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    if status is None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        status = 128 + signal.SIGINT
    os._exit(status)


def _reap(sock: socket.socket, before_exit: Callable[[int], None]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        before_exit(pid)
        _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(sock: socket.socket, modules: list[str]) -> tuple[dict[str, Any], int] | None:
    """Serve spawn requests until the socket closes; in a forked child, return its request and output."""
    failed: dict[str, str] = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except BaseException as error:  # a broken module must not end the zygote: its jobs run cold
            failed[module] = f"{type(error).__name__}: {error}"
    # What is imported now is shared copy-on-write with every child; keep the collector off it.
    gc.collect()
    gc.freeze()
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_r, False)
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _send(sock, {"ready": True, "failed": failed})
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wakeup_r, selectors.EVENT_READ)
    # Children not yet known to lead their process group: read end of their session pipe -> (id, pid).
    # Waiting for them here instead of after each fork lets a burst of requests fork back to back.
    handshakes: dict[int, tuple[int, int]] = {}

    def announce(fd: int) -> None:
        request_id, pid = handshakes.pop(fd)
        selector.unregister(fd)
        os.close(fd)
        _send(sock, {"id": request_id, "pid": pid})

    def before_exit(pid: int) -> None:
        # A child that exits at once is announced first: localbatch learns a pid before its exit.
        for fd, (_, child) in list(handshakes.items()):
            if child == pid:
                announce(fd)

    while True:
        # Children are reaped only once every key this select returned has been handled, never while
        # handling them. Reaping a child whose handshake is still pending announces it (before_exit),
        # which unregisters and closes its pipe, and that pipe can be further on in the same list:
        # select returns [socket, wake-up, handshake of A] and A exits while the socket's request is
        # being forked. Such a stale key must not be read as the socket (the zygote would block
        # reading a request that is not there, every pending handshake unannounced, those jobs
        # STARTING until some other job is submitted), nor, once a new handshake pipe reuses its fd
        # number, announce that child before it leads its process group.
        for key, _ in selector.select():
            if key.fd == wakeup_r:
                while True:
                    try:
                        os.read(wakeup_r, 4096)
                    except BlockingIOError:
                        break
                continue
            if key.fd in handshakes:
                announce(key.fd)
                continue
            if key.fd != sock.fileno():
                continue  # not ours any more (see above); cannot happen while reaping waits
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1)
            except InterruptedError:
                continue
            if not data:
                return None
            request = json.loads(data)
            out_fd = fds[0]
            if request["module"] in failed:
                os.close(out_fd)
                _send(sock, {"id": request["id"], "error": failed[request["module"]]})
                continue
            session_r, session_w = os.pipe()
            try:
                pid = os.fork()
            except OSError as error:
                for fd in (out_fd, session_r, session_w):
                    os.close(fd)
                _send(sock, {"id": request["id"], "error": f"fork failed: {error}"})
                continue
            if pid == 0:
                # Its own session and process group, as a subprocess started by localbatch gets:
                # TerminateJob, timeouts and host-lost faults signal the group.
                os.setsid()
                os.close(session_r)
                os.close(session_w)
                for fd in handshakes:
                    os.close(fd)
                selector.close()
                signal.set_wakeup_fd(-1)
                os.close(wakeup_r)
                os.close(wakeup_w)
                return request, out_fd
            os.close(out_fd)
            # The pid is reported once the child leads its process group (end of file: it closed
            # the pipe), so a signal sent to the group right away cannot miss it.
            os.close(session_w)
            handshakes[session_r] = (request["id"], pid)
            selector.register(session_r, selectors.EVENT_READ)
        _reap(sock, before_exit)


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.setblocking(True)
    # Ctrl-C in localbatch's terminal is for localbatch; the zygote ends when its socket closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        job = serve(sock, sys.argv[2:])
    except (BrokenPipeError, ConnectionResetError):  # localbatch went away
        return
    if job is not None:
        # Outside the zygote's try block: the job's errors are the job's (its _finish decides the status).
        sock.close()
        _become_job(*job)


if __name__ == "__main__":
    main()
