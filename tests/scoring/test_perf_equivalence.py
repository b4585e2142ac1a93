"""The fast paths of the offline load give exactly the answers of the reference code they stand
in for (issue 7: "a faster path that changes any result is a bug").

* ``parse_ts`` (tables learned from ``parse_ts_reference``) == ``parse_ts_reference``;
* ``Validator.validate`` (generated fast checks, else the reference) == ``Validator.check`` on
  the decoded body: same Event (digest and times included) or the same rejection;
* ``scoring.dedup.FirstSeen`` (hash tags + file offsets) == ``Deduper`` (digests), hash
  collisions included;
* ``bando.batch.load`` == the reference path ``accept`` (validate, ``Deduper``, fold);
* ``Dossier``'s compact layout: ``from_dict`` reads the older changelog form.
"""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from event_samples import DUE, OCC, facts_of
from event_samples import VALID as BASE_BODIES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scoring.dedup
from bando.batch import Rejection, accept, iter_lines, load
from schemas import EventRejected, Validator
from schemas.validate import FAST_SOURCES
from scoring.catalog import Catalog
from scoring.dedup import CONFLICT, DUPLICATE, NEW, Deduper, FirstSeen
from scoring.engine import Engine
from scoring.events import EVENT_TYPES, Event
from scoring.facts import Dossier, UnitState, apply_event
from scoring.model import load_model
from scoring.timeutil import parse_ts, parse_ts_reference

PROPS = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
UNITS = Catalog.from_list([{"unit_id": u, "name": u, "peer_group": "g"} for u in ("u1", "u2")])
VN766 = load_model("vn766@1")

# ---------------------------------------------------------------- timestamps


def _two(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(lambda v: f"{v:02d}")


_digits = st.sampled_from(["0", "5", "9", "\u0665", "x"])
_fraction = st.one_of(
    st.just(""), st.just("."),
    st.integers(1, 10).flatmap(lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n))
    .map(lambda d: "." + d),
    st.lists(_digits, min_size=1, max_size=3).map(lambda d: "." + "".join(d)),
)
_offset = st.one_of(
    st.sampled_from(["Z", "z", "+07:00", "-05:30", "+00:00", "-00:00", "+0700", "", "+7:00"]),
    st.tuples(st.sampled_from("+-"), _two(0, 25), _two(0, 99))
    .map(lambda t: f"{t[0]}{t[1]}:{t[2]}"),
)
EDGES = [  # teach the tables offsets and an hour, then leave the valid range with them
    "2024-01-01T00:00:00+01:00", "2024-01-01T00:00:00-01:00", "0001-01-02T00:30:00Z",
    "0001-01-02T00:00:00+01:00", "9999-12-30T23:00:00Z", "9999-12-30T23:00:00-01:00",
    "1000-01-01T00:00:00Z", "1000-01-01T00:00:00+23:59",
    "8999-12-31T23:00:00Z", "8999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-23:59", "2024-02-29T12:00:00Z", "2023-02-29T12:00:00Z",
]
timestamps = st.one_of(
    st.tuples(
        st.one_of(st.integers(0, 9999).map(lambda y: f"{y:04d}"), st.sampled_from(["2024"])),
        _two(0, 13), _two(0, 32), st.sampled_from("Tt x"), _two(0, 25), _two(0, 61),
        _two(0, 61), _fraction, _offset, st.sampled_from(["", "", "", "\n", " ", "x"]),
    ).map(lambda p: f"{p[0]}-{p[1]}-{p[2]}{p[3]}{p[4]}:{p[5]}:{p[6]}{p[7]}{p[8]}{p[9]}"),
    st.text(max_size=45),
    st.sampled_from(EDGES),
)


@PROPS
@given(st.lists(timestamps, min_size=1, max_size=8))
def test_fast_timestamp_parser_equals_the_reference(texts: list[str]) -> None:
    # twice each: the first call may teach the tables, the second then takes the fast path
    for text in texts + texts:
        assert parse_ts(text) == parse_ts_reference(text), text


def test_timestamp_range_edges() -> None:
    for text in EDGES + EDGES:
        assert parse_ts(text) == parse_ts_reference(text), text


