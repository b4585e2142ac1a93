"""Commitments: a unit's signed targets per indicator, with a deadline; progress and misses.

Why a file: units sign commitments on their indicators once a quarter or so; a small JSON file
kept with the deployment (reviewed like code) is the simplest record a head of unit, the city
office and an auditor can all read. Format (``examples/commitments.json``)::

    {"commitments": [
      {"unit_id": "district-08", "indicator": "on_time", "target": 0.95,
       "deadline": "2024-06-30", "window": "month", "signed_by": "...", "note": "..."}]}

``indicator`` is an indicator id of the model (``target``: a ratio num/den between 0 and 1)
or ``total`` (``target``: a score out of 100). ``deadline`` is a local date (its end) or an
RFC 3339 time; ``window`` (month, quarter or year; default month) is the scoring window whose
value is judged, the one holding the instant asked about.

Status at T, from the core's numbers only (so it is reproducible for any past T):
``met`` (before the deadline, the target is reached now), ``open`` (before the deadline, not
yet), ``kept`` (at the deadline the target was reached), ``missed`` (it was not: flagged).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from scoring.model import Model
from scoring.timeutil import format_ts, parse_ts, to_us

WINDOW_KINDS = ("month", "quarter", "year")


class CommitmentError(ValueError):
    """A commitments file that cannot be used."""


@dataclass(frozen=True)
class Commitment:
    unit_id: str
    indicator: str  # a model indicator id, or "total"
    target: float
    deadline_us: int
    deadline_text: str
    window: str = "month"
    signed_by: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"unit_id": self.unit_id, "indicator": self.indicator, "target": self.target,
                "deadline": self.deadline_text, "window": self.window,
                "signed_by": self.signed_by, "note": self.note}


def parse_deadline(text: str, tz: str) -> int:
    """A local date means the end of that day (its last microsecond); else RFC 3339."""
    us = parse_ts(text)
    if us is not None:
        return us
    try:
        day = date.fromisoformat(text)
    except (TypeError, ValueError):
        raise CommitmentError(f"deadline {text!r} is neither a date nor RFC 3339") from None
    try:
        return to_us(datetime.combine(day + timedelta(days=1), time(0), tzinfo=ZoneInfo(tz))) - 1
    except OverflowError:  # 9999-12-31: its end is past the last date Python can represent
        raise CommitmentError(f"deadline {text!r} is out of range") from None


def parse(data: Any, model: Model, units: Mapping[str, Any] | None = None) -> list[Commitment]:
    items = data.get("commitments") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise CommitmentError("a commitments file is {\"commitments\": [...]} or a list")
    known = {i.id for i in model.indicators} | {"total"}
    out = []
    for n, item in enumerate(items):
        where = f"commitment {n}"
        if not isinstance(item, dict):
            raise CommitmentError(f"{where}: must be an object")
        unit, ind = item.get("unit_id"), item.get("indicator")
        if not isinstance(unit, str) or not unit or (units is not None and unit not in units):
            raise CommitmentError(f"{where}: unknown unit_id {unit!r}")
        if ind not in known:
            raise CommitmentError(f"{where}: unknown indicator {ind!r}; known: {sorted(known)}")
        target = item.get("target")
        top = 100 if ind == "total" else 1
        if isinstance(target, bool) or not isinstance(target, int | float) or not (
                0 <= target <= top):
            raise CommitmentError(f"{where}: target must be a number in [0, {top}]")
        window = item.get("window", "month")
        if window not in WINDOW_KINDS:
            raise CommitmentError(f"{where}: window must be one of {WINDOW_KINDS}")
        deadline = item.get("deadline")
        if not isinstance(deadline, str):
            raise CommitmentError(f"{where}: deadline must be a date or a time")
        out.append(Commitment(unit, str(ind), float(target),
                              parse_deadline(deadline, model.timezone), deadline, window,
                              str(item.get("signed_by", "")), str(item.get("note", ""))))
    return out


def load(path: str | Path | None, model: Model,
         units: Mapping[str, Any] | None = None) -> list[Commitment]:
    if not path:
        return []
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommitmentError(f"cannot read commitments {path}: {exc}") from exc
    return parse(data, model, units)


# The value of an indicator of a unit at T in the window of a kind: (value, num, den) with
# value None when the indicator has no denominator (or the unit no score) then.
Lookup = Callable[[str, str, str, int], tuple[float | None, int | None, int | None]]


def progress(c: Commitment, t: int, lookup: Lookup, tz: str) -> dict[str, Any]:
    """Where a commitment stands at T (see the module docstring for the statuses)."""
    judged_at = min(t, c.deadline_us)
    value, num, den = lookup(c.unit_id, c.indicator, c.window, judged_at)
    reached = value is not None and value >= c.target - 1e-12
    if t >= c.deadline_us:
        status = "kept" if reached else "missed"
    else:
        status = "met" if reached else "open"
    needed = None
    if c.indicator != "total" and num is not None and den:
        needed = max(0, math.ceil(c.target * den - 1e-9) - num)
    return {**c.to_dict(), "status": status, "missed": status == "missed",
            "value": None if value is None else round(value, 4), "num": num, "den": den,
            "judged_at": format_ts(judged_at, tz), "successes_needed": needed,
            "days_left": max(0, math.ceil((c.deadline_us - t) / 86_400_000_000))}


def from_score(score: Mapping[str, Any], indicator: str) -> tuple[float | None, int | None,
                                                                    int | None]:
    """(value, num, den) from a ``unit-scores`` message or a ``bando score`` unit row: what a
    display that holds the latest scores needs to show progress without the history."""
    if indicator == "total":
        total = score.get("total")
        return (None if total is None else float(total)), None, None
    row = (score.get("indicators") or {}).get(indicator) or {}
    num, den = row.get("num"), row.get("den")
    if not isinstance(num, int) or not isinstance(den, int) or den <= 0:
        return None, num if isinstance(num, int) else None, den if isinstance(den, int) else None
    return num / den, num, den
