"""Errors of the wall display (board writer, gateway)."""

from bando.exceptions import BandoError


class DisplayError(BandoError):
    """Root of the display package's own errors."""


class BadMessage(DisplayError):
    """A score, rank-change or band-change message the board cannot use (it is skipped)."""
