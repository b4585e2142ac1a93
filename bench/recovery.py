"""Benchmark: how long a worker takes to process events again after a SIGKILL, with a large
state (by default 1,000,000 open dossiers).

    python bench/recovery.py --dossiers 1000000

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
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from live_pipeline import REPO, group_progress, produce, settings_for, worker_env

from bando.infra import KafkaBroker, ensure_project_topics
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dossiers", type=int, default=1_000_000)
    ap.add_argument("--bootstrap", help="use a running broker instead of starting one")
    ap.add_argument("--py-spy", type=int, default=0, metavar="SECONDS",
                    help="record the restarted worker with py-spy from its start (raw stacks)")
    ap.add_argument("--log-level", default="warning",
                    help="of the restarted worker (info shows the bulk loads' timings)")
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
    env = worker_env(s)
    worker = None
    try:
        ensure_project_topics(bootstrap, s)
        lines = received_events(args.dossiers, tag)
        produce_s = asyncio.run(produce(bootstrap, s.events_topic, lines))
        print(f"state:    {len(lines)} dossier.received (all open) produced in {produce_s:.1f}s")
        del lines

        cmd = [sys.executable, "-m", "bando.cli", "worker"]
        t0 = time.perf_counter()
        worker = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(tmp / "w1.log", "wb"),  # noqa: SIM115
                                  stderr=subprocess.STDOUT)
        while True:
            done, total = asyncio.run(group_progress(bootstrap, s.app_id, s.events_topic))
            if total and done >= total:
                break
            if worker.poll() is not None or time.perf_counter() - t0 > 1800:
                raise SystemExit(f"first worker did not finish ({done}/{total}); see {tmp}")
            time.sleep(1.0)
        built = time.perf_counter() - t0
        print(f"build:    1 worker consumed and committed them in {built:.0f}s "
              f"({total / built:,.0f} events/s)")
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
            "event_id": f"{tag}-probe", "type": "dossier.received",
            "occurred_at": "2024-01-29T10:00:00+07:00", "unit_id": unit,
            "dossier_id": f"{tag}-probe", "procedure_id": "proc-probe", "channel": "online",
            "due_at": "2025-06-30T17:00:00+07:00", "online_eligible": True,
            "full_online": True, "fee_required": False, "reused_data": True,
            "pds_linked": True, "population_db": True})
        partition, offset = asyncio.run(produce_probe(bootstrap, s.events_topic, probe, unit))
        seen = asyncio.run(wait_for_score(bootstrap, s.scores_topic, unit, partition, offset,
                                          t_restart + 600))
        print(f"recovery: SIGKILL, restart -> probe event scored in {seen - t_restart:.1f}s "
              f"({args.dossiers} open dossiers in state; goal 30 s)")
        if args.py_spy:
            spy.wait(args.py_spy + 30)
            print(f"py-spy stacks: {tmp / 'w2.pyspy.txt'}; worker log: {tmp / 'w2.log'}")
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(30)
        if broker:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
