"""localbatch's scheduling decisions on plain data: queue order, dependencies, capacity, placement."""

from __future__ import annotations

import os
from typing import Any

import pytest

from localbatch.models import Job, JobStatus
from localbatch.scheduling import (
    MEMORY_MIB_PER_VCPU,
    Ledger,
    Readiness,
    Usage,
    by_priority,
    capacity,
    fair_share_order,
    placements,
    readiness,
    weight_factor,
)

REGION_ARN = "arn:aws:batch:eu-west-1:123456789012"


def ce(name: str, vcpus: float, *, state: str = "ENABLED", status: str = "VALID") -> dict[str, Any]:
    return {
        "computeEnvironmentName": name,
        "computeEnvironmentArn": f"{REGION_ARN}:compute-environment/{name}",
        "type": "MANAGED",
        "state": state,
        "status": status,
        "computeResources": {"maxvCpus": vcpus},
    }


def queue(name: str, ces: list[str], *, priority: int = 1, state: str = "ENABLED") -> dict[str, Any]:
    return {
        "jobQueueName": name,
        "jobQueueArn": f"{REGION_ARN}:job-queue/{name}",
        "priority": priority,
        "state": state,
        # Either form a queue may hold: the ARN (as CreateJobQueue stores it) or the plain name.
        "computeEnvironmentOrder": [
            {"order": i, "computeEnvironment": f"{REGION_ARN}:compute-environment/{n}" if i % 2 else n}
            for i, n in enumerate(ces)
        ],
    }


def job(
    name: str,
    *,
    jq: str = "q",
    vcpus: float = 1.0,
    memory_mib: int = 2048,
    status: JobStatus = JobStatus.RUNNABLE,
    held: str | None = None,
    depends_on: tuple[str, ...] = (),
    share: str | None = None,
    priority: int | None = None,
    created: int = 0,
) -> Job:
    return Job(
        job_id=name,
        job_name=name,
        job_arn=f"{REGION_ARN}:job/{name}",
        queue_arn=f"{REGION_ARN}:job-queue/{jq}",
        job_definition_arn=f"{REGION_ARN}:job-definition/jd:1",
        job_definition_name="jd",
        created_at=created,
        status=status,
        vcpus=vcpus,
        memory_mib=memory_mib,
        held_reason=held,
        depends_on=[{"jobId": d, "type": "SEQUENTIAL"} for d in depends_on],
        share_identifier=share,
        scheduling_priority=priority,
    )


def place_all(
    ces: list[dict[str, Any]], queues: list[dict[str, Any]], jobs: list[Job], ledger: Ledger | None = None
) -> dict[str, str]:
    """Run a placement walk as the runner does (start each placed job before the next decision).

    Returns job name -> the compute environment it starts on, "wait", or "too-large"; jobs the walk
    never reached are absent.
    """
    ledger = ledger or Ledger()
    by_id = {j.job_id: j for j in jobs}
    runnable = {q["jobQueueArn"]: [j.job_id for j in jobs if j.queue_arn == q["jobQueueArn"]] for q in queues}
    out: dict[str, str] = {}
    for placement in placements(
        by_priority(queues),
        {c["computeEnvironmentName"]: c for c in ces},
        lambda arn: runnable[arn],
        by_id,
        ledger,
    ):
        name = placement.job.job_name
        if placement.too_large:
            out[name] = "too-large"
        elif placement.ce is None:
            out[name] = "wait"
        else:
            ce_name = placement.ce["computeEnvironmentName"]
            ledger.reserve(ce_name, placement.job)
            placement.job.status = JobStatus.STARTING
            out[name] = ce_name
    return out


