"""Errors of the audit tools (replay, verify, explain, archive)."""

from bando.exceptions import BandoError


class AuditError(BandoError):
    """An audit could not be carried out (history unreadable, topic missing, bad arguments).

    A *failed verification* is not an error: it is a result, reported and turned into a
    non-zero exit status by the CLI.
    """
