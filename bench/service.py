"""A localbatch process for one benchmark run: start, configure faults, read stats, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.procs import localbatch_serve_argv, localbatch_setup_argv

JOB_QUEUE = "bench-burst"
JOB_DEFINITION = "bench-task"
COMPUTE_ENVIRONMENT = "bench-ce"
REGION = "us-east-1"


@dataclass
class LocalBatch:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("GET", "/_localbatch/stats")
        return result

    def set_faults(self, faults: dict[str, Any]) -> None:
        self.admin("PUT", "/_localbatch/faults", faults)

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("GET", "/_localbatch/faults")
        return result


def _python() -> str:
    return sys.executable


def _wait_ready(process: subprocess.Popen[bytes], ready_file: Path, log_path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_file.exists() and ready_file.read_text().strip():
            return ready_file.read_text().strip()
        if process.poll() is not None:
            raise RuntimeError(
                f"localbatch exited with {process.returncode}: {log_path.read_text(errors='replace')[-2000:]}"
            )
        time.sleep(0.1)
    raise RuntimeError(
        f"localbatch not ready after {timeout:.0f} s: {log_path.read_text(errors='replace')[-2000:]}"
    )


@contextmanager
def localbatch(
    work_dir: Path,
    faults: dict[str, Any],
    *,
    max_vcpus: int,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    setup_env: dict[str, str] | None = None,
    api_server_url: str | None = None,
) -> Iterator[LocalBatch]:
    """Start localbatch with ``faults``, create the bench queue and job definition, stop it at the end."""
    work_dir.mkdir(parents=True, exist_ok=True)
    faults_file = work_dir / "faults.json"
    faults_file.write_text(json.dumps(faults))
    ready_file = work_dir / "ready"
    ready_file.unlink(missing_ok=True)
    log_path = work_dir / "localbatch.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            localbatch_serve_argv(
                _python(), work_dir / "data", ready_file, "--faults", str(faults_file), *extra_args
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        url = _wait_ready(process, ready_file, log_path, timeout=120)
        service = LocalBatch(url=url, process=process, log_path=log_path)
        # Setup runs without the latency and quotas: they belong to the measured phase only.
        service.set_faults({})
        setup = localbatch_setup_argv(
            _python(),
            url,
            compute_environment=COMPUTE_ENVIRONMENT,
            job_queue=JOB_QUEUE,
            job_definition=JOB_DEFINITION,
            max_vcpus=max_vcpus,
        )
        for key, value in (setup_env or {}).items():
            setup += ["--env", f"{key}={value}"]
        if api_server_url:
            setup += ["--api-server-url", api_server_url]
        subprocess.run(setup, check=True, capture_output=True, timeout=120)
        service.set_faults(faults)
        yield service
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
