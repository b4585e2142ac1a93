"""Turn generated events into messages, with optional chaos, and write them as JSON lines.

Why chaos lives here and not in the generator: the generator's stream is the ground truth a
test can score; chaos only changes how that truth is *delivered* (extra malformed lines, exact
duplicates, bounded out-of-order delivery), exactly the troubles SPEC section 1 says the scorer
must survive. Every good event is still delivered at least once, so scoring the chaotic file
gives the same result as scoring the clean one.
"""

from __future__ import annotations

import gc
import heapq
import logging
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

log = logging.getLogger(__name__)

BAD_KINDS = ("invalid_json", "unknown_type", "unknown_unit", "schema_violation")
Message = tuple[int, bytes | None, bytes]  # (event time, key, value); key None: a clock.tick

# Units a stale client could still send: Districts 2 and 9 were merged into Thu Duc City in 2021.
_STALE_UNITS = ("district-02", "district-09", "ward-an-khanh-cu", "dept-unknown")
_BAD_TYPES = ("dossier.teleported", "dossier.lost", "petition.escalated", "DOSSIER.RECEIVED",
              "dossier.receive")


@dataclass(frozen=True)
class Chaos:
    """How to spoil delivery. Rates are fractions: ``bad_rate`` of all lines are malformed,
    ``dup_rate`` of the good events are delivered twice; ``shuffle_window`` bounds how many
    positions any line may move away from event-time order."""

    bad_rate: float = 0.0
    dup_rate: float = 0.0
    shuffle_window: int = 0
    bad_kinds: tuple[str, ...] = BAD_KINDS

    def __post_init__(self) -> None:
        if not 0.0 <= self.bad_rate < 1.0:
            raise ValueError("bad_rate must be in [0, 1)")
        if not 0.0 <= self.dup_rate <= 1.0:
            raise ValueError("dup_rate must be in [0, 1]")
        if self.shuffle_window < 0:
            raise ValueError("shuffle_window must be >= 0")
        unknown = set(self.bad_kinds) - set(BAD_KINDS)
        if unknown or not self.bad_kinds:
            raise ValueError(f"bad kinds must be among {', '.join(BAD_KINDS)}")

    @property
    def active(self) -> bool:
        return bool(self.bad_rate or self.dup_rate or self.shuffle_window)


_DROP = object()  # marks a field to remove
_LONG_AGO = "2000-01-01T00:00:00+07:00"


