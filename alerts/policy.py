"""When to alert, and what an alert says: pure decisions over ``band-changes`` and ``at-risk``.

No I/O and no wall clock: every decision is a function of the sequence of messages of one
(unit, window), judged on their event time (``as_of``). So the notifier can rebuild its state
after a restart by re-reading the topic, and a replay decides exactly as the live run did.

Anti-flapping, per (unit, window):

* Hysteresis. The policy keeps an *armed* band: the band it considers the unit to be in. A
  drop alerts only when the new band is below the armed band. A rise re-arms only when the
  total clears the higher band's threshold by ``hysteresis_points``; a unit oscillating around
  80.00 (good/fair) therefore alerts once, not at every crossing.
* Cool-down. After an alert, for ``cooldown_seconds`` of event time, nothing more is sent for
  that (unit, window) except a drop *below* the last alerted band, which is news.

The idempotency key of an alert is a hash of (unit, window, as_of, old band, new band), so a
message re-published by a restarted scorer, or an alert re-sent by a restarted notifier, has
the same key and a receiver can ignore the repeat.

At-risk warnings, per (unit, window), against the previous message of the ``at-risk`` topic:

* A warning is news when there is no previous warning, the previous message cleared the risk,
  or it was for another band; or, for the same band, when a band change lies in (previous
  message's as_of, warning's as_of]: the band left and came back, which the at-risk topic need
  not show (the scorer assesses every 10 s). Otherwise the risk is ``at_risk_active``.
* Cool-down: a warning for the band of the last warning sent as news *by the at-risk topic
  alone* (first, after a clear, another band), less than ``cooldown_seconds`` after it, is
  not sent (raised, cleared, raised again: flapping).

The two topics are read in any interleaving that keeps each one's order (live: as fetched;
a rebuild: one partition after the other; each in as_of order for a unit, repeats aside), and
a ranker far behind reads a band change after a warning that is later in event time. The
alerts sent must not depend on that interleaving, and an alert cannot be taken back, so a
warning's fate is a function of the at-risk topic and of the band changes by as_of only, and
grows with the band changes known:

* A same-band warning with no band change known in its interval, at or after the latest band
  change read (so one may still arrive inside it), is *held*; a band change read later inside
  its interval sends it then (``Decision.released``), as if it had been read first. A held
  warning is sent even if the risk has since cleared, because a rebuild that read the band
  change first sent it.
* Only warnings that are news by the at-risk topic start the cool-down: whether a warning that
  is news by a band change is sent can be settled late, and had it started the cool-down,
  warnings already sent after it would have been suppressed in another interleaving.

(Ignoring band changes would be order-independent too, but loses the warning after the band
left and came back; holding a warning until the ranker catches up could wait for ever, as a
unit's band changes are rare.)

Bounded: the last 16 band changes and 16 held warnings per (unit, window); a topic more than
16 of one unit's messages ahead of the other can make the interleaving matter again.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from alerts.messages import (
    AtRiskWarning,
    BandChange,
    Loss,
    band_index,
    band_of,
    idempotency_key,
    parse_at_risk,
    parse_band_change,
)

__all__ = [
    "DEFAULT_BANDS",
    "AlertPolicy",
    "AtRiskWarning",
    "BandChange",
    "Decision",
    "Loss",
    "PolicyConfig",
    "at_risk_alert",
    "band_alert",
    "band_index",
    "band_of",
    "idempotency_key",
    "parse_at_risk",
    "parse_band_change",
]

# (band, minimum rounded total), highest first, as ``scoring.model.Model.bands``.
DEFAULT_BANDS: tuple[tuple[str, Fraction], ...] = (
    ("excellent", Fraction(90)),
    ("good", Fraction(80)),
    ("fair", Fraction(70)),
    ("average", Fraction(50)),
    ("weak", Fraction(0)),
)
_RECENT_KEYS = 16  # per (unit, window): enough to absorb a re-published burst


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    send_rises: bool = False
    cooldown_seconds: float = 3600.0
    hysteresis_points: float = 1.0
    top_n: int = 3
    bands: tuple[tuple[str, Fraction], ...] = DEFAULT_BANDS

    @classmethod
    def for_model(cls, model: Any, **kwargs: Any) -> PolicyConfig:
        """Band thresholds from a ``scoring.model.Model`` (so a city's bands are honoured)."""
        return cls(bands=tuple((b, Fraction(m)) for b, m in model.bands), **kwargs)


@dataclass(slots=True)
class _UnitState:
    # band index the unit is considered to be in, for alerting; None until its first band
    # change (an at-risk warning says nothing about it: the worker sends the warning for the
    # new band before the ranker's band change arrives, so arming from it hid the drop)
    armed: int | None
    last_sent_us: int | None = None
    last_sent_band: int | None = None
    # the previous at-risk message: its as_of and, if it was a warning, its band
    risk_prev_us: int | None = None
    risk_prev_band: int | None = None
    # as_of of the latest band changes, sorted: whether the band moved between two warnings
    # is judged on event time, so it does not depend on how the two topics were interleaved
    # when read (live fetch order vs. a rebuild's partition-by-partition replay)
    band_changes_us: list[int] = field(default_factory=list)
    # the cool-down clock: the last warning sent as news by the at-risk topic alone
    at_risk_sent_us: int | None = None
    at_risk_sent_band: int | None = None
    # (previous message's as_of, warning): same-band warnings that a band change read late,
    # inside that interval, makes news; by as_of
    held: list[tuple[int, AtRiskWarning]] = field(default_factory=list)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=_RECENT_KEYS))