@pytest.mark.parametrize(
    ("ces", "queues", "jobs", "expected"),
    [
        pytest.param(
            [ce("a", 4), ce("b", 4)],
            [queue("q", ["a", "b"])],
            [job("j1", vcpus=2), job("j2", vcpus=2), job("j3", vcpus=2)],
            {"j1": "a", "j2": "a", "j3": "b"},
            id="first-ce-in-order-then-next",
        ),
        pytest.param(
            [ce("a", 2), ce("b", 4)],
            [queue("q", ["a", "b"])],
            [job("big", vcpus=3), job("small", vcpus=1)],
            {"big": "b", "small": "a"},
            id="a-job-that-does-not-fit-the-first-takes-a-later-one",
        ),
        pytest.param(
            [ce("a", 2)],
            [queue("q", ["a"])],
            [job("j1", vcpus=2), job("j2", vcpus=1), job("j3", vcpus=1)],
            {"j1": "a"},
            id="no-vcpu-free-stops-the-queue-walk",
        ),
        pytest.param(
            [ce("a", 2)],
            [queue("q", ["a"])],
            [job("j1", vcpus=1.5), job("j2", vcpus=1), job("j3", vcpus=0.5)],
            {"j1": "a", "j2": "wait", "j3": "a"},
            id="a-job-too-big-for-what-is-free-waits-smaller-ones-pass",
        ),
        pytest.param(
            [ce("a", 1)],
            [queue("q", ["a"])],
            # 1 - 0.8 is 0.19999999999999996 in floats: the last 0.2 still fits.
            [job("j1", vcpus=0.8), job("j2", vcpus=0.2), job("j3", vcpus=0.1)],
            {"j1": "a", "j2": "a"},
            id="fractional-vcpus-fill-exactly",
        ),
        pytest.param(
            [ce("a", 2)],
            [queue("q", ["a"])],
            [
                job("mem1", vcpus=1, memory_mib=MEMORY_MIB_PER_VCPU * 2 - 100),
                job("mem2", vcpus=1, memory_mib=200),
            ],
            {"mem1": "a", "mem2": "wait"},
            id="memory-free-limits-as-vcpus-do",
        ),
        pytest.param(
            [ce("a", 2), ce("b", 4)],
            [queue("q", ["a", "b"])],
            [job("cpu", vcpus=5), job("mem", vcpus=1, memory_mib=MEMORY_MIB_PER_VCPU * 4 + 1), job("ok")],
            {"cpu": "too-large", "mem": "too-large", "ok": "a"},
            id="larger-than-the-largest-ce-never-runs",
        ),
        pytest.param(
            [ce("off", 8, state="DISABLED"), ce("bad", 8, status="INVALID"), ce("on", 1)],
            [queue("q", ["off", "bad", "on"])],
            [job("j1"), job("j2")],
            {"j1": "on"},
            id="disabled-and-invalid-ces-take-nothing",
        ),
        pytest.param(
            [ce("off", 8, state="DISABLED")],
            [queue("q", ["off"])],
            [job("j1", vcpus=16)],
            {},
            id="no-usable-ce-no-decision",
        ),
        pytest.param(
            [ce("a", 8)],
            [queue("q", ["a"], state="DISABLED")],
            [job("j1")],
            {},
            id="disabled-queue-starts-nothing",
        ),
        pytest.param(
            [ce("a", 8)],
            [queue("q", ["a"])],
            [job("held", held="CAPACITY:x"), job("pending", status=JobStatus.PENDING), job("j")],
            {"j": "a"},
            id="held-and-not-runnable-jobs-are-skipped",
        ),
        pytest.param(
            [ce("shared", 2)],
            [queue("low", ["shared"], priority=1), queue("high", ["shared"], priority=10)],
            [job("low1", jq="low"), job("high1", jq="high"), job("high2", jq="high"), job("low2", jq="low")],
            {"high1": "shared", "high2": "shared"},
            id="higher-priority-queue-takes-shared-capacity-first",
        ),
        pytest.param(
            [ce("a", 1), ce("b", 1)],
            [queue("qa", ["a"], priority=5), queue("qb", ["b"], priority=5)],
            [job("ja1", jq="qa"), job("ja2", jq="qa"), job("jb1", jq="qb")],
            {"ja1": "a", "jb1": "b"},
            id="a-full-queue-does-not-stop-the-next",
        ),
    ],
)
def test_placement(
    ces: list[dict[str, Any]], queues: list[dict[str, Any]], jobs: list[Job], expected: dict[str, str]
) -> None:
    assert place_all(ces, queues, jobs) == expected


def test_placement_sees_capacity_freed_between_decisions() -> None:
    """A job whose attempt ends right away (it fails before starting) frees its share for the next."""
    jobs = [job("fails-at-once", vcpus=2), job("next", vcpus=2)]
    ledger = Ledger()
    compute = ce("a", 2)
    out = []
    for placement in placements(
        [queue("q", ["a"])],
        {"a": compute},
        lambda arn: ["fails-at-once", "next"],
        {j.job_id: j for j in jobs},
        ledger,
    ):
        assert placement.ce is not None
        ledger.reserve("a", placement.job)
        placement.job.status = JobStatus.FAILED
        ledger.release("a", placement.job)
        out.append(placement.job.job_name)
    assert out == ["fails-at-once", "next"]


