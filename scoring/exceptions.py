"""Errors of the pure scoring core (see the tree in ``bando.exceptions``)."""

from bando.exceptions import BandoError


class ScoringError(BandoError):
    pass


class ModelError(ScoringError):
    pass


class CatalogError(ScoringError):
    pass


class WindowError(ScoringError):
    pass
