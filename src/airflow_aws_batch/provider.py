"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

From Airflow 3.2, provider config descriptions are merged section by section, in order of
distribution name, the last one winning each option. The amazon provider also describes
``[aws_batch_executor]``; our distribution name sorts after ``apache-airflow-providers-amazon``, so
our descriptions (and our defaults) replace theirs. ``tests/executor/test_provider.py`` checks this
with a real ``airflow config list``.

Airflow 3.1 refuses a second provider's description of a section it already has, and every
``airflow`` command would fail. There we describe nothing: the section stays the Amazon provider's
(the same defaults for the options both have), ``config.read_options`` reads ours with our defaults,
and ``airflow aws-batch options`` prints every option with its value and where it came from.
"""

from __future__ import annotations

from typing import Any

from airflow_aws_batch import __version__
from airflow_aws_batch.compat import MERGES_PROVIDER_SECTIONS
from airflow_aws_batch.options import OPTIONS, SECTION

# Must equal the distribution name in pyproject.toml (Airflow refuses a mismatch).
PACKAGE_NAME = "aws-batch-airflow"


def get_provider_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "package-name": PACKAGE_NAME,
        "name": "AWS Batch Executor",
        "description": "Runs every Airflow task as its own AWS Batch job.",
        "versions": [__version__],
        "executors": ["airflow_aws_batch.AwsBatchExecutor"],
        # Without a "cli" entry Airflow warns on every command and imports the executor to ask it.
        "cli": ["airflow_aws_batch.provider.get_cli_commands"],
    }
    if MERGES_PROVIDER_SECTIONS:
        info["config"] = {SECTION: config_description()}
    return info


def config_description() -> dict[str, Any]:
    """The section as Airflow's config.yml schema describes it (JSON options are typed string)."""
    return {
        "description": "airflow-aws-batch: run every Airflow task as an AWS Batch job "
        "([core] executor = airflow_aws_batch.AwsBatchExecutor).",
        "options": {
            spec.name: {
                "description": spec.description,
                "version_added": "0.1.0",
                "type": "string" if spec.type == "json" else spec.type,
                "example": spec.example,
                "default": spec.default,
                # Airflow str.format()s defaults unless marked as templates; "{}" would not survive.
                "is_template": spec.type == "json",
            }
            for spec in OPTIONS
        },
    }


def get_cli_commands() -> list[Any]:
    """The ``airflow aws-batch ...`` commands, for Airflow's provider CLI loading.

    Airflow imports this module to find the function, so the operator tooling is imported only here,
    when the commands are asked for.
    """
    from airflow_aws_batch.ops.cli import get_cli_commands as commands

    return commands()
