"""Benchmark: the live pipeline on the real broker, with its baselines, in one run.

    python bench/live_pipeline.py --events 400000
    python bench/live_pipeline.py --events 400000 --skip latency,naive --stores memory,rocksdb

1. Writes N simulated events (``bando simulate file``), produces them to a fresh topic.
2. Ceiling: a plain aiokafka consume-and-decode (orjson) loop over that topic.
3. Naive: ``bench/naive_faust_agent.py`` (one event at a time through a faust agent, a Table
   write and a full re-score per event) over the same topic, for ``--naive-seconds``.
4. Bando: one ``bando worker`` process from an empty state over the same topic; events/s from
   its first commit to its committed offsets reaching the end.
5. Latency: a fresh worker, events produced at a steady ``--rate`` for ``--latency-seconds``;
   for each ``unit-scores`` message, every event of that unit up to the message's ``input``
   offset not yet seen in an earlier message gets latency = message timestamp - the event's
   produce timestamp (both Kafka CreateTime, same machine). Prints p50/p99.
Figures, not assertions: the machine must be quiet for them to mean much.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

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


def worker_env(s: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    for f in fields(s):
        env["BANDO_" + f.name.upper()] = str(getattr(s, f.name))
    return env


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process now (``/proc``), in MB (0 if it is gone); ``VmHWM``: its
    peak so far."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int, threads: str = "") -> float:
    """User + system CPU time of a process so far (``/proc``; 0 if gone): all its threads, or
    those whose name starts with ``threads`` (e.g. "rocksdb")."""
    paths = [f"/proc/{pid}/stat"]
    if threads:
        try:
            paths = [f"/proc/{pid}/task/{t}/stat" for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            return 0.0
    total = 0
    for path in paths:
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                head, _, rest = fh.read().rpartition(")")
        except OSError:
            continue
        if head.partition("(")[2].startswith(threads):
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


LAST_RSS_MB = [0.0]  # run_until_caught_up: the process's RSS when it had caught up
LAST_CPU_S = [0.0, 0.0]  # and its CPU time: all threads, RocksDB's background threads


def run_until_caught_up(cmd: list[str], env: dict[str, str], bootstrap: str, group: str,
                        topic: str, log_path: Path, limit_s: float,
                        py_spy: int = 0) -> tuple[int, float, float]:
    """Run a consumer process over ``topic`` until its group has committed the end offsets or
    ``limit_s`` seconds passed since its first commit. -> (events committed after the first
    commit, seconds since the first commit, seconds from start to the first commit); its RSS
    then is left in ``LAST_RSS_MB[0]``."""
    log = open(log_path, "wb")  # noqa: SIM115
    t_start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    t_first, first_done, spy = None, 0, None
    try:
        while True:
            done, total = asyncio.run(group_progress(bootstrap, group, topic))
            now = time.perf_counter()
            if done and t_first is None:
                t_first, first_done = now, done
                if py_spy:
                    spy = subprocess.Popen(
                        ["py-spy", "record", "--pid", str(proc.pid), "-d", str(py_spy), "-r",
                         "200", "-f", "raw", "-o", str(log_path.with_suffix(".pyspy.txt"))],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if total and done >= total:
                break
            if t_first is not None and now - t_first > limit_s:
                break
            if proc.poll() is not None:
                raise SystemExit(f"{cmd[:3]} exited; see {log_path}")
            if now - t_start > 900:
                raise SystemExit(f"no progress: {done}/{total}; see {log_path}")
            time.sleep(0.5)
    finally:
        if spy is not None:
            spy.wait(py_spy + 30)
            print(f"py-spy stacks: {log_path.with_suffix('.pyspy.txt')}")
        LAST_RSS_MB[0] = rss_mb(proc.pid)
        LAST_CPU_S[:] = [cpu_seconds(proc.pid), cpu_seconds(proc.pid, "rocksdb")]
        proc.terminate()
        proc.wait(30)
    assert t_first is not None
    return done - first_done, now - t_first, t_first - t_start


async def produce_steady(bootstrap: str, topic: str, lines: list[bytes], rate: float,
                         seconds: float) -> dict[tuple[int, int], tuple[str, int]]:
    """Produce ``rate`` events/s for ``seconds``, in 10 ms ticks.
    -> {(partition, offset): (unit_id, produce timestamp ms)}."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1)
    await producer.start()
    sent: list[tuple[str, asyncio.Future]] = []
    try:
        per_tick = rate / 100
        t0 = time.perf_counter()
        i = 0
        due = 0.0
        while time.perf_counter() - t0 < seconds and i < len(lines):
            due += per_tick
            while due >= 1 and i < len(lines):
                line = lines[i]
                i += 1
                due -= 1
                unit = orjson.loads(line).get("unit_id")
                if not unit:
                    continue  # ticks: no unit score to wait for
                sent.append((unit, await producer.send(topic, line, key=unit.encode())))
            await asyncio.sleep(max(0.0, t0 + (i / rate) - time.perf_counter()))
        await producer.flush()
    finally:
        await producer.stop()
    out = {}
    for unit, fut in sent:
        md = fut.result()
        out[(md.partition, md.offset)] = (unit, md.timestamp)
    return out


