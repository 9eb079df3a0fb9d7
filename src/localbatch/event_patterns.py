"""EventBridge event patterns, the part a rule for Batch's job events needs: exact values.

A pattern is a JSON object whose leaves are lists of values; an event matches when, for every leaf,
the event has the field and its value (or one of its values, for a list) is in the list. Nested
objects match nested fields (``{"detail": {"jobQueue": [...]}}``). EventBridge's content filters
(``prefix``, ``anything-but``, ``numeric``, ``exists``...) are refused, so a rule never silently
matches more or less than on AWS.
"""

from __future__ import annotations

import json
from typing import Any

from localbatch.errors import EventsInvalidEventPattern

Scalar = str | int | float | bool | None


def _invalid(reason: str) -> EventsInvalidEventPattern:
    return EventsInvalidEventPattern(f"Event pattern is not valid. Reason: {reason}")


def _check(pattern: dict[str, Any], path: str) -> None:
    if not pattern:
        raise _invalid(f"Empty objects are not allowed at {path or 'the top level'}")
    for key, value in pattern.items():
        where = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            _check(value, where)
        elif isinstance(value, list):
            if not value:
                raise _invalid(f"Empty arrays are not allowed at {where}")
            for item in value:
                if isinstance(item, (dict, list)):
                    raise _invalid(
                        f"localbatch matches exact values only; {where} holds {json.dumps(item)} "
                        "(content filters such as prefix or anything-but are not emulated)"
                    )
        else:
            raise _invalid(f"Match value must be String, number, true, false, or null at {where}")


def parse(text: str) -> dict[str, Any]:
    """The pattern ``text`` holds, checked; InvalidEventPatternException otherwise."""
    try:
        pattern = json.loads(text)
    except ValueError as exc:
        raise _invalid(f"Filter is not valid JSON: {exc}") from exc
    if not isinstance(pattern, dict):
        raise _invalid("Filter is not an object")
    _check(pattern, "")
    return pattern


def _same(value: Any, wanted: Scalar) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool) or value is None or wanted is None:
        return value is wanted
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)):
        return value == wanted
    return type(value) is type(wanted) and value == wanted


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    for key, wanted in pattern.items():
        if key not in event:
            return False
        value = event[key]
        if isinstance(wanted, dict):
            if not isinstance(value, dict) or not matches(wanted, value):
                return False
            continue
        values = value if isinstance(value, list) else [value]
        if not any(_same(item, option) for item in values for option in wanted):
            return False
    return True
