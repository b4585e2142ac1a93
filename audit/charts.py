"""Charts as hand-written SVG: a unit's score, band and rank over time, and a peer group's day.

Why by hand: two charts do not justify a plotting dependency (matplotlib alone is larger than
the project), and SVG text is easy to test (it parses as XML) and to diff. Every name that
comes from data is XML-escaped: unit names are operator-supplied and may hold markup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from statistics import median
from typing import Any
from xml.sax.saxutils import escape as _xml_escape

from scoring.model import Model
from scoring.timeutil import format_ts, parse_ts

# characters XML 1.0 cannot hold at all, even escaped: everything outside its ``Char``
# production -- C0 controls but tab, newline and return, the surrogates (a lone one cannot
# even be written as UTF-8) and the non-characters U+FFFE and U+FFFF
_NOT_XML = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def escape(text: str) -> str:
    """XML-escaped, without the characters that would make the SVG unreadable."""
    return _xml_escape(_NOT_XML.sub("", text))

BAND_COLOURS = {"weak": "#f8d7d5", "average": "#fde8c8", "fair": "#fbf4c4", "good": "#dcefd6",
                "excellent": "#d2e8f7"}
BAR_COLOURS = {"weak": "#c0392b", "average": "#e67e22", "fair": "#c9a400", "good": "#3c8d40",
               "excellent": "#1f6fb2"}
FONT = "font-family='DejaVu Sans, Arial, sans-serif'"


def _text(x: float, y: float, body: str, size: int = 11, anchor: str = "start",
          extra: str = "") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' "
            f"{FONT}{extra}>{escape(body)}</text>")


def _svg(width: int, height: int, title: str, body: Iterable[str]) -> str:
    return "\n".join([
        "<?xml version='1.0' encoding='UTF-8'?>",
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img'>",
        f"<title>{escape(title)}</title>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        *body, "</svg>", ""])


def _band_ranges(model: Model) -> list[tuple[str, float, float]]:
    """(band, low, high) on the 0-100 scale, from the model's band minimums."""
    out, high = [], 100.0
    for band, minimum in model.bands:  # highest first
        low = max(0.0, float(minimum))
        out.append((band, low, high))
        high = low
    return out


def _steps(points: Sequence[tuple[float, float | None]], x_end: float) -> list[str]:
    """Polylines of a step function; a None value breaks the line (no score then)."""
    lines: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for i, (x, y) in enumerate(points):
        nxt = points[i + 1][0] if i + 1 < len(points) else x_end
        if y is None:
            if current:
                lines.append(current)
            current = []
            continue
        current += [(x, y), (nxt, y)]
    if current:
        lines.append(current)
    return [" ".join(f"{px:.1f},{py:.1f}" for px, py in line) for line in lines]


def unit_chart(rows: Sequence[Mapping[str, Any]], model: Model, *, title: str,
               end: str | None = None, width: int = 960) -> str:
    """Score (with band stripes) and rank over time for one unit, from timeline rows."""
    left, right, top, mid, rank_top, bottom = 56, width - 90, 44, 264, 300, 400
    height = 440
    body: list[str] = [_text(left, 24, title, 15, extra=" font-weight='bold'")]
    if not rows:
        body.append(_text(left, 80, "no score in this range"))
        return _svg(width, height, title, body)
    times = [parse_ts(r["at"]) or 0 for r in rows]
    t0 = times[0]
    t1 = max(parse_ts(end) or times[-1], times[-1]) if end else times[-1]
    t1 = t1 if t1 > t0 else t0 + 1

    def x(t: int) -> float:
        return left + (right - left) * (t - t0) / (t1 - t0)

    def y_score(v: float) -> float:
        return mid - (mid - top) * v / 100.0

    for band, low, high in _band_ranges(model):
        body.append(f"<rect x='{left}' y='{y_score(high):.1f}' width='{right - left}' "
                    f"height='{y_score(low) - y_score(high):.1f}' "
                    f"fill='{BAND_COLOURS.get(band, '#eeeeee')}'/>")
        body.append(_text(right + 6, (y_score(low) + y_score(high)) / 2 + 4, band, 10))
    for v in range(0, 101, 20):
        body.append(_text(left - 6, y_score(v) + 4, str(v), 10, "end"))
    score_pts = [(x(t), None if r["total"] is None else y_score(float(r["total"])))
                 for t, r in zip(times, rows, strict=True)]
    for line in _steps(score_pts, x(t1)):
        body.append(f"<polyline points='{line}' fill='none' stroke='#1f4e79' "
                    "stroke-width='2'/>")
    body.append(_text(left, top - 6, "score (0-100), background = band", 10))

    peers = max([int(r["peer_count"]) for r in rows if r.get("peer_count")] or [1])

    def y_rank(rank: float) -> float:
        return rank_top + (bottom - rank_top) * (rank - 1) / max(1, peers - 1)

    body.append(f"<rect x='{left}' y='{rank_top}' width='{right - left}' "
                f"height='{bottom - rank_top}' fill='#f6f6f6'/>")
    body.append(_text(left, rank_top - 8, f"rank among peers (1 = top, of up to {peers})", 10))
    body += [_text(left - 6, y_rank(1) + 4, "1", 10, "end"),
             _text(left - 6, y_rank(peers) + 4, str(peers), 10, "end")]
    rank_pts = [(x(t), None if r["rank"] is None else y_rank(float(r["rank"])))
                for t, r in zip(times, rows, strict=True)]
    for line in _steps(rank_pts, x(t1)):
        body.append(f"<polyline points='{line}' fill='none' stroke='#b45309' "
                    "stroke-width='2'/>")
    ticks = 6
    for i in range(ticks + 1):
        t = t0 + (t1 - t0) * i // ticks
        body.append(f"<line x1='{x(t):.1f}' y1='{bottom}' x2='{x(t):.1f}' y2='{bottom + 4}' "
                    "stroke='#555'/>")
        body.append(_text(x(t), bottom + 16, format_ts(t, model.timezone)[:10], 10, "middle"))
    last = rows[-1]
    body.append(_text(right, 24, f"last: {last['total'] if last['total'] is not None else '-'}"
                      f" ({last['band'] or 'no score'}), rank {last['rank'] or '-'}"
                      f" of {last['peer_count'] or '-'}", 11, "end"))
    return _svg(width, height, title, body)


