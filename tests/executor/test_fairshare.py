"""Fair-share: priority mapping, share identifier templates, queue kinds, and what the builder sends."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from airflow_aws_batch.config import ConfigError, ExecutorConfig, parse_options
from airflow_aws_batch.fairshare import (
    PENDING_KEY,
    FairShareMismatch,
    QueueKind,
    QueueKinds,
    priority_override,
    render_share_identifier,
    sanitize_share_identifier,
)
from airflow_aws_batch.health import fair_share_items
from airflow_aws_batch.submit import ExecConfigError, build_submit_job_request

FAIR = QueueKind.FAIR_SHARE
FIFO = QueueKind.FIFO


def make_config(**options: str) -> ExecutorConfig:
    raw: dict[str, str | None] = {
        "job_queue": "main-q",
        "job_definition": "airflow-task",
        "job_name": "airflow",
        "region_name": "us-east-1",
    }
    raw.update(options)
    return parse_options(raw)


def build(config: ExecutorConfig, kinds: dict[str, QueueKind] | None, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "command": ["python", "-m", "x"],
        "dag_id": "etl",
        "task_id": "load",
        "run_id": "manual__1",
        "try_number": 1,
        "map_index": -1,
        "queue": "default",
        "executor_config": None,
        "priority_weight": 7,
    }
    kwargs.update(overrides)
    lookup = None if kinds is None else kinds.get
    return build_submit_job_request(config, queue_kind=lookup, **kwargs)


# ------------------------------------------------------------------------------ priority mapping


@pytest.mark.parametrize(
    ("mode", "weight", "expected"),
    [
        pytest.param("clamp", 1, 1, id="default-weight"),
        pytest.param("clamp", 0, 0, id="zero"),
        pytest.param("clamp", 500, 500, id="in-range"),
        pytest.param("clamp", 9999, 9999, id="max"),
        pytest.param("clamp", -5, 0, id="negative-clamped-to-0"),
        pytest.param("clamp", 2**31 - 1, 9999, id="huge-clamped-to-9999"),
        pytest.param("clamp", None, None, id="unknown-weight"),
        pytest.param("off", 500, None, id="off"),
        pytest.param("off", -5, None, id="off-negative"),
    ],
)
def test_priority_override(mode: str, weight: int | None, expected: int | None) -> None:
    assert priority_override(mode, weight) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("clamp", "clamp", id="clamp"),
        pytest.param("OFF", "off", id="off-any-case"),
    ],
)
def test_scheduling_priority_option(value: str, expected: str) -> None:
    assert make_config(scheduling_priority=value).scheduling_priority == expected


def test_scheduling_priority_option_refuses_other_values() -> None:
    with pytest.raises(
        ConfigError, match=r"\[aws_batch_executor\] scheduling_priority: expected clamp or off"
    ):
        make_config(scheduling_priority="linear")


# ------------------------------------------------------------------------------ templates


@pytest.mark.parametrize(
    ("template", "fields", "expected"),
    [
        pytest.param("{dag_id}", {}, "etl_daily", id="dag-id"),
        pytest.param("{team}_{dag_id}", {"team": "data"}, "data_etl_daily", id="team-and-dag"),
        pytest.param("{team}", {}, "default", id="no-team-is-default"),
        pytest.param("{queue}", {"queue": "gpu"}, "gpu", id="airflow-queue"),
        pytest.param("{queue}", {"queue": None}, "default", id="no-queue"),
        pytest.param("{pool}", {"pool": "db_pool"}, "db_pool", id="pool"),
        pytest.param("{task_id}", {}, "group_load", id="task-group-dot-replaced"),
        pytest.param("team-{team}", {"team": "a b"}, "team_a_b", id="hyphen-and-space-replaced"),
        pytest.param("{dag_id}*", {}, "etl_daily_", id="star-replaced"),
        pytest.param("", {}, "default", id="empty-template"),
        pytest.param("{dag_id}", {"dag_id": "dåg"}, "d_g", id="non-ascii"),
    ],
)
def test_render_share_identifier(template: str, fields: dict[str, Any], expected: str) -> None:
    values: dict[str, Any] = {
        "dag_id": "etl.daily",
        "task_id": "group.load",
        "queue": "default",
        "pool": None,
        "team": None,
    }
    values.update(fields)
    assert render_share_identifier(template, **values) == expected


def test_long_share_identifiers_are_cut_distinct_and_deterministic() -> None:
    a = sanitize_share_identifier("x" * 300 + "a")
    b = sanitize_share_identifier("x" * 300 + "b")
    assert len(a) == len(b) == 255
    assert a != b
    assert a == sanitize_share_identifier("x" * 300 + "a")
    assert sanitize_share_identifier("x" * 255) == "x" * 255


@pytest.mark.parametrize(
    ("template", "found"),
    [
        pytest.param("{dag}", "unknown field {dag}", id="unknown-field"),
        pytest.param("{team}_{owner}", "unknown field {owner}", id="second-field-unknown"),
        pytest.param("{dag_id", "invalid template", id="unclosed-brace"),
        pytest.param("{dag_id!r}", "conversion", id="conversion"),
        pytest.param("{dag_id:>10}", "format spec", id="format-spec"),
        pytest.param("{0}", "unknown field {0}", id="positional"),
    ],
)
def test_bad_template_is_a_startup_error_naming_option_and_field(template: str, found: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(share_identifier=template)
    message = str(info.value)
    assert "[aws_batch_executor] share_identifier" in message
    assert found in message
    assert "AIRFLOW__AWS_BATCH_EXECUTOR__SHARE_IDENTIFIER" in message


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        pytest.param(
            '{"schedulingPriorityOverride": 10000}', "schedulingPriorityOverride", id="priority-high"
        ),
        pytest.param(
            '{"schedulingPriorityOverride": -1}', "schedulingPriorityOverride", id="priority-negative"
        ),
        pytest.param('{"shareIdentifier": "a-b"}', "shareIdentifier", id="share-id-hyphen"),
        pytest.param('{"shareIdentifier": ""}', "shareIdentifier", id="share-id-empty"),
    ],
)
def test_submit_job_kwargs_fair_share_members_are_checked(kwargs: str, path: str) -> None:
    with pytest.raises(ConfigError, match=rf"submit_job_kwargs, key {path}"):
        make_config(submit_job_kwargs=kwargs)


# ------------------------------------------------------------------------------ the request builder


def test_fifo_queue_request_is_unchanged() -> None:
    config = make_config()
    assert build(config, {"main-q": FIFO}) == build(config, None)
    request = build(config, {"main-q": FIFO})
    assert "shareIdentifier" not in request
    assert "schedulingPriorityOverride" not in request
    assert PENDING_KEY not in request


@pytest.mark.parametrize(
    ("options", "overrides", "share", "priority"),
    [
        pytest.param({}, {}, "etl", 7, id="defaults-dag-id-and-weight"),
        pytest.param({}, {"priority_weight": 123456}, "etl", 9999, id="huge-weight-clamped"),
        pytest.param({}, {"priority_weight": -3}, "etl", 0, id="negative-weight-clamped"),
        pytest.param({"scheduling_priority": "off"}, {}, "etl", None, id="priority-off"),
        pytest.param(
            {"share_identifier": "{team}_{dag_id}"}, {"team": "ml"}, "ml_etl", 7, id="template-team"
        ),
        pytest.param({"share_identifier": "{team}"}, {}, "default", 7, id="template-no-team"),
        pytest.param(
            {"submit_job_kwargs": '{"shareIdentifier": "fixed", "schedulingPriorityOverride": 5}'},
            {},
            "fixed",
            5,
            id="submit-job-kwargs-win",
        ),
        pytest.param(
            {"submit_job_kwargs": '{"shareIdentifier": "fixed"}'},
            {"executor_config": {"shareIdentifier": "urgent", "schedulingPriorityOverride": 9000}},
            "urgent",
            9000,
            id="executor-config-wins",
        ),
    ],
)
def test_fair_share_queue_request(
    options: dict[str, str], overrides: dict[str, Any], share: str, priority: int | None
) -> None:
    request = build(make_config(**options), {"main-q": FAIR}, **overrides)
    assert request["shareIdentifier"] == share
    assert request.get("schedulingPriorityOverride") == priority
    assert PENDING_KEY not in request


def test_queue_of_unknown_kind_leaves_the_fair_share_part_pending() -> None:
    request = build(make_config(), {}, priority_weight=3)
    assert request[PENDING_KEY] == {"shareIdentifier": "etl", "schedulingPriorityOverride": 3}
    assert "shareIdentifier" not in request


@pytest.mark.parametrize(
    ("executor_config", "path", "expected"),
    [
        pytest.param(
            {"schedulingPriorityOverride": 10000}, "schedulingPriorityOverride", "0 to 9999", id="high"
        ),
        pytest.param(
            {"schedulingPriorityOverride": -1}, "schedulingPriorityOverride", "0 to 9999", id="negative"
        ),
        pytest.param({"schedulingPriorityOverride": "5"}, "schedulingPriorityOverride", "integer", id="text"),
        pytest.param({"shareIdentifier": "a*"}, "shareIdentifier", "letters, digits or _", id="star"),
        pytest.param({"shareIdentifier": "x" * 256}, "shareIdentifier", "1 to 255", id="too-long"),
    ],
)
def test_bad_fair_share_executor_config_fails_the_task(
    executor_config: Any, path: str, expected: str
) -> None:
    with pytest.raises(ExecConfigError) as info:
        build(make_config(), {"main-q": FAIR}, executor_config=executor_config)
    assert info.value.path == path
    assert expected in str(info.value)


def test_executor_config_share_identifier_on_a_fifo_queue_fails_the_task() -> None:
    with pytest.raises(ExecConfigError, match="'main-q' is FIFO"):
        build(make_config(), {"main-q": FIFO}, executor_config={"shareIdentifier": "mine"})


def test_forced_priority_is_still_sent_to_a_fifo_queue() -> None:
    # Batch ignores it there; forcing it was possible before fair-share support and stays so.
    request = build(make_config(submit_job_kwargs='{"schedulingPriorityOverride": 5}'), {"main-q": FIFO})
    assert request["schedulingPriorityOverride"] == 5


# ------------------------------------------------------------------------------ queue kinds


def test_resolve_reads_each_queue_once_and_applies_its_kind() -> None:
    kinds = QueueKinds()
    reads: list[str] = []
    answers = {"fair-q": FAIR, "fifo-q": FIFO}

    def read(queue: str) -> tuple[QueueKind, tuple[str, ...]] | None:
        reads.append(queue)
        return answers[queue], (f"arn:aws:batch:us-east-1:1:job-queue/{queue}",)

    pending = {"jobQueue": "fair-q", PENDING_KEY: {"shareIdentifier": "etl", "schedulingPriorityOverride": 1}}
    barrier = threading.Barrier(4)
    results: list[dict[str, Any]] = []

    def worker() -> None:
        barrier.wait()
        results.append(kinds.resolve(dict(pending), read))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reads == ["fair-q"]
    assert results == [{"jobQueue": "fair-q", "shareIdentifier": "etl", "schedulingPriorityOverride": 1}] * 4
    assert kinds.get("arn:aws:batch:us-east-1:1:job-queue/fair-q") is FAIR

    fifo = kinds.resolve({"jobQueue": "fifo-q", PENDING_KEY: {"shareIdentifier": "etl"}}, read)
    assert fifo == {"jobQueue": "fifo-q"}
    with pytest.raises(FairShareMismatch, match="'fifo-q' is FIFO"):
        kinds.resolve({"jobQueue": "fifo-q", "shareIdentifier": "forced", PENDING_KEY: {}}, read)
    assert reads == ["fair-q", "fifo-q"]


def test_resolve_leaves_complete_requests_alone() -> None:
    def read(queue: str) -> None:
        raise AssertionError("no read for a request without a pending part")

    request = {"jobQueue": "q"}
    assert QueueKinds().resolve(request, read) is request


# ------------------------------------------------------------------------------ startup check (pure part)


@pytest.mark.parametrize(
    ("options", "seen", "ok", "words"),
    [
        pytest.param({}, {"main-q": FIFO}, True, ["every job queue is FIFO"], id="fifo-defaults"),
        pytest.param({}, {"main-q": FAIR}, True, ["{dag_id} (default)", "clamped"], id="fair-defaults"),
        pytest.param(
            {"share_identifier": "{team}"},
            {"main-q": FIFO, "gpu-q": FIFO},
            False,
            ["share_identifier is set", "'gpu-q'", "'main-q'"],
            id="template-but-every-queue-fifo",
        ),
        pytest.param(
            {"share_identifier": "{team}"}, {"main-q": FIFO, "gpu-q": FAIR}, True, ["'gpu-q'"], id="mixed"
        ),
        pytest.param(
            {"submit_job_kwargs": '{"shareIdentifier": "x"}'},
            {"main-q": FAIR, "gpu-q": FIFO},
            False,
            ["submit_job_kwargs sets shareIdentifier", "'gpu-q'"],
            id="forced-share-on-a-fifo-queue",
        ),
    ],
)
def test_fair_share_check(
    options: dict[str, str], seen: dict[str, QueueKind], ok: bool, words: list[str]
) -> None:
    (item,) = fair_share_items(make_config(**options), seen)
    assert item.name == "fair_share"
    assert item.ok is ok
    for word in words:
        assert word in item.detail
