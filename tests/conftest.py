"""Settings every test process needs before anything imports Airflow."""

from __future__ import annotations

import os
import tempfile

# Airflow reads AIRFLOW_HOME when first imported and would otherwise write into the user's ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
