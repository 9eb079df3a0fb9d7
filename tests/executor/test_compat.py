"""The one seam between Airflow minors, checked against whichever Airflow is installed (make test runs
the default lock's, make test-compat each older minor's)."""

from __future__ import annotations

import uuid

import pytest
from airflow.executors import workloads

from airflow_aws_batch import compat

#: ``TaskInstanceDTO`` from Airflow 3.2, ``TaskInstance`` in 3.1.
TaskInstanceDTO = getattr(workloads, "TaskInstanceDTO", None) or workloads.TaskInstance


def _task() -> workloads.ExecuteTask:
    ti = TaskInstanceDTO(
        id=uuid.uuid4(),
        dag_version_id=uuid.uuid4(),
        task_id="t",
        dag_id="d",
        run_id="r",
        try_number=3,
        map_index=7,
        pool_slots=1,
        priority_weight=1,
        queue="default",
    )
    return workloads.ExecuteTask(
        ti=ti, dag_rel_path="d.py", token="x", log_path=None, bundle_info={"name": "dags"}
    )


def test_the_installed_airflow_is_supported() -> None:
    assert compat.unsupported_version() is None, compat.version_text()
    assert compat.AIRFLOW_VERSION[:2] == compat.AIRFLOW_MINOR


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        pytest.param((3, 0, 6), False, id="3.0"),
        pytest.param((3, 1, 0), True, id="3.1.0"),
        pytest.param((3, 2, 2), True, id="3.2"),
        pytest.param((3, 3, 9), True, id="3.3"),
        pytest.param((3, 4, 0), False, id="3.4"),
    ],
)
def test_supported_range(version: tuple[int, int, int], supported: bool) -> None:
    why = compat.unsupported_version(version)
    assert (why is None) is supported
    if why is not None:
        assert ".".join(map(str, version)) in why and "3.1 to 3.3" in why


def test_a_task_workload_is_filed_under_its_task_instance_key() -> None:
    task = _task()
    key = compat.workload_key(task)
    assert compat.is_task(task)
    assert key == task.ti.key
    assert (key.dag_id, key.task_id, key.run_id, key.try_number, key.map_index) == ("d", "t", "r", 3, 7)


@pytest.mark.skipif(not compat.QUEUES_CALLBACKS, reason="Airflow 3.1 has no callback workloads")
def test_a_callback_workload_is_filed_where_airflow_files_it() -> None:
    from airflow.executors.workloads import ExecuteCallback
    from airflow.executors.workloads.callback import CallbackDTO

    callback_id = str(uuid.uuid4())
    callback = ExecuteCallback(
        callback=CallbackDTO(id=callback_id, fetch_method="import_path", data={"path": "m.f"}),
        dag_rel_path="d.py",
        token="x",
        log_path=None,
        bundle_info={"name": "dags"},
    )
    assert not compat.is_task(callback)
    key = compat.workload_key(callback)
    # Airflow 3.2 files a callback under its id (a str); 3.3 under a CallbackKey naming it.
    assert key == (callback.key if compat.RUNS_CALLBACKS else callback_id)


def test_task_instance_ids_compare_as_the_column_stores_them() -> None:
    from airflow.models.taskinstance import TaskInstance

    value = compat.task_instance_id("01a24d3c-49c6-7b1f-ac1a-45634fc365cb")
    assert isinstance(value, TaskInstance.id.type.python_type)
    assert str(value) == "01a24d3c-49c6-7b1f-ac1a-45634fc365cb"


def test_stats_is_airflows_facade() -> None:
    stats = compat.stats()
    for method in ("incr", "gauge", "timing"):
        assert callable(getattr(stats, method))


def test_the_workload_the_launcher_runs_never_shows_its_token() -> None:
    """Airflow's execute_workload logs the workload into the job's log; 3.1's repr shows the token."""
    task = _task().model_copy(update={"token": "eyJhbGciOiJIUzI1NiJ9.secret-part.signature"})
    shown = compat.token_hidden(task)
    assert "secret-part" not in repr(shown) and "secret-part" not in str(shown)
    assert isinstance(shown, workloads.ExecuteTask) and type(shown).__name__ == "ExecuteTask"
    assert shown.token == task.token and shown.ti == task.ti