@pytest.mark.parametrize(
    ("priorities", "order"),
    [
        pytest.param([1, 10, 5], ["p10", "p5", "p1"], id="highest-first"),
        pytest.param([3, 7, 3, 7], ["p7", "p7#2", "p3", "p3#2"], id="ties-keep-creation-order"),
        pytest.param([0], ["p0"], id="one-queue"),
    ],
)
def test_queue_priority_order(priorities: list[int], order: list[str]) -> None:
    names: list[str] = []
    for p in priorities:
        name = f"p{p}"
        names.append(name if name not in names else f"{name}#2")
    queues = [queue(n, [], priority=p) for n, p in zip(names, priorities, strict=True)]
    assert [q["jobQueueName"] for q in by_priority(queues)] == order


@pytest.mark.parametrize(
    ("dep_statuses", "expected"),
    [
        pytest.param([], Readiness.READY, id="no-dependencies"),
        pytest.param([JobStatus.SUCCEEDED], Readiness.READY, id="dependency-succeeded"),
        pytest.param([JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], Readiness.READY, id="all-succeeded"),
        pytest.param([None], Readiness.READY, id="unknown-dependency-does-not-block"),
        pytest.param([JobStatus.RUNNING], Readiness.WAITING, id="dependency-running"),
        pytest.param([JobStatus.SUCCEEDED, JobStatus.PENDING], Readiness.WAITING, id="one-still-pending"),
        pytest.param([JobStatus.FAILED], Readiness.DEPENDENCY_FAILED, id="dependency-failed"),
        pytest.param(
            [JobStatus.RUNNABLE, JobStatus.FAILED],
            Readiness.DEPENDENCY_FAILED,
            id="a-failure-decides-at-once",
        ),
    ],
)
def test_dependency_readiness(dep_statuses: list[JobStatus | None], expected: Readiness) -> None:
    deps = {f"d{i}": job(f"d{i}", status=s) for i, s in enumerate(dep_statuses) if s is not None}
    waiting = job("w", status=JobStatus.PENDING, depends_on=tuple(f"d{i}" for i in range(len(dep_statuses))))
    assert readiness(waiting, {**deps, "w": waiting}) is expected


@pytest.mark.parametrize(
    ("compute", "expected"),
    [
        pytest.param(ce("m", 16), Usage(16.0, 16.0 * MEMORY_MIB_PER_VCPU), id="managed-maxvcpus"),
        pytest.param(
            {"computeEnvironmentName": "m", "type": "MANAGED", "computeResources": {}},
            Usage(),
            id="managed-no-max",
        ),
        pytest.param(
            {"computeEnvironmentName": "u", "type": "UNMANAGED", "unmanagedvCpus": 3},
            Usage(3.0, 3.0 * MEMORY_MIB_PER_VCPU),
            id="unmanaged-vcpus",
        ),
        pytest.param(
            {"computeEnvironmentName": "u", "type": "UNMANAGED"},
            Usage(float(os.cpu_count() or 1), float(os.cpu_count() or 1) * MEMORY_MIB_PER_VCPU),
            id="unmanaged-defaults-to-this-machine",
        ),
    ],
)
def test_capacity(compute: dict[str, Any], expected: Usage) -> None:
    assert capacity(compute) == expected


@pytest.mark.parametrize(
    ("steps", "free"),
    [
        pytest.param([], Usage(4.0, 4.0 * MEMORY_MIB_PER_VCPU), id="nothing-used"),
        pytest.param(
            [("reserve", "a", 1.5, 1000)], Usage(2.5, 4.0 * MEMORY_MIB_PER_VCPU - 1000), id="reserved"
        ),
        pytest.param(
            [("reserve", "a", 1.5, 1000), ("release", "a", 1.5, 1000)],
            Usage(4.0, 4.0 * MEMORY_MIB_PER_VCPU),
            id="released",
        ),
        pytest.param(
            [("reserve", "other", 4, 1000)], Usage(4.0, 4.0 * MEMORY_MIB_PER_VCPU), id="other-ce-not-counted"
        ),
        pytest.param(
            [("release", "a", 1, 1000), ("release", None, 1, 1000)],
            Usage(4.0, 4.0 * MEMORY_MIB_PER_VCPU),
            id="release-without-reserve-is-a-no-op",
        ),
    ],
)
def test_ledger(steps: list[tuple[str, str | None, float, int]], free: Usage) -> None:
    ledger = Ledger()
    for action, ce_name, vcpus, memory in steps:
        held = job("x", vcpus=vcpus, memory_mib=memory)
        if action == "reserve":
            assert ce_name is not None
            ledger.reserve(ce_name, held)
        else:
            ledger.release(ce_name, held)
    assert ledger.free(ce("a", 4)) == free


