"""Early warning: the at-risk computation, on counts and on a scripted event scenario."""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone

import pytest

from alerts.at_risk import (
    AtRiskInputError,
    OpenDossier,
    assess,
    assess_state,
    open_dossiers,
    to_message,
)
from alerts.policy import AlertPolicy, parse_at_risk
from scoring.events import Event
from scoring.facts import UnitState, apply_event
from scoring.model import load_model
from scoring.points import rate
from scoring.timeutil import parse_window, to_us

MODEL = load_model("vn766@1")
ICT = timezone(timedelta(hours=7))
HOUR = 3600 * 1_000_000


def us(day: int, hour: int = 0) -> int:
    return to_us(datetime(2024, 4, day, hour, tzinfo=ICT))


def perfect_counts(n: int, not_late: int, satisfied: int) -> dict[str, tuple[int, int]]:
    counts = {ind.id: (n, n) for ind in MODEL.indicators}
    counts.update(
        {
            "announced_on_time": (1, 1),
            "publicized_on_time": (1, 1),
            "content_complete": (1, 1),
            "petitions_on_time": (0, 0),
            "petition_satisfaction": (0, 0),
            "online_uptake": (1, 1),
            "online_payment_procedures": (1, 1),
            "on_time": (not_late, n),
            "dossier_satisfaction": (satisfied, n),
        }
    )
    return counts


def test_due_soon_dossiers_going_late_would_drop_the_band():
    counts = perfect_counts(12, 12, 12)  # total 100, excellent
    soon = [OpenDossier(f"D-{i}", us(12, 15), True) for i in range(5)]
    later = [OpenDossier("D-late-1", us(15), True), OpenDossier("D-late-2", us(16), True)]
    result = assess(MODEL, counts, soon + later, us(12, 9), horizon_seconds=24 * 3600)
    assert result.at_risk
    assert (result.band, result.projected_band) == ("excellent", "good")
    assert result.dossier_ids == tuple(f"D-{i}" for i in range(5))
    assert result.late_tolerance == 4  # 4 late: 91.78 excellent; 5 late: 89.56 good
    manual = dict(counts, on_time=(7, 12), dossier_satisfaction=(7, 12))
    assert result.projected_total == rate(MODEL, manual).total
    assert result.top_losses[0][0] == "on_time"


def test_a_short_horizon_or_a_comfortable_margin_is_not_at_risk():
    counts = perfect_counts(12, 12, 12)
    soon = [OpenDossier(f"D-{i}", us(12, 15), True) for i in range(5)]
    short = assess(MODEL, counts, soon, us(12, 9), horizon_seconds=3600)
    assert not short.at_risk and short.dossier_ids == ()
    few = assess(MODEL, counts, soon[:4], us(12, 9), horizon_seconds=24 * 3600)
    assert not few.at_risk and few.projected_band == "excellent" and few.late_tolerance == 4


def test_a_dissatisfied_dossier_costs_only_on_time():
    counts = perfect_counts(12, 12, 11)  # one open dossier already rated dissatisfied
    with_sat = [OpenDossier(f"D-{i}", us(12, 15), True) for i in range(5)]
    without = [*with_sat[:4], OpenDossier("D-4", us(12, 15), False)]
    a = assess(MODEL, counts, with_sat, us(12, 9), 86400)
    b = assess(MODEL, counts, without, us(12, 9), 86400)
    assert b.projected_total > a.projected_total
    expected = rate(MODEL, dict(counts, on_time=(7, 12), dossier_satisfaction=(7, 12))).total
    assert b.projected_total == expected


def test_assessment_is_deterministic_and_order_free():
    counts = perfect_counts(12, 12, 12)
    soon = [OpenDossier(f"D-{i}", us(12, 10 + i), i % 2 == 0) for i in range(6)]
    first = assess(MODEL, counts, soon, us(12, 9), 86400)
    for seed in range(5):
        shuffled = soon[:]
        random.Random(seed).shuffle(shuffled)
        assert assess(MODEL, counts, shuffled, us(12, 9), 86400) == first


