"""Anti-flapping decisions, alert bodies and idempotency keys (pure, no broker)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.exceptions import InvalidBandChange
from alerts.policy import (
    AlertPolicy,
    PolicyConfig,
    band_index,
    parse_at_risk,
    parse_band_change,
)
from scoring.model import load_model

ICT = timezone(timedelta(hours=7))
T0 = datetime(2024, 4, 14, 9, 0, tzinfo=ICT)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def change(old: str, new: str, total: float, minutes: float = 0, **kw: object) -> dict:
    msg = {
        "unit_id": kw.pop("unit_id", "d7"),
        "window": kw.pop("window", "month:2024-04"),
        "old_band": old,
        "new_band": new,
        "direction": "down" if band_index(new) < band_index(old) else "up",
        "total": total,
        "as_of": at(minutes),
        "top_losses": [
            {"indicator": "dossier_satisfaction", "points_lost": 2.5},
            {"indicator": "on_time", "points_lost": 6.25},
            {"indicator": "paid_online", "points_lost": 1.0},
            {"indicator": "digitized", "points_lost": 0.5},
        ],
    }
    msg.update(kw)
    return msg


def decide(policy: AlertPolicy, msg: dict):
    return policy.decide(parse_band_change(msg))


def test_policy_bands_come_from_the_model():
    cfg = PolicyConfig.for_model(load_model("vn766@1"))
    assert [b for b, _ in cfg.bands] == ["excellent", "good", "fair", "average", "weak"]
    assert dict(cfg.bands)["good"] == 80


def test_a_drop_alerts_with_the_costliest_indicators_first():
    d = decide(AlertPolicy(PolicyConfig(top_n=3)), change("good", "fair", 78.4, name="District 7"))
    assert d.send and d.reason == "band_drop"
    alert = d.alert
    assert alert["kind"] == "band_drop" and alert["direction"] == "down"
    assert [x["indicator"] for x in alert["top_losses"]] == [
        "on_time",
        "dossier_satisfaction",
        "paid_online",
    ]
    assert "District 7 (d7) dropped from good to fair" in alert["summary"]
    assert "on_time -6.25" in alert["summary"]
    assert len(alert["alert_id"]) == 32


def test_idempotency_key_is_stable_and_offset_independent():
    a = parse_band_change(change("good", "fair", 78.0, as_of="2024-04-14T17:00:00+07:00"))
    b = parse_band_change(change("good", "fair", 77.0, as_of="2024-04-14T10:00:00Z"))
    c = parse_band_change(change("good", "fair", 78.0, as_of="2024-04-14T17:00:01+07:00"))
    d = parse_band_change(change("good", "average", 60.0, as_of="2024-04-14T17:00:00+07:00"))
    assert a.key == b.key  # same instant, same unit/window/bands
    assert len({a.key, c.key, d.key}) == 3


@pytest.mark.parametrize(
    "patch",
    [
        {"old_band": None},
        {"new_band": "superb"},
        {"new_band": "good"},
        {"direction": "up"},
        {"as_of": "yesterday"},
        {"unit_id": ""},
        {"total": "78"},
        {"top_losses": [{"indicator": "on_time"}, 3]},
    ],
)
def test_malformed_band_changes_are_rejected(patch):
    msg = change("good", "fair", 78.0)
    msg.update(patch)
    with pytest.raises(InvalidBandChange):
        parse_band_change(msg)


def test_flapping_at_a_threshold_alerts_once():
    policy = AlertPolicy(PolicyConfig(cooldown_seconds=3600, hysteresis_points=1.0))
    sent = []
    reasons = []
    for i in range(20):  # every 10 minutes: 79.9 <-> 80.3, crossing "good" each time
        down = decide(policy, change("good", "fair", 79.9, minutes=20 * i))
        up = decide(policy, change("fair", "good", 80.3, minutes=20 * i + 10))
        sent += [d for d in (down, up) if d.send]
        reasons += [down.reason, up.reason]
    assert len(sent) == 1 and sent[0].reason == "band_drop"
    assert set(reasons[1:]) == {"hysteresis"}


def test_cooldown_suppresses_a_second_drop_after_a_clean_recovery():
    policy = AlertPolicy(PolicyConfig(cooldown_seconds=3600, hysteresis_points=1.0))
    assert decide(policy, change("good", "fair", 78, 0)).send
    assert decide(policy, change("fair", "good", 85, 10)).reason == "rises_disabled"  # re-armed
    assert decide(policy, change("good", "fair", 78, 20)).reason == "cooldown"
    assert decide(policy, change("fair", "good", 85, 70)).reason == "rises_disabled"
    d = decide(policy, change("good", "fair", 78, 90))  # 90 min after the alert: news again
    assert d.send and d.reason == "band_drop"


def test_a_deeper_drop_alerts_even_in_cooldown():
    policy = AlertPolicy(PolicyConfig(cooldown_seconds=3600))
    assert decide(policy, change("good", "fair", 78, 0)).send
    d = decide(policy, change("fair", "average", 65, 5))
    assert d.send and d.alert["new_band"] == "average"
    assert decide(policy, change("average", "weak", 49.99, 6)).send


def test_rises_alert_when_enabled_after_a_clean_recovery_out_of_cooldown():
    policy = AlertPolicy(PolicyConfig(send_rises=True, cooldown_seconds=600))
    assert decide(policy, change("good", "fair", 78, 0)).send
    assert decide(policy, change("fair", "good", 85, 5)).reason == "cooldown"
    assert decide(policy, change("good", "fair", 78, 6)).reason == "cooldown"
    rise = decide(policy, change("fair", "good", 80.5, 30))  # not clear of 80 + 1: no rise
    assert rise.reason == "hysteresis"
    rise = decide(policy, change("good", "excellent", 95, 40))
    assert rise.send and rise.alert["kind"] == "band_rise" and rise.alert["direction"] == "up"


def test_repeated_message_is_a_duplicate():
    policy = AlertPolicy()
    assert decide(policy, change("good", "fair", 78)).send
    assert decide(policy, change("good", "fair", 78)).reason == "duplicate"


def test_units_and_windows_are_independent():
    policy = AlertPolicy()
    assert decide(policy, change("good", "fair", 78)).send
    assert decide(policy, change("good", "fair", 78, window="year:2024")).send
    assert decide(policy, change("good", "fair", 78, unit_id="d1")).send
    policy.forget({"d1"})
    assert len(policy) == 2


def test_state_rebuilt_by_replay_decides_like_the_original():
    msgs = [change("good", "fair", 78, 0), change("fair", "good", 85, 10)]
    msgs += [change("good", "fair", 78, 20), change("fair", "average", 60, 30)]
    live = AlertPolicy()
    decisions = [decide(live, m).reason for m in msgs]
    rebuilt = AlertPolicy()
    for m in msgs[:2]:
        decide(rebuilt, m)
    assert [decide(rebuilt, m).reason for m in msgs[2:]] == decisions[2:]


def at_risk_msg(at_risk: bool, band: str = "good", minutes: float = 0) -> dict:
    return {
        "unit_id": "d7",
        "window": "month:2024-04",
        "at_risk": at_risk,
        "band": band,
        "total": 81.2,
        "projected_band": "fair",
        "projected_total": 78.9,
        "as_of": at(minutes),
        "horizon_seconds": 86400,
        "dossier_ids": ["D-1", "D-2"],
        "late_tolerance": 1,
        "top_losses": [{"indicator": "on_time", "points_lost": 3.0}],
    }


def test_at_risk_warns_once_per_band_and_re_warns_after_a_drop():
    policy = AlertPolicy(PolicyConfig(cooldown_seconds=3600))
    first = policy.decide(parse_at_risk(at_risk_msg(True)))
    assert first.send and first.alert["kind"] == "at_risk"
    assert "D-1, D-2" in first.alert["summary"] and "more than 1 go late" in first.alert["summary"]
    assert policy.decide(parse_at_risk(at_risk_msg(True, minutes=1))).reason == "at_risk_active"
    assert policy.decide(parse_at_risk(at_risk_msg(False, minutes=2))).reason == "at_risk_cleared"
    assert policy.decide(parse_at_risk(at_risk_msg(True, minutes=3))).reason == "cooldown"
    assert decide(policy, change("good", "fair", 78, 10)).send
    assert policy.decide(parse_at_risk(at_risk_msg(True, band="fair", minutes=11))).send


def test_a_drop_alerts_whichever_topic_is_read_first():
    """The worker sends a warning for the unit's new band before the ranker's band change
    arrives, and a rebuild interleaves the two topics arbitrarily: a warning never arms the
    band, so the drop alerts in either order (it was lost as "hysteresis" after a warning)."""
    warning = parse_at_risk(at_risk_msg(True, band="fair"))
    drop = change("good", "fair", 78, 1)
    for order in ((warning, drop), (drop, warning)):
        policy = AlertPolicy()
        reasons = {type(m).__name__: policy.decide(m if not isinstance(m, dict)
                                                   else parse_band_change(m)).reason
                   for m in order}
        assert reasons["dict"] == "band_drop", order


def test_malformed_at_risk_is_rejected():
    msg = at_risk_msg(True)
    msg["at_risk"] = "yes"
    with pytest.raises(InvalidBandChange):
        parse_at_risk(msg)


BANDS = [("excellent", 90), ("good", 80), ("fair", 70), ("average", 50), ("weak", 0)]


def band_for(total: float) -> str:
    return next(b for b, m in BANDS if total >= m)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(45, 99, allow_nan=False), st.integers(1, 40)), min_size=2, max_size=60
    ),
    st.sampled_from([0, 600, 3600]),
    st.sampled_from([0.0, 0.5, 2.0]),
)
def test_alerts_never_repeat_a_band_within_cooldown(walk, cooldown, hysteresis):
    """Whatever the walk: two drop alerts within a cool-down go strictly deeper, and two drop
    alerts to the same band have a clean recovery (total >= threshold + hysteresis) between."""
    policy = AlertPolicy(PolicyConfig(cooldown_seconds=cooldown, hysteresis_points=hysteresis))
    minutes = 0.0
    prev_total = round(walk[0][0], 2)
    sent: list[tuple[float, int]] = []
    peaks: list[float] = []  # highest total since the last sent alert
    peak = prev_total
    for total, step in walk[1:]:
        total = round(total, 2)
        minutes += step
        old, new = band_for(prev_total), band_for(total)
        peak = max(peak, total)
        if old != new:
            d = decide(policy, change(old, new, total, minutes))
            if d.send:
                sent.append((minutes, band_index(new)))
                peaks.append(peak)
                peak = total
        prev_total = total
    for (t1, b1), (t2, b2), between in zip(sent, sent[1:], peaks[1:], strict=False):
        if (t2 - t1) * 60 < cooldown:
            assert b2 < b1
        if b2 == b1:
            threshold = dict(BANDS)[BANDS[4 - b1 - 1][0]] if b1 < 4 else 100
            assert between >= threshold + hysteresis
