"""Fault injection: the config schema, request quotas and the seeded choices made per job.

Every random choice draws from generators seeded by `seed`, so the same sequence of requests and
submissions sees the same faults. Request-level choices (5xx), job-level choices (fail before
start, host lost, held in RUNNABLE), lost SubmitJob responses and each fault of the job state change
events (drop, duplicate, delay, reorder) use separate generators, so API traffic does not shift which
jobs get a fault, and turning one fault on does not shift the others.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Literal

import botocore.session
from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_HOLD_REASON = (
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - There is not enough capacity to fulfill your request. "
    "Please try again later or use a different instance type."
)
# A rate-chosen host loss strikes this long after the attempt starts (a rule sets its own delay).
HOST_LOST_AFTER_SECONDS = (0.5, 3.0)
# A reordered event waits for the next delivery to its queue at most this long, then goes anyway.
REORDER_HOLD_SECONDS = 2.0


#: The faults of job state change events, each a share of the deliveries (one event to one queue).
EVENT_FAULTS = ("drop", "duplicate", "delay", "reorder")


def _operation_names() -> set[str]:
    known = {"GetCallerIdentity"}
    for service in ("batch", "logs", "sqs", "events"):
        known.update(botocore.session.get_session().get_service_model(service).operation_names)
    return known


class HoldRunnable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: float = Field(default=0.0, ge=0.0, le=1.0)
    reason: str = DEFAULT_HOLD_REASON


class EventFaults(BaseModel):
    """Faults of the job state change events on their way from the event bus to an SQS queue, each
    the share of deliveries it strikes: dropped; delivered twice (the same event, two messages);
    delivered `delay_seconds` (a [least, most] range) late; held back until the next delivery to the
    same queue has gone out (at most `REORDER_HOLD_SECONDS`), so the two arrive swapped (a delivery
    chosen while another is held goes out before it)."""

    model_config = ConfigDict(extra="forbid")
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    duplicate_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    delay_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    delay_seconds: tuple[float, float] = (1.0, 10.0)
    reorder_rate: float = Field(default=0.0, ge=0.0, le=1.0)

    @field_validator("delay_seconds")
    @classmethod
    def delay_is_a_range(cls, delay: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= delay[0] <= delay[1]:
            raise ValueError("delay_seconds must be [least, most] with 0 <= least <= most")
        return delay


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_name_contains: str = Field(min_length=1)
    fault: Literal[
        "fail_before_start",
        "hold_runnable",
        "host_lost",
        "lost_response",
        "drop_event",
        "duplicate_event",
        "delay_event",
        "reorder_event",
    ]
    times: int | None = Field(default=None, ge=0)
    after_seconds: float = Field(default=1.0, ge=0.0)
    reason: str | None = None


class Simulate(BaseModel):
    """Simulated execution: an attempt starts no process; it "runs" `seconds`, then exits `exit_code`.

    `seconds` null: it runs until `POST /_localbatch/simulate/finish` ends it (or TerminateJob, its
    timeout or a host_lost fault). For load tests of Batch clients, where thousands of jobs must be
    RUNNING at once and what they run does not matter: each costs a timer, not a process.
    """

    model_config = ConfigDict(extra="forbid")
    seconds: float | None = Field(default=0.0, ge=0.0)
    exit_code: int = Field(default=0, ge=0, le=255)


class FaultConfig(BaseModel):
    """The schema of `--faults FILE.json` and of `PUT /_localbatch/faults`."""

    model_config = ConfigDict(extra="forbid")
    seed: int = 0
    latency_ms: float = Field(default=0.0, ge=0.0)
    quotas: dict[str, float] = Field(default_factory=dict)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fail_before_start_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    host_lost_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # SubmitJob creates the job, then loses the answer: "server_error" answers 500 ServerException,
    # "drop" sends the headers and part of the body, then closes the connection.
    lost_response_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    lost_response_mode: Literal["server_error", "drop"] = "server_error"
    hold_runnable: HoldRunnable = Field(default_factory=HoldRunnable)
    # Batch sets a RUNNABLE job's statusReason (CAPACITY:*, MISCONFIGURATION:*) minutes after the job
    # became RUNNABLE: a hold's reason and JOB_RESOURCE_REQUIREMENT appear this long after, not at once.
    runnable_reason_delay_seconds: float = Field(default=0.0, ge=0.0)
    rules: list[Rule] = Field(default_factory=list)
    # Applies to attempts that start while it is set; null: jobs run their command.
    simulate: Simulate | None = None
    # Operations answered 403 AccessDeniedException, as for credentials whose policy lacks them.
    denied: list[str] = Field(default_factory=list)
    # Job state change events on their way to SQS: dropped, duplicated, delayed, reordered.
    events: EventFaults = Field(default_factory=EventFaults)

    @field_validator("denied")
    @classmethod
    def denied_names_operations(cls, denied: list[str]) -> list[str]:
        unknown = sorted(set(denied) - _operation_names())
        if unknown:
            raise ValueError(f"unknown operations {unknown}: use names like RegisterJobDefinition")
        return denied

    @field_validator("quotas")
    @classmethod
    def quotas_name_operations(cls, quotas: dict[str, float]) -> dict[str, float]:
        """Keys are Batch/Logs operation names, or "*": one bucket shared by every other operation."""
        known = {"*", *_operation_names()}
        unknown = sorted(set(quotas) - known)
        if unknown:
            raise ValueError(
                f"unknown operations {unknown}: use names like SubmitJob or DescribeJobs, or '*'"
            )
        if any(rate <= 0 for rate in quotas.values()):
            raise ValueError("quota rates must be positive requests per second")
        return quotas


@dataclass
class TokenBucket:
    """`rate` requests per second with a burst of one second's worth."""

    rate: float
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = max(self.rate, 1.0)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True)
class EventFate:
    """What befalls one delivery of an event to a queue (none of it: delivered once, at once)."""

    drop: bool = False
    copies: int = 1
    delay: float = 0.0
    reorder: bool = False


