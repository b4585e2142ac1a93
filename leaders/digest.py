"""The weekly digest as one self-contained HTML document: an overview page per peer group and
one page per unit, printable to A4 (``leaders.pdf``).

Why self-contained: the digest is mailed, printed and archived; it must look the same in ten
years and never call home. So: no script, no external resource, inline SVG charts, a strict
Content-Security-Policy, and every text that comes from data (unit names are operator-supplied)
goes through ``html.escape``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from audit.charts import peer_chart
from leaders.signal_alerts import SIGNAL_LABELS
from leaders.svg import inline, weekly_chart
from scoring.model import Model

LABELS = {
    "announced_on_time": "Procedures announced on time",
    "publicized_on_time": "Procedures publicized on time",
    "content_complete": "Published content complete",
    "dossier_synced": "Dossiers synced to the national portal",
    "on_time": "Dossiers processed on time",
    "online_submission": "Dossiers submitted online",
    "online_uptake": "Online procedures with online dossiers",
    "full_online": "Full-online submissions",
    "paid_online": "Fees paid online",
    "online_payment_procedures": "Procedures with online payment",
    "e_result": "Electronic results issued",
    "digitized": "Dossiers digitized",
    "data_reused": "Digitized data re-used",
    "pds_linked": "Personal data store used",
    "population_db": "Population database used",
    "petitions_on_time": "Petitions resolved on time",
    "petition_satisfaction": "Petition satisfaction",
    "dossier_satisfaction": "Dossier satisfaction",
    "total": "Total score",
}
SIGNAL_SHORT = {
    "repeated_supplements": "2+ supplements",
    "due_pushed_back": "due pushed back",
    "overdue_open": "overdue open",
    "slow_procedure": "slow procedure",
    "supplement_rate": "supplement-heavy procedure",
}
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
@page { size: A4; margin: 11mm 12mm; }
* { box-sizing: border-box; }
body { font-family: 'DejaVu Sans', Arial, sans-serif; font-size: 9pt; color: #1d1d1d;
       margin: 0; }
section.page { break-after: page; page-break-after: always; }
section.page:last-child { break-after: auto; page-break-after: auto; }
h1 { font-size: 15pt; margin: 0 0 2pt 0; }
h2 { font-size: 10.5pt; margin: 9pt 0 3pt 0; border-bottom: 1px solid #bbb; }
.sub { color: #555; font-size: 8pt; margin-bottom: 6pt; }
.kpis { display: flex; gap: 6pt; margin: 4pt 0; }
.kpi { flex: 1; border: 1px solid #ccc; border-radius: 4pt; padding: 4pt 6pt; }
.kpi .label { color: #666; font-size: 7.5pt; display: block; }
.kpi .big { font-size: 16pt; font-weight: bold; }
.kpi .was { color: #555; font-size: 7.5pt; display: block; }
.row { display: flex; gap: 10pt; align-items: flex-start; }
.row > div { flex: 1; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 1.5pt 3pt; border-bottom: 1px solid #e3e3e3;
         vertical-align: top; }
th { font-size: 7.5pt; color: #555; font-weight: normal; border-bottom: 1px solid #999; }
td.n, th.n { text-align: right; white-space: nowrap; }
.items { color: #444; font-size: 7.5pt; }
.up { color: #1e7b34; } .down { color: #b3261e; }
.band { display: inline-block; padding: 0 4pt; border-radius: 3pt; font-size: 7.5pt; }
.band-weak { background: #f8d7d5; } .band-average { background: #fde8c8; }
.band-fair { background: #fbf4c4; } .band-good { background: #dcefd6; }
.band-excellent { background: #d2e8f7; }
.flag { color: #b3261e; font-weight: bold; }
.muted { color: #777; }
.foot { margin-top: 8pt; color: #777; font-size: 7pt; border-top: 1px solid #ddd;
        padding-top: 3pt; word-break: break-all; }
svg { max-width: 100%; height: auto; }
.group table td { white-space: nowrap; font-size: 8pt; }
.group table td.name { white-space: normal; }
.group svg { display: block; width: 100%; max-height: 118mm; margin: 0 auto; }
"""


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def label(indicator: str) -> str:
    return LABELS.get(indicator, indicator)