def test_placement_looks_each_job_up_when_its_turn_comes() -> None:
    """A job cancelled while the runner yielded between two decisions is not placed."""
    jobs = {j.job_id: j for j in (job("first"), job("cancelled"), job("last"))}
    placed = []
    for placement in placements(
        [queue("q", ["a"])], {"a": ce("a", 8)}, lambda arn: list(jobs), jobs, Ledger()
    ):
        placed.append(placement.job.job_name)
        placement.job.status = JobStatus.STARTING
        jobs["cancelled"].status = JobStatus.FAILED
    assert placed == ["first", "last"]


# -- fair share --------------------------------------------------------------------------------------


def fs(name: str, share: str, *, priority: int | None = None, created: int = 0, vcpus: float = 1.0) -> Job:
    """A RUNNABLE job of a fair-share queue."""
    return job(name, share=share, priority=priority, created=created, vcpus=vcpus)


def running(name: str, share: str, vcpus: float = 1.0) -> Job:
    return job(name, share=share, vcpus=vcpus, status=JobStatus.RUNNING)


@pytest.mark.parametrize(
    ("share", "distribution", "expected"),
    [
        pytest.param("a", [], 1.0, id="unlisted-share-weighs-1"),
        pytest.param("a", [{"shareIdentifier": "a", "weightFactor": 0.5}], 0.5, id="exact"),
        pytest.param("a", [{"shareIdentifier": "a"}], 1.0, id="listed-without-weight-weighs-1"),
        pytest.param("team1", [{"shareIdentifier": "team*", "weightFactor": 2}], 2.0, id="prefix"),
        pytest.param(
            "team", [{"shareIdentifier": "team*", "weightFactor": 2}], 2.0, id="prefix-matches-itself"
        ),
        pytest.param("tea", [{"shareIdentifier": "team*", "weightFactor": 2}], 1.0, id="shorter-than-prefix"),
        pytest.param("x", [{"shareIdentifier": "*", "weightFactor": 3}], 3.0, id="star-matches-all"),
        pytest.param(
            "team1",
            [
                {"shareIdentifier": "t*", "weightFactor": 4},
                {"shareIdentifier": "team1", "weightFactor": 0.25},
                {"shareIdentifier": "team*", "weightFactor": 2},
            ],
            0.25,
            id="exact-beats-prefixes",
        ),
        pytest.param(
            "team1",
            [{"shareIdentifier": "t*", "weightFactor": 4}, {"shareIdentifier": "team*", "weightFactor": 2}],
            2.0,
            id="longest-prefix-wins",
        ),
    ],
)
def test_weight_factor(share: str, distribution: list[dict[str, Any]], expected: float) -> None:
    assert weight_factor(share, distribution) == expected


