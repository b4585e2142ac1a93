"""Commitments on the wall: every pushed row of a unit carries its commitments, judged.

The gateway holds the commitments file (``leaders.commitments`` format, read at start and again
on SIGHUP). Before a snapshot or a change goes out, each row of a unit that has commitments
gets a ``commitments`` list, judged with :func:`leaders.commitments.progress` on the row's
latest ``unit-scores`` message (kept in ``P:w:{window}:units``), at that message's ``as_of``:
event time, never the wall clock, so a replayed board shows the same verdicts.

Which commitments a row shows: those of its window kind (a month board row shows the
``"window": "month"`` commitments; the year board the yearly ones), judged on:

* the row's own score when the deadline falls in the row's window or later;
* the unit's last score of the window that held the deadline when that window is over (the
  board keeps a replaced window 40 days): the value at the deadline when the deadline ends its
  window, as it usually does. Once that window's rows are gone the commitment leaves the wall
  (the digest keeps the record).

A deadline inside the row's window that has passed is judged on the latest score of that
window (the board keeps no history), which may count events after the deadline; the digest,
which replays the history, judges exactly at the deadline.

Rows of units without commitments are sent unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from display import store
from leaders import commitments as cm
from scoring.exceptions import WindowError
from scoring.timeutil import DEFAULT_TZ, Window, parse_ts, parse_window, window_of

log = logging.getLogger(__name__)

ENV_PATH = "BANDO_COMMITMENTS_PATH"
# what a screen needs of cm.progress(): small, no signatures or notes
WIRE_FIELDS = (
    "indicator",
    "target",
    "deadline",
    "window",
    "status",
    "missed",
    "value",
    "num",
    "den",
    "successes_needed",
    "days_left",
)
Score = Mapping[str, Any]


class WallCommitments:
    """The commitments of one gateway, by unit; judges them on board rows."""

    def __init__(
        self,
        items: Iterable[cm.Commitment] = (),
        tz: str = DEFAULT_TZ,
        *,
        path: str | Path = "",
        model_ref: str = "",
        catalog_path: str = "",
    ):
        self.path, self.model_ref, self.catalog_path = str(path), model_ref, catalog_path
        self.listeners: list[Callable[[], None]] = []  # called after a successful reload
        self.by_unit: dict[str, list[cm.Commitment]] = {}
        self.tz = tz
        self._set(items, tz)

    def _set(self, items: Iterable[cm.Commitment], tz: str) -> None:
        by_unit: dict[str, list[cm.Commitment]] = {}
        for c in items:
            by_unit.setdefault(c.unit_id, []).append(c)
        self.by_unit, self.tz = by_unit, tz

    @classmethod
    def load(cls, path: str | Path, model_ref: str, catalog_path: str = "") -> WallCommitments:
        """Read and check the file (unknown units and indicators are errors, as in the digest)."""
        out = cls(path=path, model_ref=model_ref, catalog_path=catalog_path)
        out.reload()
        return out

    def reload(self) -> int:
        """Read the file again; raises (and keeps the current ones) if it is not usable."""
        from scoring.catalog import load_catalog
        from scoring.model import load_model

        model = load_model(self.model_ref) if self.model_ref else load_model()
        catalog = load_catalog(self.catalog_path or None)
        items = cm.load(self.path, model, catalog.by_id)
        self._set(items, model.timezone)
        for listener in self.listeners:
            listener()
        return len(items)

    def reload_logged(self) -> None:
        """The SIGHUP handler: a broken file is logged and the previous commitments stay."""
        try:
            n = self.reload()
        except Exception as exc:  # noqa: BLE001 - a bad edit must not stop the wall
            log.error(
                "commitments %s not reloaded (keeping %d units): %s",
                self.path,
                len(self.by_unit),
                exc,
            )
        else:
            log.info("commitments reloaded from %s: %d", self.path, n)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_unit.values())

    # ---- judging (pure) ----

    def _relevant(self, unit_id: str, win: Window) -> list[cm.Commitment]:
        return [c for c in self.by_unit.get(unit_id, ()) if c.window == win.kind]

    def past_windows(self, unit_id: str, win: Window) -> set[str]:
        """Earlier windows holding deadlines of this row's commitments (their rows are read)."""
        return {
            window_of(win.kind, c.deadline_us, self.tz).name
            for c in self._relevant(unit_id, win)
            if c.deadline_us < win.start_us
        }

    def judge(
        self,
        row: Mapping[str, Any],
        win: Window,
        score: Score | None,
        past: Mapping[tuple[str, str], Score | None],
    ) -> list[dict[str, Any]]:
        """The row's commitments as screens get them (``past``: (window, unit) -> last score)."""
        uid = row["unit_id"]
        relevant = self._relevant(uid, win)
        if not relevant:
            return []
        t = parse_ts((score or {}).get("as_of")) or parse_ts(row.get("as_of"))
        if t is None:
            return []
        out = []
        for c in relevant:
            source: Score | None = score
            if c.deadline_us < win.start_us:
                source = past.get((window_of(win.kind, c.deadline_us, self.tz).name, uid))
                if source is None:
                    continue  # that window's board is gone: nothing left to judge on
            p = cm.progress(c, t, _fixed(cm.from_score(source or {}, c.indicator)), self.tz)
            out.append({k: p[k] for k in WIRE_FIELDS})
        return out

    # ---- attaching (reads Redis) ----

    async def attach(
        self, redis: Redis, keys: store.Keys, window: str, rows: list[dict[str, Any]]
    ) -> None:
        """Set ``commitments`` on those ``rows`` (views of ``window``) that have some."""
        rows = [r for r in rows if r.get("unit_id") in self.by_unit]
        if not rows:
            return
        try:
            win = parse_window(window, self.tz)
        except WindowError:
            return
        ids = [r["unit_id"] for r in rows]
        scores = dict(zip(ids, _scores(await redis.hmget(keys.units(window), ids)), strict=True))
        wanted: dict[str, set[str]] = {}
        for uid in ids:
            for name in self.past_windows(uid, win):
                wanted.setdefault(name, set()).add(uid)
        past: dict[tuple[str, str], Score | None] = {}
        for name, uids in sorted(wanted.items()):
            some = sorted(uids)
            for uid, s in zip(
                some, _scores(await redis.hmget(keys.units(name), some)), strict=True
            ):
                past[(name, uid)] = s
        for r in rows:
            try:
                judged = self.judge(r, win, scores.get(r["unit_id"]), past)
            except Exception:  # noqa: BLE001 - odd data must not keep the board off the wall
                log.exception("commitments of %s not judged", r["unit_id"])
                judged = []
            if judged:
                r["commitments"] = judged
            else:
                r.pop("commitments", None)

    async def snapshot(self, redis: Redis, keys: store.Keys, snap: dict[str, Any]) -> None:
        """Hub hook: a snapshot read from Redis, before it is framed."""
        if not self.by_unit:
            return
        for window, groups in snap.get("boards", {}).items():
            await self.attach(redis, keys, window, [r for rs in groups.values() for r in rs])

    async def change(self, redis: Redis, keys: store.Keys, data: bytes) -> bytes:
        """Hub hook: a published change, returned with the unit's commitments if it has any."""
        if not self.by_unit or not data.startswith(b'{"t":"unit"'):
            return data
        try:
            msg = orjson.loads(data)
            unit = msg.get("unit")
            if not isinstance(unit, dict) or unit.get("unit_id") not in self.by_unit:
                return data
        except orjson.JSONDecodeError:
            return data
        await self.attach(redis, keys, str(msg.get("window")), [unit])
        return orjson.dumps(msg)


def _fixed(value: tuple[float | None, int | None, int | None]) -> cm.Lookup:
    def lookup(
        unit_id: str, indicator: str, kind: str, t: int
    ) -> tuple[float | None, int | None, int | None]:
        return value

    return lookup


def _scores(blobs: list[Any]) -> list[Score | None]:
    out: list[Score | None] = []
    for blob in blobs:
        rec = orjson.loads(blob) if blob else None
        score = rec.get("score") if isinstance(rec, dict) else None
        out.append(score if isinstance(score, dict) else None)
    return out
