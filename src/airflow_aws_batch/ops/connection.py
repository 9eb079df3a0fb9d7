"""What the operator commands take from Airflow: the ``[aws_batch_executor]`` options, the AWS
connection's clients (the amazon provider's ``AwsBaseHook``, so the connection's ``endpoint_url``
applies) and the execution API's address."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_aws_batch.options import SECTION


def conf_option(option: str, fallback: str | None = None) -> str | None:
    from airflow.configuration import conf

    value = conf.get(SECTION, option, fallback=fallback)
    return str(value) if value not in (None, "") else fallback


def connection_id(args: argparse.Namespace) -> str:
    # Same rule as the executor's config: aws_conn_id (the amazon provider's spelling in its docs)
    # counts only while conn_id is left at its default.
    conn_id = args.conn_id or conf_option("conn_id", "aws_default")
    if conn_id == "aws_default":
        conn_id = conf_option("aws_conn_id", conn_id)
    return str(conn_id)


def region_of(args: argparse.Namespace) -> str | None:
    return args.region or conf_option("region_name")


def aws_hook(service: str, conn_id: str, region: str | None) -> Any:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=conn_id, client_type=service, region_name=region)


def default_execution_api_url() -> str | None:
    from airflow.configuration import conf

    url = conf.get("core", "execution_api_server_url", fallback=None)
    if url:
        return str(url)
    base = conf.get("api", "base_url", fallback=None)
    return f"{str(base).rstrip('/')}/execution/" if base else None


def quiet_botocore() -> None:
    # Airflow's logging prints botocore's and the Amazon provider's INFO lines ("Found credentials ...",
    # "AWS Connection ... credentials retrieved ...") on stdout, between the report's lines.
    import logging

    for name in ("botocore", "airflow.providers.amazon"):
        logging.getLogger(name).setLevel(logging.WARNING)
