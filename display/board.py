"""Pure board rules: what one output message does to one unit's row. No I/O here.

The board is fed from three topics that Kafka does not order against each other
(``unit-scores``, ``rank-changes``, ``band-changes``), and any of them may be replayed. So every
message gets one version, and every field of a row remembers the version that set it:

* a version is ``(as_of, Kafka record timestamp, input offset)``. ``as_of`` is the scorer's
  event-time watermark; it does not move when the ranker re-publishes a unit pushed down by
  another unit's rise (same ``as_of``, new rank), so the record timestamp (the order in which
  the scorer produced its results) breaks that tie, and the input offset the rare equal
  timestamps (rank and band changes carry none: -1);
* a score message is applied only if its version is strictly newer than the last score's, so a
  replayed or late score never moves a row backwards;
* rank comes from scores and rank-changes, band from scores and band-changes, each from the
  newest message that carries it; name, total and peer group come from the newest score.

Because every field is "the value of the newest message that has it", the row does not depend
on the order in which messages arrive.
Applying the same message twice gives the same row (``apply`` returns ``None``: nothing to
write, nothing to publish).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from display.exceptions import BadMessage
from scoring.timeutil import parse_ts

SCORE = "score"
RANK = "rank"
BAND = "band"
KINDS = (SCORE, RANK, BAND)

_WINDOW = re.compile(r"^([a-z]{1,16}):([0-9A-Za-z-]{1,16})$")
_MAX_TEXT = 512  # a name longer than this is cut: the wall has no room for it anyway
NO_RANK = 1_000_000  # sort key of unranked rows: after every ranked one

Record = dict[str, Any]


def window_parts(window: object) -> tuple[str, str]:
    """``"month:2024-04"`` -> ``("month", "2024-04")``; keys of one kind sort by time."""
    m = _WINDOW.match(window) if isinstance(window, str) else None
    if not m:
        raise BadMessage(f"not a window: {window!r}")
    return m.group(1), m.group(2)


def is_newer_window(candidate: str, current: str | None) -> bool:
    """Whether ``candidate`` is a later window of the same kind than ``current``."""
    if current is None:
        return True
    ck, ckey = window_parts(candidate)
    pk, pkey = window_parts(current)
    return ck == pk and ckey > pkey


def _text(value: object, field: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadMessage(f"{field} must be a non-empty string")
    return value[:_MAX_TEXT]


def _opt_int(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadMessage(f"{field} must be an integer or null")
    return value


def _opt_number(value: object, field: str) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadMessage(f"{field} must be a number or null")
    return value


def check(kind: str, msg: object) -> Record:
    """The message if the board can use it, else :class:`BadMessage` (the caller skips it)."""
    if kind not in KINDS:
        raise BadMessage(f"unknown message kind {kind!r}")
    if not isinstance(msg, dict):
        raise BadMessage("a message is a JSON object")
    _text(msg.get("unit_id"), "unit_id")
    window_parts(msg.get("window"))
    if parse_ts(msg.get("as_of")) is None:
        raise BadMessage(f"as_of is not an RFC 3339 time: {msg.get('as_of')!r}")
    if kind == SCORE:
        _text(msg.get("peer_group"), "peer_group")
        _text(msg.get("name"), "name", required=False)
        _opt_number(msg.get("total"), "total")
        _opt_int(msg.get("rank"), "rank")
        _opt_int(msg.get("peer_count"), "peer_count")
        _text(msg.get("band"), "band", required=False)
    elif kind == RANK:
        _text(msg.get("peer_group"), "peer_group")
        _opt_int(msg.get("old_rank"), "old_rank")
        _opt_int(msg.get("new_rank"), "new_rank")
    else:
        _text(msg.get("new_band"), "new_band", required=False)
        _text(msg.get("old_band"), "old_band", required=False)
    try:  # the store writes it back: a value nested deeper than orjson's encoder goes, or an
        orjson.dumps(msg)  # integer past 64 bits, would fail there at every restart
    except TypeError as exc:
        raise BadMessage(f"cannot be stored again as JSON: {exc}") from None
    return msg


def _input_offset(msg: Record) -> int:
    src = msg.get("input")
    off = src.get("offset") if isinstance(src, dict) else None
    return off if isinstance(off, int) and not isinstance(off, bool) else -1


def new_record(unit_id: str, window: str) -> Record:
    return {
        "unit_id": unit_id,
        "window": window,
        "peer_group": None,
        "score": None,
        "score_v": None,
        "rank": None,
        "rank_v": None,
        "band": None,
        "band_v": None,
        "move": None,
        "band_change": None,
        "as_of": None,
        "as_of_us": None,
        "rev": 0,
    }


def _newer(version: list[int], current: list[int] | None) -> bool:
    return current is None or version >= current


def _touch(rec: Record, as_of: str, as_of_us: int) -> None:
    if rec["as_of_us"] is None or as_of_us > rec["as_of_us"]:
        rec["as_of"], rec["as_of_us"] = as_of, as_of_us


def _set_rank(rec: Record, new: int | None, old: int | None, as_of: str) -> None:
    """Record a movement when a ranked unit gets another rank (``old`` defaults to the row's)."""
    before = rec["rank"] if old is None else old
    if new is not None and before is not None and new != before:
        rec["move"] = {"from": before, "to": new, "as_of": as_of}
    elif new is None:
        rec["move"] = None  # no rank, no movement: an arrow beside "no score" misleads
    rec["rank"] = new


def apply(rec: Record | None, kind: str, msg: Record, timestamp_ms: int = 0) -> Record | None:
    """The row after ``msg``, or ``None`` when the message changes nothing (stale or repeated).

    ``msg`` must have passed :func:`check`. ``rec`` is never modified.
    """
    unit_id, window, as_of = msg["unit_id"], msg["window"], msg["as_of"]
    as_of_us = parse_ts(as_of)
    assert as_of_us is not None  # check() guarantees it
    before = rec
    out: Record = dict(rec) if rec is not None else new_record(unit_id, window)
    version = [as_of_us, int(timestamp_ms), _input_offset(msg) if kind == SCORE else -1]
    if kind == SCORE:
        if out["score_v"] is not None and version <= out["score_v"]:
            return None
        out["score"], out["score_v"] = msg, version
        out["peer_group"] = msg["peer_group"]
        if _newer(version, out["rank_v"]):
            _set_rank(out, msg.get("rank"), None, as_of)
            out["rank_v"] = version
        if _newer(version, out["band_v"]):
            out["band"], out["band_v"] = msg.get("band"), version
    elif kind == RANK:
        if not _newer(version, out["rank_v"]):
            return None
        if out["peer_group"] is None:
            out["peer_group"] = msg["peer_group"]
        _set_rank(out, msg.get("new_rank"), msg.get("old_rank"), as_of)
        out["rank_v"] = version
    else:
        if not _newer(version, out["band_v"]):
            return None
        out["band"], out["band_v"] = msg.get("new_band"), version
        out["band_change"] = {
            "from": msg.get("old_band"),
            "to": msg.get("new_band"),
            "direction": msg.get("direction") if msg.get("direction") in ("up", "down") else None,
            "as_of": as_of,
        }
    _touch(out, as_of, as_of_us)
    if before is not None and _same(before, out):
        return None
    return out


def _same(a: Record, b: Record) -> bool:
    """Equal rows apart from bookkeeping: a replay must not publish a change."""
    skip = {"rev"}
    return all(a.get(k) == b.get(k) for k in set(a) | set(b) if k not in skip)


def shows_differently(old: Record | None, new: Record) -> bool:
    """Whether a screen would see a difference (a re-published copy of a score does not)."""
    if old is None:
        return True
    a, b = view(old), view(new)
    a.pop("rev"), b.pop("rev")
    return a != b


def sort_key(rec: Record) -> float:
    """Score of the row in the rank-ordered set: its rank, unranked rows last."""
    rank = rec.get("rank")
    return float(rank) if isinstance(rank, int) else float(NO_RANK)


def view(rec: Record) -> Record:
    """What a screen needs of a row: small, and no indicator detail."""
    score = rec.get("score") or {}
    move = rec.get("move")
    change = rec.get("band_change")
    return {
        "unit_id": rec["unit_id"],
        "name": score.get("name") or rec["unit_id"],
        "peer_group": rec.get("peer_group"),
        "window": rec["window"],
        "as_of": rec.get("as_of"),
        "total": score.get("total"),
        "band": rec.get("band"),
        "rank": rec.get("rank"),
        "peer_count": score.get("peer_count"),
        "model": score.get("model"),
        "scored": rec.get("score") is not None,
        "move": {"from": move["from"], "to": move["to"]} if move else None,
        "band_change": (
            {"from": change["from"], "to": change["to"], "direction": change["direction"]}
            if change
            else None
        ),
        "rev": rec.get("rev", 0),
    }


def order_views(views: list[Record]) -> list[Record]:
    """Rank order, ties by name then id, unranked last (what the page shows too)."""
    return sorted(
        views,
        key=lambda v: (
            v["rank"] if isinstance(v.get("rank"), int) else NO_RANK,
            str(v.get("name") or ""),
            v["unit_id"],
        ),
    )
