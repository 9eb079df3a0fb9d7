"""The benchmark's localbatch: started with the scenario's faults, its queue and job definition created."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devstack import LocalBatchServer

JOB_QUEUE = "bench-burst"
JOB_DEFINITION = "bench-task"
COMPUTE_ENVIRONMENT = "bench-ce"


@contextmanager
def localbatch(
    work_dir: Path,
    faults: Mapping[str, Any],
    *,
    max_vcpus: int,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    setup_env: Mapping[str, str] | None = None,
    api_server_url: str | None = None,
) -> Iterator[LocalBatchServer]:
    """localbatch with ``faults`` from its first request, the bench queue and job definition created.

    ``args``: more ``localbatch serve`` arguments (e.g. ``--latency-ms``); ``env``: the server's;
    ``setup_env``, ``api_server_url``: the job definition's environment and Airflow API server.
    """
    server = LocalBatchServer(work_dir, args=args, env=env, job_queue=JOB_QUEUE, ready_timeout=120.0)
    try:
        server.start(faults=faults)
        # Set-up runs without the latency and quotas: they belong to the measured phase only.
        server.set_faults({})
        server.setup(
            compute_environment=COMPUTE_ENVIRONMENT,
            job_queue=JOB_QUEUE,
            job_definition=JOB_DEFINITION,
            max_vcpus=max_vcpus,
            env=setup_env,
            api_server_url=api_server_url,
        )
        server.set_faults(faults)
        yield server
    finally:
        server.stop(grace=15.0)
