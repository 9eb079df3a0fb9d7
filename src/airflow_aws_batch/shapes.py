"""Check a request dict against botocore's model of the Batch API, reporting every problem by key path.

botocore's own ``ParamValidator`` stops short of what we need at start-up: it ignores enums and
maximum lengths and reports in its own words. This walks the same service model and returns
structured problems, so callers can phrase them for ``airflow.cfg`` or for ``executor_config``.

Not supported: ``blob``, ``timestamp`` and ``document`` members are accepted as any value
(SubmitJob has none today).
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, Shape, StringShape, StructureShape


@dataclass(frozen=True)
class ShapeProblem:
    """One mismatch: ``path`` is dotted (``containerOverrides.environment[0].name``), empty at the root."""

    path: str
    expected: str
    found: str


@functools.lru_cache(maxsize=8)
def operation_model(operation: str, service: str = "batch") -> OperationModel:
    # Loading the service model parses a large JSON file; do it once per process.
    model = botocore.session.get_session().get_service_model(service)
    return model.operation_model(operation)


def input_members(operation: str, service: str = "batch") -> tuple[str, ...]:
    shape = operation_model(operation, service).input_shape
    assert shape is not None
    return tuple(shape.members)


def describe_found(value: Any) -> str:
    """Short, type-revealing rendering of a value for error messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def validate(
    value: Any, operation: str = "SubmitJob", *, partial: bool = False, service: str = "batch"
) -> list[ShapeProblem]:
    """Return every problem of ``value`` as input of ``operation``; an empty list means valid.

    ``partial=True`` skips the top level's required members, for fragments that are merged into a
    complete request later (``submit_job_kwargs``, ``executor_config``).
    """
    shape = operation_model(operation, service).input_shape
    assert shape is not None
    problems: list[ShapeProblem] = []
    _check(value, shape, "", problems, check_required=not partial)
    return problems


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check(value: Any, shape: Shape, path: str, out: list[ShapeProblem], *, check_required: bool) -> None:
    kind = _type_name(shape)
    if isinstance(shape, StructureShape):
        if not isinstance(value, Mapping):
            out.append(ShapeProblem(path, f"an object ({shape.name})", describe_found(value)))
            return
        members, required_members = _members(shape)
        for key, member_value in value.items():
            if key not in members:
                out.append(
                    ShapeProblem(_join(path, str(key)), _known_keys(str(key), shape), "an unknown key")
                )
                continue
            _check(member_value, members[key], _join(path, key), out, check_required=True)
        if check_required:
            for required in required_members:
                if required not in value:
                    out.append(ShapeProblem(_join(path, required), "a value (required)", "nothing"))
    elif isinstance(shape, ListShape):
        if not isinstance(value, list):
            out.append(ShapeProblem(path, "a list", describe_found(value)))
            return
        _check_size(len(value), shape, path, out, "items")
        for index, item in enumerate(value):
            _check(item, shape.member, f"{path}[{index}]", out, check_required=True)
    elif isinstance(shape, MapShape):
        if not isinstance(value, Mapping):
            out.append(ShapeProblem(path, "an object (string keys)", describe_found(value)))
            return
        _check_size(len(value), shape, path, out, "entries")
        for key, item in value.items():
            key_path = _join(path, str(key))
            if not isinstance(key, str):
                out.append(ShapeProblem(key_path, "a string key", describe_found(key)))
                continue
            _check(key, shape.key, key_path + " (key)", out, check_required=True)
            _check(item, shape.value, key_path, out, check_required=True)
    elif kind == "string":
        if not isinstance(value, str):
            out.append(ShapeProblem(path, "a string", describe_found(value)))
            return
        enum = _enum(shape) if isinstance(shape, StringShape) else ()
        if enum and value not in enum:
            out.append(ShapeProblem(path, "one of: " + ", ".join(enum), describe_found(value)))
        _check_size(len(value), shape, path, out, "characters")
        pattern = _metadata(shape).get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            out.append(ShapeProblem(path, f"a string matching {pattern}", describe_found(value)))
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            out.append(ShapeProblem(path, "an integer", describe_found(value)))
            return
        _check_range(value, shape, path, out)
    elif kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(ShapeProblem(path, "a number", describe_found(value)))
            return
        _check_range(value, shape, path, out)
    elif kind == "boolean" and not isinstance(value, bool):
        out.append(ShapeProblem(path, "true or false", describe_found(value)))


def _known_keys(key: str, shape: StructureShape) -> str:
    by_lower = {name.lower(): name for name in shape.members}
    guess = by_lower.get(key.lower()) or next(
        iter(difflib.get_close_matches(key, list(shape.members), 1)), None
    )
    if guess:
        return f"a key of {shape.name} (did you mean {guess!r}?)"
    return f"a key of {shape.name}: " + ", ".join(sorted(shape.members))


# botocore builds ``Shape.metadata``, ``members`` and ``enum`` afresh on every access, and a validation
# of a whole SubmitJob request reads them dozens of times, on the scheduler thread. The shapes
# themselves are cached (``operation_model``), so these are read once per shape.
@functools.cache
def _metadata(shape: Shape) -> dict[str, Any]:
    return dict(shape.metadata)


@functools.cache
def _type_name(shape: Shape) -> str:
    return str(shape.type_name)


@functools.cache
def _members(shape: StructureShape) -> tuple[dict[str, Shape], tuple[str, ...]]:
    return dict(shape.members), tuple(shape.required_members)


@functools.cache
def _enum(shape: StringShape) -> tuple[str, ...]:
    return tuple(shape.enum)


def _check_size(size: int, shape: Shape, path: str, out: list[ShapeProblem], unit: str) -> None:
    meta = _metadata(shape)
    low = meta.get("min")
    high = meta.get("max")
    if low is not None and size < low:
        out.append(ShapeProblem(path, f"at least {low} {unit}", f"{size} {unit}"))
    if high is not None and size > high:
        out.append(ShapeProblem(path, f"at most {high} {unit}", f"{size} {unit}"))


def _check_range(number: float, shape: Shape, path: str, out: list[ShapeProblem]) -> None:
    meta = _metadata(shape)
    low = meta.get("min")
    high = meta.get("max")
    if low is not None and number < low:
        out.append(ShapeProblem(path, f"a number >= {low}", describe_found(number)))
    if high is not None and number > high:
        out.append(ShapeProblem(path, f"a number <= {high}", describe_found(number)))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive update: dicts merge key by key; lists and scalars in ``override`` replace.

    Neither input is modified; the result shares no mutable object with them.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