def test_unit_scores_shaped_counts_and_a_model_reference_are_accepted():
    counts = {k: {"num": n, "den": d, "points": 0} for k, (n, d) in perfect_counts(3, 3, 3).items()}
    result = assess("vn766@1", counts, [OpenDossier("D-1", us(12, 10))], us(12, 9), 86400)
    assert result.band == "excellent" and result.dossier_ids == ("D-1",)


def test_counts_that_contradict_the_open_dossiers_are_a_wiring_error():
    counts = perfect_counts(3, 1, 1)
    dossiers = [OpenDossier(f"D-{i}", us(12, 10)) for i in range(3)]
    with pytest.raises(AtRiskInputError):
        assess(MODEL, counts, dossiers, us(12, 9), 86400)


def test_an_unscored_unit_is_never_at_risk():
    result = assess(MODEL, {}, [OpenDossier("D-1", us(12, 10))], us(12, 9), 86400)
    assert not result.at_risk and result.band is None


# --- scripted scenario on the scorer's own state ----------------------------------------

UNIT = "district-7"


def event(etype: str, ts: int, times: dict | None = None, **body: object) -> Event:
    eid = hashlib.sha1(f"{etype}{ts}{sorted(body.items())}".encode()).hexdigest()
    full = {"type": etype, "unit_id": UNIT, **body}
    return Event(eid, etype, ts, UNIT, full, eid.encode(), times or {})


def received(dossier_id: str, ts: int, due: int) -> Event:
    return event(
        "dossier.received",
        ts,
        {"due_at": due},
        dossier_id=dossier_id,
        procedure_id="P1",
        channel="online",
        online_eligible=True,
        full_online=True,
        fee_required=True,
        reused_data=True,
        pds_linked=True,
        population_db=True,
    )


def scenario() -> UnitState:
    """12 dossiers received on April 1-2, all digitized, synced and paid online; five done
    on time, five due on April 12 at 15:00, two due on April 20; one publication."""
    state = UnitState()
    evs = [
        event(
            "procedure.published",
            us(1, 8),
            procedure_id="P1",
            announced_on_time=True,
            publicized_on_time=True,
            complete=True,
        )
    ]
    for i in range(12):
        did = f"D-{i:02d}"
        due = us(5) if i < 5 else (us(12, 15) if i < 10 else us(20))
        evs += [
            received(did, us(1, 9) + i, due),
            event("dossier.digitized", us(2), dossier_id=did),
            event("dossier.synced", us(2), dossier_id=did),
            event("dossier.paid", us(2, 1), dossier_id=did, online=True, amount_vnd=1000),
        ]
        if i < 5:
            evs.append(event("dossier.completed", us(3), dossier_id=did, e_result=True))
    for ev in evs:
        apply_event(state, ev)
    return state


def test_at_risk_fires_before_the_drop_happens():
    state = scenario()
    window = parse_window("month:2024-04")
    before = us(12, 9)  # the morning the five dossiers fall due
    warning = assess_state(MODEL, state, window, before, horizon_seconds=24 * 3600)
    assert warning.at_risk and warning.band == "excellent"
    assert warning.dossier_ids == tuple(f"D-{i:02d}" for i in range(5, 10))
    assert [d.dossier_id for d in open_dossiers(state, window, before)] == [
        f"D-{i:02d}" for i in range(5, 12)
    ]
    # nobody finishes them: after 15:00 the scorer's own band is the projected one
    after = rate(MODEL, _counts(state, window, us(12, 16)))
    assert (after.band, after.total) == (warning.projected_band, warning.projected_total)
    assert after.band == "good"
    # the warning goes through the notifier's policy as an alert, before the drop's as_of
    msg = to_message(warning, UNIT, window.name, name="District 7")
    decision = AlertPolicy().decide(parse_at_risk(msg))
    assert decision.send and decision.alert["dossier_ids"] == list(warning.dossier_ids)
    assert msg["as_of"] == "2024-04-12T09:00:00+07:00"