@pytest.mark.parametrize(
    ("runnable", "active", "distribution", "expected"),
    [
        pytest.param(
            [
                fs("a1", "a", created=1),
                fs("a2", "a", created=2),
                fs("b1", "b", created=3),
                fs("b2", "b", created=4),
            ],
            [],
            [],
            ["a1", "b1", "a2", "b2"],
            id="equal-weights-alternate-between-shares",
        ),
        pytest.param(
            [fs("a1", "a", created=1), fs("b1", "b", created=2)],
            [running("ra", "a", vcpus=2)],
            [],
            ["b1", "a1"],
            id="the-share-using-less-goes-first",
        ),
        pytest.param(
            [fs(f"a{i}", "a", created=i) for i in range(4)]
            + [fs(f"b{i}", "b", created=10 + i) for i in range(4)],
            [],
            [{"shareIdentifier": "a", "weightFactor": 0.5}],
            # usage x weightFactor: a's jobs count half, so a gets two vCPUs for each of b's.
            ["a0", "b0", "a1", "a2", "b1", "a3", "b2", "b3"],
            id="lower-weight-factor-gets-more",
        ),
        pytest.param(
            [fs("a1", "a", created=1), fs("c1", "c", created=2), fs("c2", "c", created=3)],
            [running("ra", "a")],
            [{"shareIdentifier": "c*", "weightFactor": 4}],
            # c starts at 0; then c's 1 vCPU x 4 exceeds a's 1 x 1.
            ["c1", "a1", "c2"],
            id="prefix-weight-applies-to-each-matching-share",
        ),
        pytest.param(
            [
                fs("low", "a", priority=1, created=1),
                fs("high", "a", priority=9, created=2),
                fs("none", "a", created=3),
            ],
            [],
            [],
            ["high", "low", "none"],
            id="within-a-share-higher-priority-first-none-counts-0",
        ),
        pytest.param(
            [
                fs("late", "a", priority=5, created=9),
                fs("z", "a", priority=5, created=1),
                fs("y", "a", priority=5, created=1),
            ],
            [],
            [],
            ["y", "z", "late"],
            id="same-priority-by-creation-then-job-id",
        ),
        pytest.param(
            [fs("b1", "b", created=5), fs("a1", "a", created=5)],
            [],
            [],
            ["a1", "b1"],
            id="share-tie-by-next-jobs-creation-then-id",
        ),
        pytest.param(
            [fs("a-hi", "a", priority=9999, created=2), fs("b-lo", "b", priority=0, created=1)],
            [],
            [],
            ["b-lo", "a-hi"],
            id="priority-does-not-cross-shares",
        ),
        pytest.param(
            [
                fs("a1", "a", created=1, vcpus=4),
                fs("b1", "b", created=2),
                fs("b2", "b", created=3),
                fs("a2", "a", created=4),
            ],
            [],
            [],
            ["a1", "b1", "b2", "a2"],
            id="usage-counts-vcpus-not-jobs",
        ),
    ],
)
def test_fair_share_order(
    runnable: list[Job], active: list[Job], distribution: list[dict[str, Any]], expected: list[str]
) -> None:
    assert [j.job_name for j in fair_share_order(runnable, active, distribution)] == expected


def place_fair(
    capacity_vcpus: float, runnable: list[Job], active: list[Job], distribution: list[dict[str, Any]]
) -> list[str]:
    """A placement walk over one fair-share queue, starting what fits; the names in start order."""
    ledger = Ledger()
    for held in active:
        ledger.reserve("a", held)
    by_id = {j.job_id: j for j in [*runnable, *active]}
    started = []
    for placement in placements(
        [queue("q", ["a"])],
        {"a": ce("a", capacity_vcpus)},
        lambda arn: [j.job_id for j in runnable],
        by_id,
        ledger,
        active=lambda arn: [j.job_id for j in active],
        share_distribution=lambda jq: distribution,
    ):
        if placement.ce is not None:
            ledger.reserve("a", placement.job)
            placement.job.status = JobStatus.STARTING
            started.append(placement.job.job_name)
    return started


@pytest.mark.parametrize(
    ("capacity_vcpus", "runnable", "active", "expected"),
    [
        pytest.param(
            1,
            [
                *(fs(f"low{i}", "s", priority=1, created=i) for i in range(10)),
                fs("high", "s", priority=9, created=99),
            ],
            [],
            ["high"],
            id="one-free-vcpu-goes-to-the-highest-priority",
        ),
        pytest.param(
            2,
            [fs("a1", "a", created=1), fs("a2", "a", created=2), fs("b1", "b", created=3)],
            [],
            ["a1", "b1"],
            id="freed-capacity-is-shared-not-first-come",
        ),
        pytest.param(
            3,
            [fs("a1", "a", created=1), fs("b1", "b", created=2), fs("b2", "b", created=3)],
            [running("ra", "a"), running("ra2", "a")],
            ["b1"],
            id="running-jobs-count-as-usage",
        ),
        pytest.param(
            2,
            [fs("big", "a", created=1, vcpus=2), fs("small", "b", created=2)],
            [running("rb", "b")],
            ["small"],
            id="a-picked-job-that-does-not-fit-waits-the-next-pick-runs",
        ),
    ],
)
def test_fair_share_placement(
    capacity_vcpus: float, runnable: list[Job], active: list[Job], expected: list[str]
) -> None:
    assert place_fair(capacity_vcpus, runnable, active, []) == expected


def test_fifo_queue_ignores_shares_and_priorities() -> None:
    jobs = [job("first", share="a", priority=0), job("second", share="b", priority=9999)]
    out = []
    for placement in placements(
        [queue("q", ["a"])],
        {"a": ce("a", 1)},
        lambda arn: ["first", "second"],
        {j.job_id: j for j in jobs},
        Ledger(),
        active=lambda arn: [],
        share_distribution=lambda jq: None,
    ):
        out.append(placement.job.job_name)
        placement.job.status = JobStatus.STARTING
        break
    assert out == ["first"]
