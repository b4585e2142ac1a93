"""``bando replay --verify``: reproduce every published ``unit-scores`` message from history.

A published message is reproduced in two independent halves:

(a) **content** -- ``total``, ``band``, ``groups``, ``indicators``, ``as_of`` (and ``name``,
    ``peer_group``, ``model``, ``window``, ``top_losses``) must equal what the pure core gives
    for that unit from the events of ``input.partition`` up to ``input.offset`` inclusive,
    admitted exactly as the worker admits them (``schemas.Validator``, ``scoring.dedup``), at
    the watermark of that prefix (largest ``occurred_at`` accepted, ticks included), which must
    be the message's ``as_of``;
(b) **ranking** -- the whole message (``rank``, ``peer_count``, ``rank_basis`` ...) must be what
    ``streams.ranker.RankerCore`` publishes when re-run, from the beginning, over the internal
    topic ``<app_id>-unit-scored`` in the batches that the messages' ``rank_basis`` name.

Messages are sorted by (partition, offset) and each partition is folded once, checking
messages as their input position passes: the cost is one read of the history plus one score
per message, never a re-read per message.

What replay cannot re-derive: ``future_timestamp`` (wall clock at processing time) and
conflicts with an event on another partition. For those it trusts the DLQ: positions the
worker dead-lettered are skipped; every other position must validate (or it is reported).
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from audit.exceptions import AuditError
from audit.ingest import Acceptor, paused_gc, read_dlq
from audit.sources import Source
from audit.verify_report import Mismatch, VerifyReport
from bando.exceptions import BandoError
from scoring.catalog import Catalog
from scoring.facts import UnitState, apply_event
from scoring.indicators import count
from scoring.model import Model
from scoring.points import Rated, rate
from scoring.timeutil import format_ts, parse_window, window_of
from streams.ranker import RankerCore

log = logging.getLogger(__name__)

CONTENT_FIELDS = ("name", "peer_group", "model", "window", "as_of", "total", "band", "groups",
                  "indicators", "top_losses")


@dataclass
class _Published:
    partition: int
    offset: int
    msg: dict[str, Any]
    where: str


class _MemStore:
    """``streams.scorer.Store`` in memory: the re-run ranker's table."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = defaultdict(dict)

    def get(self, table: str, key: str) -> Any:
        return self.tables[table].get(key)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        self.tables[table][key] = value

    def items(self, table: str) -> Iterable[tuple[str, Any]]:
        return list(self.tables[table].items())


class _Rater:
    """``scoring.points.rate``, memoized on the counts (many messages share them)."""

    def __init__(self, model: Model):
        self.model = model
        self.memo: dict[tuple[Any, ...], Rated] = {}

    def __call__(self, values: dict[str, tuple[int, int]], scored: bool) -> Rated:
        key = (scored, *sorted(values.items()))
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = rate(self.model, values, scored=scored)
        return hit


def expected_content(model: Model, catalog: Catalog, rater: _Rater, unit_id: str,
                     state: UnitState | None, window_name: str, t: int) -> dict[str, Any]:
    """The scorer's message content for a unit (``streams.scorer.ScorerCore.flush``)."""
    unit = catalog.by_id[unit_id]
    window = parse_window(window_name, model.timezone)
    c = count(state if state is not None else UnitState(), window, t)
    rated = rater(c.values, c.items > 0)
    losses = sorted(rated.lost.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "name": unit.name, "peer_group": unit.peer_group, "model": model.ref,
        "window": window_of(window.kind, t, model.timezone).name,
        "as_of": format_ts(t, model.timezone), "total": rated.total, "band": rated.band,
        "groups": rated.groups, "indicators": rated.indicators,
        "top_losses": [{"indicator": i, "points_lost": round(float(v), 4)}
                       for i, v in losses[:3] if v > 0],
    }


def read_published(source: Source, topic: str, report: VerifyReport) -> list[_Published]:
    out: list[_Published] = []
    for batch in source.read(topic):
        for rec in batch:
            where = f"{topic}[{rec.partition}]@{rec.offset}"
            try:
                msg = orjson.loads(rec.value or b"")
                if not isinstance(msg, dict):
                    raise ValueError("not an object")
            except (orjson.JSONDecodeError, ValueError) as exc:
                report.mismatches.append(Mismatch(where, None, None, "unreadable", str(exc)))
                continue
            out.append(_Published(rec.partition, rec.offset, msg, where))
    report.messages = len(out) + len(report.mismatches)
    return out


