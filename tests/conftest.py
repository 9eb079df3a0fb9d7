"""Settings every test process needs before anything imports Airflow."""

import os
import tempfile

# Airflow reads AIRFLOW_HOME when first imported; keep it off the user's ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