@dataclass(frozen=True)
class StartFault:
    kind: Literal["fail_before_start", "host_lost"]
    after_seconds: float = 0.0
    reason: str | None = None


class Faults:
    """The live fault config plus the state it needs (buckets, rule counters, generators)."""

    def __init__(self, config: FaultConfig) -> None:
        self.replace(config)

    def replace(self, config: FaultConfig) -> None:
        self.config = config
        self._buckets = {op: TokenBucket(rate) for op, rate in config.quotas.items()}
        self._api_rng = random.Random(f"{config.seed}:api")
        self._job_rng = random.Random(f"{config.seed}:jobs")
        self._lost_rng = random.Random(f"{config.seed}:lost")
        self._event_rngs = {kind: random.Random(f"{config.seed}:events:{kind}") for kind in EVENT_FAULTS}
        self._rule_uses = [0] * len(config.rules)

    def allow(self, operation: str) -> bool:
        bucket = self._buckets.get(operation) or self._buckets.get("*")
        return bucket is None or bucket.take()

    def server_error(self) -> bool:
        return self.config.error_rate > 0 and self._api_rng.random() < self.config.error_rate

    def lost_response(self, job_name: str) -> bool:
        """Decided for each SubmitJob that created a job: whether its answer is replaced by a 500."""
        if self._rule(job_name, "lost_response") is not None:
            return True
        rate = self.config.lost_response_rate
        return rate > 0 and self._lost_rng.random() < rate

    def event_fate(self, job_name: str) -> EventFate:
        """Decided for each delivery of a job's state change event to a queue. Every fault that is
        on draws, whatever the others decide, so turning one on shifts none of the others."""
        config = self.config.events
        struck: dict[str, Rule | bool | None] = {}
        for kind in EVENT_FAULTS:
            rule = self._rule(job_name, f"{kind}_event")
            rate: float = getattr(config, f"{kind}_rate")
            drawn = rate > 0 and self._event_rngs[kind].random() < rate
            struck[kind] = rule if rule is not None else drawn
        delay = 0.0
        if isinstance(struck["delay"], Rule):
            delay = struck["delay"].after_seconds
        elif struck["delay"]:
            delay = self._event_rngs["delay"].uniform(*config.delay_seconds)
        return EventFate(
            drop=bool(struck["drop"]),
            copies=2 if struck["duplicate"] else 1,
            delay=delay,
            reorder=bool(struck["reorder"]),
        )

    def _rule(self, job_name: str, fault: str) -> Rule | None:
        for index, rule in enumerate(self.config.rules):
            if rule.fault != fault or rule.job_name_contains not in job_name:
                continue
            if rule.times is not None and self._rule_uses[index] >= rule.times:
                continue
            self._rule_uses[index] += 1
            return rule
        return None

    def hold_reason(self, job_name: str) -> str | None:
        """Decided once, when a job first becomes RUNNABLE."""
        rule = self._rule(job_name, "hold_runnable")
        if rule is not None:
            return rule.reason or self.config.hold_runnable.reason
        held = self.config.hold_runnable
        if held.rate > 0 and self._job_rng.random() < held.rate:
            return held.reason
        return None

    def still_held(self, job_name: str) -> bool:
        """Whether the current config still holds a job held earlier (checked when faults change)."""
        if self.config.hold_runnable.rate > 0:
            return True
        return any(r.fault == "hold_runnable" and r.job_name_contains in job_name for r in self.config.rules)

    def start_fault(self, job_name: str) -> StartFault | None:
        """Decided for each attempt as it starts."""
        rule = self._rule(job_name, "fail_before_start")
        if rule is not None:
            return StartFault("fail_before_start", reason=rule.reason)
        if (
            self.config.fail_before_start_rate > 0
            and self._job_rng.random() < self.config.fail_before_start_rate
        ):
            return StartFault("fail_before_start")
        rule = self._rule(job_name, "host_lost")
        if rule is not None:
            return StartFault("host_lost", after_seconds=rule.after_seconds, reason=rule.reason)
        if self.config.host_lost_rate > 0 and self._job_rng.random() < self.config.host_lost_rate:
            return StartFault("host_lost", after_seconds=self._job_rng.uniform(*HOST_LOST_AFTER_SECONDS))
        return None

    def instance_id(self) -> str:
        return "i-" + "".join(self._job_rng.choice("0123456789abcdef") for _ in range(17))

    def host_lost_reason(self, reason: str | None) -> str:
        """A host loss's status reason: its rule's, else AWS's with an instance id (drawn only then)."""
        return reason or f"Host EC2 (instance {self.instance_id()}) terminated."


@dataclass
class OperationStats:
    requests: int = 0
    throttled: int = 0
    server_errors: int = 0
    client_errors: int = 0
    # SubmitJobs that created a job and answered 500 (also counted in server_errors).
    lost_responses: int = 0


class Stats:
    def __init__(self) -> None:
        self.operations: dict[str, OperationStats] = {}

    def get(self, operation: str) -> OperationStats:
        stats = self.operations.get(operation)
        if stats is None:
            stats = self.operations[operation] = OperationStats()
        return stats

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {op: vars(s).copy() for op, s in sorted(self.operations.items())}