def _input_position(pub: _Published, events_topic: str) -> tuple[int, int] | str:
    inp = pub.msg.get("input")
    if not isinstance(inp, dict):
        return "no input position"
    if inp.get("topic") != events_topic:
        return f"input topic {inp.get('topic')!r} is not {events_topic!r}"
    p, o = inp.get("partition"), inp.get("offset")
    if type(p) is not int or type(o) is not int:
        return "input partition/offset missing"
    return p, o


def check_content(source: Source, catalog: Catalog, model: Model, events_topic: str,
                  acceptor: Acceptor, todo: list[_Published], report: VerifyReport) -> None:
    """(a): fold each partition once, checking each message when its input position passes."""
    pending: dict[int, list[tuple[int, _Published]]] = defaultdict(list)
    for pub in todo:
        pos = _input_position(pub, events_topic)
        if isinstance(pos, str):
            report.mismatches.append(Mismatch(pub.where, pub.msg.get("unit_id"),
                                              pub.msg.get("window"), "input", pos))
        else:
            pending[pos[0]].append((pos[1], pub))
    for items in pending.values():
        items.sort(key=lambda x: x[0])
    cursor: dict[int, int] = defaultdict(int)
    states: dict[tuple[int, str], UnitState] = {}
    watermark: dict[int, int] = {}
    unit_partition: dict[str, int] = {}
    started: set[int] = set()
    rater = _Rater(model)

    def check_upto(p: int, offset: int) -> None:
        items, i = pending.get(p), cursor[p]
        if not items:
            return
        while i < len(items) and items[i][0] <= offset:
            _check_one(items[i][1], p)
            i += 1
        cursor[p] = i

    def _check_one(pub: _Published, p: int) -> None:
        report.checked += 1
        msg = pub.msg
        unit_id, window = msg.get("unit_id"), msg.get("window")
        t = watermark.get(p)
        if t is None:
            report.mismatches.append(Mismatch(pub.where, unit_id, window, "input",
                                              "no accepted event at or before its input"))
            return
        if not isinstance(unit_id, str) or unit_id not in catalog:
            report.mismatches.append(Mismatch(pub.where, str(unit_id), window, "content",
                                              "unit not in the catalog"))
            return
        try:
            expected = expected_content(model, catalog, rater, unit_id, states.get((p, unit_id)),
                                        str(window), t)
        except (BandoError, TypeError, ValueError) as exc:  # a tampered window name, for one
            report.mismatches.append(Mismatch(pub.where, unit_id, window, "content",
                                              f"cannot score: {exc}"))
            return
        diff = {k: {"published": msg.get(k), "expected": v}
                for k, v in expected.items() if msg.get(k) != v}
        if diff:
            report.mismatches.append(Mismatch(
                pub.where, unit_id, window, "content",
                f"differs from the events up to {events_topic}[{p}]@"
                f"{msg['input']['offset']}: {', '.join(diff)}", diff))

    for batch in source.read(events_topic):
        for rec in batch:
            p = rec.partition
            if p not in started:
                started.add(p)
                if rec.offset > 0:
                    acceptor.stats.anomaly(f"{rec.topic}[{p}] starts at offset {rec.offset}: "
                                           "earlier events are gone (retention?)")
            check_upto(p, rec.offset - 1)
            ev = acceptor.accept(rec)
            if ev is not None:
                if ev.ts > watermark.get(p, -(2**62)):
                    watermark[p] = ev.ts
                u = ev.unit_id
                if u is not None:
                    seen_on = unit_partition.setdefault(u, p)
                    if seen_on != p:
                        acceptor.stats.anomaly(f"{rec.topic}[{p}]@{rec.offset}: unit {u} "
                                               f"also has events on partition {seen_on}")
                    state = states.get((p, u))
                    if state is None:
                        state = states[(p, u)] = UnitState()
                    apply_event(state, ev)
            check_upto(p, rec.offset)
    for p, items in pending.items():
        for _, pub in items[cursor[p]:]:
            report.mismatches.append(Mismatch(
                pub.where, pub.msg.get("unit_id"), pub.msg.get("window"), "input",
                f"input position {events_topic}[{p}]@{pub.msg['input']['offset']} "
                "is not in the event history"))


