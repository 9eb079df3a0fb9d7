"""The printed table's status-call check: a budget of 5 calls/s counted in a window of W seconds."""

from __future__ import annotations

from typing import Any

from bench.table import render


def _results(calls: int, window_s: float) -> dict[str, Any]:
    figures = {"describe_calls_per_s": calls / window_s, "window_s": window_s}
    return {"ours": {"steady": figures, "scale": figures}, "theirs": {}}


def _status_rows(table: str) -> list[str]:
    return [line for line in table.splitlines() if "status calls/s" in line]


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
