"""Baseline for ``bench/live_pipeline.py``: the faust agent a user would write first.

Per event: decode the JSON, validate it, fold it into the unit's facts, write the touched fact
to a changelog-backed faust Table, re-score the unit (``scoring.engine.score_state``, which
counts every dossier of the unit) for its month and year windows, and send the score. One event
at a time through faust's stream; same validation and scoring core as ``bando worker``, none of
its batching, running counts or coalescing.

    python bench/naive_faust_agent.py --bootstrap HOST:PORT --topic T --app-id A --partitions N
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

import faust
import orjson

from schemas import EventRejected, Validator
from scoring.catalog import load_catalog
from scoring.engine import score_state
from scoring.facts import UnitState, apply_event
from scoring.model import load_model
from scoring.timeutil import format_ts, window_of


def create_app(bootstrap: str, topic: str, app_id: str, partitions: int) -> faust.App:
    catalog = load_catalog()
    model = load_model()
    validator = Validator(catalog)
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://",
                    datadir=os.path.join(tempfile.gettempdir(), f"naive-{app_id}"),
                    autodiscover=False, topic_partitions=partitions, web_enabled=False,
                    consumer_auto_offset_reset="earliest", broker_commit_interval=1.0,
                    key_serializer="json", value_serializer="json")
    events = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    scores = app.topic(f"{topic}-naive-scores", key_serializer="raw", value_serializer="raw")
    facts = app.Table("naive-facts", default=None, partitions=partitions)
    states: dict[str, UnitState] = {}

    @app.agent(events)
    async def score(stream: Any) -> None:
        async for raw in stream:
            try:
                event = validator.check(orjson.loads(raw))
            except (EventRejected, orjson.JSONDecodeError):
                continue
            if event.unit_id is None:
                continue
            state = states.setdefault(event.unit_id, UnitState())
            key = apply_event(state, event)
            if key is None:
                continue
            record: Any
            if key[0] == "d":
                record = state.dossiers[key[1]].to_dict()
            elif key[0] == "p":
                record = state.petitions[key[1]].to_dict()
            else:
                record = key[1]
            facts[f"{event.unit_id}/{key[0]}/{key[1]}"] = record
            unit = catalog.by_id[event.unit_id]
            for kind in ("month", "year"):
                window = window_of(kind, event.ts, model.timezone)
                s = score_state(model, unit, state, window, event.ts)
                msg = s.to_dict()
                msg.update({"window": window.name, "as_of": format_ts(event.ts)})
                await scores.send(key=event.unit_id.encode(), value=orjson.dumps(msg))

    return app


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--app-id", required=True)
    ap.add_argument("--partitions", type=int, default=4)
    args = ap.parse_args()
    app = create_app(args.bootstrap, args.topic, args.app_id, args.partitions)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
