"""The digest's chart of the last weeks, as inline SVG (no script, no external resource).

Why hand-written, like ``audit.charts``: one small chart does not justify a plotting library,
SVG text stays selectable in the PDF (the figures are in its text layer), and every label that
comes from data is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from audit.charts import BAND_COLOURS, BAR_COLOURS
from scoring.model import Model

FONT = "font-family='DejaVu Sans, Arial, sans-serif'"


def _text(x: float, y: float, body: str, size: int = 10, anchor: str = "middle",
          extra: str = "") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' "
            f"{FONT}{extra}>{escape(body)}</text>")


def weekly_chart(series: Sequence[Mapping[str, Any]], model: Model, *, title: str,
                 width: int = 430, height: int = 190) -> str:
    """Week-end totals of a unit (line with dots, labelled) over band stripes, and the peer
    group's median (dashed). A week with no score breaks the line."""
    left, right, top, bottom = 30, width - 52, 22, height - 24
    lo = 0.0
    values = [float(p["total"]) for p in series if p.get("total") is not None]
    values += [float(p["median"]) for p in series if p.get("median") is not None]
    if values:  # zoom on the range in use, in steps of 10, so a 2-point move is visible
        lo = max(0.0, (min(values) // 10) * 10 - 10)

    def y(v: float) -> float:
        return bottom - (bottom - top) * (v - lo) / (100.0 - lo)

    n = max(1, len(series))

    def x(i: int) -> float:
        return left + (right - left) * (i + 0.5) / n

    body = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(title)}'>",
            f"<title>{escape(title)}</title>"]
    high = 100.0
    for band, minimum in model.bands:  # highest first
        low = max(lo, float(minimum))
        if high > lo:
            body.append(f"<rect x='{left}' y='{y(high):.1f}' width='{right - left}' "
                        f"height='{max(0.0, y(low) - y(high)):.1f}' "
                        f"fill='{BAND_COLOURS.get(band, '#eee')}'/>")
            if y(low) - y(high) >= 10:
                body.append(_text(right + 4, (y(low) + y(high)) / 2 + 3, band, 9, "start",
                                  " fill='#555'"))
        high = low
    for v in range(int(lo), 101, 10):
        body.append(_text(left - 4, y(v) + 3, str(v), 8, "end", " fill='#555'"))
    for key, style in (("median", "stroke='#555' stroke-dasharray='4 3' stroke-width='1.5'"),
                       ("total", "stroke='#1f4e79' stroke-width='2.2'")):
        run: list[str] = []
        runs = []
        for i, p in enumerate(series):
            if p.get(key) is None:
                if run:
                    runs.append(run)
                run = []
                continue
            run.append(f"{x(i):.1f},{y(float(p[key])):.1f}")
        if run:
            runs.append(run)
        for r in runs:
            body.append(f"<polyline points='{' '.join(r)}' fill='none' {style}/>")
    for i, p in enumerate(series):
        label = str(p.get("week", ""))
        body.append(_text(x(i), bottom + 13, label[5:] if len(label) > 5 else label, 8))
        if p.get("total") is None:
            continue
        val = float(p["total"])
        colour = BAR_COLOURS.get(str(p.get("band")), "#333")
        body.append(f"<circle cx='{x(i):.1f}' cy='{y(val):.1f}' r='3.2' fill='{colour}' "
                    "stroke='white' stroke-width='1'/>")
        body.append(_text(x(i), y(val) - 6, f"{val:.2f}", 8, extra=" font-weight='bold'"))
    body.append(_text(left, 12, "score at each week's end; dashed: peer median", 9, "start",
                      " fill='#333'"))
    body.append("</svg>")
    return "\n".join(body)


def inline(svg_document: str) -> str:
    """An SVG document (``audit.charts``) without its XML declaration, for inline HTML."""
    text = svg_document.lstrip()
    if text.startswith("<?xml"):
        text = text[text.index("?>") + 2:].lstrip()
    return text
