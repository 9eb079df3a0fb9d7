"""The table ``python -m chaos`` prints: one row per figure, one column per seed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chaos.count import SIGTERM_EXIT_LIMIT_S, STATUS_EVENTS_MET, ZERO_TARGETS

LABELS = {
    "lost": "lost task instances",
    "run_twice": "tries run twice",
    "ran_concurrently": "tries run concurrently",
    "orphan_jobs": "orphan jobs",
    "scheduler_crashes": "scheduler crashes",
    "executor_errors": "executor errors (tracebacks)",
    "reset_executions": "executions of a reset try",
    "failed_by_executor": "defer/reschedule tries failed by executor",
}


def render(seeds: Mapping[str, Mapping[str, Any]]) -> str:
    """``seeds``: seed -> figures (``chaos.count.figures``), or ``{"error": ...}`` for a seed that broke."""
    names = list(seeds)
    rows: list[list[str]] = [["figure", "target", *(f"seed {n}" for n in names)]]

    def row(label: str, target: str, cell: Any) -> None:
        rows.append([label, target, *(cell(seeds[n]) for n in names)])

    def zero(name: str) -> Any:
        return lambda f: _mark(f.get(name), f.get(name) == 0)

    for name in ZERO_TARGETS:
        row(LABELS[name], "0", zero(name))

    def sigterm(f: Mapping[str, Any]) -> str:
        value = f.get("sigterm_exit_s")
        return _mark(value, value is not None and value <= SIGTERM_EXIT_LIMIT_S)

    row("SIGTERM to scheduler exit (s)", f"<= {SIGTERM_EXIT_LIMIT_S:.0f}", sigterm)
    row(
        "array jobs / children",
        ">= 1",
        lambda f: _mark(f"{f.get('arrays')} / {f.get('array_children')}", bool(f.get("arrays"))),
    )
    row("array children mismatched", "0", zero("array_mismatches"))
    row(
        "fault steps not performed",
        "0",
        lambda f: _mark(len(f.get("not_performed", [])), not f.get("not_performed")),
    )

    def events_met(f: Mapping[str, Any]) -> str:
        events = f.get("status_events") or {}
        shown = " / ".join(str(events.get(name)) for name in (*STATUS_EVENTS_MET, "received"))
        return _mark(shown, all(events.get(name) for name in (*STATUS_EVENTS_MET, "received")))

    row("status events: delivered/dropped/dup/delayed/reordered/receives", "each >= 1", events_met)
    row("failed, retries exhausted", "-", lambda f: str(f.get("failed_retries_exhausted", "-")))
    row("  reset between phases", "-", lambda f: str(f.get("reset_between_phases", "-")))
    row("  failed by executor, explained", "-", lambda f: str(f.get("failed_by_executor_explained", "-")))
    row("exit signals delivered again", "-", lambda f: str(f.get("exit_signals_redelivered", "-")))
    row("successes not reported (moved on)", "-", lambda f: str(f.get("success_not_reported", "-")))
    row("unrecorded jobs, accounted for", "-", lambda f: str(f.get("unrecorded_accounted", "-")))
    row("run state / seconds", "-", lambda f: f"{f.get('run_state')} / {f.get('run_s')}")
    row("task instances / executions", "-", lambda f: f"{f.get('task_instances')} / {f.get('executions')}")
    outcomes = sorted({o for f in seeds.values() for o in f.get("jobs", {})})
    for outcome in outcomes:
        row(f"jobs {outcome}", "-", lambda f, o=outcome: str(f.get("jobs", {}).get(o, 0)))
    for name, text in (("throttled", "429"), ("server_errors", "5xx"), ("lost_responses", "lost SubmitJob")):
        row(
            f"{text} answers injected",
            "-",
            lambda f, n=name: str(f.get("api_calls", {}).get("faulted", {}).get(n, "-")),
        )
    row("Batch API calls per task", "-", lambda f: str(f.get("api_calls", {}).get("per_task")))
    operations = sorted({op for f in seeds.values() for op in f.get("api_calls", {}).get("by_operation", {})})
    for operation in operations:
        row(
            f"  {operation}",
            "-",
            lambda f, op=operation: str(f.get("api_calls", {}).get("by_operation", {}).get(op, 0)),
        )
    sqs = sorted({op for f in seeds.values() for op in f.get("api_calls", {}).get("sqs_by_operation", {})})
    if sqs:
        row(
            "SQS calls (status events)",
            "-",
            lambda f: str(sum(f.get("api_calls", {}).get("sqs_by_operation", {}).values())),
        )
    for operation in sqs:
        row(
            f"  {operation}",
            "-",
            lambda f, op=operation: str(f.get("api_calls", {}).get("sqs_by_operation", {}).get(op, 0)),
        )
    errors = [(n, f["error"]) for n, f in seeds.items() if f.get("error")]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines += [f"seed {n}: ERROR {error}" for n, error in errors]
    return "\n".join(lines)


def _mark(value: Any, ok: bool) -> str:
    """The value, flagged when it misses its target."""
    return f"{value}" if ok else f"{value} MISS"
