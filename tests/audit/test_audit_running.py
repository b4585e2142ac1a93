"""Replay timelines (``audit.replay.timeline`` on ``audit.running``) against brute force: the
core's ``Engine.score_all`` (``bando score``'s own path, its own ingest) at every instant where
any score could change -- each event's time, 1 us after each deadline an event carries, each
month's start -- and at each day's end. Random histories of full and partial lifecycles over
three weeks that cross a month boundary: supplements moving deadlines, withdrawals, ratings,
petitions, publications, events out of order, two peer groups (one of three units: a unit
shown alone is ranked among peers that cross it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from event_samples import VALID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.replay import Acceptor, TimelineSpec, day_ends, load_history, timeline
from audit.sources import FileSource
from bando.batch import load
from scoring.catalog import Catalog
from scoring.model import load_model
from scoring.timeutil import format_ts, parse_ts, resolve_window, window_of

MODEL = load_model("vn766@1")
TZ = MODEL.timezone
UNITS = Catalog.from_list([{"unit_id": "u1", "name": "u1", "peer_group": "g"},
                           {"unit_id": "u2", "name": "u2", "peer_group": "g"},
                           {"unit_id": "u4", "name": "u4", "peer_group": "g"},
                           {"unit_id": "u3", "name": "u3", "peer_group": "h"}])
T0 = parse_ts("2024-03-22T00:00:00+07:00")
HOUR = 3_600_000_000
TYPES = ["dossier.received"] * 4 + [
    "dossier.digitized", "dossier.synced", "dossier.paid", "dossier.supplement_requested",
    "dossier.completed", "dossier.completed", "dossier.withdrawn", "dossier.rated",
    "dossier.rated", "petition.received", "petition.resolved", "petition.rated",
    "procedure.published", "clock.tick"]
PROPS = settings(max_examples=200, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.function_scoped_fixture])


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    events = []
    for i in range(draw(st.integers(1, 45))):
        event_type = draw(st.sampled_from(TYPES))
        at = T0 + draw(st.integers(0, 24 * 21)) * HOUR + draw(st.sampled_from([0, 0, 1, 59]))
        body: dict[str, Any] = {**VALID[event_type], "event_id": f"e{i}", "type": event_type,
                                "occurred_at": format_ts(at, TZ)}
        if event_type != "clock.tick":
            body["unit_id"] = draw(st.sampled_from(["u1", "u1", "u2", "u3", "u4"]))
        for key, choices in (("dossier_id", ["d1", "d2", "d3", "d4"]),
                             ("petition_id", ["p1", "p2"]), ("procedure_id", ["pr1", "pr2"]),
                             ("channel", ["online", "postal", "in_person"]),
                             ("rating", ["satisfied", "neutral", "dissatisfied"])):
            if key in body:
                body[key] = draw(st.sampled_from(choices))
        for key, value in VALID[event_type].items():
            if type(value) is bool:
                body[key] = draw(st.booleans())
        if body.get("full_online") and body.get("channel") != "online":
            body["full_online"] = False
        for key in ("due_at", "new_due_at"):
            if key in body:  # hours to days after the event, on the hour or not
                later = draw(st.integers(1, 24 * 12)) * HOUR + draw(st.sampled_from([0, 7]))
                body[key] = format_ts(at + later, TZ)
        if event_type == "dossier.supplement_requested" and draw(st.booleans()):
            del body["new_due_at"]
        events.append(body)
    return events


def _candidates(events: list[dict[str, Any]], start: int, end: int) -> list[int]:
    """Every instant where a score could change, and each month's start in between."""
    out = {start}
    for body in events:
        out.add(parse_ts(body["occurred_at"]))
        out.update(parse_ts(body[k]) + 1 for k in ("due_at", "new_due_at") if k in body)
    month = window_of("month", start, TZ)
    while month.end_us <= end:
        out.add(month.end_us)
        month = window_of("month", month.end_us, TZ)
    return sorted(t for t in out if start <= t <= end)


def _rows_at(engine: Any, kind: str, t: int) -> dict[str, tuple[Any, ...]]:
    window = resolve_window(kind, t, TZ)
    return {u["unit_id"]: (window.name, u["total"], u["band"], u["rank"], u["peer_count"])
            for u in engine.score_all(window, t)}


def _brute_force(engine: Any, events: list[dict[str, Any]], kind: str, every: str,
                 start: int, end: int) -> list[tuple[str, str, tuple[Any, ...]]]:
    rows, emitted = [], {}
    instants = day_ends(start, end, TZ) if every == "day" else _candidates(events, start, end)
    for t in instants:
        for unit_id, row in _rows_at(engine, kind, t).items():
            if every == "day" or emitted.get(unit_id) != row:
                emitted[unit_id] = row
                rows.append((format_ts(t, TZ), unit_id, row))
    return rows


@PROPS
@given(histories(), st.sampled_from(["month", "quarter", "year", "month:2024-04"]),
       st.sampled_from(["change", "day"]), st.sampled_from([(), ("u1",), ("u3",), ("u1", "u2")]))
def test_timeline_equals_the_core_at_every_instant(tmp_path: Path, events: list[dict[str, Any]],
                                                   kind: str, every: str,
                                                   units: tuple[str, ...]) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events))
    history = load_history(FileSource(path), "procedure-events", Acceptor(UNITS, 1 << 16))
    if history.first_ts is None or history.last_ts is None:
        return
    start, end = history.first_ts, history.last_ts
    if kind.startswith("month:"):  # a fixed window: the timeline starts at its start
        start = resolve_window(kind, start, TZ).start_us
        if end < start:
            return
    engine = load(path, UNITS, MODEL).engine
    expected = [r for r in _brute_force(engine, events, kind, every, start, end)
                if not units or r[1] in units]
    spec = TimelineSpec(window=kind, every=every, units=units, check_core=every == "change")
    got = [(r["at"], r["unit_id"], (r["window"], r["total"], r["band"], r["rank"],
                                    r["peer_count"]))
           for r in timeline(history, UNITS, MODEL, spec)]
    assert sorted(got) == sorted(expected)
    assert len(got) == len(expected)
