"""The scorer's early warnings (``alerts.at_risk``): which units to warn, and when again.

Kept beside ``ScorerCore`` rather than in it: a warning is assessed on the running counts of
the unit's last flush (``scoring.running.UnitCounts``) and on its open dossiers, and is sent
only when the unit's status or the dossiers behind it changed since the last assessment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from scoring.catalog import Catalog
from scoring.model import Model
from scoring.running import UnitCounts
from scoring.timeutil import window_of


class RiskWatch:
    def __init__(self, catalog: Catalog, model: Model):
        self.catalog = catalog
        self.model = model
        self.last: dict[tuple[str, str], tuple[bool, tuple[str, ...]]] = {}
        # unit -> alerts.at_risk.OpenDossierIndex; the scorer touches it as dossiers change
        self.index: dict[str, Any] = {}

    def clear(self) -> None:
        self.last.clear()
        self.index.clear()  # in place: the scorer holds this dict

    def assess(self, running: Mapping[str, UnitCounts], skip: Callable[[str], bool],
               horizon_seconds: float) -> list[dict[str, Any]]:
        """Warnings for the units of ``running`` but those ``skip`` names (events folded since
        their last flush, or input still being read again): the counts of the last flush and
        the open dossiers of the live state would disagree (the worker once crashed on it).
        A unit's first assessment is sent only if it is at risk."""
        from alerts.at_risk import OpenDossierIndex, assess, to_message

        out: list[dict[str, Any]] = []
        tz = self.model.timezone
        for unit_id, counts_now in running.items():
            unit = self.catalog.by_id.get(unit_id)
            if unit is None or skip(unit_id):
                continue
            t = counts_now.t
            window = window_of("month", t, tz)
            counts = counts_now.counts(window)
            if counts.items == 0:
                continue
            index = self.index.get(unit_id)
            if index is None:
                index = self.index[unit_id] = OpenDossierIndex()
            result = assess(self.model, counts.values,
                            index.open_dossiers(counts_now.state, window, t), t, horizon_seconds)
            key = (unit_id, window.name)
            status = (result.at_risk, tuple(result.dossier_ids))
            previous = self.last.get(key)
            self.last[key] = status
            if previous == status or (previous is None and not result.at_risk):
                continue
            out.append(to_message(result, unit_id, window.name, name=unit.name, tz=tz))
        return out
