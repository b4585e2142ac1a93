"""Offline event files: read JSON lines into accepted events and rejections.

Shared by ``bando score``, replay and benchmarks, so every offline path applies the very same
validation and de-duplication as the live worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bando.settings import Settings
from schemas import EventRejected, Validator
from scoring.catalog import Catalog
from scoring.dedup import CONFLICT, NEW, Deduper
from scoring.engine import Engine
from scoring.events import Event
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
            yield number, Rejection(
                number,
                "conflicting_duplicate",
                f"event_id {event.event_id[:128]!r} was seen before with another body",
            )


def load(
    path: str | Path, catalog: Catalog, model: Model, max_bytes: int | None = None
) -> Loaded:
    """Fold a whole file into an engine (order-independent by construction of the facts)."""
    engine = Engine(catalog, model)
    loaded = Loaded(engine)
    # the live worker's limit, so a replay and the live map agree on what is too large
    limit = Settings.from_env().max_message_bytes if max_bytes is None else max_bytes
    validator = Validator(catalog, max_bytes=limit)
    deduper = Deduper()
    seen_before = 0
    for _, item in accept(iter_lines(path), validator, deduper):
        if isinstance(item, Rejection):
            loaded.rejected.append(item)
            continue
        loaded.accepted += 1
        if loaded.max_ts is None or item.ts > loaded.max_ts:
            loaded.max_ts = item.ts
        engine.apply(item)
    loaded.duplicates = seen_before
    return loaded


def score_report(loaded: Loaded, window: Window, as_of: int, as_of_text: str) -> dict:
    """The JSON document ``bando score`` prints (SPEC section 5)."""
    return {
        "model": loaded.engine.model.ref,
        "as_of": as_of_text,
        "window": window.name,
        "units": loaded.engine.score_all(window, as_of),
        "rejected": [r.to_dict() for r in loaded.rejected],
    }
