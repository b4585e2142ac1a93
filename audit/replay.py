"""Replay: rebuild scores from the event history, in batches, with the pure scoring core.

Why fold first and evaluate later: every fact in ``scoring.facts`` is a min, a max or a set,
and ``scoring.indicators.count(state, window, T)`` looks only at facts at or before T. So the
state folded from the *whole* history (``audit.ingest``), asked at T, is exactly the score of
the events with ``occurred_at <= T`` (SPEC 3) -- what ``bando score --as-of T`` prints. Replay
therefore reads the history once, in batches, folds it, and then walks event time, scoring a
unit only at the instants where its score can change: one of its events, a due time passing,
or a window boundary. Nothing goes through faust, no consumer group is joined, nothing is
produced.

This is "time travel" with everything known *now*. What the live board showed at the time
(events that arrived late were not in it yet) is ``--known-at`` (arrival-time cut-off) or,
message by message, ``audit.verify``.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from audit.exceptions import AuditError
from audit.ingest import (  # noqa: F401  (re-exported: the replay API in one place)
    Acceptor,
    History,
    IngestStats,
    load_history,
    paused_gc,
    read_dlq,
    window_state,
)
from audit.running import UnitReplay
from audit.totals import Totals
from scoring.catalog import Catalog
from scoring.engine import score_state
from scoring.indicators import NEVER, Counts, count
from scoring.model import Model
from scoring.ranking import competition_ranks
from scoring.timeutil import (
    Window,
    format_ts,
    from_us,
    parse_window,
    resolve_window,
    to_us,
    window_of,
)

log = logging.getLogger(__name__)

KINDS = ("month", "quarter", "year")
MAX_DAYS = 3700  # a day timeline longer than ten years is a stray timestamp, not a request


@dataclass
class TimelineSpec:
    window: str = "month"  # a kind (follows T) or an explicit window name
    start: int | None = None
    end: int | None = None
    units: tuple[str, ...] = ()  # empty: every unit
    every: str = "change"  # "change" | "day"
    check_core: bool = False  # re-check every incremental count against the core's count

    def fixed_window(self, tz: str) -> Window | None:
        return None if self.window in KINDS else parse_window(self.window, tz)

    def read_since_us(self, tz: str) -> int | None:
        """Earliest event time that can matter: the start of the first window covered."""
        fixed = self.fixed_window(tz)
        if fixed is not None:
            return fixed.start_us
        if self.start is None:
            return None
        return window_of(self.window, self.start, tz).start_us


def day_ends(start: int, end: int, tz: str, hint: str = "give --start or --end") -> list[int]:
    """The last microsecond of each local day from start's day to end's (the last one cut at
    ``end``). ``hint``: what the error on a too long range tells the user to do."""
    if end - start > MAX_DAYS * 86_400_000_000:
        raise AuditError(f"more than {MAX_DAYS} days from {format_ts(start, tz)} to "
                         f"{format_ts(end, tz)}: {hint}")
    out = []
    day = from_us(start, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    while True:
        nxt = day + timedelta(days=1)  # local calendar arithmetic (aware, same zone)
        t = to_us(nxt) - 1
        out.append(min(t, end))
        if t >= end:
            return out
        day = nxt


Snapshot = dict[str, tuple[str, float | None, str | None]]  # unit -> (window, total, band)


@dataclass
class Plan:
    """What a timeline covers, checked before any step (``plan``): shared by the processes of
    a split replay (``audit.split``), each stepping its own units."""

    spec: TimelineSpec
    start: int
    end: int
    window_at: Callable[[int], Window]
    rolling: bool  # the window follows T (a kind), not a fixed one
    evaluated: list[str]  # every unit of the groups shown, in catalog order
    group_of: dict[str, str]
    members: dict[str, tuple[str, ...]]
    shown_in: dict[str, list[str]]
    days: list[int]  # ``every="day"``: the day ends; else empty


def plan(first_ts: int | None, last_ts: int | None, catalog: Catalog, model: Model,
         spec: TimelineSpec) -> Plan | None:
    """The timeline's range, units and windows from the history's first and last event
    times; None when there is nothing to show. Raises ``AuditError`` for a bad request."""
    tz = model.timezone
    if spec.every not in ("change", "day"):
        raise AuditError(f"--every must be change or day, not {spec.every!r}")
    fixed = spec.fixed_window(tz)
    if fixed is None and spec.window not in KINDS:
        raise AuditError(f"not a window: {spec.window!r}")
    for u in spec.units:
        if u not in catalog:
            raise AuditError(f"unit {u!r} is not in the catalog")
    start = spec.start if spec.start is not None else (
        fixed.start_us if fixed is not None else first_ts)
    end = spec.end if spec.end is not None else last_ts
    if start is None or end is None:
        return None
    if end < start:
        if spec.end is None and fixed is not None:
            raise AuditError(f"window {fixed.name} starts after the last event "
                             f"({format_ts(end, tz)}): no data yet (give --end to see it "
                             "empty)")
        raise AuditError("the time range ends before it starts")
    selected = set(spec.units) if spec.units else set(catalog.by_id)
    groups = {catalog.by_id[u].peer_group for u in selected}
    members = {g: ids for g, ids in catalog.peer_groups.items() if g in groups}
    evaluated = [u for g in members for u in members[g]]

    def window_at(t: int) -> Window:
        return fixed or window_of(spec.window, t, tz)

    days: list[int] = []
    if spec.every == "day":
        # name the bound taken from the history (moved by a stray tick dated 2099), not one
        # given
        missing = " and ".join(f for f, v in (("--start", spec.start), ("--end", spec.end))
                               if v is None)
        days = day_ends(start, end, tz, f"give {missing}" if missing else "give a shorter range")
    return Plan(spec, start, end, window_at, fixed is None, evaluated,
                {u: catalog.by_id[u].peer_group for u in evaluated}, members,
                {g: [u for u in ids if u in selected] for g, ids in members.items()}, days)


def steps(p: Plan, history: History, model: Model, units: Iterable[str] | None = None
          ) -> Iterator[tuple[int, Snapshot]]:
    """The snapshots of ``units`` (default: every unit ``p`` evaluates) that may have moved,
    at each instant of the timeline, in time order."""
    chosen = None if units is None else set(units)
    own = p.evaluated if chosen is None else [u for u in p.evaluated if u in chosen]
    if p.spec.every == "day":
        return _by_day(history, model, own, p.window_at, p.start, p.days)
    return _by_change(history, model, own, p.window_at, p.rolling, p.start, p.end,
                      p.spec.check_core)


def timeline(history: History, catalog: Catalog, model: Model, spec: TimelineSpec
             ) -> Iterator[dict[str, Any]]:
    """Rows ``{at, unit_id, peer_group, window, total, band, rank, peer_count}``: for
    ``every="change"`` one per unit whenever any of those changes (a unit can move in rank
    because a peer moved), for ``every="day"`` one per unit at each day's end."""
    p = plan(history.first_ts, history.last_ts, catalog, model, spec)
    if p is not None:
        yield from rows(p, model.timezone, steps(p, history, model))