@pytest.mark.parametrize("value", [None, 5, 1.5, b"2024-01-01T00:00:00Z", ["x"], {"a": 1}])
def test_parser_refuses_non_strings(value: object) -> None:
    assert parse_ts(value) is None and parse_ts_reference(value) is None


# ---------------------------------------------------------------- validator

# the shared bodies, with an officer and a full-online submission on the received one
VALID: dict[str, dict[str, Any]] = {
    **BASE_BODIES, "dossier.received": {**BASE_BODIES["dossier.received"], "full_online": True,
                                        "officer_id": "o1"}}
FIELDS = sorted({"event_id", "occurred_at", "unit_id", "schema_version", "type", "officer_id",
                 "channel", "full_online", "due_at", "new_due_at", "extra", "note",
                 *(k for v in VALID.values() for k in v)})
DROP = object()
VALUES = [
    DROP, None, True, False, 0, 1, -1, 2, 1.0, 1.5, "", "x", "u1", "u3", "online", "postal",
    "Online", "neutral", "dissatisfied", "x" * 128, "x" * 129, OCC, DUE, "2024-04-01T08:00:00Z",
    "2024-03-01T08:00:00+07:00", "2024-04-01T08:00:00.5+07:00", "2024-04-01", "\u0662", [],
    ["x"], {"a": 1}, {"a": [1, {"b": None}]}, "dossier.received", "clock.tick",
]
_values = st.sampled_from(VALUES)


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from(sorted(EVENT_TYPES)))
    body: dict[str, Any] = {"event_id": "e1", "type": event_type, "occurred_at": OCC,
                            **({} if event_type == "clock.tick" else {"unit_id": "u1"}),
                            **VALID[event_type]}
    for _ in range(draw(st.integers(0, 3))):
        name, value = draw(st.sampled_from(FIELDS)), draw(_values)
        if value is DROP:
            body.pop(name, None)
        else:
            body[name] = value
    order = draw(st.permutations(list(body)))
    return {k: body[k] for k in order}


def outcome(fn: Any, arg: Any) -> tuple[str, Any]:
    try:
        event = fn(arg)
    except EventRejected as exc:
        return ("rejected", (exc.code, exc.detail))
    return ("event", (event.event_id, event.type, event.ts, event.unit_id, event.body,
                      event.digest, dict(event.times)))


@PROPS
@given(bodies())
def test_fast_checks_agree_with_the_reference(body: dict[str, Any]) -> None:
    v = Validator(UNITS)
    fast = v.fast_check(body)
    reference = outcome(v.check, body)
    if fast is not None:  # "not sure" is always allowed; an answer must be the reference's
        assert outcome(lambda b: fast, body) == reference
    raw = orjson.dumps(body)
    assert outcome(v.validate, raw) == outcome(lambda r: v.check(v.decode(r)), raw)


def test_fast_checks_agree_on_every_single_field_change() -> None:
    """Exhaustive: each type x each field name x each tricky value (dropped, too)."""
    v = Validator(UNITS)
    answered = 0
    for event_type, own in VALID.items():
        base = {"event_id": "e1", "type": event_type, "occurred_at": OCC, "unit_id": "u1", **own}
        if event_type == "clock.tick":
            del base["unit_id"]
        for name in FIELDS:
            for value in VALUES:
                body = dict(base)
                if value is DROP:
                    body.pop(name, None)
                else:
                    body[name] = value
                fast = v.fast_check(body)
                if fast is not None:
                    answered += 1
                    assert outcome(lambda b, f=fast: f, body) == outcome(v.check, body), body
    assert answered > 1000  # the fast path does take most valid variations


def test_fast_checks_take_the_ordinary_events() -> None:
    v = Validator(UNITS)
    for event_type, own in VALID.items():
        body = {"event_id": "e1", "type": event_type, "occurred_at": OCC, **own}
        if event_type != "clock.tick":
            body["unit_id"] = "u1"
        assert v.fast_check(body) == v.check(body), event_type
        # a plain extra field does not send it to the slow path either
        assert v.fast_check({**body, "source": "portal", "seq": 7}) is not None
    assert set(FAST_SOURCES) == set(EVENT_TYPES)


