"""Replay throughput: events/s of ``audit.replay`` on a file, against a decode-only baseline.

    python bench/replay_throughput.py                       # simulate ~200k events (Q2 2024)
    python bench/replay_throughput.py --scale 0.05          # fewer
    python bench/replay_throughput.py --events FILE.jsonl [--units CATALOG] [--n 100000]

Stages, each timed on the same lines:
  decode    orjson.loads per line: the floor any JSON replay pays
  validate  schemas.Validator per line (the worker's own admission code)
  ingest    replay's read + validate + de-duplicate + fold into unit states
  replay    ingest + the whole city's timeline, one row per unit at each day's end
  change    ingest + every-change timeline of one unit (its peer group is scored at every
            instant of any peer, for ranks)
  city      ingest + every-change timeline of every unit (the largest output)

Prints one line per stage and a JSON summary (for docs/AUDIT.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audit.replay import Acceptor, TimelineSpec, load_history, paused_gc, timeline  # noqa: E402
from audit.sources import FileSource  # noqa: E402
from schemas import EventRejected, Validator  # noqa: E402
from scoring.catalog import load_catalog  # noqa: E402
from scoring.model import load_model  # noqa: E402


def simulate(path: Path, scale: float, start: str, end: str) -> None:
    from bando.simulator import generate_timed, read_catalog, write_jsonl

    with open(path, "wb") as fh:
        write_jsonl(fh, generate_timed(read_catalog(), start, end, seed=1, rate_scale=scale))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", help="a JSON-lines event file (default: simulate one)")
    ap.add_argument("--units", help="catalog of --events (default: HCMC 2024)")
    ap.add_argument("--n", type=int, default=None, help="only the first N lines")
    ap.add_argument("--scale", type=float, default=0.2, help="simulator activity scale")
    ap.add_argument("--start", default="2024-04-01")
    ap.add_argument("--end", default="2024-07-01")
    ap.add_argument("--window", default="month")
    ap.add_argument("--unit", default=None, help="unit of the change stage (default: first)")
    ap.add_argument("--skip-change", action="store_true", help="skip the slowest stage")
    args = ap.parse_args()

    tmp = None
    tmp = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False)  # noqa: SIM115
    tmp.close()
    path = Path(tmp.name)
    if not args.events:
        simulate(path, args.scale, args.start, args.end)
    elif args.n is None:
        os.unlink(tmp.name)
        tmp, path = None, Path(args.events)
    if args.n is not None:  # the first N lines, in a file of their own (replay reads files)
        with open(args.events or tmp.name, "rb") as fh:  # type: ignore[union-attr]
            head = [line for _, line in zip(range(args.n), fh, strict=False)]
        path.write_bytes(b"".join(head))
    try:
        return _bench(path, args)
    finally:
        if tmp is not None:
            os.unlink(tmp.name)


def _bench(path: Path, args: argparse.Namespace) -> int:
    catalog, model = load_catalog(args.units), load_model()
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    n = len(lines)
    results: dict[str, float] = {}

    def report(stage: str, seconds: float, extra: str = "") -> None:
        results[stage] = round(n / seconds)
        print(f"{stage:9} {n:>9} events {seconds:8.2f} s {n / seconds:>10,.0f} events/s {extra}")

    t = time.perf_counter()
    for line in lines:
        with contextlib.suppress(orjson.JSONDecodeError):
            orjson.loads(line)
    report("decode", time.perf_counter() - t)

    validator = Validator(catalog, max_bytes=64 * 1024)
    t = time.perf_counter()
    for line in lines:
        with contextlib.suppress(EventRejected):
            validator.validate(line)
    report("validate", time.perf_counter() - t)

    source = FileSource(path)
    acceptor = Acceptor(catalog, 64 * 1024)
    t = time.perf_counter()
    history = load_history(source, "procedure-events", acceptor)
    ingest = time.perf_counter() - t
    report("ingest", ingest)

    t = time.perf_counter()
    with paused_gc():
        rows = list(timeline(history, catalog, model,
                             TimelineSpec(window=args.window, every="day")))
    report("replay", ingest + time.perf_counter() - t, f"({len(rows)} rows, day ends, all units)")

    if not args.skip_change:
        unit = args.unit or catalog.units[0].unit_id
        t = time.perf_counter()
        with paused_gc():
            rows = list(timeline(history, catalog, model,
                                 TimelineSpec(window=args.window, units=(unit,))))
        report("change", ingest + time.perf_counter() - t,
               f"({len(rows)} rows, every change of {unit})")
        t = time.perf_counter()
        with paused_gc():
            rows = list(timeline(history, catalog, model, TimelineSpec(window=args.window)))
        report("city", ingest + time.perf_counter() - t, f"({len(rows)} rows, every change)")
    print(orjson.dumps({"events": n, "events_per_s": results, "window": args.window,
                        "python": sys.version.split()[0]}).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