def _basis(msg: Mapping[str, Any]) -> tuple[str, int, int] | None:
    b = msg.get("rank_basis")
    try:
        first, last = b["offsets"]  # type: ignore[index]
        if type(first) is int and type(last) is int and first <= last:
            return str(b["topic"]), first, last  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        pass
    return None


def ranker_topic(source: Source, published: list[_Published],
                 internal_topic: str | None) -> str | None:
    """The internal topic (b) re-runs: the one given, else the one most ``rank_basis`` name."""
    bases = Counter(basis[0] for pub in published if (basis := _basis(pub.msg)) is not None)
    topic = internal_topic or (bases.most_common(1)[0][0] if bases else None)
    if topic is not None and not source.has_topic(topic):
        # like a missing events topic, the audit cannot run: reporting every message as a
        # mismatch would accuse the publisher of the auditor's typo
        raise AuditError(f"{source.name}: no ranker topic {topic!r} (the ranker's input, "
                         "<app_id>-unit-scored; name it with --internal-topic)")
    return topic


def check_ranking(source: Source, published: list[_Published], todo: list[_Published],
                  topic: str | None, report: VerifyReport) -> None:
    """(b): re-run the ranker over the internal topic in the published batches."""
    internal: dict[int, dict[str, Any]] = {}
    for batch in source.read(topic) if topic is not None else ():
        for rec in batch:
            if rec.partition != 0:
                continue  # the ranker topic has one partition by design
            try:
                internal[rec.offset] = orjson.loads(rec.value or b"")
            except orjson.JSONDecodeError:
                log.warning("unreadable message %s@%d", topic, rec.offset)
    have = sorted(internal)

    def held(first: int, last: int) -> list[int]:
        # the offsets that exist, not range(first, last + 1): a forged span may be 10**12 long
        return have[bisect_left(have, first):bisect_right(have, last)]

    # only whole batches are re-run: a span that is not (forged, or with a record lost) would
    # feed the ranker records out of turn and so break every later batch's ranks
    named = Counter(basis[1:] for pub in published
                    if (basis := _basis(pub.msg)) and basis[0] == topic)
    spans, overlapping = _disjoint([s for s in named if len(held(*s)) == s[1] - s[0] + 1],
                                   named)
    runs: list[tuple[int, int, bool]] = []  # (first, last, named by a published message)
    cursor = have[0] if have else 0
    for lo, hi in spans:
        if lo > cursor:
            runs.append((cursor, lo - 1, False))
        runs.append((lo, hi, True))
        cursor = max(cursor, hi + 1)
    if have and have[-1] >= cursor:
        runs.append((cursor, have[-1], False))
    ranker = RankerCore(_MemStore())
    results: dict[tuple[int, int], dict[tuple[str, str], dict[str, Any]]] = {}
    for first, last, is_named in runs:
        incoming = [internal[o] for o in held(first, last)]
        if not is_named and not incoming:
            continue
        stamp: dict[str, Any] | None = (
            {"topic": topic, "offsets": [first, last]} if is_named else None)
        out = ranker.process(incoming, stamp)
        report.ranker_batches += 1
        if is_named:
            results[(first, last)] = {(m["window"], m["unit_id"]): m for m in out.scores}
    for pub in todo:
        msg = pub.msg
        unit_id, window = msg.get("unit_id"), msg.get("window")
        named_by = _basis(msg)
        if named_by is None or named_by[0] != topic:
            report.mismatches.append(Mismatch(pub.where, unit_id, window, "ranking",
                                              f"rank_basis {msg.get('rank_basis')!r} unusable"))
            continue
        span = named_by[1], named_by[2]
        if span in overlapping:
            report.mismatches.append(Mismatch(
                pub.where, unit_id, window, "ranking",
                f"batch {topic}@{span[0]}-{span[1]} overlaps a batch more messages name"))
            continue
        if span not in results:
            end = have[-1] if have else -1
            report.mismatches.append(Mismatch(
                pub.where, unit_id, window, "ranking", f"batch {topic}@{span[0]}-{span[1]} " + (
                    f"reaches past the topic's end ({end})" if span[1] > end
                    else "not all in history")))
            continue
        again = results[span].get((str(window), str(unit_id)))
        if again is None:
            report.mismatches.append(Mismatch(pub.where, unit_id, window, "ranking",
                                              f"re-ranking {topic}@{span[0]}-{span[1]} does not "
                                              "publish this unit"))
            continue
        # content fields are (a)'s business: each fault is reported once
        diff = {k: {"published": msg.get(k), "expected": v}
                for k, v in again.items() if k not in CONTENT_FIELDS and msg.get(k) != v}
        diff.update({k: {"published": msg[k], "expected": None}
                     for k in msg.keys() - again.keys() - set(CONTENT_FIELDS)})
        if diff:
            report.mismatches.append(Mismatch(
                pub.where, unit_id, window, "ranking",
                f"differs from re-ranking {topic}@{span[0]}-{span[1]}: "
                f"{', '.join(sorted(diff))}",
                diff))


