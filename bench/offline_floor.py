"""The floor under ``bando.batch.load``: how much of an offline load is decoding and the two
memory-bound lookups every event needs, whatever the checks and folds cost (issue 7).

    python bench/offline_floor.py --events FILE.jsonl [--repeat 2]

Stages, CPU seconds, interleaved rounds, one process:
  decode  the ``offline_throughput`` ceiling: strip, ``orjson.loads`` each line
  floor   decode, then per line only: find or create its dossier in its unit's dict, probe and
          fill a ``FirstSeen``-shaped table with the event id (GC off, as in the load)
  load    ``bando.batch.load`` itself
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from array import array
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from offline_throughput import decode_only  # noqa: E402 - this folder, the same ceiling

from bando.batch import READ_BUFFER, load  # noqa: E402
from scoring.catalog import load_catalog  # noqa: E402
from scoring.facts import Dossier  # noqa: E402
from scoring.model import load_model  # noqa: E402


def floor(path: Path) -> dict[str, dict[str, Dossier]]:
    tables: dict[str, dict[str, Dossier]] = {}
    slots = array("q", bytes(16 * (2 * path.stat().st_size // 250 + 1)))
    end, offset = len(slots), 0
    gc.disable()
    try:
        with open(path, "rb", buffering=READ_BUFFER) as fh:
            for line in fh:
                start = offset
                offset += len(line)
                try:
                    body = orjson.loads(line)
                    dossiers = tables.get(body["unit_id"])
                    if dossiers is None:
                        dossiers = tables[body["unit_id"]] = {}
                    if body["dossier_id"] not in dossiers:
                        dossiers[body["dossier_id"]] = Dossier()
                    tag = hash(body["event_id"]) | 1
                    j = tag % end
                    while slots[j]:
                        j = j + 2 if j + 2 < end else 1
                    slots[j], slots[j - 1] = tag, start
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    pass
    finally:
        gc.enable()
    return tables


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", required=True, type=Path)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    catalog, model = load_catalog(None), load_model("vn766@1")
    stages = {"decode": lambda: decode_only(args.events), "floor": lambda: floor(args.events),
              "load": lambda: load(args.events, catalog, model)}
    for _ in range(args.repeat):
        for name, fn in stages.items():
            c0 = time.process_time()
            result = fn()
            print(f"{name:7} {time.process_time() - c0:7.2f} s CPU", flush=True)
            del result
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
