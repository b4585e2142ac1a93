"""The event history the leaders' tools read: folded unit states plus the officer index.

Why one loader: a digest must show what ``bando score`` shows for the same file, and a signal
must be about the same dossiers the map counted. So a JSON-lines file goes through exactly the
path of ``bando score`` (``bando.batch.accept``: the schema validator with the live size limit
and de-duplication by event id), and Kafka or an archive goes through the audit tools' path
(``audit.ingest.Acceptor``: the worker's validation, de-duplication and DLQ verdicts). Every
accepted event is folded into an ``audit.ingest.History`` (what ``audit.explain`` needs) and
into the ``OfficerIndex`` (officer ids are not kept in the scoring facts).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.ingest import History, paused_gc
from bando.batch import Rejection, accept, iter_lines
from bando.settings import Settings
from leaders.officers import OfficerIndex
from schemas import Validator
from scoring.catalog import Catalog
from scoring.dedup import Deduper
from scoring.events import Event

log = logging.getLogger(__name__)


@dataclass
class LeaderHistory:
    history: History = field(default_factory=History)
    officers: OfficerIndex = field(default_factory=OfficerIndex)
    accepted: int = 0
    rejected: int = 0
    source: str = ""
    sha256: str | None = None  # of the input file, so a digest names exactly what it read

    def add(self, event: Event) -> None:
        self.history.add(event)
        self.officers.add(event)
        self.accepted += 1

    def extend(self, events: Iterable[Event]) -> LeaderHistory:
        for event in events:
            self.add(event)
        return self

    @property
    def last_ts(self) -> int | None:
        return self.history.last_ts


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_file(path: str | Path, catalog: Catalog, max_bytes: int | None = None) -> LeaderHistory:
    """A JSON-lines file, admitted exactly as ``bando score`` admits it."""
    limit = Settings.from_env().max_message_bytes if max_bytes is None else max_bytes
    out = LeaderHistory(source=f"file:{path}", sha256=_sha256(Path(path)))
    validator, deduper = Validator(catalog, max_bytes=limit), Deduper()
    with paused_gc():
        for _, item in accept(iter_lines(path), validator, deduper):
            if isinstance(item, Rejection):
                out.rejected += 1
            else:
                out.add(item)
    log.info("read %s: %d events accepted, %d lines rejected", path, out.accepted, out.rejected)
    return out


def load_from_context(ctx: Any, first_event_time_us: int | None) -> LeaderHistory:
    """Kafka or an archive through ``audit.replay_cli.Context`` (its DLQ verdicts and read
    bounds), folded into a ``LeaderHistory``."""
    from audit.ingest import Acceptor, read_dlq

    dlq = read_dlq(ctx.source, ctx.dlq_topic, ctx.events_topic) if ctx.dlq_topic else None
    acceptor = Acceptor(ctx.catalog, ctx.max_bytes, dlq)
    out = LeaderHistory(source=ctx.source.name)
    with paused_gc():
        for batch in ctx.source.read(ctx.events_topic, since_ms=ctx.since_ms(first_event_time_us),
                                     until_ms=ctx.known_at_ms):
            for rec in batch:
                event = acceptor.accept(rec)
                if event is not None:
                    out.add(event)
    out.rejected = sum(acceptor.stats.rejected.values())
    log.info("read %s: %d events accepted, %d rejected, %d skipped as dead-lettered",
             ctx.source.name, out.accepted, out.rejected, acceptor.stats.dlq_skipped)
    return out