@dataclass(frozen=True, slots=True)
class Decision:
    send: bool
    reason: str
    alert: dict[str, Any] | None = None
    # at-risk alerts of warnings read before this band change and made news by it (the ranker
    # was behind); sent with it, whatever ``send`` says about the band change itself
    released: tuple[dict[str, Any], ...] = ()


class AlertPolicy:
    """Per (unit, window) alerting state; ``decide`` is deterministic in the message order."""

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self._states: dict[tuple[str, str], _UnitState] = {}
        self._cooldown_us = int(self.config.cooldown_seconds * 1_000_000)
        self._hysteresis = Fraction(str(self.config.hysteresis_points))

    def __len__(self) -> int:
        return len(self._states)

    def forget(self, unit_ids: set[str]) -> None:
        """Drop the state of these units (their partition moved to another notifier)."""
        for key in [k for k in self._states if k[0] in unit_ids]:
            del self._states[key]

    def _in_cooldown(self, st: _UnitState, as_of_us: int) -> bool:
        return st.last_sent_us is not None and as_of_us - st.last_sent_us < self._cooldown_us

    def decide(self, change: BandChange | AtRiskWarning) -> Decision:
        if isinstance(change, AtRiskWarning):
            return self._decide_at_risk(change)
        return self._decide_band(change)

    def _decide_band(self, ch: BandChange) -> Decision:
        key = (ch.unit_id, ch.window)
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _UnitState(armed=band_index(ch.old_band))
        if ch.key in st.recent:
            return Decision(False, "duplicate")
        st.recent.append(ch.key)
        # the band moved: a warning after this (in event time) is news, even for the band of
        # the one before it; recorded by as_of rather than by clearing the active warning,
        # which made the outcome depend on which topic was read first
        insort(st.band_changes_us, ch.as_of_us)
        del st.band_changes_us[:-_RECENT_KEYS]
        released = self._release(st, ch.as_of_us)
        decision = self._band_decision(st, ch)
        return replace(decision, released=released) if released else decision

    def _release(self, st: _UnitState, as_of_us: int) -> tuple[dict[str, Any], ...]:
        out: list[dict[str, Any]] = []
        keep: list[tuple[int, AtRiskWarning]] = []
        for prev_us, w in st.held:
            if prev_us < as_of_us <= w.as_of_us:
                out.append(at_risk_alert(w, self.config.top_n))
            elif as_of_us <= w.as_of_us:  # a later band change may still fall in its interval
                keep.append((prev_us, w))
        st.held = keep
        return tuple(out)

    def _band_decision(self, st: _UnitState, ch: BandChange) -> Decision:
        if st.armed is None:
            st.armed = band_index(ch.old_band)
        new_i = band_index(ch.new_band)
        if ch.direction == "down":
            if new_i >= st.armed:
                return Decision(False, "hysteresis")
            deeper = st.last_sent_band is None or new_i < st.last_sent_band
            st.armed = new_i
            if self._in_cooldown(st, ch.as_of_us) and not deeper:
                return Decision(False, "cooldown")
            return self._sent(st, ch, new_i, "band_drop")
        # up: re-arm only when the total clears the band's threshold by the hysteresis margin
        if ch.total is None:
            effective = new_i
        else:
            margin_total = Fraction(str(ch.total)) - self._hysteresis
            effective = min(new_i, band_index(band_of(margin_total, self.config.bands)))
        if effective <= st.armed:
            return Decision(False, "hysteresis")
        st.armed = effective
        if not self.config.send_rises:
            return Decision(False, "rises_disabled")
        if self._in_cooldown(st, ch.as_of_us):
            return Decision(False, "cooldown")
        return self._sent(st, ch, new_i, "band_rise")

    def _sent(self, st: _UnitState, ch: BandChange, new_i: int, kind: str) -> Decision:
        st.last_sent_us = ch.as_of_us
        st.last_sent_band = new_i
        return Decision(True, kind, band_alert(ch, kind, self.config.top_n))

    def _decide_at_risk(self, w: AtRiskWarning) -> Decision:
        key = (w.unit_id, w.window)
        band_i = band_index(w.band)
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _UnitState(armed=None)
        prev_us, prev_band = st.risk_prev_us, st.risk_prev_band
        st.risk_prev_us, st.risk_prev_band = w.as_of_us, band_i if w.at_risk else None
        if not w.at_risk:
            return Decision(False, "at_risk_cleared")
        cooling = (
            st.at_risk_sent_band == band_i
            and st.at_risk_sent_us is not None
            and w.as_of_us - st.at_risk_sent_us < self._cooldown_us
        )
        if prev_us is None or prev_band != band_i:  # news by the at-risk topic alone
            if cooling:  # cleared and raised again for the same band: flapping
                return Decision(False, "cooldown")
            st.at_risk_sent_us, st.at_risk_sent_band = w.as_of_us, band_i
            return Decision(True, "at_risk", at_risk_alert(w, self.config.top_n))
        changes = st.band_changes_us
        # a band change at the warning's instant counts: the worker warns about the band the
        # change just entered
        moved = bisect_right(changes, w.as_of_us) > bisect_right(changes, prev_us)
        if moved:
            if cooling:
                return Decision(False, "cooldown")
            return Decision(True, "at_risk", at_risk_alert(w, self.config.top_n))
        # a band change not read yet may still fall in (prev_us, as_of]: later band changes
        # are read in order, so only if none read so far is later than the warning
        if not cooling and prev_us < w.as_of_us and (not changes or w.as_of_us >= changes[-1]):
            st.held.append((prev_us, w))
            del st.held[:-_RECENT_KEYS]
        return Decision(False, "at_risk_active")