def test_fast_checks_leave_cross_field_and_nested_cases_to_the_reference() -> None:
    v = Validator(UNITS)
    synced = {"event_id": "e1", "type": "dossier.synced", "occurred_at": OCC, "unit_id": "u1",
              "dossier_id": "d1"}
    for extra in ({"full_online": True}, {"note": {"a": [1]}}, {"channel": "online"}):
        assert v.fast_check({**synced, **extra}) is None
    # the reference's verdict on the first one: an unknown extra field on this type (SPEC 1)
    assert v.validate(orjson.dumps({**synced, "full_online": True})).type == "dossier.synced"


def test_fast_path_for_own_loops_is_offline_only() -> None:
    """``fast_path`` hands out the checks without the clock test: a live validator refuses."""
    checks, units = Validator(UNITS).fast_path()
    assert set(checks) == set(EVENT_TYPES) and "u1" in units
    with pytest.raises(ValueError):
        Validator(UNITS, now_us=lambda: 0).fast_path()


def test_fast_path_still_refuses_the_future() -> None:
    occurred = parse_ts(OCC)
    assert occurred is not None
    now = [occurred]
    v = Validator(UNITS, max_skew_us=1_000_000, now_us=lambda: now[0])
    raw = orjson.dumps({"event_id": "e1", "type": "clock.tick", "occurred_at": OCC})
    assert v.validate(raw).ts == now[0]
    now[0] -= 2_000_000
    with pytest.raises(EventRejected) as info:
        v.validate(raw)
    assert info.value.code == "future_timestamp"


# ---------------------------------------------------------------- de-duplication


def _event(body: dict[str, Any]) -> Event:
    return Event(body["event_id"], body["type"], 0, None, body, None, {})


