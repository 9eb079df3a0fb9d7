"""The printed table's status-call check: a budget of 5 calls/s counted in a window of W seconds."""

from __future__ import annotations

from typing import Any

from bench.table import render


def _results(calls: int, window_s: float) -> dict[str, Any]:
    figures = {"describe_calls_per_s": calls / window_s, "window_s": window_s}
    return {"ours": {"steady": figures, "scale": figures}, "theirs": {}}


def _status_rows(table: str) -> list[str]:
    # steady's and scale's rows (the events scenarios' have budgets of their own).
    return [line for line in table.splitlines() if line.startswith(("| steady: status", "| scale: status"))]


def test_a_call_at_each_end_of_the_window_fits_the_budget() -> None:
    # One call every 0.2 s from the window's first instant to its last: 301 calls in 60.157 s (5.004/s).
    rows = _status_rows(render(_results(301, 60.157)))
    assert len(rows) == 2
    assert all("<= 5 (budget) ok" in row and "5.00" in row for row in rows)


def test_one_call_more_than_the_budget_allows_is_missed() -> None:
    rows = _status_rows(render(_results(302, 60.157)))
    assert all("MISSED" in row for row in rows)
    # A short window: 51 calls in 10 s fit, 52 do not.
    assert all("ok" in row for row in _status_rows(render(_results(51, 10.0))))
    assert all("MISSED" in row for row in _status_rows(render(_results(52, 10.0))))


def test_a_quick_run_shows_the_targets_without_judging_them() -> None:
    results = _results(52, 10.0)
    results["env"] = {"size": "quick"}
    table = render(results)
    assert "MISSED" not in table and " ok" not in table
    assert all(row.rstrip(" |").endswith("<= 5 (budget)") for row in _status_rows(table))
    assert "targets are judged on the full sizes only" in table


def _events_results(**scale_events: Any) -> dict[str, Any]:
    figures = {"describe_calls_per_s": 0.3, "window_s": 60.0, "detect_p95_s": 0.8, "ends_unreported": 0}
    return {"ours": {"scale-events": {**figures, **scale_events}}, "theirs": {}}


def _row(table: str, label: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(f"| {label} "))


def test_events_rows_are_ours_only_with_a_footnote() -> None:
    table = render(_events_results())
    row = _row(table, "scale-events: end -> reported p95 s")
    assert row.split("|")[3].strip() == "-*"
    assert "theirs has no status events mode" in table
    assert "<= 1, all reported ok" in row


def test_events_status_calls_are_judged_against_half_a_call_a_second() -> None:
    # 0.5/s over 60 s: 30 calls, plus one at each end of the window's fencepost.
    assert "ok" in _row(render(_events_results(describe_calls_per_s=31 / 60)), "scale-events: status calls/s")
    assert "MISSED" in _row(
        render(_events_results(describe_calls_per_s=32 / 60)), "scale-events: status calls/s"
    )


def test_an_end_never_reported_misses_the_p95_target() -> None:
    row = _row(render(_events_results(ends_unreported=1)), "scale-events: end -> reported p95 s")
    assert "MISSED" in row