def _losses_out(losses: Sequence[Loss], top_n: int) -> list[dict[str, Any]]:
    return [
        {"indicator": loss.indicator, "points_lost": loss.points_lost}
        for loss in losses[:top_n]
        if loss.points_lost > 0
    ]


def _losses_text(losses: list[dict[str, Any]]) -> str:
    if not losses:
        return ""
    parts = ", ".join(f"{x['indicator']} -{x['points_lost']:.2f}" for x in losses)
    return f" Biggest losses: {parts}."


def _who(unit_id: str, name: str | None) -> str:
    return f"{name} ({unit_id})" if name else unit_id


def band_alert(ch: BandChange, kind: str, top_n: int = 3) -> dict[str, Any]:
    """The JSON body of a band-drop or band-rise alert."""
    losses = _losses_out(ch.top_losses, top_n)
    verb = "dropped" if ch.direction == "down" else "rose"
    total = "n/a" if ch.total is None else f"{ch.total:.2f}"
    summary = (
        f"{_who(ch.unit_id, ch.name)} {verb} from {ch.old_band} to {ch.new_band} in "
        f"{ch.window} (total {total} at {ch.as_of}).{_losses_text(losses)}"
    )
    return {
        "alert_id": ch.key,
        "kind": kind,
        "unit_id": ch.unit_id,
        "name": ch.name,
        "window": ch.window,
        "old_band": ch.old_band,
        "new_band": ch.new_band,
        "direction": ch.direction,
        "total": ch.total,
        "as_of": ch.as_of,
        "top_losses": losses,
        "summary": summary,
    }


def at_risk_alert(w: AtRiskWarning, top_n: int = 3) -> dict[str, Any]:
    """The JSON body of an early warning: which dossiers to finish to keep the band."""
    losses = _losses_out(w.top_losses, top_n)
    hours = w.horizon_seconds / 3600
    shown = ", ".join(w.dossier_ids[:10]) + (" ..." if len(w.dossier_ids) > 10 else "")
    summary = (
        f"{_who(w.unit_id, w.name)} is at risk of dropping from {w.band} to {w.projected_band} "
        f"in {w.window}: {len(w.dossier_ids)} open dossier(s) fall due within {hours:g} h "
        f"(as of {w.as_of}); if more than {w.late_tolerance} go late the band drops. "
        f"Dossiers: {shown}.{_losses_text(losses)}"
    )
    return {
        "alert_id": w.key,
        "kind": "at_risk",
        "unit_id": w.unit_id,
        "name": w.name,
        "window": w.window,
        "band": w.band,
        "total": w.total,
        "projected_band": w.projected_band,
        "projected_total": w.projected_total,
        "as_of": w.as_of,
        "horizon_seconds": w.horizon_seconds,
        "dossier_ids": list(w.dossier_ids),
        "late_tolerance": w.late_tolerance,
        "top_losses": losses,
        "summary": summary,
    }
