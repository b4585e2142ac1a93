"""Errors of the live pipeline (see the tree in ``bando.exceptions``)."""

from bando.exceptions import BandoError


class StreamsError(BandoError):
    pass