def _disjoint(spans: list[tuple[int, int]], named: Counter[tuple[int, int]]
              ) -> tuple[list[tuple[int, int]], set[tuple[int, int]]]:
    """The ranker's batches never overlap, so of overlapping spans only one is genuine: the
    one more published messages name (a forger adds one; a batch publishes each unit it
    re-ranks), then the earlier, then the longer. Re-running both would feed records to the
    ranker twice. Returns the spans kept, in order, and those left out. A year holds
    millions of batches, so overlaps are looked for in one sweep, among neighbours only."""
    kept: list[tuple[int, int]] = []
    left: set[tuple[int, int]] = set()
    group: list[tuple[int, int]] = []
    reach = -1
    for span in sorted(spans) + [(2**63, 2**63)]:  # a sentinel closes the last group
        if span[0] > reach and group:  # the group before ``span`` is complete
            if len(group) == 1:  # nearly always: no sort, no priority
                kept.append(group[0])
            else:
                chosen: list[tuple[int, int]] = []
                for s in sorted(group, key=lambda s: (-named[s], s[0], s[0] - s[1])):
                    if any(s[0] <= hi and lo <= s[1] for lo, hi in chosen):
                        left.add(s)
                    else:
                        chosen.append(s)
                kept += sorted(chosen)
            group = []
        group.append(span)
        reach = max(reach, span[1])
    return kept, left


def verify(source: Source, catalog: Catalog, model: Model, *, events_topic: str,
           dlq_topic: str | None, scores_topic: str, internal_topic: str | None = None,
           max_bytes: int = 64 * 1024, units: Iterable[str] = ()) -> VerifyReport:
    started = time.perf_counter()
    report = VerifyReport(source.name)
    published = read_published(source, scores_topic, report)
    topic = ranker_topic(source, published, internal_topic)  # before minutes of (a)
    wanted = set(units)
    todo = [p for p in published if not wanted or p.msg.get("unit_id") in wanted]
    dlq = read_dlq(source, dlq_topic, events_topic) if dlq_topic else None
    if dlq is None:
        log.warning("no DLQ topic in %s: every event is re-validated and none is skipped, so "
                    "events the worker refused as future_timestamp would be counted", source.name)
    acceptor = Acceptor(catalog, max_bytes, dlq, per_partition=True)
    t0 = time.perf_counter()
    with paused_gc():
        check_content(source, catalog, model, events_topic, acceptor, todo, report)
    acceptor.stats.seconds = time.perf_counter() - t0
    report.ingest = acceptor.stats
    check_ranking(source, published, todo, topic, report)
    report.mismatches.sort(key=lambda m: (m.where.rsplit("[", 1)[0], _pos(m.where), m.kind))
    report.seconds = time.perf_counter() - started
    return report


def _pos(where: str) -> tuple[int, int]:
    try:
        p, o = where.rsplit("[", 1)[1].split("]@")
        return int(p), int(o)
    except (IndexError, ValueError):
        return (-1, -1)
