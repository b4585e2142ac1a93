"""Live order vs. rebuild order: the notifier's rebuild replays ``band-changes`` and ``at-risk``
partition by partition (a batch's band changes, then its warnings), not in the order the live
notifier read them. The policy must decide the same either way, or a restarted notifier drops
an at-risk warning that the one that did not restart sends.

Live, the two topics interleave in any way that keeps each one's order, including a ranker far
behind the scorer: a band change read after a warning that is later in event time."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from alerts.notifier import Notifier, NotifierConfig
from alerts.policy import (
    AlertPolicy,
    AtRiskWarning,
    BandChange,
    PolicyConfig,
    parse_at_risk,
    parse_band_change,
)
from alerts.sinks import FileDeadLetter

UNIT, WINDOW = "u", "month:2024-04"
BANDS, AT_RISK = "band-changes", "at-risk"
T0 = datetime.fromisoformat("2024-04-10T00:00:00+07:00")
Message = tuple[str, dict[str, Any]]


def _as_of(hour: str | float) -> str:
    """``"HH"`` (an hour of the day), or a number of minutes after midnight."""
    if isinstance(hour, str):
        return f"2024-04-10T{hour}:00+07:00"
    return (T0 + timedelta(minutes=hour)).isoformat()


def _band(old: str, new: str, total: float, hour: str | float) -> dict[str, Any]:
    return {
        "unit_id": UNIT,
        "window": WINDOW,
        "old_band": old,
        "new_band": new,
        "total": total,
        "as_of": _as_of(hour),
    }


def _warn(band: str, total: float, hour: str | float, at_risk: bool = True) -> dict[str, Any]:
    return {
        "unit_id": UNIT,
        "window": WINDOW,
        "at_risk": at_risk,
        "band": band,
        "projected_band": "fair",
        "total": total,
        "as_of": _as_of(hour),
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


async def _notifier(tmp_path: Path, policy: AlertPolicy | None = None) -> tuple[Notifier, _Sink]:
    sink = _Sink()
    config = NotifierConfig(band_changes_topic=BANDS, at_risk_topic=AT_RISK)
    notifier = Notifier(config, policy or AlertPolicy(), [sink], FileDeadLetter(tmp_path / "dlq"))
    return notifier, sink


def _sent(order: list[Message], tmp_path: Path, cooldown: float = 3600.0) -> list[str]:
    """The ids of the alerts a live notifier delivers reading ``order``: what has to be the same
    for every interleaving (not which message each was decided on)."""

    async def run() -> list[str]:
        notifier, sink = await _notifier(tmp_path, AlertPolicy(PolicyConfig(
            cooldown_seconds=cooldown)))
        for topic, obj in order:
            await notifier.handle(topic, orjson.dumps(obj))
        return sorted(a["alert_id"] for a in sink.alerts)

    return asyncio.run(run())


def _interleavings(bands: list[Message], warns: list[Message]) -> list[list[Message]]:
    n = len(bands) + len(warns)
    out = []
    for slots in itertools.combinations(range(n), len(bands)):
        bi, wi = iter(bands), iter(warns)
        out.append([next(bi) if i in slots else next(wi) for i in range(n)])
    return out


def _ranker_behind(order: list[Message]) -> bool:
    """A band change read after a warning that is later in event time."""
    return any(
        b[0] == BANDS and w[0] == AT_RISK and w[1]["as_of"] > b[1]["as_of"]
        for j, w in enumerate(order)
        for b in order[j + 1 :]
    )


def test_every_interleaving_sends_the_same_alerts(tmp_path: Path) -> None:
    """Each topic keeps its own order; the two interleave in any way, the ranker far behind
    included: a band change read after a warning later in event time (live read A4 before B2
    and B3 and took it for an active warning, where a rebuild, bands first, sent it)."""
    bands = [(BANDS, B2), (BANDS, B3), (BANDS, _band("good", "fair", 79.0, "14:00"))]
    warns = [
        (AT_RISK, A1),
        (AT_RISK, A4),
        (AT_RISK, _warn("fair", 79.0, "14:00")),
        (AT_RISK, _warn("fair", 79.1, "15:00")),
    ]
    reference = _sent(_rebuild_order(bands + warns), tmp_path)
    assert parse_at_risk(A4).key in reference
    orders = _interleavings(bands, warns)
    assert sum(map(_ranker_behind, orders)) > 1
    for order in orders:
        assert _sent(order, tmp_path) == reference, order


def test_a_far_behind_ranker_still_gets_the_warning_sent(tmp_path: Path) -> None:
    """The reviewer's case with the ranker behind: A4 (12:00) is read before B2 (09:00) and B3;
    the band left good and came back between A1 and A4, so A4 is news, and is sent once B2 is
    read, as a rebuild (bands first) sends it."""
    far_behind = [(AT_RISK, A1), (AT_RISK, A4), (BANDS, B2), (BANDS, B3)]
    assert _ranker_behind(far_behind)
    sent = _sent(far_behind, tmp_path)
    assert sent == _sent(_rebuild_order(far_behind), tmp_path) == _sent(LIVE, tmp_path)
    assert parse_at_risk(A4).key in sent


async def test_a_warning_held_for_a_late_band_change_survives_a_restart(
    tmp_path: Path,
) -> None:
    """Live reads A1 and A4 (nothing for A4 yet: no band change known before it), then restarts:
    the rebuild replays them, and the band change read afterwards still sends A4."""
    restarted, sink = await _notifier(tmp_path)
    for topic, obj in [(AT_RISK, A1), (AT_RISK, A4)]:
        await restarted.handle(topic, orjson.dumps(obj), live=False)
    await restarted.handle(BANDS, orjson.dumps(B2))
    await restarted.handle(BANDS, orjson.dumps(B3))
    assert [a["alert_id"] for a in sink.alerts] == [
        parse_band_change(B2).key,
        parse_at_risk(A4).key,
    ]
    assert sink.alerts[-1]["kind"] == "at_risk"


_TOPIC_BANDS = ("good", "fair")  # two bands: warnings often repeat one, the band often returns


@st.composite
def _histories(draw: st.DrawFn) -> tuple[list[Message], list[Message]]:
    """A band walk and a run of warnings for one unit, each topic in event-time order (steps
    of 0 make ties between and within the topics)."""
    bands: list[Message] = []
    t, band = 0, "good"
    for step, new in draw(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(_TOPIC_BANDS)),
                                   max_size=6)):
        t += step
        if new != band:
            bands.append((BANDS, _band(band, new, 75.0, t)))
            band = new
    warns: list[Message] = []
    t = 0
    for step, at_risk, w_band in draw(st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from([True, True, False]),
                  st.sampled_from(_TOPIC_BANDS)),
        max_size=7,
    )):
        t += step
        warns.append((AT_RISK, _warn(w_band, 80.0, t, at_risk)))
    return bands, warns


@settings(max_examples=300, deadline=None)
@example(  # the far-behind ranker: both warnings read before both band changes
    history=([(BANDS, B2), (BANDS, B3)], [(AT_RISK, A1), (AT_RISK, A4)]),
    picks=[False, False] + [True] * 11,
    cooldown=3600.0,
)
@given(
    history=_histories(),
    picks=st.lists(st.booleans(), min_size=13, max_size=13),
    cooldown=st.sampled_from([0.0, 1800.0, 3600.0]),
)
def test_random_interleavings_send_what_the_rebuild_sends(
    history: tuple[list[Message], list[Message]], picks: list[bool], cooldown: float,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Any interleaving of the two topics (``picks``: which topic is read next) delivers the
    alerts the rebuild order delivers: far-behind and ahead rankers, ties, clears, cool-downs."""
    bands, warns = history
    order: list[Message] = []
    bi, wi = list(bands), list(warns)
    for pick in picks:
        if bi and (pick or not wi):
            order.append(bi.pop(0))
        elif wi:
            order.append(wi.pop(0))
    tmp = tmp_path_factory.getbasetemp()
    assert _sent(order, tmp, cooldown) == _sent(_rebuild_order(bands + warns), tmp, cooldown)


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
