"""Start localbatch and Airflow 3 (api-server, scheduler, dag-processor, triggerer) on this machine.

More than one scheduler at once (Airflow's HA mode) is supported through :meth:`Stack.start_scheduler`;
one api-server, dag-processor and triggerer each. Not supported: the Celery/Kubernetes executors, MySQL,
TLS. Every process binds 127.0.0.1; nothing outside the work dir (and, for PostgreSQL, the stack's own
database) is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from devstack.airflow_api import AirflowClient, wait_until
from devstack.clients import REGION, TESTING_ENV
from devstack.localbatch import LocalBatchServer
from devstack.procs import Process, StackError, free_port, kill_marked

__all__ = ["COMPONENTS", "JOB_DEFINITION", "JOB_QUEUE", "ExecutorChoice", "Stack", "StackError"]

ExecutorChoice = Literal["aws_batch", "local"]
EXECUTOR_CLASSES: dict[str, str] = {
    "aws_batch": "airflow_aws_batch.AwsBatchExecutor",
    "local": "LocalExecutor",
}
#: Components started after ``airflow db migrate``, in this order (api-server first: tasks need it).
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Health keys of ``/api/v2/monitor/health`` for each component that reports there.
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
JOB_QUEUE = "airflow-jobs"
JOB_DEFINITION = "airflow-task"
COMPUTE_ENVIRONMENT = "localbatch-ce"
#: The SQS queue (and EventBridge rule) of ``Stack(status_events=True)``.
STATUS_EVENTS_QUEUE = "airflow-status-events"


class Stack:
    """localbatch + Airflow, as a context manager; everything it starts is stopped on exit.

    ``db_url``: None for a SQLite file in the work dir, or a PostgreSQL URL whose server gets a fresh
    database ``airflow_e2e_<hex>`` for this stack, dropped at the end (the URL's own database is
    only used to run CREATE/DROP DATABASE).
    ``executor``: ``"aws_batch"`` (our executor against a localbatch started here) or ``"local"``
    (Airflow's LocalExecutor, no localbatch).
    ``env``: extra environment for every Airflow component (wins over the stack's defaults), e.g.
    ``{"AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "30"}``.
    ``task_env``: extra environment for tasks, put on the Batch job definition.
    ``localbatch_args``: extra ``localbatch serve`` arguments, e.g. ``["--latency-ms", "50"]``.
    ``on_step``: called with a short message as each start step begins (the demo prints them).
    ``prepare``: called with the stack after ``airflow db migrate`` (and localbatch's setup), before
    any Airflow component starts: for what they need at start, e.g. ``airflow teams create`` or
    more Batch job queues.
    ``status_events``: also create, in localbatch, an SQS queue and an EventBridge rule sending it
    the job queue's "Batch Job State Change" events, and set the executor's ``status_events`` to
    that queue (its URL: ``status_events_url``; both survive ``restart_localbatch()``).

    After ``start()``, for fault injection (``chaos/`` uses all of them):

    - ``start_component(name)`` (re)starts one component; ``start_scheduler("scheduler-2")`` starts a
      further scheduler next to the first (Airflow's HA mode), registered in ``processes`` under that
      name and logging to ``logs/scheduler-2.log``. Every start appends to its component's log, so the
      output of earlier runs of a restarted component is kept.
    - ``kill_component(name, sig)`` signals one process group and waits for it to exit;
      ``forget_component(name)`` stops one and drops it from ``processes`` (so ``check_alive`` and
      ``stop`` no longer look at it), e.g. the scheduler of two that was killed for good.
    - ``restart_localbatch()`` stops localbatch and starts it again on the same port and data dir: its
      jobs, queues and job definitions persist; its fault config and stats, which live in memory, do
      not (pass ``faults`` to have them from its first request).
    """

    def __init__(
        self,
        work_dir: Path | str,
        *,
        db_url: str | None = None,
        executor: ExecutorChoice = "aws_batch",
        dags_folder: Path | str | None = None,
        api_port: int | None = None,
        env: Mapping[str, str] | None = None,
        task_env: Mapping[str, str] | None = None,
        localbatch_args: Sequence[str] = (),
        job_name: str = "airflow",
        max_vcpus: int = 8,
        username: str = "admin",
        password: str = "admin",
        api_workers: int = 1,
        startup_timeout: float = 300.0,
        on_step: Callable[[str], None] | None = None,
        prepare: Callable[[Stack], None] | None = None,
        status_events: bool = False,
    ):
        if executor not in EXECUTOR_CLASSES:
            raise ValueError(f"executor must be one of {sorted(EXECUTOR_CLASSES)}, got {executor!r}")
        self.work_dir = Path(work_dir).resolve()
        self.admin_db_url = db_url
        self.executor = executor
        self.dags_folder = Path(dags_folder).resolve() if dags_folder else self.work_dir / "dags"
        self.api_port = api_port or free_port()
        self.extra_env = dict(env or {})
        self.task_env = dict(task_env or {})
        self.localbatch_args = list(localbatch_args)
        self.job_name = job_name
        self.max_vcpus = max_vcpus
        self.username = username
        self.password = password
        self.api_workers = api_workers
        self.startup_timeout = startup_timeout
        self._on_step = on_step or (lambda message: None)
        self._prepare = prepare
        self.status_events = status_events
        #: The status events queue's URL once localbatch is set up (``status_events=True`` only).
        self.status_events_url: str | None = None

        self.stack_id = uuid.uuid4().hex[:12]
        self.marker = f"DEVSTACK_ID={self.stack_id}"
        self.airflow_home = self.work_dir / "airflow_home"
        self.logs_dir = self.work_dir / "logs"
        self.task_logs_dir = self.work_dir / "task_logs"
        self.db_name: str | None = None
        self.db_url = ""
        self.processes: dict[str, Process] = {}
        self._airflow: AirflowClient | None = None
        # Every process the stack starts carries the marker, so leftovers can be found and stopped.
        self.localbatch: LocalBatchServer | None = (
            LocalBatchServer(
                self.work_dir / "localbatch",
                args=self.localbatch_args,
                env={"DEVSTACK_ID": self.stack_id},
                log_path=self.logs_dir / "localbatch.log",
                job_queue=JOB_QUEUE,
            )
            if executor == "aws_batch"
            else None
        )
        self._started = False

    # --- public surface -------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.api_port}"

    @property
    def execution_api_url(self) -> str:
        return f"{self.api_url}/execution/"

    @property
    def airflow(self) -> AirflowClient:
        """REST client logged in as the stack's user."""
        if self._airflow is None:
            self._airflow = AirflowClient(self.api_url, self.username, self.password)
        return self._airflow

    @property
    def localbatch_url(self) -> str | None:
        """localbatch's URL once started (None with ``executor="local"``)."""
        if self.localbatch is None or self.localbatch.process is None:
            return None
        return self.localbatch.url

    @property
    def batch(self) -> LocalBatchServer:
        """This stack's localbatch: boto3 clients, jobs, admin endpoints (``executor="aws_batch"`` only)."""
        if self.localbatch is None or self.localbatch.process is None:
            raise StackError("this stack runs no localbatch (executor='local' or not started)")
        return self.localbatch

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start everything and wait until Airflow reports every component healthy."""
        self._started = True
        try:
            for path in (self.airflow_home, self.logs_dir, self.task_logs_dir, self.dags_folder):
                path.mkdir(parents=True, exist_ok=True)
            self._on_step(f"preparing the database ({'PostgreSQL' if self.admin_db_url else 'SQLite'})")
            self._prepare_database()
            if self.executor == "aws_batch":
                self._on_step("starting localbatch and creating its queue and job definition")
                self._start_localbatch()
            self._write_passwords()
            self._on_step("migrating the Airflow database (airflow db migrate)")
            self.run_airflow("db", "migrate", timeout=600)
            if self._prepare is not None:
                self._prepare(self)
            self._on_step(f"starting Airflow: {', '.join(COMPONENTS)}")
            for name in COMPONENTS:
                self.start_component(name)
            self._on_step("waiting for every Airflow component to report healthy")
            self.wait_healthy(self.startup_timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process (scheduler first, localbatch last), sweep leftovers, drop the database."""
        if not self._started:
            return
        self._started = False
        if self._airflow is not None:
            self._airflow.close()
            self._airflow = None
        schedulers = [name for name in self.processes if self._component_of(name) == "scheduler"]
        # SIGTERM every scheduler first, so that the schedulers' shutdowns overlap.
        for name in schedulers:
            self.processes[name].signal(signal.SIGTERM)
        for name in (*schedulers, "dag-processor", "triggerer", "api-server"):
            process = self.processes.get(name)
            if process is not None:
                process.stop(grace=30.0 if name in schedulers else 15.0)
        if self.localbatch is not None:
            self.localbatch.stop(grace=15.0)
        kill_marked(self.marker)
        self._drop_database()

    def start_component(self, name: str, *, instance: str | None = None) -> Process:
        """(Re)start one component: ``api-server``, ``scheduler``, ``dag-processor`` or ``triggerer``.

        ``instance`` (schedulers only) names one of several processes of the component: its key in
        ``processes`` and its log ``logs/<instance>.log``; by default the component's own name.
        """
        if name not in COMPONENTS:
            raise ValueError(f"component must be one of {COMPONENTS}, got {name!r}")
        key = instance or name
        if key != name and (name != "scheduler" or self._component_of(key) != "scheduler"):
            raise ValueError(f"only schedulers run as several instances, named scheduler-<suffix>: {key!r}")
        argv = [sys.executable, "-m", "airflow", name]
        if name == "api-server":
            argv += ["--host", "127.0.0.1", "--port", str(self.api_port), "--workers", str(self.api_workers)]
        process = Process(key, argv, self.airflow_env(), self.logs_dir / f"{key}.log", self.work_dir)
        process.start()
        self.processes[key] = process
        return process

    def start_scheduler(self, instance: str = "scheduler-2") -> Process:
        """Start another scheduler (Airflow's HA mode: schedulers share the database, nothing else)."""
        return self.start_component("scheduler", instance=instance)

    def forget_component(self, name: str, grace: float = 15.0) -> None:
        """Stop one process (if it still runs) and drop it from ``processes``; its log stays."""
        process = self.processes.pop(name)
        process.stop(grace=grace)

    def restart_localbatch(
        self,
        *,
        sig: int = signal.SIGTERM,
        grace: float = 30.0,
        faults: Mapping[str, Any] | None = None,
        args: Sequence[str] = (),
    ) -> Process:
        """Stop localbatch with ``sig`` and start it again on the same port and data dir.

        Jobs, queues and the job definition persist in its data dir (jobs whose processes died with it
        are FAILED with a reason that says so). The fault config and the stats live in memory and start
        from the ``localbatch serve`` arguments again: ``args`` adds some for this start only;
        ``faults``, when given, is in force from its first request.
        """
        server = self.batch
        process = server.restart(sig=sig, grace=grace, args=args, faults=faults)
        self.processes["localbatch"] = process
        return process

    def kill_component(self, name: str, sig: int) -> None:
        """Send ``sig`` to a component's process group and wait for its leader to exit."""
        process = self.processes[name]
        process.signal(sig)
        if process.popen is not None:
            process.popen.wait(timeout=60)

    def wait_healthy(self, timeout: float = 180.0, components: Sequence[str] = COMPONENTS) -> None:
        """Wait until the API answers and each component's heartbeat is healthy; fail fast if one dies."""

        def probe() -> tuple[bool, Any]:
            self.check_alive()
            try:
                health = self.airflow.health()
            except httpx.HTTPError as error:
                return False, f"api-server not answering: {error!r}"
            states = {name: health.get(key, {}).get("status") for name, key in HEALTH_KEYS.items()}
            states["metadatabase"] = health.get("metadatabase", {}).get("status")
            wanted = [HEALTH_KEYS.get(c, c) for c in components if c != "api-server"] + ["metadatabase"]
            done = all(health.get(key, {}).get("status") == "healthy" for key in wanted)
            return done, states

        wait_until("Airflow components to be healthy", probe, timeout, interval=2.0)

    def check_alive(self) -> None:
        """Raise StackError if a started process has exited."""
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                raise StackError(
                    f"{name} exited with code {code}; last lines of {process.log_path}:\n{process.tail()}"
                )

    def run_airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` CLI command with the stack's environment; raise StackError if it fails."""
        name = "-".join(a for a in args[:2] if not a.startswith("-"))
        log_path = self.logs_dir / f"cli-{name}.log"
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.airflow_env(),
            cwd=self.work_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        log_path.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
            raise StackError(f"airflow {' '.join(args)} exited with {result.returncode}:\n{tail}")
        return result

    def airflow_env(self) -> dict[str, str]:
        """The environment of every Airflow component of this stack."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "_AIRFLOW"))}
        env.update(self._shared_airflow_settings())
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": EXECUTOR_CLASSES[self.executor],
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.ui_url,
                "AIRFLOW__API__SECRET_KEY": self._secret("api_secret_key"),
                "AIRFLOW__API__WORKERS": str(self.api_workers),
                "AIRFLOW__CORE__FERNET_KEY": self._fernet_key(),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self._passwords_file),
                # Fixed defaults (8793/8794) would collide between stacks running side by side.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._port("worker_log_server")),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._port("trigger_log_server")),
                # Short intervals: a dev stack should notice new DAG files and orphans in seconds.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                **TESTING_ENV,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.executor == "aws_batch" and self.localbatch is not None and self.localbatch_url:
            env.update(
                {
                    # The keys localbatch verifies signatures with, in the connection and for any
                    # client that reads the environment instead.
                    **self.localbatch.aws_env(),
                    "AIRFLOW_CONN_AWS_DEFAULT": self.localbatch.airflow_connection(),
                    "AIRFLOW__AWS_BATCH_EXECUTOR__JOB_QUEUE": JOB_QUEUE,
                    "AIRFLOW__AWS_BATCH_EXECUTOR__JOB_DEFINITION": JOB_DEFINITION,
                    "AIRFLOW__AWS_BATCH_EXECUTOR__JOB_NAME": self.job_name,
                    "AIRFLOW__AWS_BATCH_EXECUTOR__REGION_NAME": REGION,
                }
            )
            if self.status_events_url:
                env["AIRFLOW__AWS_BATCH_EXECUTOR__STATUS_EVENTS"] = self.status_events_url
        env.update(self.extra_env)
        return env

    def task_environment(self) -> dict[str, str]:
        """What the job definition gives every task (what a Batch container needs to run a task)."""
        env = self._shared_airflow_settings()
        env.update(self.task_env)
        return env

    def logs(self) -> dict[str, Path]:
        """Component name -> its log file."""
        return {name: process.log_path for name, process in self.processes.items()}

    @staticmethod
    def _component_of(name: str) -> str:
        """The component a process key belongs to: ``scheduler-2`` -> ``scheduler``."""
        return "scheduler" if name == "scheduler" or name.startswith("scheduler-") else name

    # --- internals ------------------------------------------------------------------------------

    @property
    def _passwords_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json"

    def _shared_airflow_settings(self) -> dict[str, str]:
        """Settings that components and tasks must agree on."""
        return {
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": self.execution_api_url,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.task_logs_dir),
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt_secret"),
            "PYTHONUNBUFFERED": "1",
            "DEVSTACK_ID": self.stack_id,
        }

    def _secret(self, name: str) -> str:
        attr = f"_secret_{name}"
        if not hasattr(self, attr):
            setattr(self, attr, secrets.token_urlsafe(32))
        value: str = getattr(self, attr)
        return value

    def _port(self, name: str) -> int:
        attr = f"_port_{name}"
        if not hasattr(self, attr):
            setattr(self, attr, free_port())
        value: int = getattr(self, attr)
        return value

    def _fernet_key(self) -> str:
        if not hasattr(self, "_fernet"):
            from cryptography.fernet import Fernet

            self._fernet = Fernet.generate_key().decode()
        return self._fernet

    def _write_passwords(self) -> None:
        # The simple auth manager keeps passwords it finds in this file, so the login is known.
        self._passwords_file.write_text(json.dumps({self.username: self.password}) + "\n")

    def _prepare_database(self) -> None:
        if self.admin_db_url is None:
            self.db_url = f"sqlite:///{self.work_dir / 'airflow.db'}"
            return
        url = make_url(self.admin_db_url)
        if not url.drivername.startswith("postgresql"):
            raise StackError(f"only SQLite (no URL) or PostgreSQL URLs are supported, got {url.drivername}")
        self.db_name = f"airflow_e2e_{self.stack_id}"
        with self._admin_connection() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.db_name}"'))
        self.db_url = url.set(database=self.db_name).render_as_string(hide_password=False)

    def _drop_database(self) -> None:
        if self.db_name is None:
            return
        name, self.db_name = self.db_name, None
        with self._admin_connection() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    @contextlib.contextmanager
    def _admin_connection(self) -> Any:
        assert self.admin_db_url is not None
        engine = sa.create_engine(self.admin_db_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()

    def _start_localbatch(self) -> None:
        assert self.localbatch is not None
        self.processes["localbatch"] = self.localbatch.start()
        # --api-server-url sets the execution API URL of the job definition.
        env = self.task_environment()
        env.pop("AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
        self.localbatch.setup(
            compute_environment=COMPUTE_ENVIRONMENT,
            job_queue=JOB_QUEUE,
            job_definition=JOB_DEFINITION,
            max_vcpus=self.max_vcpus,
            env=env,
            api_server_url=self.api_url,
        )
        if self.status_events:
            self.status_events_url = self.localbatch.subscribe_status_events(STATUS_EVENTS_QUEUE, JOB_QUEUE)


def wait_for_port_free(port: int, timeout: float = 30.0) -> None:
    """Wait until nothing listens on ``port`` (after a stack on a fixed port stopped)."""
    from devstack.procs import port_is_free

    deadline = time.monotonic() + timeout
    while not port_is_free(port) and time.monotonic() < deadline:
        time.sleep(0.5)
