"""boto3 clients through the amazon provider's AwsBaseHook (credentials, role assumption, endpoint_url)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.config import Config


def botocore_config(*, retry_mode: str, max_attempts: int, pool_size: int) -> Config:
    """Client settings. ``max_attempts=1`` disables botocore retries (used for SubmitJob, see below)."""
    retries: Any = {"mode": retry_mode, "total_max_attempts": max_attempts}
    return Config(
        retries=retries,
        max_pool_connections=pool_size,
        connect_timeout=10,
        read_timeout=30,
    )


def hook_client_factory(
    *,
    conn_id: str | None,
    region_name: str | None,
    client_type: str,
    config: Config,
) -> Callable[[], Any]:
    """A factory building a fresh client each call, so expired credentials are reloaded."""

    def make() -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        hook = AwsBaseHook(
            aws_conn_id=conn_id, client_type=client_type, region_name=region_name, config=config
        )
        return hook.conn

    return make
