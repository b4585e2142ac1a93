"""A dossier rated (and sent back for supplements) thousands of times: the live worker's facts
record stays small (``scoring.compact``), and its scores stay those of ``bando score``."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

from bando.batch import load
from scoring.catalog import Catalog
from scoring.model import Model
from scoring.timeutil import format_ts, parse_ts, window_of
from streams.rebuild import SEP
from streams.scorer import ScorerCore

BASE = parse_ts("2024-05-10T08:00:00+07:00")
assert BASE is not None
MINUTE = 60_000_000


def at(minutes: float) -> str:
    return format_ts(BASE + int(minutes * MINUTE))


def test_many_ratings_keep_the_record_small_and_the_score_exact(
    tmp_path: Path, small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any
) -> None:
    rng = random.Random(7)
    events = [ev.received("u1", "d1", at(0), at(3000)),
              {"event_id": "p1", "type": "petition.received", "occurred_at": at(0),
               "unit_id": "u1", "petition_id": "p1", "due_at": at(3000)},
              ev.received("u1", "d3", at(0), at(3000)),
              ev.received("u2", "d2", at(1), at(3000)),
              # the earliest ratings, and below the latest: they differ, so a compaction that
              # kept the wrong one would change the score
              ev.dossier("rated", "u1", "d1", at(1.5), rating="satisfied"),
              {"event_id": "pr-first", "type": "petition.rated", "occurred_at": at(1.5),
               "unit_id": "u1", "petition_id": "p1", "rating": "satisfied"}]
    for i in range(3000):
        # out of order within a few minutes, like the input: some older than the watermark
        when = at(2 + i / 2 - rng.uniform(0, 3))
        kind = rng.choice(("rated", "rated", "supplement_requested", "petition"))
        if kind == "rated":
            events.append(ev.dossier("rated", "u1", "d1", when,
                                     rating=rng.choice(("satisfied", "dissatisfied"))))
        elif kind == "petition":
            events.append({"event_id": f"pr{i}", "type": "petition.rated", "occurred_at": when,
                           "unit_id": "u1", "petition_id": "p1",
                           "rating": rng.choice(("satisfied", "dissatisfied"))})
        else:
            extra = {"new_due_at": at(2000 + i)} if rng.random() < 0.3 else {}
            events.append(ev.dossier("supplement_requested", "u1", "d3", when, **extra))
    events += [ev.dossier("rated", "u1", "d1", at(1600), rating="dissatisfied"),
               {"event_id": "pr-last", "type": "petition.rated", "occurred_at": at(1600),
                "unit_id": "u1", "petition_id": "p1", "rating": "dissatisfied"}]
    for i in range(20):  # late ones after it: the records are compacted past the latest
        events += [ev.dossier("rated", "u1", "d1", at(100 + i), rating="satisfied"),
                   {"event_id": f"pr-late-{i}", "type": "petition.rated", "unit_id": "u1",
                    "occurred_at": at(100 + i), "petition_id": "p1", "rating": "satisfied"}]
    scorer = ScorerCore(small_catalog, model, mem_store)
    for i in range(0, len(events), 100):
        assert not scorer.process(feed.batch(events[i:i + 100])).rejected
    flushed = {m["window"]: m for m in scorer.flush() if m["unit_id"] == "u1"}

    for key in (SEP.join(("u1", "d", "d1")), SEP.join(("u1", "d", "d3")),
                SEP.join(("u1", "p", "p1"))):
        assert len(orjson.dumps(mem_store.get("facts", key))) < 2000, key

    (tmp_path / "e.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    offline = load(tmp_path / "e.jsonl", small_catalog, model)
    t = parse_ts(flushed["year:2024"]["as_of"])
    assert t is not None
    for kind in ("month", "year"):
        window = window_of(kind, t, model.timezone)
        want = {u["unit_id"]: u for u in offline.engine.score_all(window, t)}["u1"]
        got = flushed[window.name]
        assert (got["total"], got["indicators"]) == (want["total"], want["indicators"])
