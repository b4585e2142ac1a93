"""Replay throughput: events/s of ``audit.replay``'s ingest on a file, against a decode-only
baseline measured in the same run (issue 7: 200,000 events/s, 0.40 of decode-only).

    python bench/replay_throughput.py                       # simulate ~200k events (Q2 2024)
    python bench/replay_throughput.py --scale 0.05          # fewer
    python bench/replay_throughput.py --events FILE.jsonl [--units CATALOG] [--n 100000]
    python bench/replay_throughput.py --events FILE.jsonl --repeat 3 --no-timelines
    python bench/replay_throughput.py --events FILE.jsonl --archive /tmp/DIR --repeat 3

``--archive DIR``: the same stages on an archive (``bando archive``'s day files) made from the
file's lines once into DIR (3 partitions by unit, broker time = event time), where decode
is the archive lines and the events in them.

Ingest stages, run ``--repeat`` rounds in turn (interleaved, so a burst of load elsewhere on
the machine hits them alike), CPU time (best round, and each round's ratio to that round's
decode):
  decode    read the file and orjson.loads each line: the floor any JSON replay pays
  ingest    ``load_history`` of the file: the fused path (``audit.ingest._load_file``)
  generic   ``load_history(..., fused=False)``: Acceptor + Deduper + History.add per record,
            the path every non-file source takes (and the file's before the fused path)

Then, once, in wall time (``--no-timelines`` skips them):
  validate  schemas.Validator per line (the worker's own admission code)
  replay    ingest + the whole city's timeline, one row per unit at each day's end
  change    ingest + every-change timeline of one unit (its peer group is scored at every
            instant of any peer, for ranks)
  city      ingest + every-change timeline of every unit (the largest output)

Prints one line per stage and a JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from offline_throughput import decode_only  # noqa: E402  (the same baseline as bando score's)

from audit.archive import export  # noqa: E402
from audit.replay import Acceptor, TimelineSpec, load_history, paused_gc, timeline  # noqa: E402
from audit.sources import (  # noqa: E402
    ArchiveSource,
    FileSource,
    MemorySource,
    Record,
    day_files,
)
from schemas import EventRejected, Validator  # noqa: E402
from scoring.catalog import Catalog, load_catalog  # noqa: E402
from scoring.model import Model, load_model  # noqa: E402
from scoring.timeutil import parse_ts  # noqa: E402


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
    ap.add_argument("--repeat", type=int, default=2, help="rounds of the ingest stages")
    ap.add_argument("--no-timelines", action="store_true", help="only the ingest stages")
    ap.add_argument("--archive", help="an archive directory (made from --events if absent)")
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


def decode_archive(root: Path) -> int:
    """The archive's baseline: decompress, decode each line and the event text in it."""
    n = 0
    loads, error = orjson.loads, orjson.JSONDecodeError
    for _, path in day_files(root, "procedure-events"):
        with gzip.open(path, "rb") as fh:
            for line in fh.read().split(b"\n"):
                if line:
                    value = loads(line).get("v")
                    with contextlib.suppress(error):
                        loads(value or b"")
                    n += 1
    return n


def make_archive(events: Path, root: Path) -> None:
    """An archive of the file's lines: 3 partitions (by unit), broker time = event time (the
    previous record's when the line has none)."""
    offsets, recs, ts = [0, 0, 0], [], 1_704_067_200_000
    with open(events, "rb") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                body = orjson.loads(line)
                ts = parse_ts(body["occurred_at"]) // 1000
                p = zlib.crc32(str(body.get("unit_id")).encode()) % 3
            except Exception:  # noqa: BLE001 (a bad line: anywhere)
                p = 0
            recs.append(Record("procedure-events", p, offsets[p], ts, None, line))
            offsets[p] += 1
    export(MemorySource({"procedure-events": recs}), ["procedure-events"], root)


def ingest_rounds(path: Path, catalog: Catalog, repeat: int, archive: Path | None = None
                  ) -> dict[str, Any]:
    source: FileSource | ArchiveSource = (FileSource(path) if archive is None
                                          else ArchiveSource(archive))

    def ingest(fused: bool) -> Callable[[], Any]:
        def run() -> Any:
            acceptor = Acceptor(catalog, 64 * 1024)
            history = load_history(source, "procedure-events", acceptor, fused=fused)
            return acceptor.stats.to_dict(), history

        return run

    stages: dict[str, Callable[[], Any]] = {
        "decode": (lambda: decode_only(path)) if archive is None else (
            lambda: decode_archive(archive)),
        "ingest": ingest(True), "generic": ingest(False)}
    rounds: list[dict[str, tuple[float, float]]] = []
    n, outcomes = 0, {}
    for _ in range(repeat):
        times = {}
        for name, fn in stages.items():
            gc.collect()
            c0, w0 = time.process_time(), time.perf_counter()
            result = fn()
            times[name] = (time.process_time() - c0, time.perf_counter() - w0)
            if name == "decode":
                n = result
            else:
                stats = dict(result[0])
                del stats["seconds"], stats["records_per_s"]
                outcomes[name] = stats
            del result  # freed outside the clock
        rounds.append(times)
        print("round:", "  ".join(
            f"{k} {c:.2f} s cpu ({n / c:,.0f}/s, {times['decode'][0] / c:.2f} of decode)"
            for k, (c, _) in times.items()), flush=True)
    if outcomes["ingest"] != outcomes["generic"]:
        raise SystemExit(f"the two paths disagree: {outcomes}")
    best = {k: min(r[k][0] for r in rounds) for k in stages}
    for k, cpu in best.items():
        print(f"{k:9} {n:>9} events {cpu:8.2f} s cpu {n / cpu:>10,.0f} events/s "
              f"{best['decode'] / cpu:5.2f} of decode (best of {repeat})")
    return {"events": n, "rounds": [{k: round(c, 3) for k, (c, _) in r.items()} for r in rounds],
            "best_cpu_s": {k: round(v, 3) for k, v in best.items()},
            "events_per_cpu_s": {k: round(n / v) for k, v in best.items()},
            "of_decode": {k: round(best["decode"] / v, 3) for k, v in best.items()},
            "per_round_of_decode": [{k: round(r["decode"][0] / r[k][0], 3) for k in r}
                                    for r in rounds],
            "ingest": outcomes["ingest"]}


def _bench(path: Path, args: argparse.Namespace) -> int:
    catalog, model = load_catalog(args.units), load_model()
    archive = None
    if args.archive:
        archive = Path(args.archive)
        if not archive.is_dir():
            make_archive(path, archive)
    summary = ingest_rounds(path, catalog, args.repeat, archive)
    summary["python"] = sys.version.split()[0]
    if not args.no_timelines:
        summary["wall_events_per_s"] = _timelines(path, args, catalog, model)
    print(orjson.dumps(summary).decode())
    return 0


def _timelines(path: Path, args: argparse.Namespace, catalog: Catalog, model: Model
               ) -> dict[str, float]:
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    n = len(lines)
    results: dict[str, float] = {}

    def report(stage: str, seconds: float, extra: str = "") -> None:
        results[stage] = round(n / seconds)
        print(f"{stage:9} {n:>9} events {seconds:8.2f} s {n / seconds:>10,.0f} events/s {extra}")

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
    return results


if __name__ == "__main__":
    raise SystemExit(main())
