"""The one seam where Airflow's minors differ (3.1, 3.2 and 3.3 are supported).

Everything that depends on which Airflow is installed is decided here, once, from the installed
``apache-airflow-core`` version, so the rest of the package is written against one shape:

============================  =======  =======  =======
                              3.1      3.2      3.3
============================  =======  =======  =======
a second provider may add     no       yes      yes
options to a section
``workload.key``              no       no       yes
callback workloads            no       queued,  run in
                                       not run  the job
                                       by the
                                       task SDK
multi-team executors          no       yes      yes
``airflow aws-batch`` without  no       yes      yes
``[core] executor`` naming us
============================  =======  =======  =======

Kept free of heavy imports: ``provider.py`` reads :data:`MERGES_PROVIDER_SECTIONS` in every Airflow
process that loads provider configuration. The Airflow imports below happen inside functions.
"""

from __future__ import annotations

import functools
import re
from importlib import metadata
from typing import Any

#: The oldest and the newest minor this release supports (inclusive).
OLDEST: tuple[int, int] = (3, 1)
NEWEST: tuple[int, int] = (3, 3)


def _installed_version() -> tuple[int, int, int]:
    for distribution in ("apache-airflow-core", "apache-airflow"):
        try:
            text = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
        match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
        if match:
            return int(match[1]), int(match[2]), int(match[3] or 0)
    # No Airflow installed (e.g. only the operator tooling's pure parts in use): assume the newest.
    return (*NEWEST, 0)


#: The installed Airflow as (major, minor, patch).
AIRFLOW_VERSION: tuple[int, int, int] = _installed_version()
AIRFLOW_MINOR: tuple[int, int] = AIRFLOW_VERSION[:2]

#: Airflow 3.1 refuses a provider's contribution to a config section another provider already
#: described (``[aws_batch_executor]`` is also the Amazon provider's): every ``airflow`` command
#: then fails at config load. From 3.2 the descriptions are merged per option.
MERGES_PROVIDER_SECTIONS: bool = AIRFLOW_MINOR >= (3, 2)

#: Airflow 3.2 queues callback workloads to executors that say they support them, but its task SDK
#: (``execute_workload``, what a Batch job runs) only runs tasks; 3.3 runs both. 3.1 has none.
RUNS_CALLBACKS: bool = AIRFLOW_MINOR >= (3, 3)

#: Airflow 3.2 routes callback workloads to an executor; one that says it does not support them
#: makes the scheduler raise. From 3.2 we accept them (and on 3.2 fail each with the reason).
QUEUES_CALLBACKS: bool = AIRFLOW_MINOR >= (3, 2)

#: Airflow 3.1 takes CLI groups from the executors named in ``[core] executor`` only; from 3.2 also
#: from each provider's ``cli`` entry, so ``airflow aws-batch`` is there before the executor is set.
PROVIDER_CLI: bool = AIRFLOW_MINOR >= (3, 2)

#: Multi-team executors (``[core] multi_team``, team-aware ``ExecutorConf``) came with 3.2; 3.1
#: refuses teams itself outside its development mode.
MULTI_TEAM: bool = AIRFLOW_MINOR >= (3, 2)


def version_text() -> str:
    return ".".join(str(part) for part in AIRFLOW_VERSION)


def unsupported_version(version: tuple[int, int, int] = AIRFLOW_VERSION) -> str | None:
    """Why Airflow ``version`` (the installed one) cannot run this executor, or None when it can."""
    if OLDEST <= version[:2] <= NEWEST:
        return None
    return (
        f"airflow-aws-batch supports Airflow {OLDEST[0]}.{OLDEST[1]} to {NEWEST[0]}.{NEWEST[1]}; "
        f"Airflow {'.'.join(map(str, version))} is installed"
    )


def callback_refusal() -> str:
    """The reason a callback workload fails on an Airflow whose task SDK cannot run one."""
    return (
        f"Airflow {version_text()} cannot run callback workloads in a container (its task SDK's "
        "execute_workload runs tasks only; Airflow 3.3 runs both). Route this callback to an "
        "executor that runs callbacks in-process (e.g. LocalExecutor), or upgrade Airflow."
    )


def is_task(workload: Any) -> bool:
    """Whether ``workload`` is an ``ExecuteTask`` (else a callback: 3.2 and later)."""
    from airflow.executors import workloads

    return isinstance(workload, workloads.ExecuteTask)


def workload_key(workload: Any) -> Any:
    """The key Airflow files ``workload`` under in ``queued_tasks``/``queued_callbacks`` and reads
    back from the event buffer: a ``TaskInstanceKey`` for a task; for a callback, 3.3's
    ``CallbackKey`` or 3.2's callback id.
    """
    key = getattr(workload, "key", None)
    if key is not None:
        return key
    if is_task(workload):
        return workload.ti.key
    return workload.callback.id


def task_instance_id(ti_id: str) -> Any:
    """``ti_id`` as the task instance table's ``id`` column compares it: a UUID from Airflow 3.2, text
    in 3.1 (``String(36)``; a UUID there matches no row, and every "did it start" answer would be
    "cannot tell")."""
    import uuid

    from airflow.models.taskinstance import TaskInstance

    if TaskInstance.id.type.python_type is uuid.UUID:
        return uuid.UUID(ti_id)
    return str(uuid.UUID(ti_id))


def token_hidden(workload: Any) -> Any:
    """``workload`` whose repr leaves out its token. Airflow 3.2 declares the field ``repr=False``;
    3.1 does not, and its ``execute_workload`` logs the whole workload, so without this the token
    would land in the job's log (CloudWatch), which many more people can read than the token's task.
    """
    field = type(workload).model_fields.get("token")
    if field is None or not field.repr:
        return workload
    model: Any = type(workload)
    return _quiet(model).model_construct(**dict(workload))


@functools.cache
def _quiet(model: Any) -> Any:
    class Quiet(model):  # type: ignore[misc]
        def __repr_args__(self) -> Any:
            return [(name, value) for name, value in super().__repr_args__() if name != "token"]

    Quiet.__name__, Quiet.__qualname__ = model.__name__, model.__qualname__
    return Quiet


def stats() -> Any:
    """Airflow's ``Stats``, where the scheduler itself sends its metrics: 3.3's module of functions,
    3.2's class under ``airflow._shared``, 3.1's ``airflow.stats.Stats``."""
    try:
        from airflow._shared.observability.metrics import stats as shared
    except ImportError:
        from airflow.stats import Stats

        return Stats
    return shared if hasattr(shared, "incr") else shared.Stats