@st.composite
def copies(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events with few ids: repeats that are identical, reordered, or different."""
    out = []
    for _ in range(draw(st.integers(1, 30))):
        body = {"event_id": f"e{draw(st.integers(0, 6))}", "type": "clock.tick",
                "occurred_at": OCC, "n": draw(st.integers(0, 2))}
        order = draw(st.permutations(list(body)))
        out.append({k: body[k] for k in order})
    return out


@PROPS
@given(copies(), st.booleans())
def test_first_seen_equals_deduper(events: list[dict[str, Any]], collide: bool) -> None:
    lines = [orjson.dumps(b) for b in events]
    mp = pytest.MonkeyPatch()
    if collide:  # every id gets the same hash: the exact comparison must still separate them
        mp.setattr(scoring.dedup, "_hash", lambda _: 12345)
    try:
        first = FirstSeen(lambda i: orjson.loads(lines[i]), expected=1)
        reference = Deduper()
        for i, body in enumerate(events):
            verdict = first.check(_event(orjson.loads(lines[i])), i)
            assert verdict == reference.check(body["event_id"], _event(body).digest)
            assert verdict in (NEW, DUPLICATE, CONFLICT)
    finally:
        mp.undo()


def test_first_seen_probes_wrap_around_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every id hashes to the last slot: probes run off the end of the table and go on at the
    start, through a growth too, and the verdicts are still ``Deduper``'s."""
    monkeypatch.setattr(scoring.dedup, "_hash", lambda _: 31)  # (31 >> 1) % 16 == 15
    bodies = [{"event_id": f"e{i % 12}", "type": "clock.tick", "n": i // 12 % 2 * (i % 3)}
              for i in range(40)]
    first = FirstSeen(lambda i: bodies[i], expected=1)
    assert first.capacity == 16
    reference = Deduper()
    for i, body in enumerate(bodies):
        assert first.check(_event(body), i) == reference.check(body["event_id"],
                                                               _event(body).digest), i
    assert first.count == 12 and first.capacity == 32


def test_first_seen_grows() -> None:
    first = FirstSeen(lambda i: {"event_id": f"e{i}"}, expected=1)
    for i in range(5000):
        assert first.check(_event({"event_id": f"e{i}", "type": "x"}), i) == NEW
    assert first.count == 5000
    for i in range(0, 5000, 7):
        assert first.check(_event({"event_id": f"e{i}", "type": "x"}), 10_000 + i) != NEW


# ---------------------------------------------------------------- the whole load


def _reference_load(path: Path) -> tuple[list[Rejection], Engine]:
    engine = Engine(UNITS, VN766)
    rejected = []
    for _, item in accept(iter_lines(path), Validator(UNITS, max_bytes=4096), Deduper()):
        if isinstance(item, Rejection):
            rejected.append(item)
        else:
            engine.apply(item)
    return rejected, engine


def _mixed_file(tmp_path: Path) -> Path:
    rnd = random.Random(7)
    lines: list[bytes] = []
    for i in range(3000):
        event_type = rnd.choice(sorted(EVENT_TYPES))
        body: dict[str, Any] = {"event_id": f"e{rnd.randrange(2000)}", "type": event_type,
                                "occurred_at": f"2024-04-0{rnd.randrange(1, 9)}T0{rnd.randrange(9)}"
                                               f":{rnd.randrange(60):02d}:00+07:00",
                                "unit_id": rnd.choice(["u1", "u2", "u3"]), **VALID[event_type]}
        for key in ("dossier_id", "petition_id"):
            if key in body:
                body[key] = f"x{rnd.randrange(300)}"
        if "due_at" in body:
            body["due_at"] = "2024-04-20T17:00:00+07:00"
        if rnd.random() < 0.05:
            body[rnd.choice(FIELDS)] = rnd.choice([None, 1, "x", True, [1]])
        text = json.dumps(body, indent=rnd.choice([None, None, 1])).replace("\n", " ")
        lines.append(text.encode())
        if rnd.random() < 0.1:
            lines.append(b"")
        if rnd.random() < 0.02:
            lines.append(b"{not json" if i % 2 else b"x" * 5000)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_load_equals_the_reference_path(tmp_path: Path) -> None:
    path = _mixed_file(tmp_path)
    loaded = load(path, UNITS, VN766, max_bytes=4096)
    rejected, engine = _reference_load(path)
    assert [r.to_dict() for r in loaded.rejected] == [r.to_dict() for r in rejected]
    assert facts_of(loaded.engine) == facts_of(engine)
    assert loaded.accepted + loaded.duplicates + len(loaded.rejected) == sum(
        1 for _ in iter_lines(path))


def test_load_reads_odd_lines_as_the_reference_does(tmp_path: Path) -> None:
    """``load`` decodes each line unstripped and runs the fast checks itself: whitespace
    around an event, CRLF, padding that crosses the size limit only before stripping, blank
    and whitespace-only lines, non-JSON whitespace (\\x0c), non-objects and repeats must all
    come out as through ``accept``."""
    body = {"event_id": "e1", "type": "dossier.synced", "occurred_at": OCC, "unit_id": "u1",
            "dossier_id": "d1"}
    line = orjson.dumps(body)
    near = 4096 - len(line)  # padding that puts the unstripped line just over the limit
    lines = [
        line, b"  " + orjson.dumps({**body, "event_id": "e2"}) + b" \t",
        orjson.dumps({**body, "event_id": "e3"}) + b"\r",
        orjson.dumps({**body, "event_id": "e4"}) + b" " * near,
        orjson.dumps({**body, "event_id": "e5"}) + b" " * (near + 5),
        b"", b"   ", b"\x0c" + orjson.dumps({**body, "event_id": "e6"}) + b"\x0c",
        b"[1, 2]", b"null", b'"text"', b"{", line, orjson.dumps({**body, "dossier_id": "d2"}),
        orjson.dumps({**body, "event_id": "e7", "type": "dossier.teleported"}),
        orjson.dumps({**body, "event_id": "e8", "type": ["x"]}),
        orjson.dumps({**body, "event_id": "e9", "unit_id": "u3"}),
        orjson.dumps({**body, "event_id": "e10", "officer_id": None}),
    ]
    path = tmp_path / "odd.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    loaded = load(path, UNITS, VN766, max_bytes=4096)
    rejected, engine = _reference_load(path)
    assert [r.to_dict() for r in loaded.rejected] == [r.to_dict() for r in rejected]
    assert facts_of(loaded.engine) == facts_of(engine)
    assert loaded.accepted == 6 and loaded.duplicates == 1
    assert loaded.max_ts == parse_ts(OCC)


def test_load_from_a_pipe_keeps_digests_and_agrees(tmp_path: Path) -> None:
    path = _mixed_file(tmp_path)
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(path.read_bytes()))
    writer.start()
    try:
        piped = load(fifo, UNITS, VN766, max_bytes=4096)
    finally:
        writer.join()
    loaded = load(path, UNITS, VN766, max_bytes=4096)
    assert [r.to_dict() for r in piped.rejected] == [r.to_dict() for r in loaded.rejected]
    assert facts_of(piped.engine) == facts_of(loaded.engine)


# ---------------------------------------------------------------- compact dossiers

OLD_FORM = {  # Dossier.to_dict before the compact layout: every slot, booleans by name
    "received": [1_711_933_200_000_000, "e1"], "procedure_id": "p1", "online": True,
    "due": 1_712_743_200_000_000, "online_eligible": True, "full_online": False,
    "fee_required": True, "reused_data": False, "pds_linked": True, "population_db": False,
    "digitized": 1_711_933_300_000_000, "synced": None, "paid_online": None,
    "supplements": {"e5": [1_711_933_400_000_000, None]},
    "completed": [1_711_933_500_000_000, "e7"], "e_result": True, "withdrawn": None,
    "ratings": {"e9": [1_711_933_600_000_000, "neutral"]},
}


def test_from_dict_reads_the_older_changelog_form() -> None:
    d = Dossier.from_dict(OLD_FORM)
    assert d.received == (1_711_933_200_000_000, "e1")
    assert d.completed == (1_711_933_500_000_000, "e7")
    assert (d.online, d.online_eligible, d.full_online, d.fee_required, d.reused_data,
            d.pds_linked, d.population_db, d.e_result) == (
        True, True, False, True, False, True, False, True)
    assert d.supplements == {"e5": (1_711_933_400_000_000, None)}
    assert d.ratings == {"e9": (1_711_933_600_000_000, "neutral")}
    assert (d.procedure_id, d.due, d.digitized, d.synced) == (
        "p1", 1_712_743_200_000_000, 1_711_933_300_000_000, None)
    again = Dossier.from_dict(orjson.loads(orjson.dumps(d.to_dict())))
    assert again.to_dict() == d.to_dict()
    assert Dossier.from_dict({}).to_dict() == {} == Dossier().to_dict()


@given(st.permutations(list(range(8))), st.integers(0, 3))
def test_compact_fold_is_commutative_and_idempotent(order: list[int], repeat: int) -> None:
    def ev(i: int, event_type: str, ts: int, **own: Any) -> Event:
        body = {"dossier_id": "d1", **own}
        times = {k: v for k, v in own.items() if k in ("due_at", "new_due_at")}
        return Event(f"e{i}", event_type, ts, "u1", body, None, times)

    events = [
        ev(0, "dossier.received", 10, procedure_id="p", channel="online", due_at=50,
           online_eligible=True, full_online=True, fee_required=False, reused_data=True,
           pds_linked=False, population_db=True),
        ev(1, "dossier.received", 10, procedure_id="q", channel="postal", due_at=60,
           online_eligible=False, full_online=False, fee_required=True, reused_data=False,
           pds_linked=True, population_db=False),
        ev(2, "dossier.completed", 30, e_result=False),
        ev(3, "dossier.completed", 30, e_result=True),
        ev(4, "dossier.rated", 40, rating="neutral"),
        ev(5, "dossier.supplement_requested", 20, new_due_at=70),
        ev(6, "dossier.paid", 25, online=True, amount_vnd=1),
        ev(7, "dossier.synced", 15),
    ]
    state, reference = UnitState(), UnitState()
    for i in order + order[:repeat]:
        apply_event(state, events[i])
    for e in events:
        apply_event(reference, e)
    assert state.dossiers["d1"].to_dict() == reference.dossiers["d1"].to_dict()
    d = state.dossiers["d1"]
    assert d.received == (10, "e0") and d.procedure_id == "p" and d.online and d.reused_data
    assert d.completed == (30, "e2") and not d.e_result