def num(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def band(value: str | None) -> str:
    if not value:
        return "<span class='muted'>no score</span>"
    return f"<span class='band band-{e(value)}'>{e(value)}</span>"


def change(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "<span class='muted'>–</span>"
    cls = "up" if value > 0 else "down" if value < 0 else "muted"
    return f"<span class='{cls}'>{num(value, digits, signed=True)}{e(unit)}</span>"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int],
           classes: Mapping[int, str] | None = None) -> str:
    """``head`` is escaped here; cells are markup the caller escaped."""
    classes = {**{i: "n" for i in numeric}, **(classes or {})}
    out = ["<table><thead><tr>"]
    out += [f"<th{_cls(classes, i)}>{e(h)}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td{_cls(classes, i)}>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _cls(classes: Mapping[int, str], i: int) -> str:
    return f" class='{classes[i]}'" if i in classes else ""


def _item_text(item: Mapping[str, Any]) -> str:
    ident = (item.get("dossier_id") or item.get("petition_id") or item.get("procedure_id")
             or item.get("publication") or "?")
    why = item.get("reason") or ("dissatisfied" if item.get("rating") == "dissatisfied" else "")
    return f"{ident} ({why})" if why else str(ident)


def _measure(value: float) -> str:
    """Counts as counts (6, not 6.00); ratios to the peers with two decimals."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def _rank(r: int | None, of: int | None) -> str:
    return "–" if r is None else f"{r} of {of}" if of else str(r)


def unit_section(page: Mapping[str, Any], model: Model) -> str:
    now, before, ch, peers = page["now"], page["week_before"], page["change"], page["peers"]
    rank_move = ch["rank"]
    h = ["<section class='page unit'>",
         f"<h1>{e(page['name'])}</h1>",
         f"<div class='sub'>{e(page['unit_id'])} · {e(page['peer_group'])} · week "
         f"{e(page['week'])} · window {e(page['window'])} · as of {e(page['as_of'])} · "
         f"model {e(page['model'])}</div>",
         "<div class='kpis'>",
         f"<div class='kpi'><span class='label'>Score</span><span class='big'>"
         f"{num(now['total'])}</span> {change(ch['total'])}<span class='was'>a week before: "
         f"{num(before['total'])} ({e(before['window'])})</span></div>",
         f"<div class='kpi'><span class='label'>Band</span><span class='big'>{band(now['band'])}"
         f"</span><span class='was'>a week before: {e(before['band'] or 'no score')}</span></div>",
         f"<div class='kpi'><span class='label'>Rank</span><span class='big'>"
         f"{e(_rank(now['rank'], now['peer_count']))}</span> "
         f"{change(rank_move, 0) if rank_move else ''}<span class='was'>a week before: "
         f"{e(_rank(before['rank'], before['peer_count']))}</span></div>",
         f"<div class='kpi'><span class='label'>Peer median</span><span class='big'>"
         f"{num(peers['median_total'])}</span><span class='was'>this unit: "
         f"{num(peers['vs_median'], signed=True)} against it</span></div>",
         "</div>", "<div class='row'><div>"]
    h.append(weekly_chart(page["series"], model, title=f"{page['name']}: last weeks"))
    h.append("</div><div><h2 style='margin-top:0'>Movement among peers</h2>")
    if peers["passed"]:
        h.append(f"<div>Passed: {e(', '.join(peers['passed']))}</div>")
    if peers["passed_by"]:
        h.append(f"<div>Passed by: {e(', '.join(peers['passed_by']))}</div>")
    if not peers["passed"] and not peers["passed_by"]:
        h.append("<div class='muted'>No change of order with any peer this week.</div>")
    h.append(_table(["rank", "unit", "score", "was"], (
        [e(r["rank"]), ("<b>" + e(r["name"]) + "</b>") if r["unit_id"] == page["unit_id"]
         else e(r["name"]), num(r["total"]), e(r["rank_before"] if r["rank_before"] else "–")]
        for r in peers["neighbours"]), {0, 2, 3}))
    h.append("</div></div>")
    h.append("<h2>Indicators that cost the most points</h2>")
    if page["top_losses"]:
        h.append(_table(["indicator", "num / den", "points", "lost", "peer median points",
                         "behind it"], (
            [e(label(i["indicator"])), f"{i['num']} / {i['den']}",
             f"{num(i['points'])} / {e(i['max'])}", f"<b>{num(i['points_lost'])}</b>",
             num(i["peer_median_points"]),
             "<span class='items'>" + (f"{i['failing']} item(s): " if i["items"] else
                                       "no items yet (empty rule)") +
             e(", ".join(_item_text(it) for it in i["items"])) +
             (", …" if i["failing"] > len(i["items"]) else "") + "</span>"]
            for i in page["top_losses"]), {1, 2, 3, 4}))
    else:
        h.append("<div class='muted'>No points lost.</div>")
    h.append("<div class='row'><div><h2>Largest gains available</h2>")
    h.append(_table(["indicator", "gain", "needs"], (
        [e(label(g["indicator"])), f"+{num(g['gain_total'])}",
         "dossiers/petitions first" if g["needs_items"] else
         f"{e(g['successes_needed'])} more successes"] for g in page["gains"]), {1})
             if page["gains"] else "<div class='muted'>Nothing left to gain.</div>")
    h.append("</div><div><h2>Commitments</h2>")
    if page["commitments"]:
        h.append(_table(["indicator", "target", "value", "deadline", "status"], (
            [e(label(c["indicator"])), num(c["target"], 2), num(c["value"], 2) + (
                "<br><span class='muted'>at deadline</span>" if c["status"] in ("kept", "missed")
                else ""),
             e(c["deadline"]), "<span class='flag'>MISSED</span>" if c["missed"] else
             e(c["status"]) + (f" ({c['successes_needed']} more)" if c["status"] == "open"
                               and c["successes_needed"] else "")]
            for c in page["commitments"]), {1, 2}))
    else:
        h.append("<div class='muted'>No commitment recorded.</div>")
    h.append("</div></div><h2>Harassment and inconvenience signals</h2>")
    if page["signals"]:
        h.append(_table(["signal", "procedure", "value", "threshold", "dossiers"], (
            [e(SIGNAL_LABELS.get(s["kind"], s["kind"])), e(s["procedure_id"] or "all"),
             _measure(s["value"]), _measure(s["threshold"]),
             f"<span class='items'>{s['dossier_count']}: "
             f"{e(', '.join(s['dossiers'][:4]))}{', …' if s['dossier_count'] > 4 else ''}"
             "</span>"] for s in page["signals"]), {2, 3}))
    else:
        h.append("<div class='muted'>No signal above its threshold.</div>")
    h.append("</section>")
    return "\n".join(h)


def group_section(page: Mapping[str, Any], model: Model) -> str:
    h = ["<section class='page group'>",
         f"<h1>Peer group: {e(page['peer_group'])}</h1>",
         f"<div class='sub'>week {e(page['week'])} · window {e(page['window'])} · as of "
         f"{e(page['as_of'])} · model {e(page['model'])} · median {num(page['median_total'])} "
         f"(a week before {num(page['median_before'])})</div>"]
    h.append(_table(
        ["rank", "was", "unit", "score", "change", "band", "costs most", "signals",
         "commitments"],
        ([e(r["rank"] or "–"), e(r["rank_before"] or "–"), e(r["name"]), num(r["total"]),
          change(r["change"]), band(r["band"]),
          e(f"{label(r['top_loss']['indicator'])} -{r['top_loss']['points_lost']:.2f}")
          if r["top_loss"] else "", "<br>".join(e(SIGNAL_SHORT.get(k, k)) for k in r["signals"]),
          ", ".join((f"<span class='flag'>{n} missed</span>" if s == "missed" else
                     f"{n} {e(s)}") for s, n in r["commitments"].items())]
         for r in page["units"]), {0, 1, 3, 4}, {2: "name"}))
    chart = peer_chart([{**r} for r in page["units"]], model,
                       title=f"{page['peer_group']} at the end of {page['week']}", width=760)
    h += ["<h2>Scores at the end of the week</h2>", inline(chart), "</section>"]
    return "\n".join(h)


def render(pages: Sequence[Mapping[str, Any]], model: Model, *, title: str,
           provenance: Mapping[str, Any]) -> str:
    """The whole digest; ``provenance`` (source, sha256, command) is printed on every page."""
    foot = ("<div class='foot'>Made by the Bando scoring core from " + e(provenance.get("source"))
            + (f" (sha256 {e(provenance['sha256'])})" if provenance.get("sha256") else "")
            + f", {e(provenance.get('accepted'))} accepted events. Reproduce: "
            + f"<code>{e(provenance.get('command'))}</code></div>")
    body = []
    for p in pages:
        section = group_section(p, model) if p["kind"] == "group" else unit_section(p, model)
        body.append(section.replace("</section>", foot + "</section>"))
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
        *body, "</body></html>", ""])
