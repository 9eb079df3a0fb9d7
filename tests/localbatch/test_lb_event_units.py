"""Pure pieces of localbatch's events and queues, driven without a server: event patterns, the event
faults' seeded choices and flags, and a queue's visibility and retention on a clock of our own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from localbatch import event_patterns
from localbatch.cli import build_parser, fault_config
from localbatch.errors import EventsInvalidEventPattern
from localbatch.faults import FaultConfig, Faults
from localbatch.sqs_queue import Message, Queue

QUEUE_ARN = "arn:aws:batch:us-east-1:123456789012:job-queue/q"
EVENT = {
    "source": "aws.batch",
    "detail-type": "Batch Job State Change",
    "resources": ["arn:aws:batch:us-east-1:123456789012:job/j"],
    "detail": {"jobQueue": QUEUE_ARN, "status": "RUNNING", "attempts": []},
}


@pytest.mark.parametrize(
    ("pattern", "matched"),
    [
        pytest.param({"source": ["aws.batch"]}, True, id="source"),
        pytest.param({"source": ["aws.ecs"]}, False, id="other-source"),
        pytest.param(
            {"source": ["aws.batch"], "detail-type": ["Batch Job State Change"]}, True, id="detail-type"
        ),
        pytest.param({"detail": {"jobQueue": [QUEUE_ARN, "other"]}}, True, id="queue-among-several"),
        pytest.param({"detail": {"jobQueue": [QUEUE_ARN + "2"]}}, False, id="other-queue"),
        pytest.param({"detail": {"status": ["RUNNING"], "jobQueue": [QUEUE_ARN]}}, True, id="all-fields"),
        pytest.param({"detail": {"status": ["FAILED"], "jobQueue": [QUEUE_ARN]}}, False, id="one-field-off"),
        pytest.param({"detail": {"shareIdentifier": ["x"]}}, False, id="missing-field"),
        pytest.param({"resources": ["arn:aws:batch:us-east-1:123456789012:job/j"]}, True, id="list-value"),
        pytest.param({"detail": {"jobQueue": {"x": ["y"]}}}, False, id="object-against-string"),
    ],
)
def test_patterns_match_exact_values(pattern: dict[str, object], matched: bool) -> None:
    assert event_patterns.matches(event_patterns.parse(json.dumps(pattern)), EVENT) is matched


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("[]", id="not-an-object"),
        pytest.param("{}", id="empty"),
        pytest.param('{"source": "aws.batch"}', id="leaf-not-a-list"),
        pytest.param('{"source": []}', id="empty-list"),
        pytest.param('{"source": [{"prefix": "aws."}]}', id="content-filter"),
    ],
)
def test_invalid_patterns_are_refused(text: str) -> None:
    with pytest.raises(EventsInvalidEventPattern, match="Event pattern is not valid"):
        event_patterns.parse(text)


def test_event_faults_are_seeded_and_leave_each_other_alone() -> None:
    base = {"seed": 4, "events": {"drop_rate": 0.3}}
    config = FaultConfig.model_validate(
        {"seed": 4, "events": {"drop_rate": 0.3, "duplicate_rate": 0.5, "reorder_rate": 0.5}}
    )
    faults = Faults(config)
    fates = [faults.event_fate(f"job{i}") for i in range(40)]
    faults.replace(config)
    assert [faults.event_fate(f"job{i}") for i in range(40)] == fates
    assert {f.drop for f in fates} == {True, False}
    assert {f.copies for f in fates} == {1, 2}
    assert {f.reorder for f in fates} == {True, False}
    assert all(f.delay == 0 for f in fates)
    # Each fault draws from its own generator: the drops are the same without the other two.
    plain = Faults(FaultConfig.model_validate(base))
    assert [plain.event_fate(f"job{i}").drop for i in range(40)] == [f.drop for f in fates]


def test_event_delay_is_drawn_in_its_range_and_rules_take_their_jobs() -> None:
    faults = Faults(
        FaultConfig.model_validate(
            {
                "events": {"delay_rate": 1.0, "delay_seconds": [2.0, 3.0]},
                "rules": [
                    {"job_name_contains": "lost", "fault": "drop_event", "times": 2},
                    {"job_name_contains": "late", "fault": "delay_event", "after_seconds": 9},
                ],
            }
        )
    )
    assert all(2.0 <= faults.event_fate("plain").delay <= 3.0 for _ in range(20))
    assert [faults.event_fate("lost").drop for _ in range(3)] == [True, True, False]
    assert faults.event_fate("late").delay == 9


def test_event_fault_flags() -> None:
    flags = [
        *("--event-drop-rate", "0.1", "--event-duplicate-rate", "0.2", "--event-delay-rate", "0.3"),
        *("--event-delay-seconds", "0.5:4", "--event-reorder-rate", "0.4"),
    ]
    config = fault_config(build_parser().parse_args(["serve", "--data-dir", "d", *flags])).events
    assert (config.drop_rate, config.duplicate_rate, config.delay_rate, config.reorder_rate) == (
        0.1,
        0.2,
        0.3,
        0.4,
    )
    assert config.delay_seconds == (0.5, 4.0)
    with pytest.raises(ValueError, match="delay_seconds"):
        FaultConfig.model_validate({"events": {"delay_seconds": [3, 1]}})


def _queue(**attributes: str) -> Queue:
    queue = Queue(name="q", region="us-east-1", created_at=1000.0)
    queue.attributes.update(attributes)
    return queue


def test_a_message_not_deleted_is_visible_again_after_its_visibility_timeout() -> None:
    queue = _queue()
    queue.add(Message("m1", "one", 1000.0, "me"))
    queue.add(Message("m2", "two", 1000.0, "me"))
    first = queue.take(10, 30, 1000.0)
    assert [m.body for m in first] == ["one", "two"]
    first_receipt = first[0].receipt
    assert queue.take(10, 30, 1001.0) == []
    assert (queue.counts["visible"], queue.counts["in_flight"]) == (0, 2)
    queue.remove("m2")  # deleted
    queue.refresh(1029.9)
    assert queue.take(10, 30, 1029.9) == []
    queue.refresh(1030.0)
    again = queue.take(10, 30, 1030.0)
    assert [(m.body, m.receive_count) for m in again] == [("one", 2)]
    assert again[0].receipt != first_receipt


def test_visibility_can_be_ended_early_and_delays_hide_a_message_until_due() -> None:
    queue = _queue()
    queue.add(Message("m1", "one", 1000.0, "me"))
    queue.add(Message("m2", "later", 1000.0, "me"), delay=5)
    (taken,) = queue.take(10, 30, 1000.0)
    assert queue.counts["delayed"] == 1
    queue.change_visibility(taken, 0, 1001.0)
    assert [m.body for m in queue.take(10, 30, 1001.0)] == ["one"]
    assert queue.next_due_in(1001.0) == 4.0
    queue.refresh(1005.0)
    assert [m.body for m in queue.take(10, 30, 1005.0)] == ["later"]


def test_messages_past_retention_are_dropped() -> None:
    queue = _queue(MessageRetentionPeriod="60")
    queue.add(Message("old", "old", 1000.0, "me"))
    queue.add(Message("new", "new", 1030.0, "me"))
    assert queue.refresh(1059.0) == []
    assert queue.refresh(1060.0) == ["old"]
    assert [m.body for m in queue.take(10, 30, 1060.0)] == ["new"]
    assert queue.refresh(1090.0) == ["new"]  # in flight or not, retention ends it
    assert queue.messages == {}


def test_the_documented_fault_config_is_valid() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "localbatch.md").read_text()
    (example,) = [block for block in re.findall(r"```json\n(.*?)```", page, flags=re.S) if '"seed"' in block]
    config = FaultConfig.model_validate_json(example)
    assert config.events.delay_seconds == (1.0, 10.0)
    assert config.rules[-1].fault == "drop_event"
