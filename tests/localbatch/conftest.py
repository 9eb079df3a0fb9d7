"""Fixtures of the localbatch suite live in lb_support (imported by the tests for its helpers too)."""

from lb_support import batch, clean_faults, env, eventbridge, logs, server, sqs

__all__ = ["batch", "clean_faults", "env", "eventbridge", "logs", "server", "sqs"]
