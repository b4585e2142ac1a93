"""``bando explain``: why a unit has the score it has at a time T.

For one unit, window and T it gives: the indicator breakdown (numerator, denominator, points,
points lost), the dossiers, petitions and publications behind every lost point (for example
each late dossier with its due and completion times), the comparison with the peer group's
median, and the largest gains available (indicators which, brought to target, add the most).

All numbers come from the core (``count`` + ``rate``) on the history folded by
``audit.replay``; the item lists re-apply SPEC section 3's per-item rules with the core's own
helpers, and each list's length is checked against ``den - num`` so the lists can never tell a
different story from the numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from audit.exceptions import AuditError
from audit.ingest import History, window_state
from scoring.catalog import Catalog
from scoring.engine import score_state
from scoring.facts import Dossier, Petition, UnitState
from scoring.indicators import dossier_due, dossiers_in, latest_rating, petitions_in
from scoring.model import Model
from scoring.points import indicator_points, round_half_away
from scoring.ranking import competition_ranks
from scoring.timeutil import Window, format_ts


def _ts(us: int | None, tz: str) -> str | None:
    return None if us is None else format_ts(us, tz)


def _late_reason(d: Dossier, t: int) -> str | None:
    """Why a dossier is late at T (SPEC 3 ``late``), or None when it is not."""
    due, supplements = dossier_due(d, t)
    if supplements >= 2:
        return f"{supplements} supplement requests"
    if d.completed is not None and d.completed[0] <= t:
        return "completed after due" if d.completed[0] > due else None
    return "open past due" if t > due else None


def failing_items(state: UnitState, window: Window, t: int, tz: str) -> dict[str, list[dict]]:
    """Per indicator, the items counted in its denominator but not in its numerator."""
    out: dict[str, list[dict]] = {}

    def add(indicator: str, item: dict[str, Any]) -> None:
        out.setdefault(indicator, []).append(item)

    def dossier(did: str, d: Dossier, **extra: Any) -> dict[str, Any]:
        assert d.received is not None
        return {"dossier_id": did, "procedure_id": d.procedure_id,
                "received": _ts(d.received[0], tz), **extra}

    eligible: dict[str, bool] = {}
    fees: dict[str, bool] = {}
    for did, d in sorted(dossiers_in(state, window, t)):
        due, supplements = dossier_due(d, t)
        done = d.completed is not None and d.completed[0] <= t
        if d.synced is None or d.synced > t:
            add("dossier_synced", dossier(did, d))
        reason = _late_reason(d, t)
        if reason is not None:
            add("on_time", dossier(did, d, due=_ts(due, tz), supplements=supplements,
                                   completed=_ts(d.completed[0], tz) if done else None,  # type: ignore[index]
                                   reason=reason))
        rating = latest_rating(d.ratings, t)
        if reason is not None or rating == "dissatisfied":
            add("dossier_satisfaction", dossier(did, d, late=reason is not None, rating=rating))
        if not d.online:
            add("online_submission", dossier(did, d))
        if d.online_eligible:
            eligible[d.procedure_id] = eligible.get(d.procedure_id, False) or d.online
            if not (d.online and d.full_online):
                add("full_online", dossier(did, d, online=d.online, full_online=d.full_online))
        if d.fee_required:
            paid = d.paid_online is not None and d.paid_online <= t
            fees[d.procedure_id] = fees.get(d.procedure_id, False) or paid
            if not paid:
                add("paid_online", dossier(did, d))
        if done and not d.e_result:
            add("e_result", dossier(did, d, completed=_ts(d.completed[0], tz)))  # type: ignore[index]
        if d.digitized is None or d.digitized > t:
            add("digitized", dossier(did, d))
        for flag in ("reused_data", "pds_linked", "population_db"):
            if not getattr(d, flag):
                add("data_reused" if flag == "reused_data" else flag, dossier(did, d))
    for proc, ok in sorted(eligible.items()):
        if not ok:
            add("online_uptake", {"procedure_id": proc})
    for proc, ok in sorted(fees.items()):
        if not ok:
            add("online_payment_procedures", {"procedure_id": proc})
    for pid, p in sorted(petitions_in(state, window, t)):
        _petition(pid, p, t, tz, add)
    lo, hi = window.start_us, window.end_us
    for eid, pub in sorted(state.publications.items()):
        if pub.ts > t or not lo <= pub.ts < hi:
            continue
        item = {"publication": eid, "published": _ts(pub.ts, tz)}
        for flag, indicator in (("announced_on_time", "announced_on_time"),
                                ("publicized_on_time", "publicized_on_time"),
                                ("complete", "content_complete")):
            if not getattr(pub, flag):
                add(indicator, item)
    return out


def _petition(pid: str, p: Petition, t: int, tz: str,
              add: Callable[[str, dict[str, Any]], None]) -> None:
    assert p.received is not None
    resolved = p.resolved if p.resolved is not None and p.resolved <= t else None
    on_time = resolved <= p.due if resolved is not None else t <= p.due
    item = {"petition_id": pid, "received": _ts(p.received[0], tz), "due": _ts(p.due, tz),
            "resolved": _ts(resolved, tz)}
    if not on_time:
        add("petitions_on_time", {**item, "reason": "resolved after due" if resolved is not None
                                  else "open past due"})
    if latest_rating(p.ratings, t) == "dissatisfied":
        add("petition_satisfaction", {**item, "rating": "dissatisfied"})


def explain(history: History, catalog: Catalog, model: Model, unit_id: str, t: int,
            window: Window, limit: int = 10) -> dict[str, Any]:
    """The explanation document (JSON-ready). ``limit`` caps each list of items."""
    if unit_id not in catalog:
        raise AuditError(f"unit {unit_id!r} is not in the catalog")
    tz = model.timezone
    unit = catalog.by_id[unit_id]
    peers = catalog.peer_groups[unit.peer_group]
    scores = {u: score_state(model, catalog.by_id[u],
                             window_state(history.states.get(u), window), window, t)
              for u in peers}
    mine = scores[unit_id]
    rated = mine.rated
    ranks = competition_ranks({u: s.rated.total for u, s in scores.items()})
    scored = [s for s in scores.values() if s.rated.total is not None]
    items = failing_items(window_state(history.states.get(unit_id), window), window, t, tz)

    sum_max = sum((Fraction(i.points) for i in model.indicators
                   if rated.indicators[i.id]["points"] is not None), Fraction(0))
    indicators: list[dict[str, Any]] = []
    for ind in model.indicators:
        row = rated.indicators[ind.id]
        num, den = int(row["num"]), int(row["den"])  # type: ignore[call-overload]
        failing = items.get(ind.id, [])
        if den - num != len(failing):
            raise AuditError(f"{ind.id}: {len(failing)} failing items but den-num = {den - num}")
        points = row["points"]
        if points is None:  # excluded: neither points nor max count
            lost = Fraction(0)
        elif den > 0:
            lost = rated.lost[ind.id]
        else:  # empty rule: "zero" loses the max until there are items, "full" loses nothing
            lost = Fraction(ind.points) if ind.empty == "zero" else Fraction(0)
        needed = max(0, math.ceil(ind.target * den) - num) if den else None
        peer_points = [s.rated.indicators[ind.id]["points"] for s in scored]
        indicators.append({
            "indicator": ind.id, "group": ind.group, "num": num, "den": den,
            "ratio": round(num / den, 4) if den else None, "target": float(ind.target),
            "points": points, "max": row["max"], "applicable": row["applicable"],
            "points_lost": round(float(lost), 4),
            "empty_rule": ind.empty, "failing": len(failing),
            "items": failing[:limit] if lost > 0 else [],
            "items_truncated": lost > 0 and len(failing) > limit,
            "gain_total": round_half_away(100 * lost / sum_max, 2) if sum_max else 0.0,
            "successes_needed": needed,
            "peer_median_points": _median(peer_points),
        })
    check = _check(model, rated.indicators, sum_max, rated.total is not None)
    if check["total_from_points"] != rated.total:
        raise AuditError(f"the points add up to {check['total_from_points']}, not to the "
                         f"total {rated.total}")
    gains = sorted((i for i in indicators if i["gain_total"] > 0),
                   key=lambda i: (-i["gain_total"], i["indicator"]))
    median_total = _median([s.rated.total for s in scored])
    return {
        "unit_id": unit_id, "name": unit.name, "peer_group": unit.peer_group,
        "window": window.name, "as_of": format_ts(t, tz), "model": model.ref,
        "total": rated.total, "band": rated.band,
        "rank": ranks[unit_id], "peer_count": len(scored) if rated.total is not None else None,
        "groups": rated.groups,
        "indicators": indicators,
        "check": check,
        "peers": {
            "median_total": median_total,
            "vs_median": None if rated.total is None or median_total is None
            else round(rated.total - median_total, 2),
            "units": sorted(({"unit_id": u, "total": s.rated.total, "band": s.rated.band,
                              "rank": ranks[u]} for u, s in scores.items()),
                            key=lambda r: (r["rank"] is None, r["rank"] or 0, r["unit_id"])),
        },
        "gains": [{"indicator": i["indicator"], "gain_total": i["gain_total"],
                   "points": i["points"], "max": i["max"],
                   "successes_needed": i["successes_needed"],
                   "needs_items": i["den"] == 0} for i in gains if rated.total is not None],
    }


def _check(model: Model, rows: dict[str, dict[str, object]], sum_max: Fraction, scored: bool
           ) -> dict[str, Any]:
    """The points added up again, exactly: the listed points are rounded, and adding the
    rounded points can land on the other side of a rounding boundary than the total does (a
    check line reading 80.855 -> 80.85 under a total of 80.86). As in ``rate``, the sum is
    exact and rounded once, half away from zero; a total it does not give is an error."""
    sum_points = Fraction(0)
    for ind in model.indicators:
        row = rows[ind.id]
        num, den = int(row["num"]), int(row["den"])  # type: ignore[call-overload]
        if row["points"] is None:  # excluded
            continue
        if den > 0:
            sum_points += indicator_points(ind.points, ind.target, num, den)
        elif ind.empty == "full":
            sum_points += Fraction(ind.points)
    total = round_half_away(100 * sum_points / sum_max, model.total_digits) if (
        scored and sum_max) else None
    return {"sum_points": float(sum_points), "sum_points_exact": str(sum_points),
            "sum_max": float(sum_max), "total_from_points": total}


def _decimal(value: Fraction, digits: int = 6) -> str:
    """``value`` in decimals: exact when it has at most ``digits`` of them, else cut (not
    rounded) after ``digits`` with "...", so it never reads as across a rounding boundary."""
    scaled = abs(value) * 10**digits
    whole = scaled.numerator // scaled.denominator
    text = f"{'-' if value < 0 else ''}{whole // 10**digits}.{whole % 10**digits:0{digits}d}"
    text = text.rstrip("0").rstrip(".")
    return text if whole == scaled else text + "..."


def _median(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return round(statistics.median(vals), 4) if vals else None


# what an indicator's denominator counts (SPEC 3), for "needs ... first" (default: dossiers)
_COUNTED = {
    "announced_on_time": "publications", "publicized_on_time": "publications",
    "content_complete": "publications", "online_uptake": "online-eligible dossiers",
    "full_online": "online-eligible dossiers", "paid_online": "fee-paying dossiers",
    "online_payment_procedures": "fee-paying dossiers", "e_result": "completed dossiers",
    "petitions_on_time": "petitions", "petition_satisfaction": "rated petitions",
}


def render_text(doc: dict[str, Any], gains: int = 5) -> str:
    """A terminal report of ``explain``'s document."""
    head = f"{doc['name']} ({doc['unit_id']}, {doc['peer_group']})  {doc['window']}  " \
        f"as of {doc['as_of']}  model {doc['model']}"
    if doc["total"] is None:
        return (f"{head}\nno score: no dossier, petition or publication of this unit in the "
                f"window (peer median {doc['peers']['median_total']})\n")
    lines = [head,
             f"total {doc['total']}  band {doc['band']}  rank {doc['rank']} of "
             f"{doc['peer_count']}  peer median {doc['peers']['median_total']} "
             f"({_signed(doc['peers']['vs_median'])})", "",
             f"{'indicator':28} {'num':>5} {'den':>5} {'points':>8} {'max':>4} {'lost':>8} "
             f"{'peer med':>8}"]
    for i in doc["indicators"]:
        pts = "-" if i["points"] is None else f"{i['points']:.4g}"
        med = "-" if i["peer_median_points"] is None else f"{i['peer_median_points']:.4g}"
        lines.append(f"{i['indicator']:28} {i['num']:>5} {i['den']:>5} {pts:>8} {i['max']:>4} "
                     f"{i['points_lost']:>8.4g} {med:>8}")
    c = doc["check"]
    lines += ["", f"sum of points {_decimal(Fraction(c['sum_points_exact']))} / "
              f"{_decimal(Fraction(str(c['sum_max'])))} -> total {c['total_from_points']}", "",
              "Largest gains (indicator brought to target):"]
    for g in doc["gains"][:gains]:
        need = (f"needs {_COUNTED.get(g['indicator'], 'dossiers')} first" if g["needs_items"]
                else f"{g['successes_needed']} more successes")
        lines.append(f"  +{g['gain_total']:.2f}  {g['indicator']} ({need})")
    for i in doc["indicators"]:
        if not i["items"]:
            continue
        more = f", first {len(i['items'])}" if i["items_truncated"] else ""
        lines += ["", f"{i['indicator']}: {i['failing']} item(s) behind "
                  f"{i['points_lost']:.4g} lost points{more}"]
        lines += ["  " + ", ".join(f"{k}={v}" for k, v in item.items() if v is not None)
                  for item in i["items"]]
    return "\n".join(lines) + "\n"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"
