"""Errors of the local infrastructure layer.

One exception type, so callers (the CLI, the test fixtures) can turn any failure to start a
broker or a Redis server into a clear message carrying the process's own log tail, instead
of a bare timeout.
"""

from __future__ import annotations


class InfraError(RuntimeError):
    """A local Kafka broker or Redis server could not be fetched, started or reached."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        if log_tail:
            message = f"{message}\n--- last log lines ---\n{log_tail.rstrip()}"
        super().__init__(message)
