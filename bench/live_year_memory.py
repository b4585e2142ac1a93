"""Benchmark: the live worker's memory per tracked dossier over a year of full dossier
lifecycles (issue 7: at most 200 bytes per tracked dossier, for a year of HCMC, ~18M dossiers
and ~90M events; state larger than memory goes to a disk store).

    python bench/live_year_memory.py            # ~1M dossiers; memory,rocksdb x evict,keep
    python bench/live_year_memory.py --dossiers 50000 --stores rocksdb --modes evict,keep

1. A simulated year of HCMC at the scale giving about ``--dossiers`` dossiers (the file of
   ``bench/memory_per_dossier.py``, cached in ``--data-dir``): nearly every dossier is completed
   or withdrawn within the year, a few stay open, as in a real year.
2. Starts a Kafka broker (or uses ``--bootstrap``) and produces the year to a fresh topic.
3. For each store of ``--stores``: an idle ``bando worker`` (an empty topic plus one
   ``clock.tick``, processed and committed) and its RSS after ``--settle`` seconds: the process
   with an empty state. Then for each mode of ``--modes`` a fresh worker over the year
   (``BANDO_STORE``; ``BANDO_KEEP_SETTLED=1`` for ``keep``: every dossier's facts stay in
   memory; ``0`` for ``evict``: settled dossiers, e.g. completed ones, leave memory and are read
   back from the store when an event touches them). Catch-up: from its start until its group
   has committed the end of the topic. After ``--settle`` seconds its RSS; bytes per tracked
   dossier = (RSS - idle RSS) / dossiers in the year; extrapolated to HCMC's 18M.
   Each run also reads the worker's /metrics: ``bando_dossiers_in_memory`` and, with rocksdb,
   ``bando_store_memory_bytes`` (block cache, memtables, index and filter blocks).
4. Prints a table and a JSON summary (``--json FILE``: also written there).

RSS is the whole process: with the memory store it includes the ``seen`` table (every event
id) and the ``facts`` table; with rocksdb, RocksDB's memtables and block cache (bounded, 128 MB,
so small runs overstate the bytes per dossier). Python rarely gives freed arenas back to the
OS, so evicted dossiers still count if they were ever all in memory at once (VmHWM, the peak
RSS, is printed in each run's line and the JSON). The idle RSS leaves out what grows with
throughput rather than with state (fetch and produce buffers, the allocator's arenas): some tens
of MB, small per dossier only in large runs; two sizes (e.g. 200k and 1M) give the slope as a
cross-check. Figures, not assertions: the machine must be quiet for the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from live_pipeline import REPO, group_progress, produce, rss_mb, settings_for, worker_env
from memory_per_dossier import (
    DOSSIERS_PER_YEAR_AT_SCALE_1,
    HCMC_YEAR_DOSSIERS,
    HCMC_YEAR_EVENTS,
    simulate,
)
from recovery import disk_mb
from report import emit

from bando.infra import KafkaBroker, ensure_project_topics
from bando.infra.ports import free_port, log_tail
from bando.settings import Settings

CLOSING = ("dossier.completed", "dossier.withdrawn")


def year_file(data_dir: str, dossiers: int) -> tuple[Path, float]:
    """The simulated year (written once per scale, shared with memory_per_dossier.py)."""
    scale = round(dossiers / DOSSIERS_PER_YEAR_AT_SCALE_1, 3)
    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    path = data / f"year-scale-{scale}.jsonl"
    if not path.exists():
        print(f"simulating a year at scale {scale} into {path} ...", file=sys.stderr)
        simulate(path, scale)
    return path, scale


def chunks(path: Path, counts: dict[str, int], size: int = 100_000) -> Iterator[list[bytes]]:
    """The file's lines in lists of ``size``; counts events, dossiers and open dossiers."""
    dossiers: set[str] = set()
    closed: set[str] = set()
    chunk: list[bytes] = []
    with open(path, "rb") as fh:
        for line in fh:
            body = orjson.loads(line)
            if dossier := body.get("dossier_id"):
                dossiers.add(dossier)
                if body["type"] in CLOSING:
                    closed.add(dossier)
            chunk.append(line.rstrip(b"\n"))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk
    counts.update(dossiers=len(dossiers), open=len(dossiers - closed))


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


