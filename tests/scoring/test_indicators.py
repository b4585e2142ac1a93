"""Hand-built scenarios, one SPEC section 3 rule at a time; every expected value is worked out
by hand in the test from the SPEC text."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Validator
from scoring.catalog import Catalog
from scoring.engine import Engine
from scoring.exceptions import WindowError
from scoring.indicators import KNOWN_INDICATORS, dossier_due
from scoring.model import Model, load_model, model_from_dict
from scoring.timeutil import format_ts, parse_ts, parse_window, resolve_window, window_of

VN766 = load_model("vn766@1")
CATALOG = Catalog.from_list([
    {"unit_id": "u1", "name": "Unit 1", "peer_group": "g1"},
    {"unit_id": "u2", "name": "Unit 2", "peer_group": "g1"},
    {"unit_id": "u3", "name": "Unit 3", "peer_group": "g1"},
    {"unit_id": "v1", "name": "Other 1", "peer_group": "g2"},
])
APRIL = parse_window("month:2024-04")
END_APRIL = parse_ts("2024-04-30T23:59:59+07:00")
FAR = "2024-05-20T09:00:00+07:00"  # a due time after every T of these tests


def at(day: int, hour: int = 9, month: int = 4, minute: int = 0) -> str:
    return f"2024-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00+07:00"


def us(text: str) -> int:
    value = parse_ts(text)
    assert value is not None, text
    return value


class Scenario:
    """Events of one test, fed through the real validator into an engine."""

    def __init__(self, model: Model = VN766):
        self.validator = Validator(CATALOG)
        self.engine = Engine(CATALOG, model)
        self.n = 0

    def add(self, event_type: str, when: str, unit: str = "u1", **fields: object) -> None:
        self.n += 1
        body = {"event_id": f"e{self.n:04d}", "type": event_type, "occurred_at": when,
                "unit_id": unit, **fields}
        self.engine.apply(self.validator.check(body))

    def received(self, dossier: str, when: str, due: str, unit: str = "u1",
                 procedure: str = "p1", channel: str = "in_person", **flags: bool) -> None:
        names = ("online_eligible", "full_online", "fee_required", "reused_data", "pds_linked",
                 "population_db")
        unknown = set(flags) - set(names)
        assert not unknown, unknown
        self.add("dossier.received", when, unit, dossier_id=dossier, procedure_id=procedure,
                 channel=channel, due_at=due, **{n: flags.get(n, False) for n in names})

    def d(self, event_type: str, dossier: str, when: str, unit: str = "u1",
          **fields: object) -> None:
        self.add(f"dossier.{event_type}", when, unit, dossier_id=dossier, **fields)

    def petition(self, event_type: str, petition: str, when: str, unit: str = "u1",
                 **fields: object) -> None:
        self.add(f"petition.{event_type}", when, unit, petition_id=petition, **fields)

    def published(self, when: str, unit: str = "u1", announced: bool = True,
                  publicized: bool = True, complete: bool = True) -> None:
        self.add("procedure.published", when, unit, procedure_id=f"pr{self.n}",
                 announced_on_time=announced, publicized_on_time=publicized, complete=complete)

    def counts(self, t: int | str = END_APRIL, window: str = "month:2024-04",
               unit: str = "u1") -> dict[str, tuple[int, int]]:
        t = us(t) if isinstance(t, str) else t
        return self.engine.score_unit(unit, parse_window(window), t).counts

    def unit(self, t: int | str = END_APRIL, window: str = "month:2024-04",
             unit: str = "u1") -> dict:
        t = us(t) if isinstance(t, str) else t
        scores = self.engine.score_all(parse_window(window), t)
        return next(s for s in scores if s["unit_id"] == unit)


# ---------------------------------------------------------------- lateness


def test_two_supplements_make_a_dossier_late_even_if_completed_on_time() -> None:
    s = Scenario()
    s.received("d1", at(1), due=FAR)
    s.d("supplement_requested", "d1", at(2))
    s.d("supplement_requested", "d1", at(3), new_due_at=at(25))
    s.d("completed", "d1", at(4), e_result=True)
    # control: one supplement, completed on time
    s.received("d2", at(1), due=FAR)
    s.d("supplement_requested", "d2", at(2))
    s.d("completed", "d2", at(4), e_result=True)

    assert s.counts(at(2, 12))["on_time"] == (2, 2)  # one supplement each so far
    assert s.counts(at(3, 12))["on_time"] == (1, 2)  # d1 has its second one now
    assert s.counts()["on_time"] == (1, 2)
    assert s.counts()["dossier_satisfaction"] == (1, 2)


def test_due_comes_from_the_supplement_when_it_has_a_new_due() -> None:
    s = Scenario()
    # d1: new due later than the original -> completed on time
    s.received("d1", at(1), due=at(5))
    s.d("supplement_requested", "d1", at(2), new_due_at=at(15))
    s.d("completed", "d1", at(10), e_result=False)
    # d2: the supplement has no new due -> the original one applies -> late
    s.received("d2", at(1), due=at(5))
    s.d("supplement_requested", "d2", at(2))
    s.d("completed", "d2", at(10), e_result=False)
    # d3: the new due is *earlier* than the original: it still replaces it -> late
    s.received("d3", at(1), due=FAR)
    s.d("supplement_requested", "d3", at(2), new_due_at=at(8))
    s.d("completed", "d3", at(10), e_result=False)
    # d4: open; its supplement (new due Apr 30) only happens on Apr 12
    s.received("d4", at(1), due=at(5))
    s.d("supplement_requested", "d4", at(12), new_due_at=at(30))

    assert s.counts(at(11))["on_time"] == (1, 4)  # d1 only; d4 is open past Apr 5
    assert s.counts(at(13))["on_time"] == (2, 4)  # d4's due moved to Apr 30


def test_due_is_the_new_due_of_the_latest_supplement_that_has_one() -> None:
    s = Scenario()
    s.received("d1", at(1), due=at(10))
    s.d("supplement_requested", "d1", at(2), new_due_at=at(25))
    s.d("supplement_requested", "d1", at(3), new_due_at=at(12))  # latest with a new due
    s.d("supplement_requested", "d1", at(4))  # latest of all, but without a new due
    dossier = s.engine.states["u1"].dossiers["d1"]
    assert dossier_due(dossier, us(at(1, 12))) == (us(at(10)), 0)
    assert dossier_due(dossier, us(at(2, 12))) == (us(at(25)), 1)
    assert dossier_due(dossier, us(at(3, 12))) == (us(at(12)), 2)
    assert dossier_due(dossier, us(at(4, 12))) == (us(at(12)), 3)


def test_completed_after_due_is_late_and_at_due_is_not() -> None:
    s = Scenario()
    s.received("on", at(1), due=at(10))
    s.d("completed", "on", at(10), e_result=True)  # exactly at due: c > due is false
    s.received("late", at(1), due=at(10))
    s.d("completed", "late", "2024-04-10T09:00:01+07:00", e_result=True)
    s.received("early", at(1), due=at(10))
    s.d("completed", "early", at(3), e_result=True)
    # the earliest completion counts, a later one is ignored
    s.received("twice", at(1), due=at(10))
    s.d("completed", "twice", at(12), e_result=True)
    s.d("completed", "twice", at(9), e_result=False)
    c = s.counts()
    assert c["on_time"] == (3, 4)
    assert c["e_result"] == (3, 4)  # "twice" completed first without an e-result


def test_open_dossier_is_late_only_once_t_passes_due() -> None:
    s = Scenario()
    s.received("d1", at(1), due=at(10))
    due = us(at(10))
    assert s.counts(due - 1)["on_time"] == (1, 1)
    assert s.counts(due)["on_time"] == (1, 1)  # T == due: not yet late
    assert s.counts(due + 1)["on_time"] == (0, 1)
    # completed afterwards (late): a score at a T before the completion still says "open"
    s.d("completed", "d1", at(15), e_result=True)
    assert s.counts(due)["on_time"] == (1, 1)
    assert s.counts(at(12))["on_time"] == (0, 1)
    assert s.counts()["on_time"] == (0, 1)
    assert s.counts(at(12))["e_result"] == (0, 0)  # not completed yet at Apr 12
    assert s.counts()["e_result"] == (1, 1)


def test_next_change_is_when_an_open_item_passes_due() -> None:
    s = Scenario()
    s.received("d1", at(1), due=at(10))
    s.petition("received", "p1", at(1), due_at=at(8))
    score = s.engine.score_unit("u1", APRIL, us(at(2)))
    assert score.next_change_us == us(at(8)) + 1
    score = s.engine.score_unit("u1", APRIL, us(at(9)))
    assert score.next_change_us == us(at(10)) + 1


# ---------------------------------------------------------------- D: window, T, withdrawals


def test_withdrawn_dossiers_leave_every_dossier_indicator() -> None:
    s = Scenario()
    s.received("w", at(1), due=FAR, channel="online", online_eligible=True,
               full_online=True, fee_required=True, reused_data=True, pds_linked=True,
               population_db=True)
    s.d("synced", "w", at(2))
    s.d("digitized", "w", at(2))
    s.d("paid", "w", at(2), online=True, amount_vnd=1000)
    s.received("k", at(1), due=FAR)
    s.d("withdrawn", "w", at(5))

    before = s.counts(at(4))
    assert before["online_submission"] == (1, 2)
    assert before["paid_online"] == (1, 1)
    assert before["online_uptake"] == (1, 1)
    withdrawn_at = s.counts(at(5))  # "at or before T"
    after = s.counts()
    for c in (withdrawn_at, after):
        assert c["online_submission"] == (0, 1)
        assert c["dossier_synced"] == (0, 1)
        assert c["digitized"] == (0, 1)
        assert c["paid_online"] == (0, 0)
        assert c["online_uptake"] == (0, 0)
        assert c["full_online"] == (0, 0)
        assert c["data_reused"] == (0, 1)
        assert c["pds_linked"] == (0, 1)
        assert c["population_db"] == (0, 1)
        assert c["on_time"] == (1, 1)


def test_the_earliest_withdrawal_counts() -> None:
    s = Scenario()
    s.received("d1", at(1), due=FAR)
    s.d("withdrawn", "d1", at(8))
    s.d("withdrawn", "d1", at(4))  # arrives later, happened earlier
    s.received("d2", at(1), due=FAR)
    assert s.counts(at(3))["on_time"] == (2, 2)
    assert s.counts(at(5))["on_time"] == (1, 1)
    assert s.counts()["on_time"] == (1, 1)


def test_dossier_received_after_t_is_not_counted() -> None:
    s = Scenario()
    s.received("d1", at(1), due=FAR)
    s.received("d2", at(10), due=FAR)
    assert s.counts(at(5))["on_time"] == (1, 1)
    assert s.counts()["on_time"] == (2, 2)


def test_later_events_update_the_dossier_in_its_own_window() -> None:
    s = Scenario()
    s.received("d1", at(31, month=3), due=at(5))
    s.d("completed", "d1", at(2), e_result=True)
    s.d("digitized", "d1", at(3))
    march = s.counts(window="month:2024-03")
    assert march["e_result"] == (1, 1)
    assert march["digitized"] == (1, 1)
    assert march["on_time"] == (1, 1)
    april = s.counts(window="month:2024-04")
    assert april["on_time"] == (0, 0)
    assert april["e_result"] == (0, 0)
    assert s.unit()["total"] is None  # nothing of u1 belongs to April


def test_month_boundary_is_in_utc_plus_7() -> None:
    s = Scenario()
    s.received("march", "2024-03-31T23:30:00+07:00", due=FAR)
    s.received("april", "2024-03-31T17:30:00Z", due=FAR)  # 2024-04-01T00:30+07:00
    s.received("april2", "2024-03-31T17:00:00Z", due=FAR)  # exactly 2024-04-01T00:00+07
    s.received("march2", "2024-03-31T16:59:59.999999Z", due=FAR)
    assert s.counts(window="month:2024-03")["on_time"] == (2, 2)
    assert s.counts(window="month:2024-04")["on_time"] == (2, 2)
    assert s.counts(window="quarter:2024-Q1")["on_time"] == (2, 2)
    assert s.counts(window="quarter:2024-Q2")["on_time"] == (2, 2)
    assert s.counts(window="year:2024")["on_time"] == (4, 4)


def test_quarter_and_year_windows() -> None:
    s = Scenario()
    s.received("q1", "2023-12-31T17:00:00Z", due="2024-01-05T00:00:00+07:00")  # Jan 1 00:00 +7
    s.received("q4-2023", "2023-12-31T23:59:59+07:00", due="2024-01-05T00:00:00+07:00")
    s.received("q2", "2024-06-30T23:59:59+07:00", due="2024-07-05T00:00:00+07:00")
    s.received("q3", "2024-06-30T17:00:00Z", due="2024-07-05T00:00:00+07:00")
    s.received("q4", "2024-12-31T16:59:59Z", due="2025-01-05T00:00:00+07:00")
    s.received("next-year", "2024-12-31T17:00:00Z", due="2025-01-05T00:00:00+07:00")
    t = "2025-03-01T00:00:00+07:00"
    den = {w: s.counts(t, window=w)["on_time"][1] for w in (
        "quarter:2023-Q4", "quarter:2024-Q1", "quarter:2024-Q2", "quarter:2024-Q3",
        "quarter:2024-Q4", "quarter:2025-Q1", "year:2023", "year:2024", "year:2025")}
    assert den == {"quarter:2023-Q4": 1, "quarter:2024-Q1": 1, "quarter:2024-Q2": 1,
                   "quarter:2024-Q3": 1, "quarter:2024-Q4": 1, "quarter:2025-Q1": 1,
                   "year:2023": 1, "year:2024": 4, "year:2025": 1}


@pytest.mark.parametrize(
    ("name", "start", "end"),
    [
        ("month:2024-04", "2024-04-01T00:00:00+07:00", "2024-05-01T00:00:00+07:00"),
        ("month:2024-02", "2024-02-01T00:00:00+07:00", "2024-03-01T00:00:00+07:00"),
        ("month:2024-12", "2024-12-01T00:00:00+07:00", "2025-01-01T00:00:00+07:00"),
        ("quarter:2024-Q1", "2024-01-01T00:00:00+07:00", "2024-04-01T00:00:00+07:00"),
        ("quarter:2024-Q2", "2024-04-01T00:00:00+07:00", "2024-07-01T00:00:00+07:00"),
        ("quarter:2024-Q4", "2024-10-01T00:00:00+07:00", "2025-01-01T00:00:00+07:00"),
        ("year:2024", "2024-01-01T00:00:00+07:00", "2025-01-01T00:00:00+07:00"),
    ],
)
def test_window_bounds(name: str, start: str, end: str) -> None:
    w = parse_window(name)
    assert (w.start_us, w.end_us) == (us(start), us(end))
    assert w.contains(us(start)) and not w.contains(us(end))
    assert w.contains(us(end) - 1) and not w.contains(us(start) - 1)


@pytest.mark.parametrize("name", ["month:2024-13", "month:2024-00", "quarter:2024-Q5",
                                  "quarter:2024-Q0", "week:2024-14", "month:2024-4", "2024",
                                  "year:24", "month", "", "year:0000", "month:0000-05",
                                  "year:9999", "quarter:9999-Q4", "month:9999-12"])
def test_bad_window_names(name: str) -> None:
    with pytest.raises(WindowError):
        parse_window(name)


@pytest.mark.parametrize(
    ("kind", "when", "name"),
    [
        ("month", "2024-03-31T23:59:59+07:00", "month:2024-03"),
        ("month", "2024-03-31T17:30:00Z", "month:2024-04"),
        ("quarter", "2024-03-31T17:00:00Z", "quarter:2024-Q2"),
        ("quarter", "2024-12-31T16:59:59Z", "quarter:2024-Q4"),
        ("year", "2023-12-31T17:00:00Z", "year:2024"),
        ("year", "2024-12-31T17:00:00Z", "year:2025"),
    ],
)
def test_window_holding_an_instant(kind: str, when: str, name: str) -> None:
    assert window_of(kind, us(when)).name == name
    assert resolve_window(kind, us(when)).name == name
    assert resolve_window(name, 0).name == name  # an explicit window ignores as-of


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 9999), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23),
       st.integers(0, 59), st.integers(-23 * 60 - 59, 23 * 60 + 59), st.booleans())
def test_every_accepted_timestamp_can_be_shown_and_windowed(
    year: int, month: int, day: int, hour: int, minute: int, offset: int, edge: bool
) -> None:
    """No timestamp the validator accepts may crash a consumer (formatting, windows)."""
    if edge:  # the extremes of the calendar
        year, month, day = (1, 1, 1) if offset % 2 else (9999, 12, 31)
    sign = "-" if offset < 0 else "+"
    text = (f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00"
            f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}")
    value = parse_ts(text)
    if value is None:
        return
    assert parse_ts(format_ts(value, "UTC")) == value
    assert format_ts(value)  # in the model's zone (historic offsets may have seconds)
    for kind in ("month", "quarter", "year"):
        try:
            w = window_of(kind, value)
        except WindowError:  # a window that would end after year 9999: refused, not a crash
            continue
        assert w.contains(value)


# ---------------------------------------------------------------- ratings


def test_latest_rating_wins() -> None:
    s = Scenario()
    s.received("d1", at(1), due=FAR)
    s.d("rated", "d1", at(3), rating="dissatisfied")
    s.d("rated", "d1", at(5), rating="satisfied")
    s.received("d2", at(1), due=FAR)
    s.d("rated", "d2", at(3), rating="satisfied")
    s.d("rated", "d2", at(5), rating="dissatisfied")
    s.received("d3", at(1), due=FAR)
    s.d("rated", "d3", at(5), rating="neutral")  # neutral is not dissatisfied
    assert s.counts(at(4))["dossier_satisfaction"] == (2, 3)  # d2 and d3 (unrated yet)
    assert s.counts()["dossier_satisfaction"] == (2, 3)  # d1 and d3
    d1_only = Scenario()
    d1_only.received("d1", at(1), due=FAR)
    d1_only.d("rated", "d1", at(5), rating="satisfied")
    d1_only.d("rated", "d1", at(3), rating="dissatisfied")  # arrives later, happened earlier
    assert d1_only.counts()["dossier_satisfaction"] == (1, 1)


def test_late_dossier_is_not_satisfying_even_if_rated_satisfied() -> None:
    s = Scenario()
    for i in range(10):
        s.received(f"d{i}", at(1), due=at(5))
        s.d("completed", f"d{i}", at(4 if i else 6), e_result=False)
        s.d("rated", f"d{i}", at(7), rating="satisfied")
    c = s.counts()
    assert c["dossier_satisfaction"] == (9, 10)
    # 9/10 meets the 0.9 target: full 6 points
    assert s.unit()["indicators"]["dossier_satisfaction"]["points"] == 6


def test_petitions_on_time_and_satisfaction() -> None:
    s = Scenario()
    s.petition("received", "early", at(1), due_at=at(10))
    s.petition("resolved", "early", at(5))
    s.petition("received", "at-due", at(1), due_at=at(10))
    s.petition("resolved", "at-due", at(10))
    s.petition("received", "late", at(1), due_at=at(10))
    s.petition("resolved", "late", at(11))
    s.petition("received", "open", at(1), due_at=FAR)
    s.petition("received", "overdue", at(1), due_at=at(12))
    s.petition("rated", "early", at(6), rating="dissatisfied")
    s.petition("rated", "early", at(7), rating="neutral")
    s.petition("rated", "late", at(12), rating="satisfied")
    s.petition("rated", "late", at(13), rating="dissatisfied")
    c = s.counts()
    assert c["petitions_on_time"] == (3, 5)  # early, at-due, open
    assert c["petition_satisfaction"] == (1, 2)  # early (neutral) of 2 rated
    c = s.counts(at(11, 12))
    assert c["petitions_on_time"] == (4, 5)  # overdue not yet past Apr 12
    assert s.counts(at(12))["petitions_on_time"] == (4, 5)  # T == due: still on time
    assert s.counts(us(at(12)) + 1)["petitions_on_time"] == (3, 5)
    assert c["petition_satisfaction"] == (1, 1)
    points = s.unit()["indicators"]
    assert points["petitions_on_time"]["points"] == pytest.approx(6 * 3 / 5)
    assert points["petition_satisfaction"]["points"] == pytest.approx(3)


# ---------------------------------------------------------------- online services and payment


def test_online_uptake_counts_distinct_procedures() -> None:
    s = Scenario()
    s.received("a1", at(1), FAR, procedure="pA", channel="online", online_eligible=True)
    s.received("a2", at(1), FAR, procedure="pA", online_eligible=True)
    s.received("a3", at(1), FAR, procedure="pA", online_eligible=True)
    s.received("b1", at(1), FAR, procedure="pB", online_eligible=True, channel="postal")
    s.received("c1", at(1), FAR, procedure="pC", channel="online", online_eligible=True,
               full_online=True)
    s.received("c2", at(1), FAR, procedure="pC", channel="online", online_eligible=True,
               full_online=True)
    s.received("x1", at(1), FAR, procedure="pX", channel="online")  # not eligible
    c = s.counts()
    assert c["online_uptake"] == (2, 3)  # {pA, pC} of {pA, pB, pC}
    assert c["full_online"] == (2, 6)  # c1, c2 of the six eligible dossiers
    assert c["online_submission"] == (4, 7)
    ind = s.unit()["indicators"]
    assert ind["online_uptake"]["points"] == pytest.approx(4 * 2 / 3, abs=1e-4)
    assert ind["full_online"]["points"] == pytest.approx(2 * (2 / 6) / 0.8, abs=1e-4)
    assert ind["online_submission"]["points"] == 6  # 4/7 > 0.5 target


def test_paid_online_counts_only_fee_required_dossiers() -> None:
    s = Scenario()
    s.received("free-paid", at(1), FAR, procedure="pF")
    s.d("paid", "free-paid", at(2), online=True, amount_vnd=0)
    s.received("fee-cash", at(1), FAR, procedure="pA", fee_required=True)
    s.d("paid", "fee-cash", at(2), online=False, amount_vnd=20_000)
    s.received("fee-online", at(1), FAR, procedure="pB", fee_required=True)
    s.d("paid", "fee-online", at(2), online=False, amount_vnd=10_000)
    s.d("paid", "fee-online", at(3), online=True, amount_vnd=10_000)  # any online payment
    s.received("fee-unpaid", at(1), FAR, procedure="pB", fee_required=True)
    s.received("fee-late-pay", at(1), FAR, procedure="pC", fee_required=True)
    s.d("paid", "fee-late-pay", at(15), online=True, amount_vnd=5)
    c = s.counts(at(10))
    assert c["paid_online"] == (1, 4)
    assert c["online_payment_procedures"] == (1, 3)  # {pB} of {pA, pB, pC}
    c = s.counts()
    assert c["paid_online"] == (2, 4)
    assert c["online_payment_procedures"] == (2, 3)
    ind = s.unit()["indicators"]
    assert ind["paid_online"]["points"] == 3
    assert ind["online_payment_procedures"]["points"] == pytest.approx(4 * (2 / 3) / 0.8,
                                                                        abs=1e-4)


def test_digitization_flags_and_events_before_t() -> None:
    s = Scenario()
    s.received("d1", at(1), FAR, reused_data=True, pds_linked=True, population_db=True)
    s.received("d2", at(1), FAR, pds_linked=True)
    s.received("d3", at(1), FAR)
    s.received("d4", at(1), FAR)
    s.received("d5", at(1), FAR, reused_data=True)
    s.d("digitized", "d1", at(2))
    s.d("digitized", "d2", at(12))
    s.d("synced", "d3", at(3))
    s.d("synced", "d3", at(2))
    c = s.counts(at(10))
    assert c["digitized"] == (1, 5)
    assert c["dossier_synced"] == (1, 5)
    assert c["data_reused"] == (2, 5)
    assert c["pds_linked"] == (2, 5)
    assert c["population_db"] == (1, 5)
    assert s.counts()["digitized"] == (2, 5)
    ind = s.unit()["indicators"]
    assert ind["data_reused"]["points"] == 1  # 2 x (0.4 / 0.8)


def test_officer_id_never_changes_a_score() -> None:
    a, b = Scenario(), Scenario()
    for s, extra in ((a, {}), (b, {"officer_id": "officer-1"})):
        s.add("dossier.received", at(1), dossier_id="d1", procedure_id="p", channel="online",
              due_at=at(3), online_eligible=True, full_online=False, fee_required=True,
              reused_data=False, pds_linked=False, population_db=True, **extra)
        s.add("dossier.completed", at(4), dossier_id="d1", e_result=True, **extra)
        s.add("dossier.paid", at(2), dossier_id="d1", online=True, amount_vnd=5, **extra)
    assert a.unit() == b.unit()


# ---------------------------------------------------------------- empty rules, unscored units


def test_empty_rule_full_for_petitions_zero_elsewhere() -> None:
    s = Scenario()
    s.received("d1", at(1), FAR)
    ind = s.unit()["indicators"]
    for name in ("petitions_on_time", "petition_satisfaction"):
        assert ind[name] == {"num": 0, "den": 0, "points": 6, "max": 6, "applicable": False}
    for name in ("announced_on_time", "publicized_on_time", "content_complete", "e_result",
                 "paid_online", "online_payment_procedures", "online_uptake", "full_online"):
        assert ind[name]["points"] == 0 and ind[name]["applicable"] is False, name
    assert s.unit()["groups"]["satisfaction"] == {"points": 18, "max": 18}
    # d1 is open, on time, not online, nothing else: on_time 20 + dossier_satisfaction 6
    # (1/1 >= 0.9) + 12 for the empty petition indicators
    assert s.unit()["total"] == 38.0
    assert s.unit()["band"] == "weak"


def exclude_variant(*ids: str) -> Model:
    path = Path(__file__).resolve().parents[2] / "scoring" / "models" / "vn766@1.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["version"] = 2
    for group in data["groups"]:
        for ind in group["indicators"]:
            if ind["id"] in ids:
                ind["empty"] = "exclude"
    return model_from_dict(data)


def test_empty_rule_exclude_drops_the_max() -> None:
    model = exclude_variant("announced_on_time", "publicized_on_time", "content_complete",
                            "petitions_on_time")
    s = Scenario(model)
    s.received("d1", at(1), FAR)
    s.petition("received", "p1", at(1), due_at=at(3))  # overdue and unresolved
    unit = s.unit()
    ind = unit["indicators"]
    assert ind["announced_on_time"]["applicable"] is False
    assert ind["announced_on_time"]["points"] is None
    assert unit["groups"]["transparency"] == {"points": 0, "max": 6}
    # petitions_on_time has a denominator here, so it is not excluded: 0 of 6
    assert ind["petitions_on_time"]["points"] == 0
    assert ind["petition_satisfaction"]["points"] == 6  # still "full"
    # points: on_time 20 + dossier_satisfaction 6 + petition_satisfaction 6 = 32
    # of max 100 - 12 (the three publication indicators) = 88
    assert unit["total"] == round(100 * 32 / 88, 2) == 36.36
    # without the petition, petitions_on_time is excluded too: 32 - 6 + ... of 82
    t = Scenario(model)
    t.received("d1", at(1), FAR)
    assert t.unit()["total"] == round(100 * 32 / 82, 2) == 39.02


def test_unit_with_nothing_in_window_has_no_score() -> None:
    s = Scenario()
    s.received("d1", at(1), FAR, unit="u1")
    s.received("old", at(5, month=3), at(20, month=3), unit="u2")  # March only
    s.add("clock.tick", at(29), unit="u3")  # ticks carry no fact
    s.d("completed", "ghost", at(2), unit="u3", e_result=True)  # orphan: never received
    scores = {u["unit_id"]: u for u in s.engine.score_all(APRIL, END_APRIL)}
    for unit in ("u2", "u3", "v1"):
        assert scores[unit]["total"] is None
        assert scores[unit]["band"] is None
        assert scores[unit]["rank"] is None
        assert scores[unit]["peer_count"] is None
        assert set(scores[unit]["indicators"]) == set(KNOWN_INDICATORS)
    assert scores["u1"]["rank"] == 1 and scores["u1"]["peer_count"] == 1
    assert scores["u2"]["peer_group"] == "g1"


@pytest.mark.parametrize("kind", ["petition", "publication"])
def test_a_petition_or_publication_alone_makes_a_unit_scored(kind: str) -> None:
    s = Scenario()
    if kind == "petition":
        s.petition("received", "p1", at(2), due_at=at(9))
        s.petition("resolved", "p1", at(3))
        # petitions 6 + petition_satisfaction 6 (empty: full)
        expected = 12.0
    else:
        s.published(at(2), announced=True, publicized=False, complete=True)
        # 6 + 0 + 2 + petitions 12 (empty: full)
        expected = 20.0
    unit = s.unit()
    assert unit["total"] == expected
    assert unit["rank"] == 1 and unit["peer_count"] == 1


def test_publications_counted_in_their_window() -> None:
    s = Scenario()
    s.published(at(2), announced=True, publicized=True, complete=False)
    s.published(at(3), announced=False, publicized=True, complete=False)
    s.published(at(4), announced=True, publicized=False, complete=True)
    s.published(at(4, month=5))
    s.published(at(29, month=3))
    c = s.counts()
    assert c["announced_on_time"] == (2, 3)
    assert c["publicized_on_time"] == (2, 3)
    assert c["content_complete"] == (1, 3)
    assert s.counts(at(3, 12))["announced_on_time"] == (1, 2)


# ---------------------------------------------------------------- one unit, every indicator


def test_full_unit_by_hand() -> None:
    s = Scenario()
    s.published(at(1), announced=True, publicized=True, complete=False)
    s.published(at(2), announced=True, publicized=False, complete=False)
    s.received("d1", at(2), at(10), procedure="pA", channel="online", online_eligible=True,
               full_online=True, fee_required=True, reused_data=True, pds_linked=True,
               population_db=True)
    s.d("digitized", "d1", at(2, 10))
    s.d("synced", "d1", at(3))
    s.d("paid", "d1", at(3), online=True, amount_vnd=30_000)
    s.d("completed", "d1", at(8), e_result=True)
    s.d("rated", "d1", at(9), rating="satisfied")
    s.received("d2", at(3), at(6), procedure="pA", online_eligible=True, pds_linked=True,
               population_db=True)
    s.d("synced", "d2", at(4))
    s.d("completed", "d2", at(9), e_result=False)  # after its due: late
    s.d("rated", "d2", at(10), rating="dissatisfied")
    s.received("d3", at(5), at(20, month=5), procedure="pB", channel="postal",
               fee_required=True)
    s.d("paid", "d3", at(6), online=False, amount_vnd=10_000)
    s.d("digitized", "d3", at(6))
    s.received("d4", at(6), at(8), procedure="pC", channel="online", online_eligible=True)
    s.d("withdrawn", "d4", at(7))
    s.petition("received", "p1", at(4), due_at=at(14))
    s.petition("resolved", "p1", at(10))
    s.petition("rated", "p1", at(11), rating="satisfied")
    s.petition("received", "p2", at(20), due_at=at(25))  # open past due at T

    # D = {d1, d2, d3}; by hand, SPEC section 3:
    expected_counts = {
        "announced_on_time": (2, 2), "publicized_on_time": (1, 2), "content_complete": (0, 2),
        "dossier_synced": (2, 3), "on_time": (2, 3), "online_submission": (1, 3),
        "online_uptake": (1, 1), "full_online": (1, 2), "paid_online": (1, 2),
        "online_payment_procedures": (1, 2), "e_result": (1, 2), "digitized": (2, 3),
        "data_reused": (1, 3), "pds_linked": (2, 3), "population_db": (2, 3),
        "petitions_on_time": (1, 2), "petition_satisfaction": (1, 1),
        "dossier_satisfaction": (2, 3),
    }
    expected_points = {
        "announced_on_time": Fraction(6), "publicized_on_time": Fraction(2),
        "content_complete": Fraction(0), "dossier_synced": Fraction(4),
        "on_time": Fraction(40, 3), "online_submission": Fraction(4),  # 6 x (1/3)/0.5
        "online_uptake": Fraction(4), "full_online": Fraction(5, 4),  # 2 x 0.5/0.8
        "paid_online": Fraction(3), "online_payment_procedures": Fraction(5, 2),
        "e_result": Fraction(3), "digitized": Fraction(8, 3),
        "data_reused": Fraction(5, 6),  # 2 x (1/3)/0.8
        "pds_linked": Fraction(8, 3), "population_db": Fraction(4),
        "petitions_on_time": Fraction(3), "petition_satisfaction": Fraction(6),
        "dossier_satisfaction": Fraction(40, 9),  # 6 x (2/3)/0.9
    }
    assert s.counts() == expected_counts
    unit = s.unit()
    for name, pts in expected_points.items():
        assert unit["indicators"][name]["points"] == pytest.approx(float(pts), abs=1e-4), name
        assert (unit["indicators"][name]["num"],
                unit["indicators"][name]["den"]) == expected_counts[name]
    # 12 + 40/3 + 37/4 + 11/2 + 79/6 + 121/9 = 2401/36 = 66.694..
    assert sum(expected_points.values()) == Fraction(2401, 36)
    assert unit["total"] == 66.69
    assert unit["band"] == "average"
    assert unit["groups"]["transparency"] == {"points": 12, "max": 18}
    assert unit["groups"]["online_services"] == {"points": 9.25, "max": 12}
    assert unit["groups"]["online_payment"] == {"points": 5.5, "max": 10}
    assert unit["groups"]["digitization"]["points"] == pytest.approx(79 / 6, abs=1e-4)
    assert unit["groups"]["satisfaction"]["points"] == pytest.approx(121 / 9, abs=1e-4)


# ---------------------------------------------------------------- ranking


def test_ranks_within_peer_groups_with_ties() -> None:
    s = Scenario()
    s.received("a", at(1), FAR, unit="u1")  # 38: on_time + dossier_sat + petitions
    s.received("b", at(1), FAR, unit="u2")  # 38
    s.received("c", at(1), at(2), unit="u3")  # open past due: 12
    s.received("d", at(1), at(2), unit="v1")  # 12, alone in g2
    scores = {u["unit_id"]: u for u in s.engine.score_all(APRIL, END_APRIL)}
    assert [scores[u]["total"] for u in ("u1", "u2", "u3", "v1")] == [38.0, 38.0, 12.0, 12.0]
    assert [scores[u]["rank"] for u in ("u1", "u2", "u3", "v1")] == [1, 1, 3, 1]
    assert [scores[u]["peer_count"] for u in ("u1", "u2", "u3", "v1")] == [3, 3, 3, 1]
    assert [u["unit_id"] for u in s.engine.score_all(APRIL, END_APRIL)] == [
        "u1", "u2", "u3", "v1"]  # catalog order
