"""Which job belongs to which try: adoption and orphan-sweep rules, as a table over job tags."""

from __future__ import annotations

import pytest

from airflow_aws_batch.core.ownership import (
    QUEUEING_CLOCK_ALLOWANCE_MS,
    TiNow,
    TryId,
    array_child_tries,
    is_job_of,
    of_this_queueing,
    orphan_reason,
    try_of,
    waiting_array_children,
)

TRY2 = TryId("etl", "load", "manual__1", 3, 2)


def tags(try_number: int = 2, deployment: str | None = "prod", **extra: str) -> dict[str, str]:
    out = {**TRY2.tags(), "try_number": str(try_number), **extra}
    if deployment is not None:
        out["deployment"] = deployment
    return out


@pytest.mark.parametrize(
    ("job_tags", "required", "expected"),
    [
        pytest.param(tags(), True, True, id="this-try"),
        pytest.param(tags(try_number=1), False, False, id="earlier-try-is-stale"),
        pytest.param(tags(deployment="other"), False, False, id="other-deployment"),
        pytest.param(tags(deployment=None), False, True, id="untagged-by-saved-id"),
        pytest.param(tags(deployment=None), True, False, id="untagged-not-found-by-tags"),
        pytest.param({**tags(), "map_index": "4"}, True, False, id="other-map-index"),
        pytest.param({"callback_id": "c"}, True, False, id="callback-not-found-by-tags"),
        pytest.param({}, False, True, id="untagged-older-job-trusted-by-saved-id"),
        pytest.param({"deployment": "prod"}, True, False, id="no-try-tags-not-found-by-tags"),
    ],
)
def test_is_job_of(job_tags: dict[str, str], required: bool, expected: bool) -> None:
    assert is_job_of(job_tags, TRY2, "prod", deployment_required=required) is expected


def test_try_of_reads_back_what_tags_write() -> None:
    assert try_of(TRY2.tags()) == TRY2
    assert try_of({**TRY2.tags(), "try_number": "x"}) is None


@pytest.mark.parametrize(
    ("job_tags", "now", "terminated"),
    [
        pytest.param(tags(), TiNow(2, "queued", None), False, id="queued-same-try-just-submitted-elsewhere"),
        pytest.param(tags(), TiNow(2, "running", "other-job"), False, id="running-same-try"),
        pytest.param(tags(), TiNow(3, "queued", None), True, id="try-moved-on"),
        pytest.param(tags(), TiNow(2, None, None), True, id="reset-by-adoption"),
        pytest.param(tags(), TiNow(2, "success", None), True, id="finished-never-pointed-here"),
        pytest.param(tags(), TiNow(2, "failed", "job-1"), True, id="finished-its-own-hung-job"),
        pytest.param(tags(), None, True, id="task-instance-deleted"),
        pytest.param(tags(deployment="other"), None, False, id="other-deployment-untouched"),
        pytest.param(tags(deployment=None), None, False, id="untagged-untouched"),
        pytest.param({"deployment": "prod", "callback_id": "c"}, None, False, id="callback-untouched"),
    ],
)
def test_orphan_reason(job_tags: dict[str, str], now: TiNow | None, terminated: bool) -> None:
    verdict = orphan_reason("job-1", job_tags, "prod", now)
    assert (verdict is not None) is terminated, verdict


def test_the_saved_job_of_a_finished_try_is_terminated_only_when_found_again() -> None:
    # Its supervisor exits a moment after the task: one sweep may see it still RUNNING.
    verdict = orphan_reason("job-1", tags(), "prod", TiNow(2, "success", "job-1"))
    assert verdict is not None and verdict.confirm
    other = orphan_reason("job-1", tags(), "prod", TiNow(3, "queued", None))
    assert other is not None and not other.confirm


def team_tags(owner: str | None, deployment: str = "prod", **extra: str) -> dict[str, str]:
    out = tags(deployment=deployment, **extra)
    if owner is not None:
        out["airflow_team"] = owner
    return out


