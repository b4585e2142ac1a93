"""Benchmark: how long a worker takes to process events again after a SIGKILL, with a large
state (by default 1,000,000 open dossiers).

    python bench/recovery.py --dossiers 1000000
    python bench/recovery.py --dossiers 200000 --stores memory,rocksdb

1. Generates ``--dossiers`` ``dossier.received`` events (due dates far ahead: all stay open),
   spread over the catalog's units, and produces them to a fresh topic.
2. Starts ``bando worker``; waits until its group has committed the end of the topic (the
   changelogs are flushed before a commit), prints the build rate.
3. SIGKILLs it, starts a new worker on the same group, and at once produces one probe event
   (a new dossier of one unit). Prints the time from the restart to the first ``unit-scores``
   message of that unit whose ``input`` offset covers the probe: changelog recovery, rebuild
   of the running counts, and processing again.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from live_pipeline import REPO, group_progress, produce, rss_mb, settings_for, worker_env

from bando.infra import KafkaBroker, ensure_project_topics
from bando.settings import Settings
from scoring.catalog import load_catalog


def received_events(n: int, tag: str) -> list[bytes]:
    units = [u.unit_id for u in load_catalog().units]
    out = []
    for i in range(n):
        unit = units[i % len(units)]
        minute = i * 40_000 // max(n, 1)  # spread over ~4 weeks of January 2024
        at = f"2024-01-{1 + minute // 1440:02d}T{minute // 60 % 24:02d}:{minute % 60:02d}:00+07:00"
        out.append(orjson.dumps({
            "event_id": f"{tag}-r{i}", "type": "dossier.received", "occurred_at": at,
            "unit_id": unit, "dossier_id": f"{tag}-d{i}", "procedure_id": f"proc-{i % 7}",
            "channel": "online" if i % 3 else "in_person", "due_at": "2025-06-30T17:00:00+07:00",
            "online_eligible": i % 2 == 0, "full_online": i % 6 == 2, "fee_required": i % 5 == 0,
            "reused_data": i % 4 == 0, "pds_linked": i % 3 == 0, "population_db": i % 2 == 1,
        }))
    return out


async def produce_probe(bootstrap: str, topic: str, line: bytes, key: str) -> tuple[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1)
    await producer.start()
    try:
        md = await producer.send_and_wait(topic, line, key=key.encode())
        return md.partition, md.offset
    finally:
        await producer.stop()


async def wait_for_score(bootstrap: str, topic: str, unit: str, partition: int, offset: int,
                         deadline: float) -> float:
    """perf_counter time at which a unit-scores message covering the probe was read."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        while time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                for m in msgs:
                    msg = orjson.loads(m.value)
                    inp = msg.get("input") or {}
                    if (msg["unit_id"] == unit and inp.get("partition") == partition
                            and (inp.get("offset") or -1) >= offset):
                        return time.perf_counter()
        raise SystemExit("no score covering the probe before the deadline")
    finally:
        await consumer.stop()


def disk_mb(s: Settings) -> float:
    return sum(f.stat().st_size for f in Path(s.data_dir).rglob("*") if f.is_file()) / 2**20


