"""Early warning: would the open dossiers due soon, if they go late, take the unit down a band?

A band drop is often foreseeable: a unit whose on-time rate sits just above a threshold, with a
batch of open dossiers due tomorrow, drops when they pass their due time unfinished. Warning
*before* that, with the dossier ids, gives the unit time to finish them.

Pure and deterministic: a function of the unit's indicator counts, its open dossiers and the
event time ``as_of`` (never the wall clock), computed with the scorer's own points layer
(``scoring.points.rate``) so the projected total is exactly what the scorer would publish.

What going late changes (SPEC 3): a dossier that is open and not yet late counts in the
numerator of ``on_time``, and in that of ``dossier_satisfaction`` unless rated dissatisfied.
Once late it leaves both numerators; denominators do not move.

The scorer calls ``assess_state`` (or ``assess`` with counts it already has) after a re-score
and publishes ``to_message(...)`` on the at-risk topic when the answer changes; the notifier
turns it into an alert (``alerts.policy``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alerts.exceptions import AlertError
from scoring.facts import UnitState
from scoring.indicators import count, dossier_due, dossiers_in, latest_rating
from scoring.model import BAND_ORDER, Model, load_model
from scoring.points import Rated, rate
from scoring.timeutil import DEFAULT_TZ, Window, format_ts

ON_TIME = "on_time"
SATISFACTION = "dossier_satisfaction"


class AtRiskInputError(AlertError, ValueError):
    """Counts and open dossiers that contradict each other (a wiring bug, not bad data)."""


@dataclass(frozen=True, slots=True)
class OpenDossier:
    """An open dossier that is not late yet.

    ``satisfaction_counted``: it is in ``dossier_satisfaction``'s numerator now, i.e. its
    latest rating is not ``dissatisfied``; going late then costs that indicator a point too.
    """

    dossier_id: str
    due_us: int
    satisfaction_counted: bool = True


@dataclass(frozen=True, slots=True)
class AtRiskResult:
    at_risk: bool
    band: str | None
    total: float | None
    projected_band: str | None
    projected_total: float | None
    dossier_ids: tuple[str, ...]  # open dossiers due within the horizon, earliest due first
    late_tolerance: int  # how many of them may go late (costliest first) with no band drop
    as_of_us: int
    horizon_seconds: float
    top_losses: tuple[tuple[str, float], ...]  # (indicator, points lost) if all of them go late


def _counts(raw: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """num/den per indicator, from ``(num, den)`` pairs or unit-scores ``{"num", "den"}``."""
    out: dict[str, tuple[int, int]] = {}
    for ind, value in raw.items():
        if isinstance(value, Mapping):
            num, den = value.get("num"), value.get("den")
        else:
            num, den = value
        if not isinstance(num, int) or not isinstance(den, int) or not 0 <= num <= den:
            raise AtRiskInputError(f"{ind}: num/den must be integers 0 <= num <= den")
        out[ind] = (num, den)
    return out


def _model(model: Model | str | Any) -> Model:
    if isinstance(model, str):
        return load_model(model)
    return model  # a scoring.model.Model, or anything shaped like one


def _band_i(band: str | None) -> int:
    return -1 if band is None else BAND_ORDER.index(band)


def _late(
    counts: dict[str, tuple[int, int]], dossiers: list[OpenDossier]
) -> dict[str, tuple[int, int]]:
    on_num, on_den = counts.get(ON_TIME, (0, 0))
    sat_num, sat_den = counts.get(SATISFACTION, (0, 0))
    sat_lost = sum(d.satisfaction_counted for d in dossiers)
    if on_num < len(dossiers) or (SATISFACTION in counts and sat_num < sat_lost):
        raise AtRiskInputError(
            f"{len(dossiers)} open dossiers but on_time num is {on_num} and "
            f"{sat_lost} counted satisfied but dossier_satisfaction num is {sat_num}"
        )
    out = dict(counts)
    out[ON_TIME] = (on_num - len(dossiers), on_den)
    if SATISFACTION in counts:
        out[SATISFACTION] = (sat_num - sat_lost, sat_den)
    return out


def _scored(counts: Mapping[str, tuple[int, int]]) -> bool:
    return any(den > 0 for _, den in counts.values())


def assess(
    model: Model | str,
    counts: Mapping[str, Any],
    open_dossiers: Iterable[OpenDossier],
    as_of_us: int,
    horizon_seconds: float,
) -> AtRiskResult:
    """At risk = the band of the unit if *every* open dossier due in ``[as_of, as_of +
    horizon)`` goes late is lower than its band now. Also says how many of them may go late,
    costliest first, before the band drops (``late_tolerance``)."""
    m = _model(model)
    now_counts = _counts(counts)
    horizon_us = int(horizon_seconds * 1_000_000)
    due = sorted(
        (d for d in open_dossiers if as_of_us <= d.due_us < as_of_us + horizon_us),
        key=lambda d: (d.due_us, d.dossier_id),
    )
    scored = _scored(now_counts)
    now = rate(m, now_counts, scored=scored)
    ids = tuple(d.dossier_id for d in due)
    if now.total is None or not due:
        return AtRiskResult(
            False,
            now.band,
            now.total,
            now.band,
            now.total,
            ids,
            len(due),
            as_of_us,
            horizon_seconds,
            (),
        )
    worst = rate(m, _late(now_counts, due), scored=scored)
    at_risk = _band_i(worst.band) < _band_i(now.band)
    tolerance = _tolerance(m, now_counts, due, now.band, scored) if at_risk else len(due)
    return AtRiskResult(
        at_risk,
        now.band,
        now.total,
        worst.band,
        worst.total,
        ids,
        tolerance,
        as_of_us,
        horizon_seconds,
        _top_losses(worst),
    )


def _tolerance(
    m: Model,
    counts: dict[str, tuple[int, int]],
    due: list[OpenDossier],
    band: str | None,
    scored: bool,
) -> int:
    """Largest k such that the k costliest dossiers going late keep the band (binary search:
    points never rise as more dossiers go late)."""
    costliest = sorted(due, key=lambda d: (not d.satisfaction_counted, d.due_us, d.dossier_id))
    keeps = _band_i(band)
    lo, hi = 0, len(costliest)  # lo keeps the band; hi (all late) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _band_i(rate(m, _late(counts, costliest[:mid]), scored=scored).band) >= keeps:
            lo = mid
        else:
            hi = mid
    return lo


def _top_losses(rated: Rated) -> tuple[tuple[str, float], ...]:
    ranked = sorted(rated.lost.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple((ind, round(float(lost), 4)) for ind, lost in ranked if lost > 0)


def open_dossiers(state: UnitState, window: Window, t: int) -> list[OpenDossier]:
    """The dossiers of D (SPEC 3) at T that are open and not late yet, from scorer state."""
    out = []
    for dossier_id, d in dossiers_in(state, window, t):
        due, supplements = dossier_due(d, t)
        if supplements >= 2 or (d.completed is not None and d.completed[0] <= t) or t > due:
            continue
        counted = latest_rating(d.ratings, t) != "dissatisfied"
        out.append(OpenDossier(dossier_id, due, counted))
    return out


class OpenDossierIndex:
    """``open_dossiers`` for one unit, called again and again as event time moves on: it
    remembers which dossiers can never be open-and-not-late in the month again, so each call
    looks only at the others.

    Why: the scorer assesses every unit every few seconds, and scanning all of a unit's
    dossiers each time cost a third of a worker's time at 2,000 events/s (and grows with
    history). Facts only change through events, and every changed dossier must be given to
    :meth:`touch`; while a dossier's facts stand still, these stay true as T grows:
    completed or withdrawn at or before T, two supplements by T, received before the month,
    never received, and overdue with no supplement still to come into force. If T ever goes
    back (or the window starts earlier), the index starts over.
    """

    __slots__ = ("_live", "_t", "_lo")

    def __init__(self) -> None:
        self._live: set[str] | None = None  # None: every dossier of the unit is a candidate
        self._t = self._lo = -(2**63)

    def touch(self, dossier_id: str) -> None:
        if self._live is not None:
            self._live.add(dossier_id)

    def open_dossiers(self, state: UnitState, window: Window, t: int) -> list[OpenDossier]:
        """The dossiers of ``open_dossiers(state, window, t)`` (not in the same order)."""
        lo, hi = window.start_us, window.end_us
        if self._live is None or t < self._t or lo < self._lo:
            candidates: Iterable[str] = list(state.dossiers)
        else:
            candidates = self._live
        live: set[str] = set()
        out = []
        dossiers = state.dossiers
        for dossier_id in candidates:
            d = dossiers.get(dossier_id)
            if d is None:
                continue
            received = d.received_ts
            if received is None or received < lo:
                continue  # for good: the month only moves forward
            if (d.withdrawn is not None and d.withdrawn <= t) or (
                    d.completed_ts is not None and d.completed_ts <= t):
                continue
            due, supplements = dossier_due(d, t)
            if supplements >= 2:
                continue
            if t > due and not any(ts > t for ts, _ in (d.supplements or {}).values()):
                continue  # overdue, and no supplement to come can move its due time
            live.add(dossier_id)
            if received > t or received >= hi or t > due:
                continue  # not in D yet, or overdue for now
            counted = latest_rating(d.ratings, t) != "dissatisfied"
            out.append(OpenDossier(dossier_id, due, counted))
        self._live, self._t, self._lo = live, t, lo
        return out


def assess_state(
    model: Model | str, state: UnitState, window: Window, t: int, horizon_seconds: float
) -> AtRiskResult:
    """``assess`` straight from the scorer's state of one unit (one call for the scorer)."""
    counts = count(state, window, t).values
    return assess(model, counts, open_dossiers(state, window, t), t, horizon_seconds)


def to_message(
    result: AtRiskResult,
    unit_id: str,
    window: str,
    *,
    name: str | None = None,
    tz: str = DEFAULT_TZ,
    top_n: int = 5,
) -> dict[str, Any]:
    """The at-risk topic message (key ``unit_id``) that ``alerts.policy.parse_at_risk`` reads."""
    msg: dict[str, Any] = {
        "unit_id": unit_id,
        "window": window,
        "at_risk": result.at_risk,
        "band": result.band,
        "total": result.total,
        "projected_band": result.projected_band,
        "projected_total": result.projected_total,
        "as_of": format_ts(result.as_of_us, tz),
        "horizon_seconds": result.horizon_seconds,
        "dossier_ids": list(result.dossier_ids),
        "late_tolerance": result.late_tolerance,
        "top_losses": [
            {"indicator": ind, "points_lost": lost} for ind, lost in result.top_losses[:top_n]
        ],
    }
    if name:
        msg["name"] = name
    return msg
