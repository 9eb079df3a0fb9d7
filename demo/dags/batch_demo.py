"""The demo DAG: every task below runs as its own AWS Batch job (here on localbatch).

- three extract tasks run in parallel;
- ``train`` asks for 2 vCPUs, 2 GiB and an extra environment variable through ``executor_config``,
  and for its own image (``jobDefinitionOverrides``: the executor registers a job definition for it;
  localbatch runs commands on this machine and only records the image);
- ``publish`` fails on its first try and succeeds on Airflow's retry (a new Batch job per try);
- ``score`` is mapped over three shards (one Batch job per shard).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task

TRAIN_IMAGE = "python:3.12-slim"
TRAIN_OVERRIDES = {
    "containerOverrides": {
        "resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "2048"}],
        "environment": [{"name": "MODEL_SIZE", "value": "large"}],
    },
    "jobDefinitionOverrides": {"image": TRAIN_IMAGE},
}


def _where() -> str:
    return (
        f"Batch job {os.environ.get('AWS_BATCH_JOB_ID', '?')} on queue {os.environ.get('AWS_BATCH_JQ_NAME')}"
    )


@dag(
    dag_id="batch_demo",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    tags=["demo"],
    doc_md=__doc__,
)
def batch_demo() -> None:
    @task
    def extract(source: str) -> int:
        rows = {"orders": 120, "customers": 45, "events": 980}[source]
        print(f"extracted {rows} rows from {source} in {_where()}")
        return rows

    @task(executor_config=TRAIN_OVERRIDES)
    def train(orders: int, customers: int, events: int) -> str:
        size = os.environ.get("MODEL_SIZE")
        print(f"training a {size} model on {orders + customers + events} rows in {_where()}")
        if size != "large":
            raise RuntimeError(f"executor_config environment did not arrive: MODEL_SIZE={size!r}")
        return f"model-{size}"

    @task
    def shards() -> list[int]:
        return [0, 1, 2]

    @task
    def score(shard: int, model: str) -> float:
        print(f"scoring shard {shard} with {model} in {_where()}")
        return 0.9 + shard / 100

    @task(retries=1, retry_delay=timedelta(seconds=2))
    def publish(scores: list[float]) -> None:
        try_number = get_current_context()["ti"].try_number
        print(f"publishing {len(scores)} scores, try {try_number}, in {_where()}")
        if try_number == 1:
            raise ConnectionError("the report service hung up (on purpose: Airflow's retry will fix it)")

    model = train(
        extract.override(task_id="extract_orders")("orders"),
        extract.override(task_id="extract_customers")("customers"),
        extract.override(task_id="extract_events")("events"),
    )
    publish(score.partial(model=model).expand(shard=shards()))


batch_demo()
