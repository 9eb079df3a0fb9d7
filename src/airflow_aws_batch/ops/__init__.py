"""Operator tooling: the ``airflow aws-batch`` commands, the CloudFormation template, its deployment.

Nothing on the scheduler's import path (``airflow_aws_batch``, ``airflow_aws_batch.executor``) imports
this package; the executor reaches it only for ``get_cli_commands()``. The start-up checks that
``airflow aws-batch check`` shares with the executor live in :mod:`airflow_aws_batch.health`, outside
this package, because every scheduler runs them at start.
"""