def rows(p: Plan, tz: str, snapshots: Iterable[tuple[int, Snapshot]]
         ) -> Iterator[dict[str, Any]]:
    """``timeline``'s rows from its snapshots: each group with a unit that moved ranked."""
    spec, members, shown_in, group_of = p.spec, p.members, p.shown_in, p.group_of
    groups = set(members)
    current: Snapshot = {}
    emitted: dict[str, tuple[Any, ...]] = {}
    partial = {g for g in members if len(shown_in[g]) < len(members[g])}
    shown_units = {u for ids in shown_in.values() for u in ids}
    for t, changed in snapshots:
        touched = set(groups) if spec.every == "day" else set()
        # for a group with few units shown: which ones must be ranked whatever (a shown unit
        # moved, or a unit appeared), and the totals of the other peers that moved, old -> new
        forced: set[str] = set()
        moved: dict[str, list[tuple[float | None, float | None]]] = {}
        for u, now in changed.items():
            before = current.get(u)
            if before != now:
                current[u] = now
                g = group_of[u]
                touched.add(g)
                if before is None or u in shown_units:
                    forced.add(g)
                else:
                    moved.setdefault(g, []).append((before[1], now[1]))
        at = None  # formatted once a row is due: most change steps emit none
        for g in sorted(touched):
            ids, shown = members[g], shown_in[g]
            if g in partial:  # a few units of the group: rank just those
                if spec.every == "change" and g not in forced and not _may_move(
                        moved[g], [current[u][1] for u in shown]):
                    continue
                totals = [current[u][1] for u in ids]
                ranks = {u: _rank(current[u][1], totals) for u in shown}
            else:
                ranks = competition_ranks({u: current[u][1] for u in ids})
            scored = sum(current[u][1] is not None for u in ids)
            for u in shown:
                wname, total, band = current[u]
                row = (wname, total, band, ranks[u], scored if total is not None else None)
                if spec.every == "change" and emitted.get(u) == row:
                    continue
                emitted[u] = row
                if at is None:
                    at = format_ts(t, tz)
                yield {"at": at, "unit_id": u, "peer_group": g, "window": wname,
                       "total": total, "band": band, "rank": row[3], "peer_count": row[4]}


