"""The pure scoring core (SPEC section 3): no faust, Kafka or Redis import, no wall clock.

Public surface::

    from scoring import Engine, load_model, load_catalog, parse_ts, resolve_window
"""

from scoring.catalog import Catalog, Unit, load_catalog
from scoring.engine import Engine, UnitScore, rank_scores, score_state
from scoring.events import Event
from scoring.facts import UnitState, apply_event
from scoring.model import Model, load_model
from scoring.timeutil import Window, format_ts, parse_ts, resolve_window, window_of

__all__ = [
    "Catalog", "Engine", "Event", "Model", "Unit", "UnitScore", "UnitState", "Window",
    "apply_event", "format_ts", "load_catalog", "load_model", "parse_ts", "rank_scores",
    "resolve_window", "score_state", "window_of",
]
