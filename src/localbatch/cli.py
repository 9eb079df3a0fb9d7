"""Command line of localbatch (placeholder until the service lands)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("localbatch: not implemented yet")
