"""``scoring.running.UnitCounts`` equals the reference ``scoring.indicators.count`` on random
event sequences, folded in random order while T moves (mostly forward, sometimes back), with
facts on both sides of T, for several windows at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Validator
from scoring import running
from scoring.catalog import Catalog
from scoring.facts import Dossier, UnitState, apply_event
from scoring.indicators import NEVER, count
from scoring.running import UnitCounts
from scoring.timeutil import DEFAULT_TZ as TZ
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


def test_a_re_announce_at_the_same_instant_moves_the_procedure() -> None:
    """A dossier's procedure changes while its anchor and bits stay (an earlier-id received at
    the same instant wins the tie): the distinct-procedure counts must follow, although only
    the procedure moved (the update then touches no bit)."""
    def received(event_id: str, dossier_id: str, procedure: str) -> dict[str, Any]:
        return {"event_id": event_id, "type": "dossier.received", "unit_id": "u",
                "dossier_id": dossier_id, "occurred_at": stamp(100), "due_at": stamp(300),
                "procedure_id": procedure, "channel": "online", "online_eligible": True,
                "full_online": False, "fee_required": True, "reused_data": False,
                "pds_linked": False, "population_db": False}

    state, t = UnitState(), us(105)
    keys = [apply_event(state, VALIDATOR.check(received("e5", "d1", "a"))),
            apply_event(state, VALIDATOR.check(received("e6", "d2", "b")))]
    inc = UnitCounts(state, t)
    inc.update(t, [k for k in keys if k])
    april = parse_window("month:2024-04")
    assert inc.counts(april).values["online_uptake"] == (2, 2)
    key = apply_event(state, VALIDATOR.check(received("e1", "d1", "b")))
    assert state.dossiers["d1"].procedure_id == "b"
    inc.update(t, [key] if key else [])
    assert inc.counts(april).values == count(state, april, t).values
    assert inc.counts(april).values["online_payment_procedures"] == (0, 1)


class Settling:
    """A live worker's use of settling: the facts of every record in a store (as the scorer's
    facts table holds them), dossiers brought back from it before an event changes them."""

    def __init__(self, t: int):
        self.state = UnitState()
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.inc = UnitCounts(self.state, t, settle_tz=TZ)

    def fold(self, event: Any) -> tuple[str, str]:
        ident = event.body.get("dossier_id")
        if ident is not None and ident not in self.state.dossiers and ("d", ident) in self.store:
            self.inc.unsettle(ident, Dossier.from_dict(self.store[("d", ident)]))
        key = apply_event(self.state, event)
        assert key is not None
        if key[0] == "d":
            self.store[key] = self.state.dossiers[key[1]].to_dict()
        return key

    def rebuilt(self, t: int) -> UnitCounts:
        """What a restarted worker builds: every record read back from the store."""
        inc = UnitCounts(UnitState(), t, settle_tz=TZ)
        for (kind, ident), value in self.store.items():
            inc.admit(kind, ident, Dossier.from_dict(value))
        for ident, p in self.state.petitions.items():
            inc.admit("p", ident, p)
        for ident, b in self.state.publications.items():
            inc.admit("pub", ident, b)
        return inc


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_settled_counts_equal_count(case: tuple[list[dict[str, Any]], list[tuple[int, int]]]
                                    ) -> None:
    """Settling changes no count: dossiers that leave the state and come back agree with the
    reference on the whole state, as does a rebuild from the store; T only moves forward.
    The breakpoint heap is rebuilt at every update here, so a rebuild that dropped or
    mis-timed a live entry would show."""
    with patch.object(running, "HEAP_SLACK", -(2**62)):
        _settled_counts_equal_count(case)


def _settled_counts_equal_count(case: tuple[list[dict[str, Any]], list[tuple[int, int]]]
                                ) -> None:
    bodies, steps = case
    events = [VALIDATOR.check(b) for b in bodies]
    full = UnitState()  # every fact, for the reference
    live: Settling | None = None
    i, t_prev = 0, -(2**62)
    for n, t in steps:
        t = t_prev = max(t, t_prev)
        if live is None:
            live = Settling(t)
        touched = []
        for event in events[i:i + n]:
            apply_event(full, event)
            touched.append(live.fold(event))
        i += n
        live.inc.update(t, touched)
        assert len(live.inc.heap) <= len(live.inc.entries)  # rebuilt: no stale entry left
        check(full, live.inc, t)
        live.inc.keep_windows([])  # and sums made afresh from the entries and the tallies
        check(full, live.inc, t)
        # what left the state counts nowhere or the same at every later T
        assert set(live.state.dossiers) <= set(full.dossiers)
        check(full, live.rebuilt(t), t)
    assert i == len(events)


def test_settled_dossiers_leave_the_state_and_come_back() -> None:
    def ev(n: int, kind: str, hours: int, **more: Any) -> Any:
        body = {"event_id": f"e{n}", "type": f"dossier.{kind}", "unit_id": "u",
                "dossier_id": "d1", "occurred_at": stamp(hours), **more}
        return VALIDATOR.check(body)

    received = ev(1, "received", 100, due_at=stamp(110), procedure_id="x", channel="online",
                  online_eligible=True, full_online=True, fee_required=False,
                  reused_data=False, pds_linked=False, population_db=False)
    live = Settling(us(100))
    april = parse_window("month:2024-04")
    live.inc.update(us(100), [live.fold(received)])
    assert "d1" in live.state.dossiers  # open, due at 110: in play
    live.inc.update(us(105), [live.fold(ev(2, "completed", 105, e_result=True))])
    assert "d1" not in live.state.dossiers  # completed: its contribution is fixed
    assert live.inc.settled and not live.inc.entries
    assert live.inc.counts(april).values["e_result"] == (1, 1)
    live.inc.update(us(106), [live.fold(ev(3, "rated", 106, rating="dissatisfied"))])
    assert "d1" not in live.state.dossiers  # back for the rating, and settled again
    assert live.inc.counts(april).values["dossier_satisfaction"] == (0, 1)
    with pytest.raises(ValueError, match="back in time"):
        live.inc.update(us(50))


@pytest.mark.parametrize("tz", ["Asia/Ho_Chi_Minh", "Asia/Kathmandu", "America/St_Johns",
                                "Australia/Lord_Howe"])
def test_month_of_an_instant_is_the_calendars(tz: str) -> None:
    """The slot cache of ``scoring.running`` answers as the calendar, right at month edges
    (also in 1905, when Saigon's offset was +07:06:40, and across DST changes)."""
    from scoring.running import UnitCounts, _month_start
    from scoring.timeutil import window_of

    inc = UnitCounts(UnitState(), 0, settle_tz=tz)
    for year, month in ((1905, 3), (2024, 4), (2024, 10), (2025, 1)):
        edge = parse_window(f"month:{year}-{month:02d}", tz).start_us
        near = (edge - 1, edge, edge + 1, edge - 450_000_000, edge + 899_999_999)
        want = [window_of("month", us_, tz).start_us for us_ in near]
        assert [_month_start(us_, tz) for us_ in near] == want
        assert [inc._month_of(us_) for us_ in near] == want  # from the cache where it may be
        assert [inc._month_of(us_) for us_ in reversed(near)] == want[::-1]
