"""``scoring.incremental.UnitCounts`` equals the reference ``scoring.indicators.count`` on random
event sequences, folded in random order while T moves (mostly forward, sometimes back), with
facts on both sides of T, for several windows at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Validator
from scoring.catalog import Catalog
from scoring.facts import UnitState, apply_event
from scoring.incremental import UnitCounts
from scoring.indicators import NEVER, count
from scoring.timeutil import parse_window

CATALOG = Catalog.from_list([{"unit_id": "u", "name": "U", "peer_group": "g"}])
VALIDATOR = Validator(CATALOG)
BASE = datetime(2024, 3, 28, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SPAN_H = 24 * 40  # events from late March into early May: three months, two quarters
WINDOWS = [parse_window(w) for w in ("month:2024-03", "month:2024-04", "month:2024-05",
                                     "quarter:2024-Q1", "quarter:2024-Q2", "year:2024")]
RATINGS = ("satisfied", "neutral", "dissatisfied")


def stamp(hours: int) -> str:
    return (BASE + timedelta(hours=hours)).isoformat()


def us(hours: int) -> int:
    return (BASE + timedelta(hours=hours) - EPOCH) // timedelta(microseconds=1)


# window boundaries (April and May start at 17:00 UTC the day before) are drawn often
hours = st.one_of(st.integers(0, SPAN_H), st.sampled_from([88, 89, 90, 808, 809, 810]))
flags = st.booleans()


@st.composite
def dossier(draw: st.DrawFn, i: int) -> list[dict[str, Any]]:
    base = {"unit_id": "u", "dossier_id": f"d{i}"}
    r = draw(hours)
    out: list[dict[str, Any]] = []
    for k in range(draw(st.integers(0, 2))):  # none (held facts only), one, or a re-announce
        rk = r + draw(st.integers(-3, 3)) * k
        online = draw(flags)
        out.append({**base, "type": "dossier.received", "occurred_at": stamp(rk),
                    "due_at": stamp(rk + draw(st.integers(1, 300))),
                    "procedure_id": f"proc{draw(st.integers(0, 3))}",
                    "channel": "online" if online else "in_person",
                    "online_eligible": draw(flags), "full_online": online and draw(flags),
                    "fee_required": draw(flags), "reused_data": draw(flags),
                    "pds_linked": draw(flags), "population_db": draw(flags)})
    later = st.integers(r - 5, r + 400)
    for kind in ("digitized", "synced", "withdrawn"):
        for _ in range(draw(st.integers(0, 2 if kind != "withdrawn" else 1))):
            out.append({**base, "type": f"dossier.{kind}", "occurred_at": stamp(draw(later))})
    for _ in range(draw(st.integers(0, 2))):
        out.append({**base, "type": "dossier.paid", "occurred_at": stamp(draw(later)),
                    "online": draw(flags), "amount_vnd": 1000})
    for _ in range(draw(st.integers(0, 3))):
        ev = {**base, "type": "dossier.supplement_requested", "occurred_at": stamp(draw(later))}
        if draw(flags):
            ev["new_due_at"] = stamp(r + draw(st.integers(1, 500)))
        out.append(ev)
    for _ in range(draw(st.integers(0, 2))):
        out.append({**base, "type": "dossier.completed", "occurred_at": stamp(draw(later)),
                    "e_result": draw(flags)})
    for _ in range(draw(st.integers(0, 2))):
        out.append({**base, "type": "dossier.rated", "occurred_at": stamp(draw(later)),
                    "rating": draw(st.sampled_from(RATINGS))})
    return out


@st.composite
def petition(draw: st.DrawFn, i: int) -> list[dict[str, Any]]:
    base = {"unit_id": "u", "petition_id": f"p{i}"}
    r = draw(hours)
    out: list[dict[str, Any]] = []
    for k in range(draw(st.integers(0, 2))):
        rk = r + draw(st.integers(-3, 3)) * k
        out.append({**base, "type": "petition.received", "occurred_at": stamp(rk),
                    "due_at": stamp(rk + draw(st.integers(1, 300)))})
    for _ in range(draw(st.integers(0, 2))):
        out.append({**base, "type": "petition.resolved",
                    "occurred_at": stamp(draw(st.integers(r - 5, r + 400)))})
    for _ in range(draw(st.integers(0, 2))):
        out.append({**base, "type": "petition.rated", "rating": draw(st.sampled_from(RATINGS)),
                    "occurred_at": stamp(draw(st.integers(r - 5, r + 400)))})
    return out


@st.composite
def publication(draw: st.DrawFn) -> dict[str, Any]:
    return {"type": "procedure.published", "unit_id": "u", "occurred_at": stamp(draw(hours)),
            "procedure_id": "proc0", "announced_on_time": draw(flags),
            "publicized_on_time": draw(flags), "complete": draw(flags)}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """(event bodies in arrival order, steps): step (n, T) folds the next n events and then
    moves to T. T mostly moves forward (as a watermark does), sometimes back."""
    bodies: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 14))):
        bodies += draw(dossier(i))
    for i in range(draw(st.integers(0, 4))):
        bodies += draw(petition(i))
    for _ in range(draw(st.integers(0, 3))):
        bodies.append(draw(publication()))
    bodies = draw(st.permutations(bodies))
    for n, body in enumerate(bodies):
        body["event_id"] = f"ev{n}"
    steps: list[tuple[int, int]] = []
    t = draw(st.integers(-24, SPAN_H // 2))
    left = len(bodies)
    for _ in range(draw(st.integers(1, 8))):
        n = draw(st.integers(0, left))
        left -= n
        t += draw(st.sampled_from([0, 1, 5, 24, 24 * 7, 24 * 20, -24]))
        steps.append((n, us(t) + draw(st.sampled_from([-1, 0, 0, 1]))))
    steps.append((left, us(t + draw(st.integers(0, 24 * 30)))))
    return bodies, steps


def check(state: UnitState, inc: UnitCounts, t: int) -> None:
    for window in WINDOWS:
        want = count(state, window, t)
        got = inc.counts(window)
        assert got.values == want.values, (window.name, t)
        assert got.items == want.items, (window.name, t)
        # the reference's next change (an open item passing due) is among ours, which also
        # counts facts dated after T; they agree when no fact is
        assert t < got.next_change_us <= want.next_change_us or want.next_change_us == NEVER


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_running_counts_equal_count(case: tuple[list[dict[str, Any]], list[tuple[int, int]]]
                                    ) -> None:
    bodies, steps = case
    events = [VALIDATOR.check(b) for b in bodies]
    state = UnitState()
    inc: UnitCounts | None = None
    i = 0
    for n, t in steps:
        touched = []
        for event in events[i:i + n]:
            key = apply_event(state, event)
            assert key is not None
            touched.append(key)
        i += n
        if inc is None:
            inc = UnitCounts(state, t)
        inc.update(t, touched)
        check(state, inc, t)
        # a fresh build from the same facts (what a worker's rebuild does) agrees as well
        fresh = UnitCounts(state, t)
        check(state, fresh, t)
    assert i == len(events)


def test_only_the_windows_asked_for_are_kept() -> None:
    body = {"event_id": "e1", "type": "dossier.received", "unit_id": "u", "dossier_id": "d1",
            "occurred_at": stamp(100), "due_at": stamp(110), "procedure_id": "x",
            "channel": "online", "online_eligible": True, "full_online": True,
            "fee_required": True, "reused_data": False, "pds_linked": False,
            "population_db": False}
    state = UnitState()
    key = apply_event(state, VALIDATOR.check(body))
    inc = UnitCounts(state, us(105))
    inc.update(us(105), [key] if key else [])
    april, year = parse_window("month:2024-04"), parse_window("year:2024")
    assert inc.counts(april).values["on_time"] == (1, 1)
    assert inc.counts(year).values["online_uptake"] == (1, 1)
    inc.keep_windows([year.name])
    assert set(inc.windows) == {"year:2024"}
    assert inc.update(us(111))  # past due: d1 turns late with no new event
    assert inc.counts(year).values["on_time"] == (0, 1)
    assert inc.counts(april).values == count(state, april, us(111)).values
    assert not inc.update(us(500))  # nothing left to change by itself