@pytest.mark.parametrize(
    ("job_tags", "team", "required", "expected"),
    [
        pytest.param(team_tags("a"), "a", True, True, id="own-team-found-by-tags"),
        pytest.param(team_tags("a"), "a", False, True, id="own-team-by-saved-id"),
        pytest.param(team_tags("b"), "a", True, False, id="other-team-not-found-by-tags"),
        pytest.param(team_tags("b"), "a", False, False, id="other-team-not-by-saved-id"),
        pytest.param(team_tags("a"), None, True, False, id="global-never-finds-a-teams-job"),
        pytest.param(team_tags("a"), None, False, False, id="global-never-adopts-a-teams-job"),
        pytest.param(team_tags(None), "a", True, False, id="team-never-finds-a-global-job"),
        pytest.param(team_tags(None), "a", False, True, id="team-adopts-pre-team-job-by-saved-id"),
        pytest.param({}, "a", False, True, id="team-adopts-untagged-older-job-by-saved-id"),
        pytest.param(team_tags(None), None, True, True, id="global-finds-global-job"),
        pytest.param(team_tags("a", team="data"), "a", True, True, id="users-own-team-tag-is-no-owner"),
        pytest.param(team_tags(None, team="data"), None, True, True, id="users-team-tag-on-global-job"),
    ],
)
def test_is_job_of_with_teams(
    job_tags: dict[str, str], team: str | None, required: bool, expected: bool
) -> None:
    assert is_job_of(job_tags, TRY2, "prod", deployment_required=required, team=team) is expected


@pytest.mark.parametrize(
    ("job_tags", "team", "terminated"),
    [
        pytest.param(team_tags("a"), "a", True, id="own-team"),
        pytest.param(team_tags("b"), "a", False, id="other-team-untouched"),
        pytest.param(team_tags("a"), None, False, id="global-leaves-a-teams-job"),
        pytest.param(team_tags(None), "a", False, id="team-leaves-a-global-job"),
        pytest.param(team_tags(None), None, True, id="global-own"),
        pytest.param(team_tags("a", deployment="other"), "a", False, id="own-team-other-deployment"),
    ],
)
def test_orphan_reason_with_teams(job_tags: dict[str, str], team: str | None, terminated: bool) -> None:
    verdict = orphan_reason("job-1", job_tags, "prod", None, team=team)
    assert (verdict is not None) is terminated, verdict


def _workload(map_index: object, try_number: object = 2, **changes: object) -> dict[str, object]:
    ti = {**TRY2.tags(), "map_index": map_index, "try_number": try_number, "id": "u", **changes}
    return {"type": "ExecuteTask", "ti": ti, "token": "t"}


def test_array_child_tries_come_from_the_workloads_in_child_index_order() -> None:
    array_tags = {k: v for k, v in tags().items() if k != "map_index"}
    workloads = [
        _workload(7),
        _workload(3),
        _workload(4, try_number=1),  # another try than the array's: not this array's object
        _workload(5, task_id="other"),
        {"type": "ExecuteCallback"},  # names no task instance
        _workload("x"),
        "not a workload",
    ]
    assert array_child_tries(array_tags, workloads) == [
        TryId("etl", "load", "manual__1", 7, 2),
        TryId("etl", "load", "manual__1", 3, 2),
        None,
        None,
        None,
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("created", "queued", "terminated", "cancelled", "expected"),
    [
        pytest.param(10_000, 9_000, False, False, True, id="created-after-queueing"),
        pytest.param(8_000, 9_000, False, False, True, id="within-the-clock-allowance"),
        pytest.param(5_000, 9_000, False, False, False, id="an-earlier-queueing"),
        pytest.param(10_000, 9_000, True, False, False, id="terminated"),
        pytest.param(10_000, 9_000, False, True, False, id="cancelled"),
        pytest.param(None, 9_000, False, False, True, id="creation-unknown"),
        pytest.param(5_000, None, False, False, True, id="queueing-unknown"),
    ],
)
def test_of_this_queueing(
    created: int | None, queued: int | None, terminated: bool, cancelled: bool, expected: bool
) -> None:
    assert QUEUEING_CLOCK_ALLOWANCE_MS < 4_000  # the cases above sit on either side of it
    got = of_this_queueing(
        created_at_ms=created, queued_at_ms=queued, terminated=terminated, cancelled=cancelled
    )
    assert got is expected


def test_waiting_array_children_are_those_of_a_waiting_try_in_its_current_queueing() -> None:
    def child(map_index: int, try_number: int = 1) -> TryId:
        return TryId("dag", "task", "run", map_index, try_number)

    tries = [child(0), child(1), None, child(3), child(4)]
    waiting = {
        child(0): 1_000,  # queued before the array was created: this queueing's
        child(1, 2): 1_000,  # Airflow is at try 2: child 1 runs a try nobody waits for
        child(3): 9_000,  # queued again after the array was created: an earlier queueing's array
        child(4): None,  # queued when, unknown: nothing is judged by it
    }
    assert waiting_array_children(tries, waiting, created_at_ms=5_000) == {0: child(0), 4: child(4)}
    # Within the clock allowance, the array still counts as this queueing's.
    assert 3 in waiting_array_children(tries, waiting, created_at_ms=9_000 - QUEUEING_CLOCK_ALLOWANCE_MS)
