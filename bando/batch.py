"""Offline event files: read JSON lines into accepted events and rejections.

Shared by ``bando score``, replay and benchmarks, so every offline path applies the very same
validation and de-duplication as the live worker.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from bando.fastload import MIN_TS, FusedLoad
from bando.settings import Settings
from schemas import EventRejected, Validator
from scoring.catalog import Catalog
from scoring.dedup import CONFLICT, NEW, Deduper, FirstSeen
from scoring.engine import Engine
from scoring.events import Event
from scoring.facts import UnitState, apply_event
from scoring.model import Model
from scoring.timeutil import Window


@dataclass(slots=True)
class Rejection:
    line: int
    error: str
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "error": self.error, "detail": self.detail}


@dataclass
class Loaded:
    engine: Engine
    rejected: list[Rejection] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    max_ts: int | None = None


def iter_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if line:
                yield number, line


def accept(
    lines: Iterable[tuple[int, bytes]], validator: Validator, deduper: Deduper
) -> Iterator[tuple[int, Event | Rejection]]:
    for number, raw in lines:
        try:
            event = validator.validate(raw)
        except EventRejected as exc:
            yield number, Rejection(number, exc.code, exc.detail)
            continue
        status = deduper.check(event.event_id, event.digest)
        if status == NEW:
            yield number, event
        elif status == CONFLICT:
            yield number, Rejection(number, "conflicting_duplicate", _conflict(event))


def load(
    path: str | Path, catalog: Catalog, model: Model, max_bytes: int | None = None
) -> Loaded:
    """Fold a whole file into an engine (order-independent by construction of the facts).

    The same steps as ``accept`` (validate, de-duplicate, fold), in one tight loop: each line is
    decoded here and handed to its event type's fused function (``bando.fastload``), which
    checks, de-duplicates and folds the common case in one call; what it hands back (a repeated
    id, a rare type) goes through ``FirstSeen.check`` and ``apply_event``, and what it is unsure
    of through ``Validator.validate`` for the full verdict first.
    On a seekable file the de-duplication table keeps the byte offset of each event id's first
    line rather than a digest of every body; an id that repeats re-reads that line to compare
    the canonical digests (``scoring.dedup.FirstSeen``), so the verdicts are ``Deduper``'s.
    ``tests/scoring/test_perf_equivalence.py`` checks all of it against ``accept``.
    """
    engine = Engine(catalog, model)
    loaded = Loaded(engine)
    # the live worker's limit, so a replay and the live map agree on what is too large
    limit = Settings.from_env().max_message_bytes if max_bytes is None else max_bytes
    validator = Validator(catalog, max_bytes=limit)
    validate = validator.validate
    loads, not_json = orjson.loads, orjson.JSONDecodeError
    # every unit's state up front, so the fused code finds a unit and its table in one lookup;
    # those no event reached are dropped at the end (as if never made)
    states = {unit.unit_id: UnitState() for unit in catalog.units}
    rejected = loaded.rejected
    accepted = duplicates = 0
    max_ts = MIN_TS
    with open(path, "rb", buffering=READ_BUFFER) as fh, ExitStack() as stack:
        stack.enter_context(_cyclic_gc_paused())
        check: Callable[[Event, int], str]
        fused: FusedLoad | None = None
        functions: Mapping[str, Callable[[dict[str, Any], int], Event | bool | None]]
        if fh.seekable():
            again = stack.enter_context(open(path, "rb"))
            expected = os.fstat(fh.fileno()).st_size // TYPICAL_LINE
            fused = FusedLoad({u: state.dossiers for u, state in states.items()},
                              FirstSeen(partial(body_at, again), expected))
            functions, check = fused.functions, fused.check
        else:  # a pipe: keep digests, as the live worker does; the fast checks only check
            checks, members = validator.fast_path()
            functions = {t: partial(_fast_only, f, members) for t, f in checks.items()}
            check = _by_digest(Deduper())
        offset = 0
        for number, line in enumerate(fh, 1):
            start = offset
            offset += (size := len(line))
            # JSON allows the line's own whitespace around the object, so no strip() first; a
            # line over the limit before stripping may be under it after: validate() decides.
            # Not an object, no known type, or the fused code unsure (None, or KeyError or
            # TypeError before its verdict, with nothing changed): validate() decides too
            if size <= limit:
                try:
                    event = functions[(body := loads(line))["type"]](body, start)
                except (not_json, KeyError, TypeError):
                    event = None
                else:
                    if event is True:  # new, accepted and folded
                        continue
            else:
                event = None
            if event is None:
                raw = line.strip()
                if not raw:
                    continue
                try:
                    event = validate(raw)
                except EventRejected as exc:
                    rejected.append(Rejection(number, exc.code, exc.detail))
                    continue
            assert isinstance(event, Event)
            status = check(event, start)
            if status == NEW:
                accepted += 1
                if event.ts > max_ts:
                    max_ts = event.ts
                if event.unit_id is not None:  # Engine.apply, inline
                    apply_event(states[event.unit_id], event)
            elif status == CONFLICT:
                rejected.append(Rejection(number, "conflicting_duplicate", _conflict(event)))
            else:
                duplicates += 1
    # every new id went into the table, through either path
    loaded.accepted = accepted if fused is None else fused.count()
    loaded.duplicates = duplicates
    if fused is not None:
        max_ts = max(max_ts, fused.last_ts())
    loaded.max_ts = max_ts if loaded.accepted else None
    engine.states = {u: state for u, state in states.items()
                     if state.dossiers or state.petitions or state.publications}
    return loaded


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A load creates millions of long-lived objects and no reference cycles, so the cyclic
    collector would only re-scan them again and again (about a sixth of the load time).

    On the way out they are moved to the oldest generation unscanned (freeze, then unfreeze):
    left in the youngest, the first collection after the load would walk every one of them
    (a few % of the load), and then again in the middle generation."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()


TYPICAL_LINE = 250  # bytes per event line, to size the de-duplication table
# the sequential reader's buffer: 8 KB by default is a read call per ~30 lines, a third of the
# cost of iterating over a file's lines (1.6 -> 1.05 s per 10M lines); the decode-only
# baselines in bench/ read with it too
READ_BUFFER = 1 << 20


def body_at(fh: BinaryIO, offset: int) -> dict[str, Any]:
    """The event on the line that starts at ``offset`` (an accepted one). Stripped as the
    load strips a line it validates: JSON allows no form feed or vertical tab around it."""
    fh.seek(offset)
    body: dict[str, Any] = orjson.loads(fh.readline().strip())
    return body


def _fast_only(
    fast: Callable[[dict[str, Any], Any], Event | None], units: Any, body: dict[str, Any], _: int
) -> Event | None:
    return fast(body, units)


def _by_digest(deduper: Deduper) -> Callable[[Event, int], str]:
    return lambda event, _: deduper.check(event.event_id, event.digest)


def _conflict(event: Event) -> str:
    return f"event_id {event.event_id[:128]!r} was seen before with another body"


def score_report(loaded: Loaded, window: Window, as_of: int, as_of_text: str) -> dict:
    """The JSON document ``bando score`` prints (SPEC section 5)."""
    return {
        "model": loaded.engine.model.ref,
        "as_of": as_of_text,
        "window": window.name,
        "units": loaded.engine.score_all(window, as_of),
        "rejected": [r.to_dict() for r in loaded.rejected],
    }
