"""Imported by every Python process that has this folder on PYTHONPATH (only e2e_boot_log's jobs).

It stands for a container entrypoint: print ``E2E_BOOT_MESSAGE``, then exit with
``E2E_BOOT_EXIT_CODE`` before any Airflow code runs.
"""

from __future__ import annotations

import os

if os.environ.get("E2E_BOOT_MESSAGE"):
    print(os.environ["E2E_BOOT_MESSAGE"], flush=True)
if os.environ.get("E2E_BOOT_EXIT_CODE"):
    os._exit(int(os.environ["E2E_BOOT_EXIT_CODE"]))
