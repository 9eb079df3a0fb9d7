"""Serve Airflow's real execution API app (mounted at /execution) on a free 127.0.0.1 port.

Run as a script by the tests, in its own process with its own AIRFLOW_HOME; prints
``listening on http://127.0.0.1:PORT`` once the socket is bound.
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from airflow.api_fastapi.execution_api.app import create_task_execution_api_app
from fastapi import FastAPI


def main() -> None:
    app = FastAPI()
    app.mount("/execution", create_task_execution_api_app())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
