"""The dag scenario's warm interpreter builds the Task SDK client's SSL context once, as a LocalExecutor
worker does, and a job forked from it reuses it (``bench.warm_task_sdk``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import dag

REPO = Path(__file__).resolve().parents[2]

# In a fresh interpreter: preload the module, fork a "job" that builds the execution API client the way
# the task supervisor does, and report the cache's counters as the child saw them.
PROBE = """
import json, os, sys
import bench.warm_task_sdk
from airflow.sdk.api.client import Client
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    Client(base_url="http://127.0.0.1:9/execution/", token="t").close()
    info = Client._get_ssl_context_cached.cache_info()
    os.write(write, json.dumps({"hits": info.hits, "misses": info.misses}).encode())
    os._exit(0)
os.close(write)
os.waitpid(pid, 0)
print(os.read(read, 1000).decode())
"""


def test_a_forked_job_reuses_the_preloaded_ssl_context() -> None:
    from airflow.sdk.api.client import Client

    if not hasattr(Client, "_get_ssl_context_cached"):
        pytest.skip("this Task SDK (Airflow < 3.3) builds its SSL context per client: nothing to preload")
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    counters = json.loads(done.stdout.strip().splitlines()[-1])
    # Built once when the warm interpreter imported the module, found in the cache by the job.
    assert counters == {"hits": 1, "misses": 1}


def test_the_dag_scenario_preloads_it() -> None:
    assert "bench.warm_task_sdk" in dag.PRELOAD
