"""Preloaded by localbatch's warm interpreter in the dag scenario (``bench.dag.PRELOAD``).

Importing this module fills the one per-process cache of the Task SDK that costs real CPU at a task's
start: the execution API client's SSL context (``Client._get_ssl_context_cached``), which parses the
system's and certifi's CA bundles, about 35 ms of CPU per job here. A LocalExecutor worker fills it on
its first task and keeps it; a job forked from the warm interpreter inherits it the same way.
"""

from __future__ import annotations

from airflow.sdk.api import client

# A private helper of the Task SDK: if a later Airflow drops it, jobs simply build their own context.
_cached = getattr(client.Client, "_get_ssl_context_cached", None)
if _cached is not None:
    # The CA file the client passes: [api] ssl_ca_file (None when unset) from Airflow 3.3, certifi's
    # bundle before.
    if hasattr(client, "API_SSL_CA_FILE_PATH"):
        _cached(client.API_SSL_CA_FILE_PATH, client.API_SSL_CERT_PATH)
    else:
        import certifi

        _cached(certifi.where(), client.API_SSL_CERT_PATH)
