"""Errors of the notifier (see the tree in ``bando.exceptions``).

A transient sink failure is retried; a permanent one is not (retrying a 400 only repeats it).
Either way, when a sink gives up, the alert is written to the dead-letter record, never lost.
"""

from bando.exceptions import BandoError


class AlertError(BandoError):
    """Root of the notifier's errors."""


class InvalidBandChange(AlertError, ValueError):
    """A ``band-changes`` message that cannot be read as a band change or an at-risk warning."""


class SinkError(AlertError):
    """A delivery that failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True, attempts: int = 1) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.attempts = attempts


class DeadLetterError(AlertError):
    """The dead-letter record itself could not be written: the notifier must not commit."""