def test_finishing_the_dossiers_in_time_clears_the_risk():
    state = scenario()
    window = parse_window("month:2024-04")
    for i in range(5, 10):
        apply_event(
            state, event("dossier.completed", us(12, 11), dossier_id=f"D-{i:02d}", e_result=True)
        )
    result = assess_state(MODEL, state, window, us(12, 12), horizon_seconds=24 * 3600)
    assert not result.at_risk and result.band == "excellent"
    assert rate(MODEL, _counts(state, window, us(12, 16))).band == "excellent"


def _counts(state: UnitState, window, t: int) -> dict[str, tuple[int, int]]:
    from scoring.indicators import count

    return count(state, window, t).values


# --- the scorer's incremental index of open dossiers ---------------------------------------


def _random_dossier_events(rnd: random.Random, n: int) -> list[Event]:
    """Dossiers of March-April with every lifecycle event, at random times (many overdue,
    supplements with and without a new due time, some in the 'future' of the calls)."""
    evs: list[Event] = []
    start = to_us(datetime(2024, 3, 20, tzinfo=ICT))
    span = 40 * 24 * HOUR
    for i in range(n):
        did = f"R-{i:03d}"
        t0 = start + rnd.randrange(span)
        if rnd.random() < 0.95:
            evs.append(received(did, t0, t0 + rnd.randrange(1, 12 * 24) * HOUR))
        for _ in range(rnd.choice((0, 0, 1, 2, 3))):
            ts = t0 + rnd.randrange(20 * 24) * HOUR
            new_due = ts + rnd.randrange(1, 10 * 24) * HOUR if rnd.random() < 0.6 else None
            evs.append(event("dossier.supplement_requested", ts,
                             {"new_due_at": new_due} if new_due else {}, dossier_id=did,
                             reason="r"))
        if rnd.random() < 0.5:
            evs.append(event("dossier.completed", t0 + rnd.randrange(15 * 24) * HOUR,
                             dossier_id=did, e_result=True))
        if rnd.random() < 0.1:
            evs.append(event("dossier.withdrawn", t0 + rnd.randrange(5 * 24) * HOUR,
                             dossier_id=did))
        for _ in range(rnd.choice((0, 1, 2))):
            evs.append(event("dossier.rated", t0 + rnd.randrange(15 * 24) * HOUR,
                             dossier_id=did, rating=rnd.choice(("satisfied", "dissatisfied"))))
    rnd.shuffle(evs)
    return evs


@pytest.mark.parametrize("seed", range(12))
def test_the_open_dossier_index_agrees_with_a_full_scan(seed: int) -> None:
    from alerts.at_risk import OpenDossierIndex
    from scoring.timeutil import window_of

    rnd = random.Random(seed)
    evs = _random_dossier_events(rnd, 120)
    state, index = UnitState(), OpenDossierIndex()
    t = to_us(datetime(2024, 3, 25, tzinfo=ICT))
    checked = 0
    for i in range(0, len(evs), 7):
        for ev in evs[i:i + 7]:
            apply_event(state, ev)
            index.touch(ev.body["dossier_id"])
        if rnd.random() < 0.05:
            t -= rnd.randrange(48) * HOUR  # event time going back: the index starts over
        else:
            t += rnd.randrange(0, 12) * HOUR
        window = window_of("month", t, "Asia/Ho_Chi_Minh")
        got = sorted(index.open_dossiers(state, window, t), key=lambda d: d.dossier_id)
        want = sorted(open_dossiers(state, window, t), key=lambda d: d.dossier_id)
        assert got == want, (seed, i, t)
        checked += len(want)
    assert checked > 0  # the scenario does have open dossiers to find