def peer_chart(scores: Sequence[Mapping[str, Any]], model: Model, *, title: str,
               highlight: str | None = None, width: int = 960) -> str:
    """Horizontal bars of a peer group's totals at one instant, by rank, with the median.

    ``scores``: ``{unit_id, name, total, band, rank}`` per unit (unscored: total None).
    """
    scored = sorted((s for s in scores if s.get("total") is not None),
                    key=lambda s: (s["rank"], s["unit_id"]))
    unscored = sorted((s for s in scores if s.get("total") is None), key=lambda s: s["unit_id"])
    label_w, left, right, top, row = 250, 260, width - 60, 54, 18
    height = top + row * (len(scored) + len(unscored)) + 50

    def x(v: float) -> float:
        return left + (right - left) * v / 100.0

    body = [_text(10, 24, title, 15, extra=" font-weight='bold'")]
    for band, low, high in _band_ranges(model):
        body.append(f"<rect x='{x(low):.1f}' y='{top - 14}' width='{x(high) - x(low):.1f}' "
                    f"height='8' fill='{BAR_COLOURS.get(band, '#999')}'/>")
        body.append(_text((x(low) + x(high)) / 2, top - 18, band, 9, "middle"))
    y = top
    bottom = top + row * (len(scored) + len(unscored))
    med = float(median(float(s["total"]) for s in scored)) if scored else None
    if med is not None:  # drawn first: bars and labels go over it
        body.append(f"<line x1='{x(med):.1f}' y1='{top - 4}' x2='{x(med):.1f}' "
                    f"y2='{bottom + 4}' stroke='#222' stroke-dasharray='4 3'/>")
        body.append(_text(x(med), bottom + 18, f"median {med:.2f}", 10, "middle"))
    for s in scored:
        mine = s["unit_id"] == highlight
        weight = " font-weight='bold'" if mine else ""
        name = str(s.get("name") or s["unit_id"])
        name = name if len(name) <= 40 else name[:39] + "…"
        body.append(_text(label_w, y + 12, f"{s['rank']}. {name}", 11, "end", weight))
        outline = " stroke='black' stroke-width='2'" if mine else ""
        body.append(f"<rect x='{left}' y='{y + 2}' width='{x(float(s['total'])) - left:.1f}' "
                    f"height='{row - 5}' fill='{BAR_COLOURS.get(s.get('band') or '', '#999')}'"
                    f"{outline}><title>{escape(s['unit_id'])}: {s['total']}</title></rect>")
        body.append(_text(x(float(s["total"])) + 4, y + 12, f"{float(s['total']):.2f}", 10,
                          extra=weight))
        y += row
    for s in unscored:
        body.append(_text(label_w, y + 12, str(s.get("name") or s["unit_id"]), 11, "end",
                          " fill='#888'"))
        body.append(_text(left + 4, y + 12, "no score", 10, extra=" fill='#888'"))
        y += row
    for v in range(0, 101, 20):
        body.append(_text(x(v), y + 34, str(v), 10, "middle"))
    return _svg(width, height, title, body)
