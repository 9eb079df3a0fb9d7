"""Imported by every Python process that has this folder on PYTHONPATH (only ui_failed_before_start's jobs).

It stands for a container entrypoint that fails before Airflow runs (say, a DAG sync from S3): print
``UI_BOOT_MESSAGE``, then exit with ``UI_BOOT_EXIT_CODE`` before any Airflow code runs.
"""

from __future__ import annotations

import os

if os.environ.get("UI_BOOT_MESSAGE"):
    print(os.environ["UI_BOOT_MESSAGE"], flush=True)
if os.environ.get("UI_BOOT_EXIT_CODE"):
    os._exit(int(os.environ["UI_BOOT_EXIT_CODE"]))
