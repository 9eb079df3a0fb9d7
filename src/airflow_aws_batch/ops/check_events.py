"""``check``'s status events lines (``status_events``): whether the queue can be read, and whether an
EventBridge rule sends it the job state changes of the executor's job queue. ``check`` submits
nothing, so it cannot see an event arrive: it reads the queue's attributes, finds the rules its
policy lets write (``aws:SourceArn``), and reads each rule's pattern, state and targets."""

from __future__ import annotations

import json
from typing import Any, Literal

from airflow_aws_batch.aws.sqs import queue_url_of

#: ``(status, detail)`` of ``check``'s "status events" line (check.py makes it a CheckLine).
Line = tuple[Literal["OK", "WARN", "FAIL"], str]


def rules_allowed(policy_text: str) -> list[str]:
    """The rule ARNs a queue policy lets EventBridge send messages for."""
    try:
        statements = json.loads(policy_text).get("Statement") or []
    except (ValueError, AttributeError):
        return []
    if isinstance(statements, dict):
        statements = [statements]
    arns: list[str] = []
    for statement in statements:
        principal = statement.get("Principal") or {}
        services = principal.get("Service") if isinstance(principal, dict) else None
        if statement.get("Effect") != "Allow" or "events.amazonaws.com" not in _listed(services):
            continue
        for values in (statement.get("Condition") or {}).values():
            arns.extend(a for a in _listed(values.get("aws:SourceArn")) if a not in arns)
    return arns


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _matches(pattern_text: str, job_queue_arn: str) -> str | None:
    """Why ``pattern_text`` would not send the job queue's job state changes, or None."""
    try:
        pattern = json.loads(pattern_text or "{}")
    except ValueError:
        return "its event pattern is not JSON"
    if "aws.batch" not in _listed(pattern.get("source")):
        return "its pattern does not match source aws.batch"
    kinds = pattern.get("detail-type")
    if kinds is not None and "Batch Job State Change" not in _listed(kinds):
        return 'its pattern does not match detail-type "Batch Job State Change"'
    queues = (pattern.get("detail") or {}).get("jobQueue")
    if queues is not None and job_queue_arn not in _listed(queues):
        return f"its pattern's detail.jobQueue does not name {job_queue_arn}"
    return None


def status_events_line(queue: str, sqs: Any, events: Any, job_queue_arn: str) -> Line:
    try:
        url = queue_url_of(queue) or sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    except Exception as err:
        return "FAIL", f"{queue}: cannot be read ({err}); the executor would poll only"
    queue_arn = attributes.get("QueueArn", "")
    waiting = attributes.get("ApproximateNumberOfMessages", "?")
    rules = rules_allowed(attributes.get("Policy", ""))
    if not rules:
        return (
            "WARN",
            f"{queue}: readable, but its policy lets no EventBridge rule send to it "
            "(events.amazonaws.com "
            "with aws:SourceArn): no event will arrive; the executor would poll only",
        )
    problems: list[str] = []
    for rule_arn in rules:
        # arn:aws:events:REGION:ACCOUNT:rule/[BUS/]NAME
        path = rule_arn.split(":rule/", 1)[-1]
        bus, _, name = path.rpartition("/")
        where = {"EventBusName": bus} if bus else {}
        try:
            rule = events.describe_rule(Name=name, **where)
            targets = events.list_targets_by_rule(Rule=name, **where).get("Targets") or []
        except Exception as err:
            problems.append(f"rule {name}: cannot be read ({err})")
            continue
        why = _matches(rule.get("EventPattern", ""), job_queue_arn)
        if rule.get("State") != "ENABLED":
            why = f"it is {rule.get('State')}"
        elif why is None and not any(t.get("Arn") == queue_arn for t in targets):
            why = "it does not target this queue"
        if why is None:
            return (
                "OK",
                f"{queue}: readable; rule {name} sends it the job state changes of {job_queue_arn}; "
                f"{waiting} message(s) waiting",
            )
        problems.append(f"rule {name}: {why}")
    return (
        "WARN",
        f"{queue}: readable, but no rule sends it the job state changes of {job_queue_arn} "
        f"({'; '.join(problems)}); the executor would poll only",
    )
