"""Random event-file lines for the equivalence tests of the offline fast paths (the fused
load of ``bando score``, replay's fused ingest): events of every type with varied fields, bad
lines, exact repeats and conflicting repeats (same id, another body), the same body reordered.
``tests/`` is on ``sys.path`` through ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from event_samples import VALID
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import scoring.dedup
from scoring.events import EVENT_TYPES

LIMIT = 4096
# the equivalence tests over random files (files are written for every example)
FILE_PROPS = settings(max_examples=250, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                             HealthCheck.function_scoped_fixture])


@contextmanager
def every_id_colliding() -> Iterator[pytest.MonkeyPatch]:
    """Every event id hashes alike in ``scoring.dedup``: its tables always take the rare path
    (a tag already there). For use inside a hypothesis example, where fixtures are shared."""
    mp = pytest.MonkeyPatch()
    mp.setattr(scoring.dedup, "_hash", lambda _: 12345)
    try:
        yield mp
    finally:
        mp.undo()

# 08:00+07:00 and 01:00Z are the same instant: ties broken by event id
INSTANTS = ["2024-04-01T08:00:00+07:00", "2024-04-01T01:00:00Z", "2024-04-02T09:30:00+07:00",
            "2024-04-01T08:00:00.250+07:00", "2024-03-31T23:59:59-05:00"]
DEADLINES = ["2024-04-20T17:00:00+07:00", "2024-04-01T08:00:00+07:00", "2024-04-25T10:00:00Z"]
ODD_VALUES = [None, True, False, 0, 1, 1.0, -1, "", "x", "u3", "online", "neutral", "x" * 129,
              INSTANTS[0], "2024-04-01", [], ["x"], {"a": 1}]
FIELDS = sorted({"event_id", "occurred_at", "unit_id", "schema_version", "type", "officer_id",
                 "channel", "full_online", "due_at", "new_due_at", "extra", "seq",
                 *(k for v in VALID.values() for k in v)})
BAD_LINES = [b"{", b"[1, 2]", b"null", b'"text"', b'{"type": 5}', b'{"type": "clock.tick"}',
             b"x" * (LIMIT + 10), b"   ", b"", b"\x0c"]


@st.composite
def event_bodies(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from([*sorted(EVENT_TYPES), "dossier.teleported"]))
    own = dict(VALID.get(event_type, VALID["dossier.synced"]))
    body: dict[str, Any] = {"event_id": f"e{draw(st.integers(0, 15))}", "type": event_type,
                            "occurred_at": draw(st.sampled_from(INSTANTS)), **own}
    if event_type != "clock.tick" or draw(st.booleans()):
        body["unit_id"] = draw(st.sampled_from(["u1", "u1", "u2", "u3"]))
    for key in ("dossier_id", "petition_id"):
        if key in body:
            body[key] = draw(st.sampled_from(["d1", "d2", "d3"]))
    for key in ("due_at", "new_due_at"):
        if key in body:
            body[key] = draw(st.sampled_from(DEADLINES))
    for key, value in own.items():  # the fold reads these: vary them
        if type(value) is bool:
            body[key] = draw(st.booleans())
    if "channel" in body:
        body["channel"] = draw(st.sampled_from(["online", "postal", "in_person"]))
    if "rating" in body:
        body["rating"] = draw(st.sampled_from(["satisfied", "neutral", "dissatisfied"]))
    if draw(st.booleans()):
        body["officer_id"] = draw(st.sampled_from(["o1", "o2"]))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        name, value = draw(st.sampled_from(FIELDS)), draw(st.sampled_from(ODD_VALUES))
        if draw(st.booleans()):
            body.pop(name, None)
        else:
            body[name] = value
    order = draw(st.permutations(list(body)))
    return {k: body[k] for k in order}


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    lines: list[bytes] = []
    for _ in range(draw(st.integers(1, 60))):
        kind = draw(st.sampled_from(["event"] * 6 + ["repeat", "bad"]))
        if kind == "repeat" and lines:  # the same line again, or the same body reordered
            line = draw(st.sampled_from(lines))
            try:
                body = orjson.loads(line)
            except orjson.JSONDecodeError:
                body = None
            if type(body) is dict and draw(st.booleans()):
                line = orjson.dumps(dict(reversed(list(body.items()))))
            lines.append(line)
        elif kind == "bad":
            lines.append(draw(st.sampled_from(BAD_LINES)))
        else:  # sometimes with whitespace around it that a file's reader strips, JSON not
            pad = draw(st.sampled_from([b""] * 8 + [b" ", b"\t", b"\x0c", b"\x0b"]))
            line = orjson.dumps(draw(event_bodies()))
            lines.append(pad + line if draw(st.booleans()) else line + pad)
    return lines


def growing_lines(n: int = 600) -> list[bytes]:
    """Plain events with exact and conflicting repeats throughout: with the de-duplication
    table sized for almost nothing it grows many times, and repeats after each growth must
    still be found. The 6th line is the first conflicting repeat."""
    lines: list[bytes] = []
    for i in range(n):
        body = {"event_id": f"e{i}", "type": "dossier.synced", "occurred_at": INSTANTS[i % 5],
                "unit_id": "u1", "dossier_id": f"d{i % 50}"}
        lines.append(orjson.dumps(body))
        if i % 7 == 0:  # an exact repeat of an earlier event, and a conflicting one
            lines.append(orjson.dumps({**body, "event_id": f"e{i // 2}"}))
            lines.append(lines[i // 3])
    return lines


def misleading(line: bytes, unit: str) -> bytes:
    """The line with ``unit`` named first (JSON keeps the last of a repeated key): routed by
    its bytes to ``unit``'s worker, though its top-level unit is another."""
    return line.replace(b"{", b'{"unit_id":"' + unit.encode() + b'",', 1)

