"""A month's last changes are published when one flush interval also holds its end.

The scorer keeps the live windows of the watermark at flush time; a window the watermark
leaves during the interval must get its last score first, where it was left
(``ScorerCore._close_windows``), else its final board stays stale for good.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from scoring.catalog import Catalog
from scoring.model import Model
from streams.ranker import RankerCore
from streams.scorer import ScorerCore

ROOT = Path(__file__).resolve().parents[2]
UNITS = [{"unit_id": u, "name": u.upper(), "peer_group": "g"} for u in ("u1", "u2")]
DUE = "2024-05-20T10:00:00+07:00"


def offline(tmp: Path, events: list[dict[str, Any]], as_of: str, window: str
            ) -> dict[str, dict[str, Any]]:
    """``bando score`` over the same events, per unit."""
    (tmp / "e.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp / "units.json").write_text(json.dumps(UNITS))
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from bando.cli import entry; sys.exit(entry())",
         "score", "--events", str(tmp / "e.jsonl"), "--units", str(tmp / "units.json"),
         "--as-of", as_of, "--window", window],
        capture_output=True, text=True, cwd=ROOT, check=True)
    return {u["unit_id"]: u for u in json.loads(run.stdout)["units"]}


def test_closing_month_gets_its_last_changes(tmp_path, model: Model, mem_store, feed, ev):
    scorer = ScorerCore(Catalog.from_list(UNITS), model, mem_store, now_us=lambda: 2**62)
    ranker = RankerCore(type(mem_store)())
    events: list[dict[str, Any]] = []

    def interval(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        events.extend(bodies)
        assert not scorer.process(feed.batch(bodies)).rejected
        return ranker.process(scorer.flush()).scores

    interval([ev.received("u1", "d1", "2024-04-10T10:00:00+07:00", DUE),
              ev.received("u2", "d2", "2024-04-10T10:00:00+07:00", DUE,
                          channel="in_person", full_online=False)])
    late = "2024-04-30T23:30:00+07:00"
    # one interval: u2 improves late on 30 April, then the partition's time passes midnight,
    # then an April event arrives late (read after the crossing: not in the closing score)
    scores = interval([
        ev.received("u2", "d3", late, DUE),
        *(ev.dossier(kind, "u2", d, late)
          for kind in ("synced", "digitized") for d in ("d2", "d3")),
        ev.tick("2024-05-01T00:00:05+07:00"),
        ev.received("u2", "d4", "2024-04-30T23:40:00+07:00", DUE,
                    channel="in_person", full_online=False),
    ])
    april = [m for m in scores if m["window"] == "month:2024-04" and m["unit_id"] == "u2"]
    assert len(april) == 1, scores
    msg = april[0]
    assert msg["as_of"] == late
    # the input read when the watermark was still in April: everything before the tick
    read = len(events) - 3
    assert msg["input"]["offset"] == read
    want = offline(tmp_path, events[:read + 1], msg["as_of"], "month:2024-04")["u2"]
    assert (msg["total"], msg["band"], msg["rank"]) == (want["total"], want["band"], want["rank"])
    assert want["rank"] == 1 and want["total"] > 50.0  # the change the board must show

    board = {k: (v["total"], v["rank"]) for k, v in ranker.latest.items()
             if k[0] == "month:2024-04"}
    assert board[("month:2024-04", "u2")] == (want["total"], 1)
    # April stays closed: later flushes say nothing more of it
    assert not [m for m in interval([ev.tick("2024-05-02T00:00:00+07:00")])
                if m["window"] == "month:2024-04"]


def test_a_closing_is_not_redone_from_facts_read_after_the_crossing(model: Model, mem_store,  # type: ignore[no-untyped-def]
                                                                    feed, ev):
    """The batch that crosses into May is closed and its closing delivered, then the worker
    dies with its changelogs in flight: the facts changelog got through (with an April event
    read after the crossing), the clock did not. Read again from the commit, the crossing is
    met again; closing again at the same offset would count that late event, which the input
    up to the offset does not hold (``--verify`` fails, and the closed board keeps it). The
    batch's begin record survived with its facts, so the partition is held until the re-read
    has passed them: no closing again (the first was delivered). Found in review."""
    catalog = Catalog.from_list(UNITS)
    scorer = ScorerCore(catalog, model, mem_store, now_us=lambda: 2**62)
    scorer.process(feed.batch([
        ev.received("u1", "d1", "2024-04-10T10:00:00+07:00", DUE),
        ev.received("u2", "d2", "2024-04-10T10:00:00+07:00", DUE)]))
    scorer.flush()
    committed = len(mem_store.changelog)
    crossing = feed.batch([ev.dossier("synced", "u2", "d2", "2024-04-30T23:30:00+07:00"),
                           ev.tick("2024-05-01T00:00:05+07:00"),
                           ev.dossier("digitized", "u2", "d2", "2024-04-30T23:00:00+07:00")])
    scorer.process(crossing)
    closing = {(m["unit_id"], m["window"]): m for m in scorer.take_closing()}
    assert closing[("u2", "month:2024-04")]["input"]["offset"] == 2

    kept = mem_store.recovered(keep=lambda i, table: i < committed or table in ("facts", "seen"))
    again = ScorerCore(catalog, model, kept, now_us=lambda: 2**62)
    again.rebuild({0})
    again.process(crossing)
    assert again.take_closing() == []
    # a later crossing is closed as before
    again.process(feed.batch([ev.tick("2024-06-01T00:00:05+07:00")]))
    later = again.take_closing()
    assert later and all(m["input"]["offset"] == 4 for m in later)
