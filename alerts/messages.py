"""The messages the notifier reads: ``band-changes`` and ``at-risk``, validated into values.

Strict on purpose: a message that does not say clearly which unit moved from which band to
which, and when, cannot make a trustworthy alert; the notifier dead-letters it instead. The
idempotency key of each message lives here too, because it is a property of the message: the
same band change, re-published or re-read, always has the same key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from alerts.exceptions import InvalidBandChange
from scoring.model import BAND_ORDER
from scoring.timeutil import parse_ts


def band_index(band: str) -> int:
    """0 for weak .. 4 for excellent (the value of the ``bando_unit_band`` gauge too)."""
    try:
        return BAND_ORDER.index(band)
    except ValueError:
        raise InvalidBandChange(f"unknown band {band!r}; known: {', '.join(BAND_ORDER)}") from None


def band_of(total: Fraction, bands: Sequence[tuple[str, Fraction]]) -> str:
    for band, minimum in bands:
        if total >= minimum:
            return band
    return bands[-1][0]


def idempotency_key(*parts: object) -> str:
    """A stable hex key of the parts (unit, window, as_of, old band, new band, ...)."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Loss:
    indicator: str
    points_lost: float


@dataclass(frozen=True, slots=True)
class BandChange:
    """One ``band-changes`` message, validated."""

    unit_id: str
    window: str
    old_band: str
    new_band: str
    direction: str  # "down" | "up"
    total: float | None
    as_of: str
    as_of_us: int
    top_losses: tuple[Loss, ...]
    name: str | None = None

    @property
    def key(self) -> str:
        return idempotency_key(
            "band", self.unit_id, self.window, self.as_of_us, self.old_band, self.new_band
        )


@dataclass(frozen=True, slots=True)
class AtRiskWarning:
    """One ``at-risk`` message (see ``alerts.at_risk.to_message``), validated."""

    unit_id: str
    window: str
    at_risk: bool
    band: str
    total: float | None
    projected_band: str | None
    projected_total: float | None
    as_of: str
    as_of_us: int
    horizon_seconds: float
    dossier_ids: tuple[str, ...]
    late_tolerance: int
    top_losses: tuple[Loss, ...]
    name: str | None = None

    @property
    def key(self) -> str:
        return idempotency_key(
            "at_risk", self.unit_id, self.window, self.as_of_us, self.band, self.projected_band
        )


def _text(obj: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = obj.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidBandChange(f"field {name!r} must be a non-empty string, got {value!r}")
    return value


def _number(obj: Mapping[str, Any], name: str) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidBandChange(f"field {name!r} must be a number, got {value!r}")
    return float(value)


def _losses(obj: Mapping[str, Any]) -> tuple[Loss, ...]:
    raw = obj.get("top_losses") or []
    if not isinstance(raw, list):
        raise InvalidBandChange("top_losses must be a list")
    out = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise InvalidBandChange(f"top_losses item is not an object: {item!r}")
        indicator = _text(item, "indicator")
        lost = _number(item, "points_lost")
        out.append(Loss(str(indicator), 0.0 if lost is None else lost))
    # largest loss first; ties by name so the order never depends on the producer
    out.sort(key=lambda loss: (-loss.points_lost, loss.indicator))
    return tuple(out)


def _as_of(obj: Mapping[str, Any]) -> tuple[str, int]:
    as_of = _text(obj, "as_of")
    us = parse_ts(as_of)
    if us is None:
        raise InvalidBandChange(f"as_of is not an RFC 3339 timestamp: {as_of!r}")
    return str(as_of), us


def parse_band_change(obj: object) -> BandChange:
    if not isinstance(obj, Mapping):
        raise InvalidBandChange("a band change must be a JSON object")
    old_band, new_band = _text(obj, "old_band"), _text(obj, "new_band")
    old_i, new_i = band_index(str(old_band)), band_index(str(new_band))
    if old_i == new_i:
        raise InvalidBandChange(f"old_band and new_band are both {old_band!r}")
    direction = "down" if new_i < old_i else "up"
    if obj.get("direction") not in (None, direction):
        raise InvalidBandChange(
            f"direction {obj.get('direction')!r} contradicts {old_band} -> {new_band}"
        )
    as_of, as_of_us = _as_of(obj)
    return BandChange(
        unit_id=str(_text(obj, "unit_id")),
        window=str(_text(obj, "window")),
        old_band=str(old_band),
        new_band=str(new_band),
        direction=direction,
        total=_number(obj, "total"),
        as_of=as_of,
        as_of_us=as_of_us,
        top_losses=_losses(obj),
        name=_text(obj, "name", optional=True),
    )


def parse_at_risk(obj: object) -> AtRiskWarning:
    if not isinstance(obj, Mapping):
        raise InvalidBandChange("an at-risk warning must be a JSON object")
    at_risk = obj.get("at_risk")
    if not isinstance(at_risk, bool):
        raise InvalidBandChange("at_risk must be true or false")
    band = str(_text(obj, "band"))
    band_index(band)
    projected = _text(obj, "projected_band", optional=True)
    if projected is not None:
        band_index(projected)
    ids = obj.get("dossier_ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidBandChange("dossier_ids must be a list of strings")
    horizon = _number(obj, "horizon_seconds") or 0.0
    tolerance = obj.get("late_tolerance", 0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int):
        raise InvalidBandChange("late_tolerance must be an integer")
    as_of, as_of_us = _as_of(obj)
    return AtRiskWarning(
        unit_id=str(_text(obj, "unit_id")),
        window=str(_text(obj, "window")),
        at_risk=at_risk,
        band=band,
        total=_number(obj, "total"),
        projected_band=projected,
        projected_total=_number(obj, "projected_total"),
        as_of=as_of,
        as_of_us=as_of_us,
        horizon_seconds=horizon,
        dossier_ids=tuple(ids),
        late_tolerance=tolerance,
        top_losses=_losses(obj),
        name=_text(obj, "name", optional=True),
    )