def worker_gauges(port: int) -> dict[str, Any]:
    """What the worker says of its memory on /metrics: RocksDB's parts (MB) and the dossiers
    its scorer holds."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, Any] = {"store_memory_mb": {}, "dossiers_in_memory": None}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bando_store_memory_bytes":
                out["store_memory_mb"][sample.labels["part"]] = sample.value / 2**20
            elif sample.name == "bando_dossiers_in_memory":
                out["dossiers_in_memory"] = int(sample.value)
    return out


def start_worker(s: Settings, keep: bool, log: Path, log_level: str) -> subprocess.Popen[bytes]:
    env = worker_env(s)
    env["BANDO_STORE"] = s.store
    env["BANDO_KEEP_SETTLED"] = "1" if keep else "0"
    return subprocess.Popen([sys.executable, "-m", "bando.cli", "worker", "--log-level",
                             log_level], cwd=REPO, env=env, stdout=open(log, "wb"),  # noqa: SIM115
                            stderr=subprocess.STDOUT)


def caught_up(proc: subprocess.Popen[bytes], bootstrap: str, s: Settings, log: Path,
              limit_s: float) -> dict[str, float]:
    """Wait until the worker's group has committed the end of its topic.
    -> seconds from ``proc``'s start (taken as now) to the first commit and to the end."""
    t0 = time.perf_counter()
    first = None
    while True:
        done, total = asyncio.run(group_progress(bootstrap, s.app_id, s.events_topic))
        now = time.perf_counter()
        if done and first is None:
            first, first_done = now - t0, done
        if total and done >= total:
            assert first is not None
            return {"first_commit_s": first, "first_commit_events": first_done,
                    "catch_up_s": now - t0}
        if proc.poll() is not None or now - t0 > limit_s:
            why = f"exited ({proc.returncode})" if proc.returncode is not None else "timed out"
            raise SystemExit(f"worker {why} at {done}/{total} events committed; log tail:\n"
                             f"{log_tail(log)}")
        time.sleep(0.5)


def idle_rss(args: argparse.Namespace, base: Settings, store: str, bootstrap: str,
             tmp: Path) -> dict[str, float]:
    """RSS of a worker of ``store`` with an empty state: an empty topic and one clock.tick."""
    s = base.with_(app_id=f"{base.app_id}-idle-{store}", store=store,
                   events_topic=f"{base.events_topic}-idle-{store}",
                   scores_topic=f"{base.scores_topic}-idle-{store}",
                   data_dir=str(tmp / f"data-idle-{store}"))
    ensure_project_topics(bootstrap, s)
    tick = orjson.dumps({"event_id": f"idle-{store}-tick", "type": "clock.tick",
                         "occurred_at": "2024-01-01T00:00:00+07:00"})
    asyncio.run(produce(bootstrap, s.events_topic, [tick]))
    log = tmp / f"idle-{store}.log"
    proc = start_worker(s, False, log, args.log_level)
    try:
        caught_up(proc, bootstrap, s, log, 300)
        time.sleep(args.settle)
        return {"rss_mb": rss_mb(proc.pid), "hwm_mb": rss_mb(proc.pid, "VmHWM")}
    finally:
        stop(proc)
        shutil.rmtree(s.data_dir, ignore_errors=True)


def run(args: argparse.Namespace, base: Settings, store: str, mode: str, bootstrap: str,
        tmp: Path, idle: dict[str, float], counts: dict[str, int]) -> dict[str, Any]:
    """One fresh worker over the year; its catch-up time and memory then."""
    name = f"{store}-{mode}"
    s = base.with_(app_id=f"{base.app_id}-{name}", store=store,
                   scores_topic=f"{base.scores_topic}-{name}", data_dir=str(tmp / f"data-{name}"),
                   metrics_port=free_port())
    ensure_project_topics(bootstrap, s)
    log = tmp / f"{name}.log"
    proc = start_worker(s, mode == "keep", log, args.log_level)
    try:
        times = caught_up(proc, bootstrap, s, log, args.timeout)
        time.sleep(args.settle)  # the last acknowledged writes reach the local store
        rss, hwm = rss_mb(proc.pid), rss_mb(proc.pid, "VmHWM")
        if proc.poll() is not None:
            raise SystemExit(f"worker {name} exited; log tail:\n{log_tail(log)}")
        gauges = worker_gauges(s.metrics_port)
        disk = disk_mb(s)
    finally:
        stop(proc)
        shutil.rmtree(s.data_dir, ignore_errors=True)
    events, dossiers = counts["events"], counts["dossiers"]
    per = (rss - idle["rss_mb"]) * 2**20 / dossiers
    after_first = times["catch_up_s"] - times["first_commit_s"]
    return {
        "store": store, "mode": mode, "dossiers": dossiers, "events": events, **times,
        "events_per_s": events / times["catch_up_s"],
        "events_per_s_after_first_commit": ((events - times["first_commit_events"]) / after_first
                                            if after_first > 0 else None),
        "rss_mb": rss, "hwm_mb": hwm, "idle_rss_mb": idle["rss_mb"],
        "bytes_per_dossier": per, "hwm_bytes_per_dossier": (hwm - idle["rss_mb"]) * 2**20
        / dossiers, "hcmc_year_gb": per * HCMC_YEAR_DOSSIERS / 1e9, "store_disk_mb": disk,
        "store_disk_bytes_per_dossier": disk * 2**20 / dossiers,
        "load_average": os.getloadavg()[0], **gauges,
    }


