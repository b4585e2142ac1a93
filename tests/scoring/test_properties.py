"""Properties of the scoring core on random event sets (SPEC section 3: "a pure function of the
set of events, after de-duplication by event_id, with occurred_at <= T").

Besides the algebraic properties (order independence, idempotent duplicates, no peeking past T,
orphans) the engine is checked against ``reference_scores``: a deliberately naive, separate
reading of the SPEC text that recomputes every count, point, total, band and rank from the raw
event bodies.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bando.batch import Rejection, accept
from schemas import Validator
from scoring.catalog import Catalog
from scoring.dedup import Deduper
from scoring.engine import Engine
from scoring.model import BAND_ORDER, load_model
from scoring.points import round_half_away
from scoring.timeutil import parse_window

VN766 = load_model("vn766@1")
UNITS = [("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B"), ("b2", "B")]
CATALOG = Catalog.from_list([{"unit_id": u, "name": u.upper(), "peer_group": g}
                             for u, g in UNITS])
UNIT_IDS = [u for u, _ in UNITS]
BASE = datetime(2024, 3, 25, tzinfo=UTC)  # events from late March to early May
SPAN_H = 40 * 24
WINDOWS = ["month:2024-03", "month:2024-04", "month:2024-05", "quarter:2024-Q1",
           "quarter:2024-Q2", "year:2024"]
OFFSETS = [UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-5, minutes=-30))]
ICT = timezone(timedelta(hours=7))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

PROPS = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---------------------------------------------------------------- event generation


def stamp(half_hours: int) -> str:
    """An instant on a half-hour grid (ties are frequent on purpose), written in one of three
    offsets picked by the value itself."""
    dt = BASE + timedelta(minutes=30 * half_hours)
    return dt.astimezone(OFFSETS[half_hours % len(OFFSETS)]).isoformat()


SPAN = 2 * SPAN_H
times = st.integers(-48, SPAN + 2 * 24 * 10)
RATINGS = ("satisfied", "neutral", "dissatisfied")


def after(start: int, lo_hours: int, hi_hours: int) -> st.SearchStrategy[int]:
    return st.integers(start + 2 * lo_hours, start + 2 * hi_hours)


def extra_received(r: int) -> bool:
    return r % 13 == 0


def bits(value: int, n: int) -> list[bool]:
    return [bool(value >> k & 1) for k in range(n)]


@st.composite
def dossier_life(draw: st.DrawFn, dossier_id: str) -> list[dict[str, Any]]:
    unit = draw(st.sampled_from(UNIT_IDS))
    r = draw(times)
    base = {"unit_id": unit, "dossier_id": dossier_id}
    # eight flags in one draw: received?, eligible, full, fee, reused, pds, popdb, officer
    has_received, eligible, full, fee, reused, pds, popdb, officer = bits(
        draw(st.integers(0, 255)), 8)
    has_received = has_received or r % 5 != 0  # one in ten stays an orphan forever
    channel = ("in_person", "online", "postal")[draw(st.integers(0, 2))]
    events: list[dict[str, Any]] = []
    if has_received:
        events.append({
            **base, "type": "dossier.received", "occurred_at": stamp(r),
            "due_at": stamp(draw(after(r, 1, 300))),
            "procedure_id": f"p{r % 4}", "channel": channel, "online_eligible": eligible,
            "full_online": channel == "online" and full, "fee_required": fee,
            "reused_data": reused, "pds_linked": pds, "population_db": popdb,
        })
    if has_received and extra_received(r):  # the same dossier announced twice, differently
        r2 = r + r % 7 - 3  # earlier, later or at the very same instant
        events.append({**events[0], "occurred_at": stamp(r2), "due_at": stamp(r2 + 5),
                       "channel": "online", "full_online": not full, "procedure_id": "p9",
                       "fee_required": not fee})
    later = after(r, -2, 400)
    # how many of each: digitized, synced, paid, supplements, completed, withdrawn, rated
    n_dig, n_syn, n_paid, n_sup, n_done, n_wd, n_rated = draw(st.tuples(
        st.integers(0, 1), st.integers(0, 2), st.integers(0, 2), st.integers(0, 3),
        st.integers(0, 2), st.integers(0, 5), st.integers(0, 2)))
    when = draw(st.lists(later, min_size=16, max_size=16))
    extra = draw(st.integers(0, 2**16 - 1))
    k = 0

    def at() -> str:
        nonlocal k
        k += 1
        return stamp(when[k - 1])

    for kind, n in (("digitized", n_dig), ("synced", n_syn)):
        events += [{**base, "type": f"dossier.{kind}", "occurred_at": at()} for _ in range(n)]
    for i in range(n_paid):
        events.append({**base, "type": "dossier.paid", "occurred_at": at(),
                       "online": bool(extra >> i & 1), "amount_vnd": when[i] * 1000 % 99_000})
    for i in range(n_sup):
        ev = {**base, "type": "dossier.supplement_requested", "occurred_at": at()}
        if extra >> (2 + i) & 1:
            ev["new_due_at"] = stamp(draw(after(r, 1, 500)))
        events.append(ev)
    for i in range(n_done):
        events.append({**base, "type": "dossier.completed", "occurred_at": at(),
                       "e_result": bool(extra >> (5 + i) & 1)})
    for _ in range(max(0, 2 - n_wd)):  # withdrawn once in 6, twice in 6
        events.append({**base, "type": "dossier.withdrawn", "occurred_at": at()})
    for i in range(n_rated):
        events.append({**base, "type": "dossier.rated", "occurred_at": at(),
                       "rating": RATINGS[(extra >> (7 + 2 * i)) % 3]})
    if officer:
        for i, ev in enumerate(events):
            if extra >> (11 + i % 5) & 1:
                ev["officer_id"] = f"o{i % 2}"
    return events


@st.composite
def petition_life(draw: st.DrawFn, petition_id: str) -> list[dict[str, Any]]:
    unit = draw(st.sampled_from(UNIT_IDS))
    r = draw(times)
    base = {"unit_id": unit, "petition_id": petition_id}
    n_resolved, n_rated, flags = draw(st.tuples(st.integers(0, 2), st.integers(0, 2),
                                                st.integers(0, 63)))
    when = draw(st.lists(after(r, 0, 400), min_size=5, max_size=5))
    events: list[dict[str, Any]] = []
    if r % 10 != 0:
        events.append({**base, "type": "petition.received", "occurred_at": stamp(r),
                       "due_at": stamp(when[4] + 2)})
        if extra_received(r):
            r2 = r + r % 7 - 3
            events.append({**events[0], "occurred_at": stamp(r2), "due_at": stamp(r2 + 20)})
    for i in range(n_resolved):
        events.append({**base, "type": "petition.resolved", "occurred_at": stamp(when[i])})
    for i in range(n_rated):
        events.append({**base, "type": "petition.rated", "occurred_at": stamp(when[2 + i]),
                       "rating": RATINGS[(flags >> 2 * i) % 3]})
    return events


@st.composite
def publication(draw: st.DrawFn) -> dict[str, Any]:
    a, b, c = bits(draw(st.integers(0, 7)), 3)
    t = draw(times)
    return {"type": "procedure.published", "unit_id": draw(st.sampled_from(UNIT_IDS)),
            "occurred_at": stamp(t), "procedure_id": f"p{t % 2}",
            "announced_on_time": a, "publicized_on_time": b, "complete": c}


@st.composite
def event_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 12))):
        bodies += draw(dossier_life(f"d{i}"))
    for i in range(draw(st.integers(0, 4))):
        bodies += draw(petition_life(f"p{i}"))
    for _ in range(draw(st.integers(0, 4))):
        bodies.append(draw(publication()))
    for _ in range(draw(st.integers(0, 2))):
        bodies.append({"type": "clock.tick", "occurred_at": stamp(draw(times))})
    for n, body in enumerate(bodies):
        body["event_id"] = f"ev{n:04d}"
        if n % 7 == 3:
            body["schema_version"] = 1
    return bodies


def us_of(text: str) -> int:
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


@st.composite
def as_of(draw: st.DrawFn, bodies: list[dict[str, Any]]) -> int:
    """Any instant of the span, or exactly the time of one of the events (boundaries)."""
    how = draw(st.integers(0, 2))
    if bodies and how == 0:
        body = draw(st.sampled_from(bodies))
        field = draw(st.sampled_from([f for f in ("occurred_at", "due_at", "new_due_at")
                                      if f in body]))
        return us_of(body[field]) + draw(st.sampled_from([-1, 0, 0, 1]))
    if how == 1:
        return us_of(stamp(draw(st.integers(-48, SPAN + 2 * 24 * 20))))
    return us_of(stamp(draw(st.integers(SPAN - 2 * 24 * 5, SPAN + 2 * 24 * 5))))


# windows weighted towards those that hold most of the generated events
scenarios = event_sets().flatmap(
    lambda b: st.tuples(st.just(b), as_of(b), st.sampled_from(
        WINDOWS + ["month:2024-04", "quarter:2024-Q2", "year:2024"])))

# ---------------------------------------------------------------- helpers


def engine_of(bodies: list[dict[str, Any]]) -> Engine:
    validator = Validator(CATALOG)
    engine = Engine(CATALOG, VN766)
    for body in bodies:
        engine.apply(validator.check(body))
    return engine


def scores(bodies: list[dict[str, Any]], window: str, t: int) -> list[dict[str, Any]]:
    return engine_of(bodies).score_all(parse_window(window), t)


def check_ranking(out: list[dict[str, Any]]) -> None:
    """(c): a valid competition ranking per peer group."""
    for group in {u["peer_group"] for u in out}:
        peers = [u for u in out if u["peer_group"] == group]
        scored = [u for u in peers if u["total"] is not None]
        for u in peers:
            if u["total"] is None:
                assert u["rank"] is None and u["peer_count"] is None and u["band"] is None
                continue
            assert u["peer_count"] == len(scored)
            assert u["rank"] == 1 + sum(p["total"] > u["total"] for p in scored)
        if scored:
            assert min(u["rank"] for u in scored) == 1


def check_bounds(out: list[dict[str, Any]]) -> None:
    """(e): points within [0, max], totals within [0, 100], band matches the total."""
    for u in out:
        for ind in u["indicators"].values():
            assert 0 <= ind["points"] <= ind["max"]
            assert 0 <= ind["num"] <= ind["den"] or ind["den"] == 0 == ind["num"]
            assert ind["applicable"] is (ind["den"] > 0)
        for g in u["groups"].values():
            assert 0 <= g["points"] <= g["max"]
        assert sum(g["max"] for g in u["groups"].values()) == 100
        if u["total"] is not None:
            assert 0 <= u["total"] <= 100
            assert u["total"] == round(u["total"], 2)
            assert u["band"] == VN766.band(u["total"])


# ---------------------------------------------------------------- reference (naive SPEC reading)

SPEC_TABLE = [  # id, group, max, target, empty
    ("announced_on_time", "transparency", 6, "1", "zero"),
    ("publicized_on_time", "transparency", 4, "1", "zero"),
    ("content_complete", "transparency", 2, "1", "zero"),
    ("dossier_synced", "transparency", 6, "1", "zero"),
    ("on_time", "progress", 20, "1", "zero"),
    ("online_submission", "online_services", 6, "0.5", "zero"),
    ("online_uptake", "online_services", 4, "1", "zero"),
    ("full_online", "online_services", 2, "0.8", "zero"),
    ("paid_online", "online_payment", 6, "1", "zero"),
    ("online_payment_procedures", "online_payment", 4, "0.8", "zero"),
    ("e_result", "digitization", 6, "1", "zero"),
    ("digitized", "digitization", 4, "1", "zero"),
    ("data_reused", "digitization", 2, "0.8", "zero"),
    ("pds_linked", "digitization", 4, "1", "zero"),
    ("population_db", "digitization", 6, "1", "zero"),
    ("petitions_on_time", "satisfaction", 6, "1", "full"),
    ("petition_satisfaction", "satisfaction", 6, "1", "full"),
    ("dossier_satisfaction", "satisfaction", 6, "0.9", "zero"),
]
BANDS = [(90, "excellent"), (80, "good"), (70, "fair"), (50, "average")]


def in_window(text: str, window: str) -> bool:
    local = datetime.fromisoformat(text).astimezone(ICT)
    kind, _, value = window.partition(":")
    if kind == "month":
        return f"{local.year:04d}-{local.month:02d}" == value
    if kind == "quarter":
        return f"{local.year:04d}-Q{(local.month - 1) // 3 + 1}" == value
    return f"{local.year:04d}" == value


def order(ev: dict[str, Any]) -> tuple[int, str]:
    return us_of(ev["occurred_at"]), ev["event_id"]


def reference_counts(bodies: list[dict[str, Any]], unit: str, window: str,
                     t: int) -> tuple[dict[str, tuple[int, int]], bool]:
    evs = [b for b in bodies if b.get("unit_id") == unit and us_of(b["occurred_at"]) <= t]
    by_dossier: dict[str, list[dict[str, Any]]] = {}
    by_petition: dict[str, list[dict[str, Any]]] = {}
    pubs = []
    for ev in evs:
        if ev["type"].startswith("dossier."):
            by_dossier.setdefault(ev["dossier_id"], []).append(ev)
        elif ev["type"].startswith("petition."):
            by_petition.setdefault(ev["petition_id"], []).append(ev)
        elif ev["type"] == "procedure.published" and in_window(ev["occurred_at"], window):
            pubs.append(ev)

    def of(evs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        return sorted((e for e in evs if e["type"] == kind), key=order)

    D = []
    for dossier_evs in by_dossier.values():
        received = of(dossier_evs, "dossier.received")
        if not received or not in_window(received[0]["occurred_at"], window):
            continue
        if of(dossier_evs, "dossier.withdrawn"):
            continue
        rec = received[0]
        supplements = of(dossier_evs, "dossier.supplement_requested")
        with_due = [s for s in supplements if "new_due_at" in s]
        due = us_of(with_due[-1]["new_due_at"] if with_due else rec["due_at"])
        completions = of(dossier_evs, "dossier.completed")
        if len(supplements) >= 2:
            late = True
        elif completions:
            late = us_of(completions[0]["occurred_at"]) > due
        else:
            late = t > due
        ratings = of(dossier_evs, "dossier.rated")
        D.append({
            "rec": rec, "late": late,
            "completed": bool(completions),
            "e_result": bool(completions) and completions[0]["e_result"],
            "rating": ratings[-1]["rating"] if ratings else None,
            "paid_online": any(p["online"] for p in of(dossier_evs, "dossier.paid")),
            "synced": bool(of(dossier_evs, "dossier.synced")),
            "digitized": bool(of(dossier_evs, "dossier.digitized")),
        })
    petitions = []
    for petition_evs in by_petition.values():
        received = of(petition_evs, "petition.received")
        if not received or not in_window(received[0]["occurred_at"], window):
            continue
        due = us_of(received[0]["due_at"])
        resolved = of(petition_evs, "petition.resolved")
        on_time = us_of(resolved[0]["occurred_at"]) <= due if resolved else t <= due
        ratings = of(petition_evs, "petition.rated")
        petitions.append((on_time, ratings[-1]["rating"] if ratings else None))

    def n(pred: Any, items: list[dict[str, Any]]) -> int:
        return sum(1 for x in items if pred(x))

    eligible = [d for d in D if d["rec"]["online_eligible"]]
    fee = [d for d in D if d["rec"]["fee_required"]]
    completed = [d for d in D if d["completed"]]
    procs = {d["rec"]["procedure_id"] for d in eligible}
    procs_online = {d["rec"]["procedure_id"] for d in eligible if d["rec"]["channel"] == "online"}
    fee_procs = {d["rec"]["procedure_id"] for d in fee}
    fee_procs_paid = {d["rec"]["procedure_id"] for d in fee if d["paid_online"]}
    rated = [r for _, r in petitions if r is not None]
    counts = {
        "announced_on_time": (n(lambda p: p["announced_on_time"], pubs), len(pubs)),
        "publicized_on_time": (n(lambda p: p["publicized_on_time"], pubs), len(pubs)),
        "content_complete": (n(lambda p: p["complete"], pubs), len(pubs)),
        "dossier_synced": (n(lambda d: d["synced"], D), len(D)),
        "on_time": (n(lambda d: not d["late"], D), len(D)),
        "online_submission": (n(lambda d: d["rec"]["channel"] == "online", D), len(D)),
        "online_uptake": (len(procs_online), len(procs)),
        "full_online": (n(lambda d: d["rec"]["channel"] == "online" and d["rec"]["full_online"],
                          eligible), len(eligible)),
        "paid_online": (n(lambda d: d["paid_online"], fee), len(fee)),
        "online_payment_procedures": (len(fee_procs_paid), len(fee_procs)),
        "e_result": (n(lambda d: d["e_result"], completed), len(completed)),
        "digitized": (n(lambda d: d["digitized"], D), len(D)),
        "data_reused": (n(lambda d: d["rec"]["reused_data"], D), len(D)),
        "pds_linked": (n(lambda d: d["rec"]["pds_linked"], D), len(D)),
        "population_db": (n(lambda d: d["rec"]["population_db"], D), len(D)),
        "petitions_on_time": (sum(on for on, _ in petitions), len(petitions)),
        "petition_satisfaction": (sum(r != "dissatisfied" for r in rated), len(rated)),
        "dossier_satisfaction": (n(lambda d: not d["late"] and d["rating"] != "dissatisfied", D),
                                 len(D)),
    }
    # "a unit with no dossier, petition or publication in the window has no score": read with
    # D (a dossier withdrawn at or before T does not make a unit scored) -- the SPEC is silent
    return counts, bool(D or petitions or pubs)


def reference_scores(bodies: list[dict[str, Any]], window: str,
                     t: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for unit, group in UNITS:
        counts, scored = reference_counts(bodies, unit, window, t)
        points = {}
        for ind, _, mx, target, empty in SPEC_TABLE:
            num, den = counts[ind]
            if den:
                points[ind] = mx * min(Fraction(1), Fraction(num, den) / Fraction(target))
            else:
                points[ind] = Fraction(mx if empty == "full" else 0)
        total = band = None
        if scored:
            hundredths = sum(points.values()) * 100  # max sums to 100: total = sum of points
            whole, rest = divmod(hundredths.numerator, hundredths.denominator)
            whole += 2 * rest >= hundredths.denominator  # half away from zero (total >= 0)
            total = whole / 100
            band = next((b for lo, b in BANDS if whole >= lo * 100), "weak")
        out[unit] = {"group": group, "counts": counts, "points": points, "total": total,
                     "band": band}
    for ref in out.values():
        peers = [r for r in out.values() if r["group"] == ref["group"] and r["total"] is not None]
        if ref["total"] is None:
            ref["rank"] = ref["peer_count"] = None
        else:
            ref["rank"] = 1 + sum(p["total"] > ref["total"] for p in peers)
            ref["peer_count"] = len(peers)
    return out


def assert_matches_reference(out: list[dict[str, Any]], bodies: list[dict[str, Any]],
                             window: str, t: int) -> None:
    ref = reference_scores(bodies, window, t)
    assert [u["unit_id"] for u in out] == UNIT_IDS
    for u in out:
        r = ref[u["unit_id"]]
        got_counts = {k: (v["num"], v["den"]) for k, v in u["indicators"].items()}
        assert got_counts == r["counts"], u["unit_id"]
        for ind, pts in r["points"].items():
            assert abs(u["indicators"][ind]["points"] - float(pts)) <= 0.00005 + 1e-12, ind
        assert (u["total"], u["band"], u["rank"], u["peer_count"]) == (
            r["total"], r["band"], r["rank"], r["peer_count"]), u["unit_id"]


# ---------------------------------------------------------------- the properties


@PROPS
@given(scenarios)
def test_engine_matches_a_naive_reading_of_the_spec(case: tuple) -> None:
    bodies, t, window = case
    out = scores(bodies, window, t)
    assert_matches_reference(out, bodies, window, t)
    check_ranking(out)
    check_bounds(out)


@PROPS
@given(scenarios, st.randoms(use_true_random=False))
def test_order_independence(case: tuple, rnd: Any) -> None:
    """(a) a shuffled stream scores identically."""
    bodies, t, window = case
    expected = scores(bodies, window, t)
    shuffled = list(bodies)
    rnd.shuffle(shuffled)
    assert scores(shuffled, window, t) == expected
    assert scores(list(reversed(bodies)), window, t) == expected


@PROPS
@given(scenarios, st.randoms(use_true_random=False))
def test_exact_duplicates_are_no_ops(case: tuple, rnd: Any) -> None:
    """(b) repeats, with the same body however serialized, change nothing; a repeat with
    another body is refused as conflicting_duplicate and changes nothing either."""
    bodies, t, window = case
    expected = scores(bodies, window, t)
    lines = [orjson.dumps(b) for b in bodies]
    extra = []
    conflicts = 0
    for b in bodies:
        choice = rnd.randint(0, 5)
        if choice == 0:
            extra.append(orjson.dumps(b))
        elif choice == 1:  # same body, other key order and whitespace
            extra.append(orjson.dumps(dict(reversed(list(b.items()))),
                                      option=orjson.OPT_INDENT_2))
        elif choice == 2:  # same id, another body
            extra.append(orjson.dumps({**b, "note": "changed"}))
            conflicts += 1
    stream = lines + extra  # every original is seen before its repeats
    validator, deduper = Validator(CATALOG), Deduper()
    engine = Engine(CATALOG, VN766)
    rejected = []
    for _, item in accept(enumerate(stream, 1), validator, deduper):
        if isinstance(item, Rejection):
            rejected.append(item)
        else:
            engine.apply(item)
    assert [r.error for r in rejected] == ["conflicting_duplicate"] * conflicts
    assert all(r.line > len(lines) for r in rejected)
    assert engine.score_all(parse_window(window), t) == expected
    # and applying the same accepted events twice straight into the engine is a no-op too
    twice = engine_of(bodies + bodies)
    assert twice.score_all(parse_window(window), t) == expected


@PROPS
@given(scenarios)
def test_ranks_and_bounds(case: tuple) -> None:
    """(c) competition ranking per peer group, (e) points within max, totals within 0..100,
    for every window at once."""
    bodies, t, _ = case
    engine = engine_of(bodies)
    for window in WINDOWS:
        out = engine.score_all(parse_window(window), t)
        check_ranking(out)
        check_bounds(out)


@settings(max_examples=150, deadline=None)
@given(st.fractions(min_value=0, max_value=100), st.fractions(min_value=0, max_value=100))
def test_bands_monotonic_in_exact_total(a: Fraction, b: Fraction) -> None:
    """(d) a higher exact total never rounds into a lower band."""
    lo, hi = sorted((a, b))
    band_lo = VN766.band(round_half_away(lo, VN766.total_digits))
    band_hi = VN766.band(round_half_away(hi, VN766.total_digits))
    assert BAND_ORDER.index(band_lo) <= BAND_ORDER.index(band_hi)
    assert set(BAND_ORDER) == {b for b, _ in VN766.bands}


@PROPS
@given(scenarios)
def test_events_after_t_do_not_change_the_score_at_t(case: tuple) -> None:
    """(f) adding events with occurred_at > T leaves score_all(window, T) unchanged."""
    bodies, t, window = case
    before = [b for b in bodies if us_of(b["occurred_at"]) <= t]
    assert scores(bodies, window, t) == scores(before, window, t)


@PROPS
@given(scenarios)
def test_orphans_count_as_if_they_came_after_received(case: tuple) -> None:
    """(g) facts that arrive before their dossier's or petition's `received` are held, then
    count exactly as if they had come after it."""
    bodies, t, window = case
    received = [b for b in bodies if b["type"].endswith(".received")]
    rest = [b for b in bodies if not b["type"].endswith(".received")]
    natural = scores(received + rest, window, t)
    # orphans first: while held they count for nothing...
    validator = Validator(CATALOG)
    engine = Engine(CATALOG, VN766)
    for body in rest:
        engine.apply(validator.check(body))
    held = engine.score_all(parse_window(window), t)
    assert held == scores([b for b in rest if b["type"] == "procedure.published"], window, t)
    # ...and once `received` arrives they count in full
    for body in received:
        engine.apply(validator.check(body))
    assert engine.score_all(parse_window(window), t) == natural


@PROPS
@given(scenarios)
def test_score_state_survives_serialization(case: tuple) -> None:
    """Dossier/Petition to_dict/from_dict (used to persist worker state) keep the score."""
    from scoring.facts import Dossier, Petition, UnitState

    bodies, t, window = case
    engine = engine_of(bodies)
    expected = engine.score_all(parse_window(window), t)
    copy = Engine(CATALOG, VN766)
    for unit, state in engine.states.items():
        blob = orjson.loads(orjson.dumps({
            "d": {k: v.to_dict() for k, v in state.dossiers.items()},
            "p": {k: v.to_dict() for k, v in state.petitions.items()},
        }))
        copy.states[unit] = UnitState(
            dossiers={k: Dossier.from_dict(v) for k, v in blob["d"].items()},
            petitions={k: Petition.from_dict(v) for k, v in blob["p"].items()},
            publications=dict(state.publications),
        )
    assert copy.score_all(parse_window(window), t) == expected
