"""Replay's ingest of a JSON-lines file or an archive by ``bando score``'s fused code: the same
verdicts, statistics and history as ``Acceptor.accept`` + ``History.add`` record by record
(``audit.ingest.load_history``'s generic path), in about half the time.

Each record's event is decoded here and handed to its type's fused function
(``bando.fastload.FusedHistory``: checks, de-duplication and fold in one call). The
de-duplication keeps, per event id, a hash tag and where its first accepted copy lies (a
file's byte offset; an archive's file and line) instead of a digest of every body
(``scoring.dedup.FirstSeen``: a repeated id re-reads its first copy to compare digests, so
the verdicts are ``Deduper``'s); one table, as ``Acceptor`` keeps without ``per_partition``.
What the fused code hands back (a repeat, a petition, a publication, anything it is unsure
of) and the DLQ's positions take ``Acceptor``'s own steps (``_Tables.slow``), in record
order, so the counts and anomalies come out as the generic path makes them.
``tests/audit/test_fast_ingest.py`` checks both sources against the generic path.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from audit.exceptions import AuditError
from audit.ingest import Acceptor, History, paused_gc
from audit.sources import ArchiveSource, FileSource, Record, _Window, decode_record
from bando.batch import READ_BUFFER, TYPICAL_LINE, body_at
from bando.fastload import MAX_TS, MIN_TS, FusedHistory
from schemas import EventRejected
from scoring.dedup import CONFLICT, NEW, FirstSeen
from scoring.events import Event
from scoring.facts import UnitState, apply_event


class _Tables:
    """One ingest's unit states, for every catalog unit up front (those no event reached are
    dropped at the end), the fused functions on their dossier tables, and the reference steps
    for the rest."""

    def __init__(self, acceptor: Acceptor, table: FirstSeen):
        self.acceptor = acceptor
        self.unit_ids = list(acceptor.catalog.by_id)
        self.states = {u: UnitState() for u in self.unit_ids}
        self.reached: set[str] = set()  # units an event reached through the reference steps
        self.fused = FusedHistory({u: state.dossiers for u, state in self.states.items()},
                                  table)
        self.records = self.new = self.duplicates = 0  # of the reference steps
        self.first_ts, self.last_ts = MAX_TS, MIN_TS

    def slow(self, event: Event | None, raw: bytes, where: str, token: int) -> None:
        """``Acceptor.accept`` (past the DLQ) and ``History.add`` of a record the fused code
        did not take: ``event`` if it is valid, else None and ``raw`` for the validator."""
        acceptor = self.acceptor
        stats = acceptor.stats
        self.records += 1
        if event is None:
            try:
                event = acceptor.validator.validate(raw)
            except EventRejected as exc:
                stats.rejected[exc.code] += 1
                if acceptor.dlq is not None:
                    stats.anomaly(f"{where}: {exc.code} ({exc.detail[:80]}) but not in the DLQ")
                return
        status = self.fused.check(event, token)
        if status == NEW:
            self.new += 1
            self.first_ts, self.last_ts = min(self.first_ts, event.ts), max(self.last_ts, event.ts)
            if event.unit_id is not None:  # History.add, minus first/last
                self.reached.add(event.unit_id)
                apply_event(self.states[event.unit_id], event)
        elif status == CONFLICT:
            stats.rejected["conflicting_duplicate"] += 1
            if acceptor.dlq is not None:
                stats.anomaly(f"{where}: conflicting duplicate of {event.event_id!r} not in "
                              "the DLQ")
        else:
            self.duplicates += 1

    def history(self, accepted: int | None = None) -> History:
        """The statistics into the acceptor's, and the history (units that got an event).
        ``accepted``: the new ids, when the table also holds others' (``audit.split``)."""
        stats, fused = self.acceptor.stats, self.fused
        if accepted is None:
            accepted = fused.count()  # every new id went into the table, through either path
        stats.records += self.records + accepted - self.new
        stats.accepted += accepted
        stats.duplicates += self.duplicates
        history = History()
        if accepted:
            history.first_ts = min(self.first_ts, fused.first_ts())
            history.last_ts = max(self.last_ts, fused.last_ts())
        history.states = {u: state for u, state in self.states.items()
                          if state.dossiers or u in self.reached}
        return history