def parts(mb: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:,.1f}" for k, v in mb.items()) or "-"


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks: workers, broker, temp dir


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--dossiers", type=int, default=1_000_000, help="about how many dossiers")
    ap.add_argument("--stores", default="memory,rocksdb", help="comma list of BANDO_STORE values")
    ap.add_argument("--modes", default="evict,keep",
                    help="comma list: evict (BANDO_KEEP_SETTLED=0), keep (BANDO_KEEP_SETTLED=1)")
    ap.add_argument("--data-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                       "bando-bench"),
                    help="where the simulated year is cached")
    ap.add_argument("--bootstrap", help="use a running broker instead of starting one")
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds between catching up and reading the RSS")
    ap.add_argument("--timeout", type=float, default=3600.0, help="catch-up limit per worker, s")
    ap.add_argument("--log-level", default="warning", help="of the workers")
    ap.add_argument("--json", help="also write the summary here")
    args = ap.parse_args()
    stores = [x for x in args.stores.split(",") if x]
    modes = [x for x in args.modes.split(",") if x]
    if bad := set(modes) - {"evict", "keep"}:
        ap.error(f"unknown modes: {sorted(bad)}")
    path, scale = year_file(args.data_dir, args.dossiers)

    signal.signal(signal.SIGTERM, on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="bando-yearmem-"))
    broker = None
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            broker = KafkaBroker(data_dir=tmp / "kafka", partitions=4)
            broker.start()
            bootstrap = broker.bootstrap
        base = settings_for(bootstrap, uuid.uuid4().hex[:6])
        ensure_project_topics(bootstrap, base)
        counts: dict[str, int] = {"events": 0}
        produce_s = 0.0
        for chunk in chunks(path, counts):
            produce_s += asyncio.run(produce(bootstrap, base.events_topic, chunk))
            counts["events"] += len(chunk)
        print(f"year:  {counts['events']:,} events, {counts['dossiers']:,} dossiers "
              f"({counts['open']:,} still open at the year's end), scale {scale}, from {path}; "
              f"produced in {produce_s:.0f}s")

        results: list[dict[str, Any]] = []
        idles: dict[str, dict[str, float]] = {}
        for store in stores:
            idles[store] = idle_rss(args, base, store, bootstrap, tmp)
            print(f"idle:  store {store}: RSS {idles[store]['rss_mb']:,.0f} MB")
            for mode in modes:
                r = run(args, base, store, mode, bootstrap, tmp, idles[store], counts)
                results.append(r)
                print(f"run:   store {store}, mode {mode}: caught up in {r['catch_up_s']:.0f}s, "
                      f"RSS {r['rss_mb']:,.0f} MB (peak {r['hwm_mb']:,.0f}), "
                      f"{r['bytes_per_dossier']:,.0f} bytes per dossier (load "
                      f"{r['load_average']:.1f}); {r['dossiers_in_memory']} dossiers in "
                      f"memory; RocksDB MB: {parts(r['store_memory_mb'])}")
    except KeyboardInterrupt:
        print("interrupted: stopping the workers and the broker", file=sys.stderr)
        return 130
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    head = ("store", "mode", "dossiers", "events", "catch-up s", "events/s", "RSS MB",
            "idle MB", "B/dossier", f"HCMC {HCMC_YEAR_DOSSIERS // 10**6}M GB", "disk MB")
    rows = [(r["store"], r["mode"], f"{r['dossiers']:,}", f"{r['events']:,}",
             f"{r['catch_up_s']:.0f}", f"{r['events_per_s']:,.0f}", f"{r['rss_mb']:,.0f}",
             f"{r['idle_rss_mb']:,.0f}", f"{r['bytes_per_dossier']:,.0f}",
             f"{r['hcmc_year_gb']:.1f}", f"{r['store_disk_mb']:,.1f}") for r in results]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    for row in (head, *rows):
        print("  ".join(f"{x:>{w}}" for x, w in zip(row, widths, strict=True)))
    print(f"goal: <= 200 bytes per tracked dossier; HCMC year {HCMC_YEAR_DOSSIERS / 1e6:.0f}M "
          f"dossiers, {HCMC_YEAR_EVENTS / 1e6:.0f}M events")
    summary = {"file": str(path), "simulator_scale": scale, "events": counts["events"],
               "dossiers": counts["dossiers"], "open_dossiers": counts["open"],
               "produce_s": produce_s, "settle_s": args.settle, "idle": idles, "runs": results,
               "hcmc_year_dossiers": HCMC_YEAR_DOSSIERS, "goal_bytes_per_dossier": 200}
    emit(summary, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