def _schema_violation(ev: dict[str, Any], rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A copy of ``ev`` that breaks one rule of SPEC section 1, and which rule."""
    kind = ev["type"]
    id_field = next((f for f in ("dossier_id", "petition_id", "procedure_id") if f in ev),
                    "procedure_id")
    options: list[tuple[str, dict[str, Any]]] = [
        ("missing " + id_field, {id_field: _DROP}),
        ("occurred_at without offset", {"occurred_at": ev["occurred_at"][:19]}),
        ("occurred_at not a timestamp", {"occurred_at": "hôm qua"}),
        ("missing occurred_at", {"occurred_at": _DROP}),
        ("empty event_id", {"event_id": ""}),
        ("event_id too long", {"event_id": "x" * 129}),
        (id_field + " not a string", {id_field: 12345}),
    ]
    if kind == "dossier.received":
        options += [
            ("full_online with a counter channel", {"channel": "in_person", "full_online": True}),
            ("due_at before occurred_at", {"due_at": _LONG_AGO}),
            ("unknown channel", {"channel": "fax"}),
            ("boolean as a string", {"fee_required": "true"}),
            ("missing due_at", {"due_at": _DROP}),
        ]
    elif kind == "dossier.paid":
        options += [
            ("negative amount", {"amount_vnd": -5000}),
            ("amount as a string", {"amount_vnd": str(ev["amount_vnd"])}),
            ("amount not an integer", {"amount_vnd": 1.5}),
            ("missing online", {"online": _DROP}),
        ]
    elif kind in ("dossier.rated", "petition.rated"):
        options.append(("unknown rating", {"rating": "meh"}))
    elif kind == "dossier.completed":
        options.append(("missing e_result", {"e_result": _DROP}))
    elif kind == "dossier.supplement_requested":
        options.append(("new_due_at not a timestamp", {"new_due_at": "next week"}))
    elif kind == "petition.received":
        options.append(("due_at before occurred_at", {"due_at": _LONG_AGO}))
    elif kind == "procedure.published":
        options.append(("boolean as a string", {"complete": "yes"}))
    what, changes = options[int(rng.random() * len(options))]
    bad = dict(ev)
    for field, value in changes.items():
        if value is _DROP:
            bad.pop(field, None)
        else:
            bad[field] = value
    return what, bad


def bad_message(ev: dict[str, Any], kind: str, event_id: str,
                rng: random.Random) -> tuple[bytes, bytes]:
    """(key, value) of one malformed line of ``kind`` modelled on the good event ``ev``."""
    key = ev["unit_id"].encode()
    if kind == "invalid_json":
        good = orjson.dumps({**ev, "event_id": event_id})
        choice = int(rng.random() * 4)
        if choice == 0:
            return key, good[: max(1, len(good) // 2)]  # truncated in transit
        if choice == 1:
            return key, good[:-1] + b',}'  # trailing comma
        if choice == 2:
            return key, b"\xff\xfe" + good[2:]  # not UTF-8 either
        return key, b"<html><body>502 Bad Gateway</body></html>"
    if kind == "unknown_type":
        return key, orjson.dumps({**ev, "event_id": event_id,
                                  "type": _BAD_TYPES[int(rng.random() * len(_BAD_TYPES))]})
    if kind == "unknown_unit":
        unit = _STALE_UNITS[int(rng.random() * len(_STALE_UNITS))]
        return unit.encode(), orjson.dumps({**ev, "event_id": event_id, "unit_id": unit})
    _, bad = _schema_violation({**ev, "event_id": event_id}, rng)
    return key, orjson.dumps(bad)


def messages(events: Iterable[tuple[int, dict[str, Any]]], chaos: Chaos | None = None,
             seed: int | str = 0) -> Iterator[Message]:
    """``(event time, key, value)`` for each message to deliver, in delivery order."""
    dumps = orjson.dumps
    if chaos is None or not chaos.active:
        for t, ev in events:
            unit = ev.get("unit_id")
            yield t, (unit.encode() if unit is not None else None), dumps(ev)
        return
    rng = random.Random(f"bando-chaos:{seed}")
    r = rng.random
    bad_p = chaos.bad_rate / (1.0 - chaos.bad_rate)  # per good event, so lines come out right
    dup_p, window, kinds = chaos.dup_rate, chaos.shuffle_window, chaos.bad_kinds
    dups: list[tuple[int, int, Message]] = []  # (release position, tie-break, message)
    shuffle: list[tuple[float, int, Message]] = []
    n_bad = tie = 0

    def deliver(msg: Message) -> Iterator[Message]:
        nonlocal tie
        if not window:
            yield msg
            return
        tie += 1
        heapq.heappush(shuffle, (tie + r() * window, tie, msg))
        while shuffle and shuffle[0][0] <= tie:
            yield heapq.heappop(shuffle)[2]

    for n_in, (t, ev) in enumerate(events, 1):
        unit = ev.get("unit_id")
        msg: Message = (t, unit.encode() if unit is not None else None, dumps(ev))
        yield from deliver(msg)
        if dup_p and r() < dup_p:
            tie += 1
            heapq.heappush(dups, (n_in + int(r() * 20), tie, msg))
        if bad_p and unit is not None and r() < bad_p:
            n_bad += 1
            event_id = f"{ev['event_id'].rsplit('-', 1)[0]}-bad{n_bad}"
            kind = kinds[int(r() * len(kinds))]
            key, value = bad_message(ev, kind, event_id, rng)
            yield from deliver((t, key, value))
        while dups and dups[0][0] <= n_in:
            yield from deliver(heapq.heappop(dups)[2])
    for _, _, msg in sorted(dups):
        yield from deliver(msg)
    for _, _, msg in sorted(shuffle):
        yield msg


def write_jsonl(out: IO[bytes], events: Iterable[tuple[int, dict[str, Any]]],
                chaos: Chaos | None = None, seed: int | str = 0) -> int:
    """Write one message per line; returns the number of lines."""
    n = 0
    buf: list[bytes] = []
    # The generator holds many live, acyclic dicts: cyclic GC passes over them are pure cost.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if chaos is None or not chaos.active:
            dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
            for _, ev in events:
                buf.append(dumps(ev, option=option))
                if len(buf) >= 4096:
                    out.write(b"".join(buf))
                    n += len(buf)
                    buf.clear()
            out.write(b"".join(buf))
        else:
            for _, _, value in messages(events, chaos, seed):
                buf.append(value)
                if len(buf) >= 4096:
                    out.write(b"\n".join(buf) + b"\n")
                    n += len(buf)
                    buf.clear()
            if buf:
                out.write(b"\n".join(buf) + b"\n")
        n += len(buf)
    finally:
        if gc_was_enabled:
            gc.enable()
    return n
