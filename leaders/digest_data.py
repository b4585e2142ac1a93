"""What a weekly digest says, as JSON-ready documents (rendered by ``leaders.digest``).

Why separate from the HTML: the numbers must be checkable. Every figure comes from the core
(``score_state`` over ``audit.ingest.window_state``, ``audit.explain.explain`` for the lost
points, the dossiers behind them and the gains), at the last microsecond of the ISO week in
the model's time zone, so the digest of week W equals ``bando score --as-of <end of W>`` for
the same events, whenever it is made: a digest is reproducible for any past week.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from audit.explain import explain
from audit.ingest import History, window_state
from leaders import commitments as cm
from leaders.signals import Signal, SignalConfig, evaluate
from scoring.catalog import Catalog
from scoring.engine import UnitScore, score_state
from scoring.model import Model
from scoring.ranking import competition_ranks
from scoring.timeutil import format_ts, from_us, resolve_window, to_us

WEEK_US = 7 * 86_400_000_000


class DigestError(ValueError):
    """A digest that cannot be made (unknown unit or group, bad week)."""


@dataclass(frozen=True)
class Week:
    name: str  # ISO week, e.g. "2024-W15"
    start_us: int  # Monday 00:00 local
    end_us: int  # the last microsecond of Sunday: the digest's "now"


def parse_week(text: str, tz: str) -> Week:
    try:
        year, _, num = text.partition("-W")
        monday = date.fromisocalendar(int(year), int(num), 1)
    except ValueError:
        raise DigestError(f"not an ISO week: {text!r} (e.g. 2024-W15)") from None
    start = to_us(datetime.combine(monday, time(0), tzinfo=ZoneInfo(tz)))
    end = to_us(datetime.combine(monday + timedelta(days=7), time(0), tzinfo=ZoneInfo(tz))) - 1
    iso = monday.isocalendar()
    return Week(f"{iso.year:04d}-W{iso.week:02d}", start, end)


def week_of(us: int, tz: str) -> Week:
    iso = from_us(us, tz).date().isocalendar()
    return parse_week(f"{iso.year:04d}-W{iso.week:02d}", tz)


def last_complete_week(us: int, tz: str) -> Week:
    """The latest week whose end is at or before ``us`` (the default digest week)."""
    week = week_of(us, tz)
    return week if week.end_us <= us else week_of(week.start_us - 1, tz)


class Scores:
    """Scores of peer groups at instants, from the core, cached (the chart asks many times)."""

    def __init__(self, history: History, catalog: Catalog, model: Model, window: str):
        self.history, self.catalog, self.model, self.window = history, catalog, model, window
        self._cache: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}

    def group_at(self, group: str, t: int) -> dict[str, dict[str, Any]]:
        key = (group, t)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        window = resolve_window(self.window, t, self.model.timezone)
        scores: dict[str, UnitScore] = {
            u: score_state(self.model, self.catalog.by_id[u],
                           window_state(self.history.states.get(u), window), window, t)
            for u in self.catalog.peer_groups[group]}
        ranks = competition_ranks({u: s.rated.total for u, s in scores.items()})
        scored = [s.rated.total for s in scores.values() if s.rated.total is not None]
        out = {u: {"unit_id": u, "name": self.catalog.by_id[u].name, "window": window.name,
                   "total": s.rated.total, "band": s.rated.band,
                   "rank": ranks[u] if s.rated.total is not None else None,
                   "peer_count": len(scored) if s.rated.total is not None else None,
                   "lost": {k: float(v) for k, v in s.rated.lost.items()},
                   "indicators": s.rated.indicators}
               for u, s in scores.items()}
        self._cache[key] = out
        return out

    def median(self, group: str, t: int) -> float | None:
        totals = [r["total"] for r in self.group_at(group, t).values() if r["total"] is not None]
        return round(statistics.median(totals), 2) if totals else None

    def lookup(self, unit_id: str, indicator: str, kind: str, t: int
               ) -> tuple[float | None, int | None, int | None]:
        """``leaders.commitments.Lookup`` over the core (window of ``kind`` holding T)."""
        window = resolve_window(kind, t, self.model.timezone)
        s = score_state(self.model, self.catalog.by_id[unit_id],
                        window_state(self.history.states.get(unit_id), window), window, t)
        return cm.from_score({"total": s.rated.total, "indicators": s.rated.indicators},
                             indicator)


def _delta(now: float | None, before: float | None) -> float | None:
    return None if now is None or before is None else round(now - before, 2)


def movement(rows_now: dict[str, dict[str, Any]], rows_prev: dict[str, dict[str, Any]],
             unit_id: str) -> dict[str, Any]:
    """Peers this unit passed, and peers that passed it, between the two instants."""
    me_now, me_prev = rows_now[unit_id]["total"], rows_prev[unit_id]["total"]
    passed, passed_by = [], []
    if me_now is not None and me_prev is not None:
        for u, r in rows_now.items():
            before = rows_prev[u]["total"]
            if u == unit_id or r["total"] is None or before is None:
                continue
            if before > me_prev and r["total"] < me_now:
                passed.append(r["name"])
            elif before < me_prev and r["total"] > me_now:
                passed_by.append(r["name"])
    ranked = sorted((r for r in rows_now.values() if r["rank"] is not None),
                    key=lambda r: (r["rank"], r["unit_id"]))
    idx = next((i for i, r in enumerate(ranked) if r["unit_id"] == unit_id), None)
    near = [] if idx is None else ranked[max(0, idx - 2): idx + 3]
    return {"passed": sorted(passed), "passed_by": sorted(passed_by),
            "neighbours": [{"unit_id": r["unit_id"], "name": r["name"], "rank": r["rank"],
                            "total": r["total"], "band": r["band"],
                            "rank_before": rows_prev[r["unit_id"]]["rank"]} for r in near]}


def signals_by_unit(history: History, catalog: Catalog, group: str, t: int,
                    config: SignalConfig) -> dict[str, list[Signal]]:
    units = list(catalog.peer_groups[group])
    out: dict[str, list[Signal]] = {u: [] for u in units}
    for s in evaluate(history.states, catalog, t, config, units=units):
        if s.is_active():
            out[s.unit_id].append(s)
    return out


def unit_page(history: History, catalog: Catalog, model: Model, unit_id: str, week: Week, *,
              window: str = "month", weeks: int = 8, commitments: Sequence[cm.Commitment] = (),
              signals: list[Signal] | None = None, signal_config: SignalConfig | None = None,
              scores: Scores | None = None, top: int = 4, items: int = 5) -> dict[str, Any]:
    if unit_id not in catalog:
        raise DigestError(f"unit {unit_id!r} is not in the catalog")
    tz = model.timezone
    unit = catalog.by_id[unit_id]
    scores = scores or Scores(history, catalog, model, window)
    now, prev = week.end_us, week.end_us - WEEK_US
    win_now = resolve_window(window, now, tz)
    doc = explain(history, catalog, model, unit_id, now, win_now, limit=items)
    rows_now, rows_prev = scores.group_at(unit.peer_group, now), scores.group_at(
        unit.peer_group, prev)
    before = rows_prev[unit_id]
    losses = sorted((i for i in doc["indicators"] if i["points_lost"] > 0),
                    key=lambda i: (-i["points_lost"], i["indicator"]))[:top]
    series = []
    for k in range(weeks - 1, -1, -1):
        t = now - k * WEEK_US
        row = scores.group_at(unit.peer_group, t)[unit_id]
        series.append({"week": week_of(t, tz).name, "as_of": format_ts(t, tz),
                       "window": row["window"], "total": row["total"], "band": row["band"],
                       "rank": row["rank"], "median": scores.median(unit.peer_group, t)})
    if signals is None:
        signals = signals_by_unit(history, catalog, unit.peer_group, now,
                                  signal_config or SignalConfig())[unit_id]
    cfg = signal_config or SignalConfig()
    return {
        "kind": "unit", "unit_id": unit_id, "name": unit.name, "peer_group": unit.peer_group,
        "week": week.name, "week_start": format_ts(week.start_us, tz),
        "as_of": doc["as_of"], "window": doc["window"], "model": doc["model"],
        "now": {"total": doc["total"], "band": doc["band"], "rank": doc["rank"],
                "peer_count": doc["peer_count"]},
        "week_before": {"as_of": format_ts(prev, tz), "window": before["window"],
                        "total": before["total"], "band": before["band"],
                        "rank": before["rank"], "peer_count": before["peer_count"]},
        "change": {"total": _delta(doc["total"], before["total"]),
                   "rank": None if doc["rank"] is None or before["rank"] is None
                   else before["rank"] - doc["rank"]},
        "peers": {"median_total": doc["peers"]["median_total"],
                  "vs_median": doc["peers"]["vs_median"],
                  **movement(rows_now, rows_prev, unit_id)},
        "groups": doc["groups"],
        "indicators": doc["indicators"],
        "top_losses": losses,
        "gains": doc["gains"][:5],
        "series": series,
        "commitments": [cm.progress(c, now, scores.lookup, tz) for c in commitments
                        if c.unit_id == unit_id],
        "signals": [s.to_dict(tz, cfg.max_listed) for s in signals],
    }


def group_page(history: History, catalog: Catalog, model: Model, group: str, week: Week, *,
               window: str = "month", commitments: Sequence[cm.Commitment] = (),
               signals: dict[str, list[Signal]] | None = None,
               signal_config: SignalConfig | None = None,
               scores: Scores | None = None) -> dict[str, Any]:
    """The peer group's overview page: every unit, now and a week before."""
    if group not in catalog.peer_groups:
        raise DigestError(f"no peer group {group!r}; known: {sorted(catalog.peer_groups)}")
    tz = model.timezone
    scores = scores or Scores(history, catalog, model, window)
    now, prev = week.end_us, week.end_us - WEEK_US
    rows_now, rows_prev = scores.group_at(group, now), scores.group_at(group, prev)
    if signals is None:
        signals = signals_by_unit(history, catalog, group, now, signal_config or SignalConfig())
    rows = []
    for u, r in rows_now.items():
        b = rows_prev[u]
        worst = max(r["lost"].items(), key=lambda kv: (kv[1], kv[0]), default=None)
        statuses = [cm.progress(c, now, scores.lookup, tz)["status"] for c in commitments
                    if c.unit_id == u]
        rows.append({"unit_id": u, "name": r["name"], "total": r["total"], "band": r["band"],
                     "rank": r["rank"], "total_before": b["total"], "band_before": b["band"],
                     "rank_before": b["rank"], "change": _delta(r["total"], b["total"]),
                     "top_loss": None if not worst or worst[1] <= 0 else
                     {"indicator": worst[0], "points_lost": round(worst[1], 2)},
                     "signals": sorted({s.kind for s in signals.get(u, [])}),
                     "commitments": {s: statuses.count(s) for s in sorted(set(statuses))}})
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, r["unit_id"]))
    any_row = next(iter(rows_now.values()))
    return {"kind": "group", "peer_group": group, "week": week.name,
            "week_start": format_ts(week.start_us, tz), "as_of": format_ts(now, tz),
            "window": any_row["window"], "model": model.ref,
            "median_total": scores.median(group, now),
            "median_before": scores.median(group, prev), "units": rows}
