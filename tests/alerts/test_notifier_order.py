"""Live order vs. rebuild order: the notifier's rebuild replays ``band-changes`` and ``at-risk``
partition by partition (a batch's band changes, then its warnings), not in the order the live
notifier read them. The policy must decide the same either way, or a restarted notifier drops
an at-risk warning that the one that did not restart sends."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson

from alerts.notifier import Notifier, NotifierConfig
from alerts.policy import AlertPolicy, AtRiskWarning, BandChange, parse_at_risk, parse_band_change
from alerts.sinks import FileDeadLetter

UNIT, WINDOW = "u", "month:2024-04"
BANDS, AT_RISK = "band-changes", "at-risk"


def _band(old: str, new: str, total: float, hour: str) -> dict[str, Any]:
    return {
        "unit_id": UNIT,
        "window": WINDOW,
        "old_band": old,
        "new_band": new,
        "total": total,
        "as_of": f"2024-04-10T{hour}:00+07:00",
    }


def _warn(band: str, total: float, hour: str, at_risk: bool = True) -> dict[str, Any]:
    return {
        "unit_id": UNIT,
        "window": WINDOW,
        "at_risk": at_risk,
        "band": band,
        "projected_band": "fair",
        "total": total,
        "as_of": f"2024-04-10T{hour}:00+07:00",
    }


# the reviewer's case: warned for good, dropped to fair, rose back to good, at risk again
A1 = _warn("good", 80.5, "08:00")
B2 = _band("good", "fair", 79.9, "09:00")
B3 = _band("fair", "good", 85.0, "10:00")
A4 = _warn("good", 80.4, "12:00")
LIVE = [(AT_RISK, A1), (BANDS, B2), (BANDS, B3), (AT_RISK, A4)]


def _parse(topic: str, obj: dict[str, Any]) -> BandChange | AtRiskWarning:
    return parse_at_risk(obj) if topic == AT_RISK else parse_band_change(obj)


def _decisions(order: list[tuple[str, dict[str, Any]]]) -> dict[str, tuple[bool, str]]:
    """Each message's decision, by its idempotency key (so orders can be compared)."""
    policy = AlertPolicy()
    out = {}
    for topic, obj in order:
        msg = _parse(topic, obj)
        d = policy.decide(msg)
        out[msg.key] = (d.send, d.reason)
    return out


def _rebuild_order(order: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    # what ``Notifier._rebuild`` does with one batch: band-changes partition, then at-risk
    return [m for m in order if m[0] == BANDS] + [m for m in order if m[0] == AT_RISK]


def test_rebuild_order_decides_like_the_live_order() -> None:
    live = _decisions(LIVE)
    assert list(live.values()) == [
        (True, "at_risk"),
        (True, "band_drop"),
        (False, "rises_disabled"),
        (True, "at_risk"),
    ]
    assert _decisions(_rebuild_order(LIVE)) == live


def test_every_interleaving_in_event_time_decides_the_same() -> None:
    """Each topic keeps its own order; the two interleave in any way in which no band change
    is read after a warning that is later in event time (the ranker is not behind). A warning
    for the band a change entered carries the change's as_of and may be read before it."""
    bands = [(BANDS, B2), (BANDS, B3), (BANDS, _band("good", "fair", 79.0, "14:00"))]
    warns = [
        (AT_RISK, A1),
        (AT_RISK, A4),
        (AT_RISK, _warn("fair", 79.0, "14:00")),
        (AT_RISK, _warn("fair", 79.1, "15:00")),
    ]
    reference = _decisions(sorted(bands + warns, key=lambda m: (m[1]["as_of"], m[0] == AT_RISK)))
    n = len(bands) + len(warns)
    tried = 0
    for slots in itertools.combinations(range(n), len(bands)):
        order, bi, wi = [], iter(bands), iter(warns)
        for i in range(n):
            order.append(next(bi) if i in slots else next(wi))
        if any(
            b[0] == BANDS and w[0] == AT_RISK and w[1]["as_of"] > b[1]["as_of"]
            for j, w in enumerate(order)
            for b in order[j + 1 :]
        ):
            continue
        tried += 1
        assert _decisions(order) == reference, order
    assert tried > 1


class _Sink:
    name = "memory"

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []

    async def start(self) -> None:
        pass

    async def send(self, alert: dict[str, Any]) -> None:
        self.alerts.append(alert)

    async def close(self) -> None:
        pass


async def _notifier(tmp_path: Path) -> tuple[Notifier, _Sink]:
    sink = _Sink()
    config = NotifierConfig(band_changes_topic=BANDS, at_risk_topic=AT_RISK)
    return Notifier(config, AlertPolicy(), [sink], FileDeadLetter(tmp_path / "dlq")), sink


async def test_restarted_notifier_sends_the_warning_the_live_one_sends(tmp_path: Path) -> None:
    """Through ``Notifier.handle``: one notifier reads all four live; another replays the first
    three in rebuild order (``live=False``) and then reads the fourth live, as after a restart."""
    live, live_sink = await _notifier(tmp_path)
    for topic, obj in LIVE:
        await live.handle(topic, orjson.dumps(obj))
    restarted, restarted_sink = await _notifier(tmp_path)
    for topic, obj in _rebuild_order(LIVE[:3]):
        await restarted.handle(topic, orjson.dumps(obj), live=False)
    topic, obj = LIVE[3]
    decision = await restarted.handle(topic, orjson.dumps(obj))
    assert decision is not None and (decision.send, decision.reason) == (True, "at_risk")
    assert restarted_sink.alerts[-1]["alert_id"] == live_sink.alerts[-1]["alert_id"]
