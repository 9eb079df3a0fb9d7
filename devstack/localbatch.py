"""A localbatch service as a child process: start, readiness, setup, faults, stats, restart, stop.

Typical use::

    with LocalBatchServer(tmp_path, args=["--kill-grace-seconds", "1"]) as localbatch:
        localbatch.setup(job_queue="q", job_definition="d")
        localbatch.set_faults({"latency_ms": 50})
        job_id = localbatch.batch.submit_job(jobName="x", jobQueue="q", jobDefinition="d")["jobId"]
        localbatch.restart(faults={"seed": 1})        # same port, same data dir: the job is still there
        print(localbatch.stats()["operations"]["SubmitJob"])
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from botocore.config import Config

from devstack.batch import LocalBatch
from devstack.procs import Process, StackError

__all__ = ["LocalBatchServer", "localbatch_env", "random_credentials"]


def random_credentials() -> dict[str, str]:
    """A key pair nobody else knows, for a localbatch that verifies signatures."""
    return {
        "aws_access_key_id": "LB" + secrets.token_hex(9).upper(),
        "aws_secret_access_key": secrets.token_urlsafe(30),
    }


def localbatch_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without Airflow's and AWS's settings, plus ``extra``.

    localbatch is neither Airflow nor an AWS client; the caller's settings of either (a test's
    AIRFLOW_HOME, a developer's AWS_PROFILE) have no business in it or in what it runs.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "AWS_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class LocalBatchServer(LocalBatch):
    """``python -m localbatch serve`` on 127.0.0.1 and a free port, owned by this object.

    Everything lives under ``work_dir``: the store and the jobs' working directories (``data/``), the
    log (``localbatch.log`` unless ``log_path`` says otherwise; each start appends to it) and the file
    the server writes its URL to once it listens. Being a :class:`LocalBatch`, it also offers the
    boto3 clients, job look-ups and admin endpoints of the running server.

    ``args``: ``localbatch serve`` arguments of every start, e.g. ``["--latency-ms", "50"]``.
    ``env``: added to the server's environment (see :func:`localbatch_env`).
    ``ready_timeout``: seconds a start may take before it counts as failed.
    ``credentials``: the keys the server verifies every signature with (a new random pair by
    default, kept across restarts); its clients, :meth:`aws_env` and :meth:`airflow_connection`
    carry them. They reach the server in a 0600 file, never on its command line.
    ``check_signatures``: False starts the server without keys, so it admits any signed request
    (its default; only for tests of that default).
    """

    def __init__(
        self,
        work_dir: Path | str,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        job_queue: str = "airflow-jobs",
        config: Config | None = None,
        ready_timeout: float = 60.0,
        credentials: Mapping[str, str] | None = None,
        check_signatures: bool = True,
    ):
        super().__init__("", job_queue, config, credentials=credentials or random_credentials())
        self._moved(None)
        self.work_dir = Path(work_dir).resolve()
        self.data_dir = self.work_dir / "data"
        self.log_path = log_path or self.work_dir / "localbatch.log"
        self.args = list(args)
        self.env = localbatch_env(env)
        self.ready_timeout = ready_timeout
        self.process: Process | None = None
        self._ready_file = self.work_dir / "localbatch.url"
        #: ``KEY:SECRET``, the keys the server verifies (0600; what the server reads them from).
        self.credentials_file = self.work_dir / "credentials"
        self.check_signatures = check_signatures
        self._starts = 0

    def __enter__(self) -> LocalBatchServer:
        if not self.alive():
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port

    @property
    def pid(self) -> int:
        if self.process is None or self.process.pid is None:
            raise StackError("localbatch has not been started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def start(
        self, *, port: int | None = None, args: Sequence[str] = (), faults: Mapping[str, Any] | None = None
    ) -> Process:
        """Start the server and return once it listens (raise :class:`StackError` if it does not).

        ``port``: None for a free one. ``args``: more ``serve`` arguments for this start only.
        ``faults``: a fault config in force from the first request (``--faults``), where setting it
        after the start would leave a moment without it (jobs held RUNNABLE would be let go).
        """
        if self.alive():
            raise StackError(f"localbatch already runs at {self.url} (pid {self.pid})")
        self._starts += 1
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self._ready_file.unlink(missing_ok=True)
        argv = [
            *(sys.executable, "-m", "localbatch", "serve", "--host", "127.0.0.1", "--port", str(port or 0)),
            *("--data-dir", str(self.data_dir), "--ready-file", str(self._ready_file)),
            *self.args,
            *args,
        ]
        if self.check_signatures:
            self._write_credentials()
            argv += ["--credentials-file", str(self.credentials_file)]
        if faults is not None:
            faults_file = self.work_dir / f"faults-{self._starts}.json"
            faults_file.write_text(json.dumps(dict(faults)))
            argv += ["--faults", str(faults_file)]
        self.process = Process("localbatch", argv, self.env, self.log_path, self.work_dir)
        self.process.start()
        try:
            self._moved(self._wait_ready(self.process))
            # Written before the server listens; a new one at every start.
            self.admin_token = (self.data_dir / "admin-token").read_text().strip()
        except BaseException:
            self.process.stop(grace=5.0)
            raise
        return self.process

    def _write_credentials(self) -> None:
        self.credentials_file.unlink(missing_ok=True)
        fd = os.open(self.credentials_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            key, secret = self.credentials["aws_access_key_id"], self.credentials["aws_secret_access_key"]
            handle.write(f"{key}:{secret}\n")

    def _wait_ready(self, process: Process) -> str:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            # The server writes the file whole (a rename), so any content is the complete URL.
            url = self._ready_file.read_text().strip() if self._ready_file.exists() else ""
            if url:
                return url
            code = process.poll()
            if code is not None:
                raise StackError(
                    f"localbatch exited with code {code} before it listened; "
                    f"last lines of {self.log_path}:\n{process.tail()}"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"localbatch did not listen within {self.ready_timeout:g} s; "
                    f"last lines of {self.log_path}:\n{process.tail()}"
                )
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
        """Send ``sig`` to the server's process group, wait up to ``grace`` s, then SIGKILL what is left.

        The server ends its running jobs on SIGTERM (they run in sessions of their own, outside the
        group); SIGKILL leaves them to the next start on the same data dir, which fails them.
        """
        if self.process is None:
            return
        self.process.signal(sig)
        if self.process.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.popen.wait(timeout=grace)
        self.process.stop(grace=5.0)

    def restart(
        self,
        *,
        sig: int = signal.SIGTERM,
        grace: float = 30.0,
        args: Sequence[str] = (),
        faults: Mapping[str, Any] | None = None,
    ) -> Process:
        """Stop with ``sig`` and start again on the same port and data dir.

        Jobs, queues and job definitions persist in the data dir (jobs whose processes died with the
        server are FAILED with a reason that says so); the fault config and the stats live in memory
        and start over from the arguments (``args``, ``faults``: as in :meth:`start`).
        """
        port = self.port
        self.stop(sig, grace)
        return self.start(port=port, args=args, faults=faults)

    # --- resources ------------------------------------------------------------------------------

    def setup(
        self,
        *,
        compute_environment: str = "localbatch-ce",
        job_queue: str = "airflow-jobs",
        job_definition: str = "airflow-task",
        max_vcpus: int = 8,
        env: Mapping[str, str] | None = None,
        api_server_url: str | None = None,
    ) -> None:
        """Create a compute environment, job queue and job definition with ``localbatch setup``.

        ``env``: the job definition's environment. ``api_server_url``: Airflow's API server, whose
        execution API the tasks call. The queue becomes this object's ``job_queue``.
        """
        argv = [
            *(sys.executable, "-m", "localbatch", "setup", "--endpoint-url", self.url),
            *("--compute-environment", compute_environment, "--job-queue", job_queue),
            *("--job-definition", job_definition, "--max-vcpus", str(max_vcpus)),
        ]
        for key, value in (env or {}).items():
            argv += ["--env", f"{key}={value}"]
        if api_server_url:
            argv += ["--api-server-url", api_server_url]
        env = {**self.env, **self.aws_env()}
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
        output = result.stdout + result.stderr
        self.log_path.with_name(f"{self.log_path.stem}-setup.log").write_text(output)
        if result.returncode != 0:
            raise StackError(f"localbatch setup exited with {result.returncode}:\n{output}")
        self.job_queue = job_queue
