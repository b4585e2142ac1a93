"""Benchmark: the live pipeline on the real broker, with its ceiling baseline, same run.

    python bench/live_pipeline.py --events 200000

1. Writes N simulated events (``bando simulate file``), produces them to a fresh topic.
2. Ceiling: a plain aiokafka consume-and-decode (orjson) loop over that topic.
3. Bando: one ``bando worker`` process from an empty state; time from its first consumed
   offset to the group's committed offsets reaching the end, and to the last unit score.
Prints events/s for each and the ratio. Figures, not assertions: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import fields
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bando.infra import KafkaBroker, ensure_project_topics
from bando.settings import Settings

REPO = Path(__file__).resolve().parents[1]


async def produce(bootstrap: str, topic: str, lines: list[bytes]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=512 * 1024, acks=1)
    await producer.start()
    t0 = time.perf_counter()
    try:
        pending = []
        for line in lines:
            try:
                key = orjson.loads(line).get("unit_id") or "-"
            except orjson.JSONDecodeError:
                key = "-"
            pending.append(await producer.send(topic, line, key=key.encode()))
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - t0


async def ceiling(bootstrap: str, topic: str, total: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=16 << 20)
    await consumer.start()
    n = 0
    t0 = None
    try:
        while n < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10000)
            if t0 is None and batch:
                t0 = time.perf_counter()
            for msgs in batch.values():
                for m in msgs:
                    orjson.loads(m.value)
                    n += 1
    finally:
        await consumer.stop()
    return time.perf_counter() - (t0 or time.perf_counter())


async def group_progress(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        except Exception:  # the group's coordinator is not there before the worker joins
            return 0, 0
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        done = sum(offsets[tp].offset for tp in tps if tp in offsets and offsets[tp].offset > 0)
        return done, sum(ends.values())
    finally:
        await consumer.stop()
        await admin.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--bootstrap", help="use a running broker instead of starting one")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bando-bench-"))
    broker = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        broker = KafkaBroker(data_dir=tmp / "kafka", partitions=4)
        broker.start()
        bootstrap = broker.bootstrap
    tag = uuid.uuid4().hex[:6]
    s = Settings.from_env(env={}, kafka_bootstrap=bootstrap, partitions=4,
                          events_topic=f"bench-events-{tag}", dlq_topic=f"bench-dlq-{tag}",
                          scores_topic=f"bench-scores-{tag}",
                          rank_changes_topic=f"bench-rank-{tag}",
                          band_changes_topic=f"bench-band-{tag}", app_id=f"bench-{tag}")
    try:
        ensure_project_topics(bootstrap, s)
        path = tmp / "events.jsonl"
        days = max(1, int(args.events / 362_000 * 31) + 1)
        end = time.strftime("%Y-%m-%d", time.gmtime(time.mktime((2024, 1, 1 + days, 0, 0, 0,
                                                                   0, 0, 0))))
        subprocess.run([sys.executable, "-m", "bando.cli", "simulate", "file", "--out",
                        str(path), "--start", "2024-01-01", "--end", end], check=True,
                       capture_output=True)
        lines = path.read_bytes().splitlines()[: args.events]
        n = len(lines)
        produce_s = asyncio.run(produce(bootstrap, s.events_topic, lines))
        print(f"events: {n}  produced in {produce_s:.1f}s ({n / produce_s:,.0f}/s)")
        ceil_s = asyncio.run(ceiling(bootstrap, s.events_topic, n))
        print(f"ceiling  aiokafka consume+orjson decode: {n / ceil_s:,.0f} events/s")

        env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
        for f in fields(s):
            env["BANDO_" + f.name.upper()] = str(getattr(s, f.name))
        log = open(tmp / "worker.log", "wb")  # noqa: SIM115
        t_start = time.perf_counter()
        worker = subprocess.Popen([sys.executable, "-m", "bando.cli", "worker"], cwd=REPO,
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        t_first = None
        try:
            while True:
                done, total = asyncio.run(group_progress(bootstrap, s.app_id, s.events_topic))
                now = time.perf_counter()
                if done and t_first is None:
                    t_first = now
                if total and done >= total:
                    break
                if now - t_start > 900:
                    raise SystemExit(f"worker did not finish: {done}/{total}")
                time.sleep(0.5)
            t_done = time.perf_counter()
        finally:
            worker.terminate()
            worker.wait(30)
        busy = t_done - (t_first or t_start)
        print(f"bando    1 worker, start to caught up: {t_done - t_start:.1f}s; "
              f"first commit to caught up {busy:.1f}s: {n / busy:,.0f} events/s "
              f"(commit interval 1 s blurs short runs)")
        print(f"ratio    bando / ceiling: {(n / busy) / (n / ceil_s):.2f}")
    finally:
        if broker:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
