"""Did Airflow see a task start? Asked of a real Airflow metadata DB (SQLite, ``airflow db migrate``).

The task instance is created by Airflow itself (``airflow dags trigger``); each case then puts it in
the state the scheduler or the execution API would, and asks through the runtime's terminator thread,
as the executor does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_aws_batch.compat import task_instance_id
from airflow_aws_batch.core.messages import CheckStarted
from airflow_aws_batch.runtime import Runtime, StartChecked, StartChecker
from airflow_aws_batch.started import airflow_saw_task_start, rebuild_workload, ti_running, tis_moved_on

AIRFLOW = str(Path(sys.executable).parent / "airflow")
DAG_ID = "started_check"
DAG_FILE = f'''
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def started_check():
    @task
    def work():
        pass

    work()


started_check()
'''


@pytest.fixture(scope="module")
def ti_id(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The id of a real task instance in a fresh SQLite metadata DB the ORM points at meanwhile."""
    from airflow import settings

    home = tmp_path_factory.mktemp("airflow-home")
    dags = home / "dags"
    dags.mkdir()
    (dags / "started_check.py").write_text(DAG_FILE)
    url = f"sqlite:///{home}/airflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=url,
    )
    for command in (["db", "migrate"], ["dags", "reserialize"], ["dags", "trigger", DAG_ID, "-r", "run1"]):
        result = subprocess.run(
            [AIRFLOW, *command], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    previous = settings.SQL_ALCHEMY_CONN
    settings.dispose_orm(do_log=False)
    settings.SQL_ALCHEMY_CONN = url
    settings.configure_orm()
    try:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            found = session.scalars(
                select(TaskInstance.id).where(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == "run1")
            ).all()
        assert len(found) == 1, found
        yield str(found[0])
    finally:
        settings.dispose_orm(do_log=False)
        settings.SQL_ALCHEMY_CONN = previous
        settings.configure_orm()


def set_ti(ti_id: str, **values: Any) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        row = TaskInstance.id == task_instance_id(ti_id)
        session.execute(update(TaskInstance).where(row).values(**values))


def ask(checker: StartChecker | None, cmd: CheckStarted, timeout: float = 60.0) -> StartChecked:
    """Ask through a started runtime (the terminator thread), as the executor does."""
    runtime = Runtime(
        object(), submit_rate=50, status_calls_per_second=5, submit_threads=1, start_checker=checker
    )  # type: ignore[arg-type]
    runtime.start()
    try:
        runtime.check_started(cmd)
        deadline = time.monotonic() + timeout
        while runtime.results.empty():
            assert time.monotonic() < deadline, "no StartChecked result"
            time.sleep(0.01)
        result = runtime.results.get()
        assert isinstance(result, StartChecked)
        return result
    finally:
        runtime.stop()


@pytest.mark.parametrize(
    ("row", "asked_try", "expected"),
    [
        pytest.param({"state": "queued", "try_number": 1}, 1, False, id="queued-same-try-not-seen"),
        pytest.param(
            {"state": "running", "try_number": 1, "hostname": "ip-10-0-0-1", "pid": 7},
            1,
            True,
            id="running-seen",
        ),
        pytest.param({"state": "success", "try_number": 1}, 1, True, id="success-seen"),
        pytest.param({"state": "failed", "try_number": 1}, 1, True, id="failed-seen"),
        pytest.param(
            {"state": "queued", "try_number": 1, "next_method": "execute_complete"},
            1,
            True,
            id="queued-to-resume-after-deferral-seen",
        ),
        pytest.param({"state": "queued", "try_number": 2}, 1, None, id="other-try-unknown"),
    ],
)
def test_airflow_saw_task_start(
    ti_id: str, row: dict[str, Any], asked_try: int, expected: bool | None
) -> None:
    set_ti(ti_id, **{"next_method": None, **row})
    result = ask(airflow_saw_task_start, CheckStarted("key", ti_id, asked_try))
    assert (result.key, result.seen) == ("key", expected)


def test_unknown_task_instance_is_unknown(ti_id: str) -> None:
    set_ti(ti_id, state="queued", try_number=1, next_method=None)
    assert ask(airflow_saw_task_start, CheckStarted("k", str(uuid.uuid4()), 1)).seen is None


def _broken_checker(ti_id: str, try_number: int) -> bool | None:
    raise RuntimeError("metadata DB unreachable")


@pytest.mark.parametrize(
    "checker",
    [pytest.param(_broken_checker, id="checker-raises"), pytest.param(None, id="no-checker")],
)
def test_a_check_that_cannot_answer_is_unknown(checker: StartChecker | None) -> None:
    assert ask(checker, CheckStarted("k", str(uuid.uuid4()), 1)).seen is None


@pytest.mark.parametrize(
    ("row", "asked_try", "expected"),
    [
        pytest.param({"state": "running", "try_number": 2}, 2, True, id="running-same-try"),
        pytest.param({"state": "running", "try_number": 2}, 1, False, id="running-another-try"),
        pytest.param({"state": "failed", "try_number": 2}, 2, False, id="failed"),
        pytest.param({"state": "up_for_retry", "try_number": 2}, 2, False, id="up-for-retry"),
        pytest.param({"state": "queued", "try_number": 2}, 2, False, id="queued"),
    ],
)
def test_ti_running(ti_id: str, row: dict[str, Any], asked_try: int, expected: bool) -> None:
    set_ti(ti_id, **{"next_method": None, **row})
    assert ti_running(ti_id, asked_try) is expected
    assert ti_running(str(uuid.uuid4()), asked_try) is False


@pytest.mark.parametrize(
    ("row", "asked_try", "built"),
    [
        pytest.param({"state": "queued", "try_number": 1}, 1, True, id="queued-same-try"),
        pytest.param(
            {"state": "queued", "try_number": 1, "next_method": "execute_complete"},
            1,
            True,
            id="queued-to-resume",
        ),
        pytest.param({"state": "queued", "try_number": 2}, 1, False, id="another-try"),
        pytest.param({"state": "running", "try_number": 1}, 1, False, id="running"),
        pytest.param({"state": "scheduled", "try_number": 1}, 1, False, id="scheduled"),
    ],
)
def test_rebuild_workload(
    ti_id: str, row: dict[str, Any], asked_try: int, built: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_aws_batch import AwsBatchExecutor

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "0123456789abcdef" * 4)
    set_ti(ti_id, **{"next_method": None, **row})
    workload = rebuild_workload(ti_id, asked_try, AwsBatchExecutor())
    if not built:
        assert workload is None
        return
    # What the scheduler would have queued: this task instance's try, its DAG file, a fresh token.
    assert str(workload.ti.id) == ti_id and workload.ti.try_number == asked_try
    assert (workload.ti.dag_id, workload.ti.task_id) == (DAG_ID, "work")
    assert str(workload.dag_rel_path) == "started_check.py"
    assert workload.token and workload.token.count(".") == 2
    assert rebuild_workload(str(uuid.uuid4()), asked_try, AwsBatchExecutor()) is None


@pytest.mark.parametrize("count", [pytest.param(1, id="one-event"), pytest.param(3, id="three-events")])
def test_task_events_survive_the_schedulers_save(ti_id: str, count: int) -> None:
    """Events reach the log table through the scheduler's own save function.

    Airflow 3.3.2 saves them with bulk_save_objects over a generator that pops the deque; unless the
    executor holds the rows, they are collected mid-save and inserted without columns.
    """
    import gc

    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models import Log
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    from airflow_aws_batch import AwsBatchExecutor

    key = TaskInstanceKey(DAG_ID, f"events_{count}", "run1", 1, -1)
    executor = AwsBatchExecutor()
    for n in range(count):
        executor.log_task_event(event=f"aws_batch_test_{n}", extra=f"extra {n}", ti_key=key)
    gc.collect()
    with create_session() as session:
        SchedulerJobRunner._process_task_event_logs(executor.task_event_logs, session)
    executor.sync()  # the next heartbeat lets go of the saved rows
    assert executor.event_logs.pinned == []
    with create_session() as session:
        saved = session.scalars(select(Log.event).where(Log.task_id == key.task_id).order_by(Log.id)).all()
        assert session.scalar(select(func.count()).select_from(Log).where(Log.event.is_(None))) == 0
    assert list(saved) == [f"aws_batch_test_{n}" for n in range(count)]


@pytest.mark.parametrize(
    ("row", "asked_try", "moved_on"),
    [
        pytest.param({"state": "scheduled", "try_number": 1}, 1, True, id="scheduled-for-the-next-poke"),
        pytest.param({"state": "up_for_reschedule", "try_number": 1}, 1, True, id="up-for-reschedule"),
        pytest.param({"state": "deferred", "try_number": 1}, 1, True, id="deferred"),
        pytest.param({"state": "running", "try_number": 1}, 1, False, id="running-never-ended-itself"),
        pytest.param({"state": "queued", "try_number": 1}, 1, True, id="queued-again-said-so"),
        pytest.param({"state": "success", "try_number": 1}, 1, False, id="success"),
        pytest.param({"state": "scheduled", "try_number": 2}, 1, False, id="another-try"),
    ],
)
def test_tis_moved_on(ti_id: str, row: dict[str, Any], asked_try: int, moved_on: bool) -> None:
    set_ti(ti_id, **{"next_method": None, **row})
    expected = {ti_id: row["state"]} if moved_on else {}
    assert tis_moved_on([(ti_id, asked_try), (str(uuid.uuid4()), 1)]) == expected
