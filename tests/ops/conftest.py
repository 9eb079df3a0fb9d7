"""Real servers for the ops tests: moto's server, Airflow's execution API, the `airflow` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from airflow_aws_batch import compat
from devstack import LocalBatch, LocalBatchServer

AIRFLOW = str(Path(sys.executable).parent / "airflow")
REGION = "us-east-1"


def _start_printing_url(
    cmd: list[str], env: Mapping[str, str], log: Path, timeout: float = 90.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``cmd`` with its output in ``log`` (never a pipe nobody drains); wait for its URL line."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text(errors="replace").splitlines():
            if "listening on " in line:
                return proc, line.split("listening on ", 1)[1].strip()
        time.sleep(0.1)
    _stop(proc)
    raise RuntimeError(f"{cmd[:3]} did not report its URL; output: {log.read_text(errors='replace')[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_healthy(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                if response.status == 200:
                    return
                last = response.status
        except OSError as err:
            last = err
        time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy after {timeout}s; last: {last!r}")


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server in its own process (see moto_server.py for why not a thread)."""
    home = tmp_path_factory.mktemp("moto")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}
    script = str(Path(__file__).with_name("moto_server.py"))
    proc, url = _start_printing_url([sys.executable, script], env, home / "server.log")
    try:
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def execution_api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Airflow's execution API app, served by uvicorn in its own process."""
    home = tmp_path_factory.mktemp("exec-api-home")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "AIRFLOW_HOME": str(home)}
    script = str(Path(__file__).with_name("execution_api_server.py"))
    proc, url = _start_printing_url([sys.executable, script], env, home / "server.log")
    try:
        # The app builds its versioned routes on the first request, which takes seconds here.
        _wait_healthy(f"{url}/execution/health")
        yield f"{url}/execution/"
    finally:
        _stop(proc)


def _airflow_env(home: Path, endpoint: str | LocalBatch, **options: str) -> dict[str, str]:
    """A minimal environment for `airflow aws-batch ...` against a local AWS endpoint: moto's URL
    (any keys do) or a localbatch (its URL and the keys it verifies)."""
    if isinstance(endpoint, str):
        connection = json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": REGION}}
        )
        keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    else:
        connection = endpoint.airflow_connection()
        keys = {k: endpoint.aws_env()[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_AWS_DEFAULT": connection,
        **keys,
    }
    for option, value in options.items():
        env[f"AIRFLOW__AWS_BATCH_EXECUTOR__{option.upper()}"] = value
    return env


def _run_airflow(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    env = dict(env)
    if not compat.PROVIDER_CLI:
        # Airflow 3.1 has `airflow aws-batch` only where [core] executor names our executor.
        env.setdefault("AIRFLOW__CORE__EXECUTOR", "airflow_aws_batch.AwsBatchExecutor")
    return subprocess.run(
        [AIRFLOW, "aws-batch", *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture(scope="module")
def localbatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBatchServer]:
    """A localbatch service in its own process (module-scoped: each module gets a fresh store)."""
    work_dir = tmp_path_factory.mktemp("localbatch")
    with LocalBatchServer(work_dir, env={"HOME": str(work_dir)}) as server:
        yield server


# Helpers as fixtures: test modules never import conftest (its package name depends on the layout).
@pytest.fixture(scope="session")
def airflow_env() -> Callable[..., dict[str, str]]:
    return _airflow_env


@pytest.fixture(scope="session")
def run_airflow() -> Callable[[list[str], Mapping[str, str]], subprocess.CompletedProcess[str]]:
    return _run_airflow
