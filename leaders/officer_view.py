"""The officer view: each officer's own indicators, beside their unit's and the peer median.

``GET /officer/{officer_id}[?at=T&window=month&format=json]`` with ``Authorization: Bearer
<token>``: 401 without a valid token, 403 when the token belongs to another officer (whether or
not the asked officer exists), else the page (HTML, or JSON with ``format=json``).

Officer data is personal data: the server binds to loopback unless told otherwise, sends
``Cache-Control: no-store`` and a strict Content-Security-Policy, and its access log names the
route template (``/officer/{officer_id}``), never the path, so no officer id reaches a log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from collections.abc import Awaitable, Callable
from html import escape
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from audit.replay_cli import parse_time
from bando.exceptions import BandoError
from leaders.digest import LABELS
from leaders.history import LeaderHistory
from leaders.officers import officer_report, peer_ratios
from leaders.tokens import TokenStore
from scoring.catalog import Catalog
from scoring.exceptions import WindowError
from scoring.model import Model
from scoring.timeutil import format_ts, resolve_window

log = logging.getLogger(__name__)

STYLE = ("body{font-family:'DejaVu Sans',Arial,sans-serif;font-size:14px;margin:24px;"
         "color:#1d1d1d}table{border-collapse:collapse}th,td{padding:3px 8px;border-bottom:"
         "1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left}"
         ".miss{color:#b3261e}.ok{color:#1e7b34}.items{font-size:12px;color:#444}")
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
DATA_KEY: web.AppKey[OfficerData] = web.AppKey("officer_data")


class OfficerData:
    """The loaded history (swappable on reload) and a cache of peer-group counts."""

    def __init__(self, data: LeaderHistory, catalog: Catalog, model: Model):
        self.catalog, self.model = catalog, model
        self._lock = threading.Lock()
        self.data = data
        self._peers: dict[tuple[str, str, int], Any] = {}

    def replace(self, data: LeaderHistory) -> None:
        with self._lock:
            self.data, self._peers = data, {}

    def report(self, officer_id: str, at: str | None, window_spec: str) -> dict[str, Any]:
        with self._lock:
            data, peers_cache = self.data, self._peers
        tz = self.model.timezone
        try:
            t = parse_time(at, tz, end=True) if at else data.last_ts
            if t is None:
                raise BandoError("no event loaded yet")
            window = resolve_window(window_spec, t, tz)
            shown = format_ts(t, tz)
        except OverflowError:
            # at=9999-12-31 (its end), or an instant whose local time is past year 9999:
            # a bad query, not a server error.
            raise BandoError(f"time out of range: {at!r}") from None
        if not window.contains(t):
            # Indicators of a window judged at an instant outside it mean nothing (a window
            # of year 1 "as of" 2024): say so rather than render a misleading page.
            raise BandoError(f"window {window.name} does not hold the time asked about "
                             f"({shown}); pass an `at` inside it")
        groups = {self.catalog.by_id[u].peer_group for u in data.officers.units_of(officer_id)
                  if u in self.catalog}
        peers = {}
        for g in groups:
            key = (g, window.name, t)
            if key not in peers_cache:
                if len(peers_cache) > 64:
                    peers_cache.clear()
                peers_cache[key] = peer_ratios(data.history, self.catalog, g, window, t)
            peers[g] = peers_cache[key]
        return officer_report(data.history, data.officers, self.catalog, self.model,
                              officer_id, t, window, peer_counts=peers)


class RouteAccessLogger(AbstractAccessLogger):
    """Method, route *template*, status and time: never the path (it holds officer ids)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        route = "?"
        match = getattr(request, "match_info", None)
        if match is not None and match.route.resource is not None:
            route = match.route.resource.canonical
        self.logger.info("%s %s %s %.3fs", request.method, route, response.status, time)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def render(doc: dict[str, Any]) -> str:
    e = escape
    h = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
         f"<title>Officer view</title><style>{STYLE}</style></head><body>",
         f"<h1>Your indicators: {e(doc['officer_id'])}</h1>",
         f"<p>window {e(doc['window'])}, as of {e(doc['as_of'])}, model {e(doc['model'])}. "
         "Only the dossiers you handled count in <b>yours</b>; petitions and publications "
         "are not attributed to officers.</p>"]
    if not doc["units"]:
        h.append("<p>No dossier of yours in the history.</p>")
    for u in doc["units"]:
        h.append(f"<h2>{e(u['name'])} ({e(u['unit_id'])})</h2><p>{u['dossiers']} dossier(s) "
                 f"of yours in the window, {u['repeated_supplements']} with two or more "
                 "supplement requests.</p><table><tr><th>indicator</th><th>yours</th>"
                 "<th>ratio</th><th>unit</th><th>peer median</th><th>target</th></tr>")
        for i in u["indicators"]:
            cls = "" if i["meets_target"] is None else " class='ok'" if i["meets_target"] \
                else " class='miss'"
            h.append(f"<tr><td>{e(LABELS.get(i['indicator'], i['indicator']))}</td>"
                     f"<td>{i['num']} / {i['den']}</td><td{cls}>{_pct(i['ratio'])}</td>"
                     f"<td>{_pct(i['unit_ratio'])}</td><td>{_pct(i['peer_median_ratio'])}</td>"
                     f"<td>{_pct(i['target'])}</td></tr>")
        h.append("</table>")
        for i in u["indicators"]:
            if i["items"]:
                listed = ", ".join(str(it.get("dossier_id") or it.get("procedure_id"))
                                   + (f" ({it['reason']})" if it.get("reason") else "")
                                   for it in i["items"])
                more = " …" if i["failing"] > len(i["items"]) else ""
                h.append(f"<p class='items'><b>{e(LABELS.get(i['indicator'], i['indicator']))}"
                         f"</b>: {i['failing']} of yours short: {e(listed)}{more}</p>")
    h.append("</body></html>")
    return "\n".join(h)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        # aiohttp decodes header bytes that are not UTF-8 to lone surrogates, which the
        # token hash cannot encode: such a token is merely invalid (401), not a server error.
        token.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return token


def make_app(data: OfficerData, tokens: Callable[[], TokenStore]) -> web.Application:
    """``tokens`` returns the current store (re-read on reload without a restart)."""

    @web.middleware
    async def guard(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        except Exception as exc:  # noqa: BLE001 - never let a traceback carry a path to a log
            log.error("officer view failed: %s", type(exc).__name__)
            response = web.Response(status=500, text="internal error\n")
        response.headers.update(HEADERS)
        return response

    async def officer(request: web.Request) -> web.StreamResponse:
        token = _bearer(request)
        owner = tokens().owner(token) if token else None
        if owner is None:
            return web.Response(status=401, text="a valid officer token is required\n",
                                headers={"WWW-Authenticate": 'Bearer realm="bando-officer"'})
        asked = request.match_info["officer_id"]
        if not hmac.compare_digest(owner.encode("utf-8"), asked.encode("utf-8")):
            return web.Response(status=403, text="this page belongs to another officer\n")
        try:
            doc = data.report(owner, request.query.get("at"),
                              request.query.get("window", "month"))
        except (BandoError, WindowError) as exc:
            return web.Response(status=400, text=f"{exc}\n")
        if request.query.get("format") == "json":
            return web.Response(body=orjson.dumps(doc), content_type="application/json")
        return web.Response(text=render(doc), content_type="text/html", charset="utf-8")

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application(middlewares=[guard])
    app[DATA_KEY] = data
    app.router.add_get("/officer/{officer_id}", officer)
    app.router.add_get("/healthz", health)
    return app