def load_file(source: FileSource, acceptor: Acceptor) -> History:
    """``FileSource.read`` through the acceptor into a history: a record per non-blank line,
    partition 0, offset = line number - 1; the table's token is the line's byte offset."""
    topic, dlq = source.topic, acceptor.dlq
    limit = acceptor.validator.max_bytes
    dlq_here = {o: code for (p, o), code in dlq.items() if p == 0} if dlq is not None else {}
    loads, not_json = orjson.loads, orjson.JSONDecodeError
    with (open(source.path, "rb", buffering=READ_BUFFER) as fh, open(source.path, "rb") as again,
          paused_gc()):
        tables = _Tables(acceptor, FirstSeen(partial(body_at, again),
                                             os.fstat(fh.fileno()).st_size // TYPICAL_LINE))
        functions, slow = tables.fused.functions, tables.slow
        pos = 0
        for offset, line in enumerate(fh):
            start = pos
            pos += (size := len(line))
            if dlq_here and offset in dlq_here:  # the worker's verdict: the reference decides
                raw = line.strip()
                if raw:
                    acceptor.accept(Record(topic, 0, offset, None, None, raw))
                continue
            # as in bando.batch.load: the line with its whitespace (JSON allows it); over the
            # limit before stripping, not an object, no known type, or unsure: validate()
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
            raw = line.strip()
            if raw:  # else not a record (FileSource skips it)
                slow(event, raw, f"{topic}[0]@{offset}", start)  # type: ignore[arg-type]
        return tables.history()


class _DayLines:
    """An archive's lines by (file, line) for ``FirstSeen.body_at``: the last few files read
    are kept (a repeat mostly follows its first copy closely), an older one is read again."""

    KEPT = 3

    def __init__(self, topic: str, paths: list[Path]):
        self.topic, self.paths = topic, paths
        self.files: OrderedDict[int, list[bytes]] = OrderedDict()

    def lines(self, index: int) -> list[bytes]:
        lines = self.files.get(index)
        if lines is None:
            with gzip.open(self.paths[index], "rb") as fh:
                lines = fh.read().split(b"\n")
            if lines and not lines[-1]:
                lines.pop()
            self.files[index] = lines
            while len(self.files) > self.KEPT:
                self.files.popitem(last=False)
        else:
            self.files.move_to_end(index)
        return lines

    def body_at(self, token: int) -> dict[str, Any]:
        rec = decode_record(self.topic, self.lines(token >> 32)[token & 0xFFFFFFFF])
        body: dict[str, Any] = orjson.loads(rec.value or b"")
        return body


def load_archive(source: ArchiveSource, topic: str, acceptor: Acceptor, since_ms: int | None,
                 until_ms: int | None) -> History:
    """``ArchiveSource.read`` through the acceptor into a history; the table's token is the
    record's file and line (``file << 32 | line``). The event is decoded from the archive
    line's text (``v``) without making a ``Record`` or its bytes; a binary value (``vb``), a
    null one or one that might be over the size limit goes through ``decode_record`` and the
    validator. (Unlike ``read``, the key is decoded only there: elsewhere a corrupt key is not
    an error.)"""
    paths = source.files(topic, since_ms)
    days = _DayLines(topic, paths)
    # ``_Window.admit_at`` inline (no start offsets here): a call per record is a tenth of
    # the ingest
    window = _Window(since_ms, until_ms, None)
    started, stopped, last = window.started, window.stopped, window.last
    last_of, dlq = last.get, acceptor.dlq
    quarter = acceptor.validator.max_bytes // 4  # a text of that length is under the limit
    loads, not_json = orjson.loads, orjson.JSONDecodeError
    expected = sum(p.stat().st_size for p in paths) * 3 // TYPICAL_LINE  # gzip: ~1/3
    admitted = 0
    with paused_gc():
        tables = _Tables(acceptor, FirstSeen(days.body_at, expected))
        functions, slow = tables.fused.functions, tables.slow
        for index, path in enumerate(paths):
            base = index << 32
            try:
                lines = days.lines(index)
            except (OSError, EOFError, zlib.error) as exc:  # a corrupt gzip: exit 2, not 1
                raise AuditError(f"{source.name}: cannot read {path}: {exc}") from exc
            for number, line in enumerate(lines):
                try:  # free in 3.11 unless it raises: the checks are the comparisons' own
                    d = loads(line)
                    p, o = d["p"], d["o"]
                    if p in stopped or o <= last_of(p, -1):
                        continue  # ended, or a repeat (an archive run re-done after a crash)
                    if p not in started or until_ms is not None:
                        ts = d.get("ts")
                        if p not in started:
                            if since_ms is not None and (ts is None or ts < since_ms):
                                continue
                            started.add(p)
                        if until_ms is not None and ts is not None and ts > until_ms:
                            stopped.add(p)
                            continue
                except (ValueError, KeyError, TypeError) as exc:  # not JSON, an object, numbers
                    raise _unreadable(source, path, number, exc) from exc
                last[p] = o
                admitted += 1
                if dlq is not None and (p, o) in dlq:  # the worker's verdict
                    try:
                        rec = decode_record(topic, line)
                    except AuditError as exc:
                        raise _unreadable(source, path, number, exc) from exc
                    acceptor.accept(rec)
                    continue
                value = d.get("v")
                event = None
                if type(value) is str and len(value) <= quarter and "vb" not in d:
                    try:
                        event = functions[(body := loads(value))["type"]](body, base | number)
                    except (not_json, KeyError, TypeError):
                        event = None
                    else:
                        if event is True:  # new, accepted and folded
                            continue
                    raw = value.encode()
                else:
                    try:  # a binary, null, long or not-text value: decode_record's checks
                        raw = decode_record(topic, line).value or b""
                    except AuditError as exc:
                        raise _unreadable(source, path, number, exc) from exc
                slow(event, raw, f"{topic}[{p}]@{o}", base | number)  # type: ignore[arg-type]
            # the comparisons let a partition of another type ("0") through: checked per file
            bad = [(k, v) for k, v in last.items() if type(k) is not int or type(v) is not int]
            if bad:
                raise AuditError(f"{source.name}: cannot read {path}: partition {bad[0][0]!r}, "
                                 f"offset {bad[0][1]!r}: not integers")
        if since_ms is None and until_ms is None:
            source.check_complete(topic, admitted)
        return tables.history()


def _unreadable(source: ArchiveSource, path: Path, number: int, exc: Exception) -> AuditError:
    """A corrupt line (an ``AuditError``: exit 2, where a traceback would read as a mismatch)."""
    return AuditError(f"{source.name}: cannot read {path} line {number + 1}: {exc}")
