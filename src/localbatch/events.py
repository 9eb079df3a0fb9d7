"""EventBridge, as much as a rule that sends Batch's job events to SQS needs: the default event bus,
rules with an event pattern (exact values: localbatch.event_patterns) and SQS queue targets.

PutRule, DescribeRule, ListRules, DeleteRule, PutTargets, ListTargetsByRule and RemoveTargets, in
botocore's JSON protocol (``X-Amz-Target: AWSEvents.<Operation>``). Rules and their targets are kept
in the store and survive a restart. Not emulated: other event buses, scheduled rules, targets other
than SQS queues, ``Input``/``InputPath``/``InputTransformer``, PutEvents, retries and dead-letter
queues of targets (a target whose queue does not exist loses the event, as a failed invocation).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from localbatch import event_patterns
from localbatch.errors import EventsLimitExceeded, EventsResourceNotFound, EventsValidation
from localbatch.models import ACCOUNT_ID
from localbatch.store import Store

RULE_NAME_RE = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
TARGET_ID_RE = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
SQS_ARN_RE = re.compile(r"^arn:aws[\w-]*:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,80}$")
DEFAULT_BUS = "default"
MAX_TARGETS = 5
#: What a target may carry here: how the event reaches the queue is not changed by any of them.
TARGET_KEYS = frozenset({"Id", "Arn", "RoleArn", "SqsParameters", "DeadLetterConfig", "RetryPolicy"})


@dataclass
class Rule:
    name: str
    arn: str
    event_pattern: str
    pattern: dict[str, Any]
    state: str = "ENABLED"
    description: str | None = None
    role_arn: str | None = None
    tags: list[dict[str, str]] = field(default_factory=list)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.state != "DISABLED"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Name": self.name,
            "Arn": self.arn,
            "EventPattern": self.event_pattern,
            "State": self.state,
            "EventBusName": DEFAULT_BUS,
        }
        if self.description is not None:
            out["Description"] = self.description
        if self.role_arn is not None:
            out["RoleArn"] = self.role_arn
        return out

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arn": self.arn,
            "event_pattern": self.event_pattern,
            "state": self.state,
            "description": self.description,
            "role_arn": self.role_arn,
            "tags": [dict(tag) for tag in self.tags],
            "targets": [dict(target) for target in self.targets.values()],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Rule:
        return cls(
            name=record["name"],
            arn=record["arn"],
            event_pattern=record["event_pattern"],
            pattern=event_patterns.parse(record["event_pattern"]),
            state=record["state"],
            description=record.get("description"),
            role_arn=record.get("role_arn"),
            tags=list(record.get("tags", [])),
            targets={target["Id"]: target for target in record.get("targets", [])},
        )


def _page(items: list[Any], p: dict[str, Any], limit_key: str) -> tuple[list[Any], str | None]:
    start = 0
    if p.get("NextToken"):
        try:
            start = int(p["NextToken"])
        except ValueError as exc:
            raise EventsValidation("The NextToken is not valid.") from exc
    limit = p.get(limit_key) or 100
    page = items[start : start + limit]
    return page, str(start + limit) if start + limit < len(items) else None


class EventsBackend:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.rules: dict[str, Rule] = {}
        #: True when an enabled rule has a target: only then is a job's change worth an event.
        self.active = False
        self._operations: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
            "PutRule": self.put_rule,
            "DescribeRule": self.describe_rule,
            "ListRules": self.list_rules,
            "DeleteRule": self.delete_rule,
            "PutTargets": self.put_targets,
            "ListTargetsByRule": self.list_targets_by_rule,
            "RemoveTargets": self.remove_targets,
        }

    def load(self) -> None:
        for record in self.store.load("event_rule"):
            rule = Rule.from_record(record)
            self.rules[rule.name] = rule
        self._changed()

    def dispatch(self, operation: str, params: dict[str, Any], region: str) -> dict[str, Any]:
        method = self._operations.get(operation)
        if method is None:
            raise EventsValidation(f"localbatch does not implement {operation}")
        return method(params, region)

    def target_arns(self, event: dict[str, Any]) -> list[str]:
        """The queue of every target of every enabled rule ``event`` matches (a queue named by two
        targets gets the event twice, as on AWS)."""
        return [
            target["Arn"]
            for rule in self.rules.values()
            if rule.enabled and rule.targets and event_patterns.matches(rule.pattern, event)
            for target in rule.targets.values()
        ]

    def _changed(self) -> None:
        self.active = any(rule.enabled and rule.targets for rule in self.rules.values())

    def _save(self, rule: Rule) -> None:
        self.store.put("event_rule", rule.name, rule.to_record())
        self._changed()

    @staticmethod
    def _bus(p: dict[str, Any]) -> None:
        bus = p.get("EventBusName", DEFAULT_BUS)
        if bus != DEFAULT_BUS and not bus.endswith(":event-bus/default"):
            raise EventsResourceNotFound(f"Event bus {bus} does not exist.")

    def _rule(self, p: dict[str, Any], key: str) -> Rule:
        self._bus(p)
        rule = self.rules.get(p[key])
        if rule is None:
            raise EventsResourceNotFound(f"Rule {p[key]} does not exist on EventBus {DEFAULT_BUS}.")
        return rule

    # -- rules -------------------------------------------------------------------------------------
    def put_rule(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        self._bus(p)
        name = p["Name"]
        if not RULE_NAME_RE.match(name):
            raise EventsValidation(
                f"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+ (at most 64)"
            )
        if p.get("ScheduleExpression"):
            raise EventsValidation(
                "localbatch supports only rules with an EventPattern, not ScheduleExpression."
            )
        if not p.get("EventPattern"):
            raise EventsValidation("Parameter(s) EventPattern or ScheduleExpression must be specified.")
        pattern = event_patterns.parse(p["EventPattern"])
        rule = self.rules.get(name)
        if rule is None:
            arn = f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{name}"
            rule = self.rules[name] = Rule(
                name=name, arn=arn, event_pattern=p["EventPattern"], pattern=pattern
            )
        rule.event_pattern, rule.pattern = p["EventPattern"], pattern
        rule.state = p.get("State", "ENABLED")
        rule.description = p.get("Description")
        rule.role_arn = p.get("RoleArn")
        if "Tags" in p:
            rule.tags = [dict(tag) for tag in p["Tags"]]
        self._save(rule)
        return {"RuleArn": rule.arn}

    def describe_rule(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        return {**self._rule(p, "Name").describe(), "CreatedBy": ACCOUNT_ID}

    def list_rules(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        self._bus(p)
        prefix = p.get("NamePrefix", "")
        rules = [self.rules[name] for name in sorted(self.rules) if name.startswith(prefix)]
        page, token = _page(rules, p, "Limit")
        result: dict[str, Any] = {"Rules": [rule.describe() for rule in page]}
        if token is not None:
            result["NextToken"] = token
        return result

    def delete_rule(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        self._bus(p)
        rule = self.rules.get(p["Name"])
        if rule is None:  # AWS: deleting a rule twice succeeds twice
            return {}
        if rule.targets:
            raise EventsValidation("Rule can't be deleted since it has targets.")
        del self.rules[rule.name]
        self.store.delete("event_rule", rule.name)
        self._changed()
        return {}

    # -- targets -----------------------------------------------------------------------------------
    def put_targets(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        rule = self._rule(p, "Rule")
        for target in p["Targets"]:
            if not TARGET_ID_RE.match(target["Id"]):
                raise EventsValidation(f"Target Id {target['Id']!r} must be 1 to 64 of [.-_A-Za-z0-9].")
            unsupported = sorted(set(target) - TARGET_KEYS)
            if unsupported:
                raise EventsValidation(f"localbatch does not support {', '.join(unsupported)} on targets.")
            if not SQS_ARN_RE.match(target["Arn"]):
                raise EventsValidation(
                    f"localbatch delivers events to SQS queues only; target {target['Id']} has Arn "
                    f"{target['Arn']!r}."
                )
        added = {target["Id"] for target in p["Targets"]} - set(rule.targets)
        if len(rule.targets) + len(added) > MAX_TARGETS:
            raise EventsLimitExceeded("The requested resource exceeds the maximum number allowed.")
        for target in p["Targets"]:
            rule.targets[target["Id"]] = dict(target)
        self._save(rule)
        return {"FailedEntryCount": 0, "FailedEntries": []}

    def list_targets_by_rule(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        rule = self._rule(p, "Rule")
        page, token = _page(list(rule.targets.values()), p, "Limit")
        result: dict[str, Any] = {"Targets": [dict(target) for target in page]}
        if token is not None:
            result["NextToken"] = token
        return result

    def remove_targets(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        rule = self._rule(p, "Rule")
        for target_id in p["Ids"]:
            rule.targets.pop(target_id, None)
        self._save(rule)
        return {"FailedEntryCount": 0, "FailedEntries": []}
