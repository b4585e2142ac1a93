"""Benchmark: the live worker's state in memory, by part, per dossier and per event id.

    python bench/live_state_memory.py --dossiers 200000

Runs ``ScorerCore.process`` over ``--dossiers`` ``dossier.received`` events (the events of
``bench/recovery.py``: one event per dossier) with a dict-of-dicts store holding the decoded
JSON values, as faust's memory store holds them after recovery, and measures with tracemalloc:

  seen    the de-duplication table (event id -> digest)       BANDO_STORE=rocksdb: on disk
  facts   the per-dossier records of the facts table          BANDO_STORE=rocksdb: on disk
  rest    the scorer's in-memory mirror (``UnitState``/``Dossier``), running counts and the
          small tables: in memory with either store

RocksDB's own memory (memtables, block cache, bloom filters and index blocks) is outside the
Python heap: ``bench/recovery.py --stores memory,rocksdb`` prints the worker's RSS with each.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recovery import received_events  # noqa: E402

from scoring.catalog import load_catalog  # noqa: E402
from scoring.model import load_model  # noqa: E402
from streams.scorer import Message, ScorerCore  # noqa: E402


class DictStore:
    """``streams.scorer.Store`` as the memory store after recovery: decoded JSON values."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = {n: {} for n in ("seen", "units", "facts",
                                                                   "clock")}

    def get(self, table: str, key: str) -> Any:
        return self.tables[table].get(key)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        self.tables[table][key] = orjson.loads(orjson.dumps(value))

    def items(self, table: str) -> list[tuple[str, Any]]:
        return list(self.tables[table].items())


def traced(build: Any) -> tuple[int, Any]:
    """Bytes still allocated after ``build()`` (and its result)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    result = build()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(s.size_diff for s in after.compare_to(before, "filename")), result


def table_bytes(table: dict[str, Any]) -> int:
    """One table alone, decoded again from its JSON under tracemalloc."""
    raw = [(orjson.dumps(k), orjson.dumps(v)) for k, v in table.items()]
    size, copy = traced(lambda: {orjson.loads(k): orjson.loads(v) for k, v in raw})
    del copy
    return size


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dossiers", type=int, default=200_000)
    args = ap.parse_args()
    n = args.dossiers
    lines = received_events(n, "m")
    store = DictStore()
    core = ScorerCore(load_catalog(), load_model(), store, now_us=lambda: 2_000_000_000_000_000)

    def run() -> None:
        for i in range(0, n, 2000):
            core.process([Message(i % 4, j, None, lines[j]) for j in range(i, min(n, i + 2000))])

    total, _ = traced(run)
    seen = table_bytes(store.tables["seen"])
    facts = table_bytes(store.tables["facts"])
    print(f"{n} dossiers, one event each: state {total / n:.0f} B/dossier in the Python heap "
          f"with BANDO_STORE=memory; of which seen {seen / n:.0f} B/event id, facts table "
          f"{facts / n:.0f} B/dossier (both on disk with rocksdb); the rest "
          f"{(total - seen - facts) / n:.0f} B/dossier (in memory with either store)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
