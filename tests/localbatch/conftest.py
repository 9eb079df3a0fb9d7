"""Fixtures of the localbatch suite live in lb_support (imported by the tests for its helpers too)."""

from lb_support import batch, clean_faults, env, logs, server

__all__ = ["batch", "clean_faults", "env", "logs", "server"]
