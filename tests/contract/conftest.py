"""A real moto server on a free port, with Batch resources created through boto3."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devstack import aws_client
from devstack.procs import free_port


@dataclass
class Moto:
    url: str

    def client(self, service: str) -> Any:
        return aws_client(service, self.url)


@dataclass
class BatchResources:
    compute_environment: str
    job_queue: str
    job_definition: str


@pytest.fixture(scope="package")
def moto_server() -> Iterator[Moto]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # moto runs Batch jobs in Docker by default; there is no engine here, so use its simple backend
    # (jobs succeed at once) and keep the API surface under test.
    httpx.post(f"{url}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10).raise_for_status()
    try:
        yield Moto(url)
    finally:
        # moto's backends and config are process-wide: leave nothing behind for other suites.
        httpx.post(f"{url}/moto-api/reset", timeout=10)
        httpx.post(f"{url}/moto-api/config", json={"batch": {"use_docker": True}}, timeout=10)
        server.stop()


def create_resources(moto: Moto, prefix: str, *, queue_state: str = "ENABLED") -> BatchResources:
    iam = moto.client("iam")
    batch = moto.client("batch")
    role = iam.create_role(RoleName=f"{prefix}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ce = batch.create_compute_environment(
        computeEnvironmentName=f"{prefix}-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
    )
    batch.create_job_queue(
        jobQueueName=f"{prefix}-queue",
        state=queue_state,
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}],
    )
    batch.register_job_definition(
        jobDefinitionName=f"{prefix}-def",
        type="container",
        containerProperties={"image": "airflow:test", "vcpus": 1, "memory": 512, "command": ["true"]},
    )
    return BatchResources(f"{prefix}-ce", f"{prefix}-queue", f"{prefix}-def")


@pytest.fixture(scope="package")
def batch_resources(moto_server: Moto) -> BatchResources:
    return create_resources(moto_server, "contract")