def run_store(args: argparse.Namespace, s: Settings, store: str, bootstrap: str, tmp: Path,
              tag: str, n: int) -> subprocess.Popen[bytes]:
    """Build the state with one worker of ``store``, SIGKILL it, restart, time the probe.
    -> the restarted worker (still running: the caller stops it)."""
    env = worker_env(s)
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "bando.cli", "worker"]
    t0 = time.perf_counter()
    worker = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(tmp / "w1.log", "wb"),  # noqa: SIM115
                              stderr=subprocess.STDOUT)
    try:
        while True:
            done, total = asyncio.run(group_progress(bootstrap, s.app_id, s.events_topic))
            if total and done >= total:
                break
            if worker.poll() is not None or time.perf_counter() - t0 > 1800:
                raise SystemExit(f"first worker did not finish ({done}/{total}); see {tmp}")
            time.sleep(1.0)
    except BaseException:
        worker.kill()
        worker.wait(30)
        raise
    built = time.perf_counter() - t0
    time.sleep(3.0)  # the last acknowledgements written locally (rocksdb)
    rss = rss_mb(worker.pid)
    print(f"build:    store {store}: 1 worker consumed and committed them in {built:.0f}s "
          f"({total / built:,.0f} events/s); RSS {rss:,.0f} MB ({rss * 2**20 / n:,.0f} bytes "
          f"per dossier and event, process included); local store {disk_mb(s):,.0f} MB")
    worker.send_signal(signal.SIGKILL)
    worker.wait(30)

    t_restart = time.perf_counter()
    worker = subprocess.Popen(cmd + ["--log-level", args.log_level], cwd=REPO, env=env,
                              stdout=open(tmp / "w2.log", "wb"),  # noqa: SIM115
                              stderr=subprocess.STDOUT)
    if args.py_spy:
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(worker.pid), "-d",
                                str(args.py_spy), "-r", "200", "-f", "raw", "-o",
                                str(tmp / "w2.pyspy.txt")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    unit = load_catalog().units[0].unit_id
    probe = orjson.dumps({
        "event_id": f"{tag}-{s.app_id}-probe", "type": "dossier.received",
        "occurred_at": "2024-01-29T10:00:00+07:00", "unit_id": unit,
        "dossier_id": f"{tag}-{s.app_id}-probe", "procedure_id": "proc-probe", "channel": "online",
        "due_at": "2025-06-30T17:00:00+07:00", "online_eligible": True,
        "full_online": True, "fee_required": False, "reused_data": True,
        "pds_linked": True, "population_db": True})
    partition, offset = asyncio.run(produce_probe(bootstrap, s.events_topic, probe, unit))
    seen = asyncio.run(wait_for_score(bootstrap, s.scores_topic, unit, partition, offset,
                                      t_restart + 600))
    rss = rss_mb(worker.pid)
    print(f"recovery: store {store}: SIGKILL, restart -> probe event scored in "
          f"{seen - t_restart:.1f}s ({args.dossiers} open dossiers in state; goal 30 s); "
          f"RSS then {rss:,.0f} MB ({rss * 2**20 / n:,.0f} bytes per dossier and event)")
    if args.py_spy:
        spy.wait(args.py_spy + 30)
        print(f"py-spy stacks: {tmp / 'w2.pyspy.txt'}; worker log: {tmp / 'w2.log'}")
    if args.lose_store and store != "memory":
        # a lost disk: SIGKILL again, delete the local store, everything from the changelogs
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        shutil.rmtree(s.data_dir)
        t_restart = time.perf_counter()
        worker = subprocess.Popen(cmd + ["--log-level", args.log_level], cwd=REPO, env=env,
                                  stdout=open(tmp / "w3.log", "wb"),  # noqa: SIM115
                                  stderr=subprocess.STDOUT)
        lost = orjson.loads(probe)
        lost["event_id"] = lost["dossier_id"] = f"{tag}-{s.app_id}-probe-lost"
        partition, offset = asyncio.run(produce_probe(bootstrap, s.events_topic,
                                                      orjson.dumps(lost), unit))
        seen = asyncio.run(wait_for_score(bootstrap, s.scores_topic, unit, partition, offset,
                                          t_restart + 600))
        print(f"recovery: store {store}, local store deleted: SIGKILL, restart -> probe scored "
              f"in {seen - t_restart:.1f}s (everything from the changelogs)")
    return worker


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dossiers", type=int, default=1_000_000)
    ap.add_argument("--bootstrap", help="use a running broker instead of starting one")
    ap.add_argument("--py-spy", type=int, default=0, metavar="SECONDS",
                    help="record the restarted worker with py-spy from its start (raw stacks)")
    ap.add_argument("--log-level", default="warning",
                    help="of the restarted worker (info shows the bulk loads' timings)")
    ap.add_argument("--lose-store", action="store_true",
                    help="disk stores: then SIGKILL again, delete the store, time the restart")
    ap.add_argument("--stores", default="memory",
                    help="comma list of BANDO_STORE values, each measured in turn on the same "
                         "events (e.g. memory,rocksdb)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bando-recovery-"))
    broker = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        broker = KafkaBroker(data_dir=tmp / "kafka", partitions=4)
        broker.start()
        bootstrap = broker.bootstrap
    tag = uuid.uuid4().hex[:6]
    s = settings_for(bootstrap, tag)
    worker: subprocess.Popen[bytes] | None = None
    try:
        ensure_project_topics(bootstrap, s)
        lines = received_events(args.dossiers, tag)
        produce_s = asyncio.run(produce(bootstrap, s.events_topic, lines))
        print(f"state:    {len(lines)} dossier.received (all open) produced in {produce_s:.1f}s")
        total_n = len(lines)
        del lines

        for i, store in enumerate(x for x in args.stores.split(",") if x):
            if worker is not None and worker.poll() is None:
                worker.terminate()
                worker.wait(30)
            ws = s.with_(app_id=f"{s.app_id}-{i}-{store}", store=store,
                         data_dir=str(tmp / f"data-{i}"), scores_topic=f"{s.scores_topic}-{i}")
            ensure_project_topics(bootstrap, ws)
            worker = run_store(args, ws, store, bootstrap, tmp / f"{i}-{store}", tag, total_n)
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(30)
        if broker:
            broker.stop()
        for data in tmp.glob("data-*"):
            shutil.rmtree(data, ignore_errors=True)  # the workers' local stores
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