async def read_scores(bootstrap: str, topic: str, idle_ms: int = 3000) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=idle_ms)
            if not batch:
                return out
            for msgs in batch.values():
                out.extend(msgs)
    finally:
        await consumer.stop()


def latencies(produced: dict[tuple[int, int], tuple[str, int]], scores: list[Any]) -> list[int]:
    """ms from an event's production to the first unit-scores message of its unit whose input
    offset covers it."""
    pending: dict[str, list[tuple[int, int]]] = {}  # unit -> sorted [(offset, produced ms)]
    for (_, offset), (unit, ts) in sorted(produced.items()):
        pending.setdefault(unit, []).append((offset, ts))
    out: list[int] = []
    for m in sorted(scores, key=lambda m: m.timestamp):
        msg = orjson.loads(m.value)
        queue = pending.get(msg["unit_id"])
        upto = (msg.get("input") or {}).get("offset")
        if not queue or upto is None:
            continue
        n = 0
        while n < len(queue) and queue[n][0] <= upto:
            out.append(m.timestamp - queue[n][1])
            n += 1
        del queue[:n]
    return out


def rank_stage(internal: list[Any], scores: list[Any]) -> list[int]:
    """ms from an internal ``<app>-unit-scored`` message to the ``unit-scores`` message that
    ranked it (the ranker stage alone): matched by the score's ``rank_basis`` offsets, unit
    and window."""
    by_offset = {m.offset: m for m in internal}
    out: list[int] = []
    for m in scores:
        msg = orjson.loads(m.value)
        first, last = ((msg.get("rank_basis") or {}).get("offsets") or [None, None])
        if first is None:
            continue
        for off in range(last, first - 1, -1):
            rec = by_offset.get(off)
            if rec is None:
                continue
            src = orjson.loads(rec.value)
            if src["unit_id"] == msg["unit_id"] and src["window"] == msg["window"]:
                out.append(m.timestamp - rec.timestamp)
                break
    return out


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def settings_for(bootstrap: str, tag: str) -> Settings:
    return Settings.from_env(env={}, kafka_bootstrap=bootstrap, partitions=4,
                             events_topic=f"bench-events-{tag}", dlq_topic=f"bench-dlq-{tag}",
                             scores_topic=f"bench-scores-{tag}",
                             rank_changes_topic=f"bench-rank-{tag}",
                             band_changes_topic=f"bench-band-{tag}", app_id=f"bench-{tag}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--bootstrap", help="use a running broker instead of starting one")
    ap.add_argument("--naive-seconds", type=float, default=60.0,
                    help="how long to run the naive baseline (it slows as state grows)")
    ap.add_argument("--rate", type=float, default=2000.0, help="latency run: events/s")
    ap.add_argument("--latency-seconds", type=float, default=60.0)
    ap.add_argument("--coalesce", type=float, default=0.25,
                    help="latency run: BANDO_COALESCE_SECONDS (a unit's update interval)")
    ap.add_argument("--throughput-coalesce", type=float,
                    help="throughput run: BANDO_COALESCE_SECONDS (default: the settings' 0.25 s)")
    ap.add_argument("--skip", default="", help="comma list of: naive,throughput,latency")
    ap.add_argument("--cpu-hogs", type=int, default=0, metavar="N",
                    help="latency run: N busy-loop processes alongside (a loaded machine)")
    ap.add_argument("--ranker-process", action="store_true",
                    help="latency run: the worker with BANDO_RANKER=off and a `bando ranker`")
    ap.add_argument("--py-spy", type=int, default=0, metavar="SECONDS",
                    help="record the bando worker with py-spy once it commits (raw stacks)")
    ap.add_argument("--stores", default="memory",
                    help="comma list of BANDO_STORE values, each measured in turn on the same "
                         "events (e.g. memory,rocksdb)")
    args = ap.parse_args()
    stores = [x for x in args.stores.split(",") if x]
    skip = set(filter(None, args.skip.split(",")))
    tmp = Path(tempfile.mkdtemp(prefix="bando-bench-"))
    broker = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        broker = KafkaBroker(data_dir=tmp / "kafka", partitions=4)
        broker.start()
        bootstrap = broker.bootstrap
    s = settings_for(bootstrap, uuid.uuid4().hex[:6]).with_(data_dir=str(tmp / "data"))
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
        ceiling_rate = n / ceil_s
        print(f"ceiling  aiokafka consume+orjson decode: {ceiling_rate:,.0f} events/s")

        naive_rate = None
        if "naive" not in skip:
            group = f"naive-{s.app_id}"
            done, secs, _ = run_until_caught_up(
                [sys.executable, str(REPO / "bench" / "naive_faust_agent.py"), "--bootstrap",
                 bootstrap, "--topic", s.events_topic, "--app-id", group, "--partitions", "4"],
                worker_env(s), bootstrap, group, s.events_topic, tmp / "naive.log",
                args.naive_seconds)
            naive_rate = done / secs
            print(f"naive    faust agent, one event at a time: {naive_rate:,.0f} events/s "
                  f"({done} events in the {secs:.0f}s after its first commit)")

        for i, store in enumerate(stores if "throughput" not in skip else ()):
            ts = s.with_(app_id=f"{s.app_id}-{i}-{store}", store=store)
            if args.throughput_coalesce is not None:
                ts = ts.with_(coalesce_seconds=args.throughput_coalesce)
            done, secs, startup = run_until_caught_up(
                [sys.executable, "-m", "bando.cli", "worker"], worker_env(ts), bootstrap,
                ts.app_id, s.events_topic, tmp / f"worker-{store}.log", 900, args.py_spy)
            rate = done / secs
            print(f"bando    1 worker, store {store}: {rate:,.0f} events/s ({done} events from "
                  f"its first commit to caught up in {secs:.1f}s; {startup:.1f}s to the first "
                  f"commit; commit interval 1 s, coalesce interval {ts.coalesce_seconds} s); "
                  f"RSS at the end {LAST_RSS_MB[0]:,.0f} MB, "
                  f"CPU {LAST_CPU_S[0] * 1e6 / n:,.0f} us per event (RocksDB's own threads "
                  f"{LAST_CPU_S[1] * 1e6 / n:,.1f}; {n:,} events, start-up included)")
            print(f"ratio    bando ({store}) / ceiling: {rate / ceiling_rate:.2f}")
            if naive_rate:
                print(f"ratio    bando ({store}) / naive: {rate / naive_rate:.1f}")

        for store in stores if "latency" not in skip else ():
            ls = settings_for(bootstrap, uuid.uuid4().hex[:6]).with_(
                coalesce_seconds=args.coalesce, store=store, data_dir=str(tmp / "data"))
            ensure_project_topics(bootstrap, ls)
            log = open(tmp / "latency-worker.log", "wb")  # noqa: SIM115
            if args.ranker_process:
                ls = ls.with_(ranker="off")
            worker = subprocess.Popen([sys.executable, "-m", "bando.cli", "worker"], cwd=REPO,
                                      env=worker_env(ls), stdout=log, stderr=subprocess.STDOUT)
            # other processes of the run: a `bando ranker`, busy loops
            others = [subprocess.Popen([sys.executable, "-m", "bando.cli", "ranker"], cwd=REPO,
                                       env=worker_env(ls), stdout=log, stderr=subprocess.STDOUT)
                      for _ in range(int(args.ranker_process))]
            others += [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                       for _ in range(args.cpu_hogs)]
            try:
                # ready = the group has committed a first tick
                tick = orjson.dumps({"event_id": f"warm-{ls.app_id}", "type": "clock.tick",
                                     "occurred_at": "2024-01-01T00:00:00+07:00"})
                asyncio.run(produce(bootstrap, ls.events_topic, [tick]))
                t0 = time.perf_counter()
                while not asyncio.run(group_progress(bootstrap, ls.app_id, ls.events_topic))[0]:
                    if time.perf_counter() - t0 > 120:
                        raise SystemExit("latency worker did not start")
                    time.sleep(0.5)
                ours = [worker.pid] + [p.pid for p in others[:int(args.ranker_process)]]
                cpu0, t_cpu = sum(map(cpu_seconds, ours)), time.perf_counter()
                produced = asyncio.run(produce_steady(bootstrap, ls.events_topic, lines,
                                                      args.rate, args.latency_seconds))
                cpu = (sum(map(cpu_seconds, ours)) - cpu0) / (time.perf_counter() - t_cpu)
                time.sleep(5)
                scores = asyncio.run(read_scores(bootstrap, ls.scores_topic))
                internal = asyncio.run(read_scores(bootstrap, f"{ls.app_id}-unit-scored"))
            finally:
                for other in others:
                    other.terminate()
                    other.wait(30)
                worker.terminate()
                worker.wait(30)
            lat = latencies(produced, scores)
            if not lat:
                raise SystemExit("no latency samples")
            print(f"latency  store {store}: {len(produced)} events at {args.rate:,.0f}/s for "
                  f"{args.latency_seconds:.0f}s: event -> unit-scores p50 {pct(lat, 0.5):.0f} ms, "
                  f"p99 {pct(lat, 0.99):.0f} ms, max {max(lat)} ms ({len(lat)} events matched, "
                  f"coalesce interval {ls.coalesce_seconds} s, {args.cpu_hogs} CPU hogs; load "
                  f"{os.getloadavg()[0]:.1f})")
            print(f"cpu      worker{' + ranker' if args.ranker_process else ''}: {cpu:.2f} "
                  "of a core while events were produced")
            scorer_stage = latencies(produced, internal)
            if scorer_stage:
                print(f"stage    event -> internal unit-scored (scorer + coalescing): p50 "
                      f"{pct(scorer_stage, 0.5):.0f} ms, p99 {pct(scorer_stage, 0.99):.0f} ms")
            stage = rank_stage(internal, scores)
            if stage:
                print(f"stage    internal unit-scored -> unit-scores (ranker): p50 "
                      f"{pct(stage, 0.5):.0f} ms, p90 {pct(stage, 0.9):.0f} ms, p99 "
                      f"{pct(stage, 0.99):.0f} ms, max {max(stage)} ms ({len(stage)} scores)")
    finally:
        if broker:
            broker.stop()
        shutil.rmtree(tmp / "data", ignore_errors=True)  # the workers' local stores
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