def _may_move(peers: list[tuple[float | None, float | None]], totals: list[float | None]
              ) -> bool:
    """Whether peers moving (old -> new total) can change the rank or the scored count of
    units that kept their totals: only if a peer became scored or unscored, or crossed one
    of those totals (a rank counts the peers strictly above)."""
    for old, new in peers:
        if (old is None) != (new is None):
            return True
        if old is None or new is None:  # mypy: both None here
            continue
        for total in totals:
            if total is not None and (old > total) != (new > total):
                return True
    return False


def _rank(total: float | None, totals: list[float | None]) -> int | None:
    """``competition_ranks`` of one unit: 1 + the scored peers with a strictly higher total."""
    if total is None:
        return None
    return 1 + sum(1 for other in totals if other is not None and other > total)


def _by_day(history: History, model: Model, evaluated: list[str],
            window_at: Callable[[int], Window], start: int, days: list[int]
            ) -> Iterator[tuple[int, Snapshot]]:
    """Each day's end: the counts of each unit whose counts may have moved since the day
    before (one of its records passed a breakpoint or came in), or whose window changed."""
    totals = Totals(model)
    units = {u: UnitReplay(history.states.get(u), start, model.timezone) for u in evaluated}
    shown: dict[str, str] = {}  # unit -> the window of its last snapshot
    for t in days:
        window = window_at(t)
        changed: Snapshot = {}
        for u in evaluated:
            replay = units[u]
            if not replay.advance(t) and shown.get(u) == window.name:
                continue
            shown[u] = window.name
            changed[u] = (window.name, *totals.of_sums(replay.sums(window)))
        yield t, changed


def _by_change(history: History, model: Model, evaluated: list[str],
               window_at: Callable[[int], Window], rolling: bool, start: int, end: int,
               check_core: bool) -> Iterator[tuple[int, Snapshot]]:
    """Every instant where the counts of a unit may change: each unit's next such instant
    (``UnitReplay.next_change``) in one queue, totals only for the units whose counts moved."""
    totals = Totals(model)
    units = {u: UnitReplay(history.states.get(u), start, model.timezone) for u in evaluated}
    window = window_at(start)

    def snapshot(names: Iterable[str], t: int) -> Snapshot:
        out: Snapshot = {}
        for u in names:
            if check_core:
                _check_core(history, u, window, t, units[u].counts(window))
            out[u] = (window.name, *totals.of_sums(units[u].sums(window)))
        return out

    yield start, snapshot(evaluated, start)
    queue = [(replay.next_change(), u) for u, replay in units.items()]
    heapq.heapify(queue)
    boundary = window.end_us if rolling else NEVER
    while True:
        t = min(queue[0][0] if queue else NEVER, boundary)
        if t > end:
            return
        changed: set[str] = set()
        if t == boundary:  # a new window opens: every unit is counted in it
            window = window_at(t)
            boundary = window.end_us
            for replay in units.values():
                replay.advance(t)
            changed.update(evaluated)
        while queue and queue[0][0] == t:
            _, u = heapq.heappop(queue)
            replay = units[u]
            if replay.advance(t):
                changed.add(u)
            heapq.heappush(queue, (replay.next_change(), u))
        if changed:
            yield t, snapshot(changed, t)


def _check_core(history: History, unit_id: str, window: Window, t: int, c: Counts) -> None:
    full = count(window_state(history.states.get(unit_id), window), window, t)
    if full.values != c.values or (full.items > 0) != (c.items > 0):
        raise AuditError(f"running counts of {unit_id} at {format_ts(t)} differ from "
                         f"scoring.indicators.count: {c.values} != {full.values}")


def peer_scores(history: History, catalog: Catalog, model: Model, group: str, window_spec: str,
                t: int) -> tuple[list[dict[str, Any]], Window]:
    """Every unit of a peer group at T (for the peer-group chart), with the core's ``rate``."""
    if group not in catalog.peer_groups:
        raise AuditError(f"no peer group {group!r} in the catalog")
    window = resolve_window(window_spec, t, model.timezone)
    scores = {u: score_state(model, catalog.by_id[u], window_state(history.states.get(u), window),
                             window, t) for u in catalog.peer_groups[group]}
    ranks = competition_ranks({u: s.rated.total for u, s in scores.items()})
    return [{"unit_id": u, "name": s.unit.name, "total": s.rated.total, "band": s.rated.band,
             "rank": ranks[u]} for u, s in scores.items()], window


CSV_COLUMNS = ("at", "unit_id", "peer_group", "window", "total", "band", "rank", "peer_count")


def csv_lines(rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in CSV_COLUMNS])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()
