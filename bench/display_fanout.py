"""Benchmark: one display gateway process feeding many push-stream screens.

    python bench/display_fanout.py [--clients 500] [--messages 300] [--rate 10]
                                   [--bootstrap HOST:PORT] [--redis-url URL] [--json]

The whole path is real: a ``unit-scores`` message is produced to Kafka, ``bando board`` (its own
process) writes it to Redis and publishes it, ``bando display`` (its own process, the one being
measured) fans it out over SSE to ``--clients`` concurrent connections held by this process.
For every message we take the time from just before it is produced to its arrival at each
client (the same clock: producer and clients live here), and to its appearance on the Redis
channel (what the writer costs, before the fan-out).

Memory per client is the gateway's resident-set growth from a warmed-up process with one
screen to the same process holding every screen, divided by the number of screens.

Without ``--bootstrap`` / ``--redis-url`` a throwaway broker and Redis are started
(``bando.infra``). This is a measurement, not a test: it prints figures and exits 0 unless the
run itself broke.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

REPO = Path(__file__).resolve().parents[1]
SEQ = re.compile(rb'"name":"bench#(\d+)"')
WINDOW = "month:2024-04"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def score(seq: int, unit: int, as_of_s: int) -> dict[str, Any]:
    as_of = time.strftime("%Y-%m-%dT%H:%M:%S+07:00", time.gmtime(as_of_s + 7 * 3600))
    return {
        "unit_id": f"district-bench-{unit:02d}",
        "name": f"bench#{seq}",
        "peer_group": "district",
        "window": WINDOW,
        "as_of": as_of,
        "model": "vn766@1",
        "total": round(50 + (seq * 7919 % 5000) / 100, 2),
        "band": "average",
        "rank": 1 + seq % 22,
        "peer_count": 22,
        "groups": {},
        "indicators": {},
        "input": {"topic": "procedure-events", "partition": 0, "offset": seq},
    }


class Client(asyncio.Protocol):
    """One screen, as a bare asyncio protocol so the client side costs almost nothing and the
    figures are the gateway's: it notes when each bench message first shows up in its bytes."""

    def __init__(self, arrivals: dict[int, list[float]], port: int):
        self.arrivals = arrivals
        self.port = port
        self.snapshot = asyncio.Event()
        self.seen: set[int] = set()
        self.tail = b""
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(
            b"GET /events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Accept: text/event-stream\r\n\r\n" % self.port
        )

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buf = self.tail + data
        if not self.snapshot.is_set():
            if b"event: snapshot" in buf:
                self.snapshot.set()
            self.tail = buf[-64:]
            return
        for m in SEQ.finditer(buf):
            seq = int(m.group(1))
            if seq not in self.seen:
                self.seen.add(seq)
                self.arrivals.setdefault(seq, []).append(now)
        self.tail = buf[-64:]  # a name split between two reads is found next time

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


def start_child(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "bando.cli", *args],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def redis_watch(url: str, channel: str, seen: dict[int, float], ready: asyncio.Event):
    redis = Redis.from_url(url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    ready.set()
    try:
        while True:
            msg = await pubsub.get_message(timeout=1.0)
            if msg and msg["type"] == "message":
                m = SEQ.search(msg["data"])
                if m:
                    seen.setdefault(int(m.group(1)), time.perf_counter())
    finally:
        await pubsub.aclose()
        await redis.aclose()


async def bench(args: argparse.Namespace, bootstrap: str, redis_url: str, tmp: Path) -> dict:
    prefix = f"bench:{os.getpid()}:board"
    topic = f"unit-scores-bench-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    env |= {
        "BANDO_KAFKA_BOOTSTRAP": bootstrap,
        "BANDO_REDIS_URL": redis_url,
        "BANDO_SCORES_TOPIC": topic,
        "BANDO_RANK_CHANGES_TOPIC": topic + "-rank",
        "BANDO_BAND_CHANGES_TOPIC": topic + "-band",
    }
    from bando.infra import create_topics_async

    await create_topics_async(bootstrap, [topic, topic + "-rank", topic + "-band"], partitions=4)
    port = args.port or _free_port()
    writer = start_child(["board", "--prefix", prefix], tmp / "board.log", env)
    gateway = start_child(
        [
            "display",
            "--prefix",
            prefix,
            "--port",
            str(port),
            "--max-screens",
            str(args.clients + 100),
        ],
        tmp / "gateway.log",
        env,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz")
        base = int(time.time()) - 86_400
        for i in range(22):  # a realistic board to snapshot: 22 rows
            await producer.send_and_wait(topic, key=b"k", value=orjson.dumps(score(-1, i, base)))
        arrivals: dict[int, list[float]] = {}
        loop = asyncio.get_running_loop()
        transports: list[asyncio.BaseTransport] = []

        async def connect(client: Client) -> None:
            transport, _ = await loop.create_connection(lambda: client, "127.0.0.1", port)
            transports.append(transport)

        warm = Client({}, port)
        await connect(warm)
        await asyncio.wait_for(warm.snapshot.wait(), 30)
        await asyncio.sleep(1.0)
        rss0 = rss_kib(gateway.pid)
        clients = [Client(arrivals, port) for _ in range(args.clients)]
        t_conn = time.perf_counter()
        for i in range(0, len(clients), 50):  # in waves, as screens come up in a building
            await asyncio.gather(*(connect(c) for c in clients[i : i + 50]))
        await asyncio.wait_for(asyncio.gather(*(c.snapshot.wait() for c in clients)), 120)
        connect_s = time.perf_counter() - t_conn
        await asyncio.sleep(2.0)
        rss1 = rss_kib(gateway.pid)

        seen_redis: dict[int, float] = {}
        ready = asyncio.Event()
        tasks.append(
            asyncio.create_task(redis_watch(redis_url, f"{prefix}:changes", seen_redis, ready))
        )
        await ready.wait()
        sent: dict[int, float] = {}
        interval = 1.0 / args.rate
        t_start = time.perf_counter()
        for seq in range(args.messages):
            target = t_start + seq * interval
            await asyncio.sleep(max(0.0, target - time.perf_counter()))
            value = orjson.dumps(score(seq, seq % 22, base + 60 + seq))
            sent[seq] = time.perf_counter()
            await producer.send(topic, key=f"u{seq % 22}".encode(), value=value)
        deadline = time.perf_counter() + 15
        while time.perf_counter() < deadline:
            if all(len(arrivals.get(s, ())) >= args.clients for s in sent):
                break
            await asyncio.sleep(0.2)
        cpu = _cpu_seconds(gateway.pid)
        rss2 = rss_kib(gateway.pid)
        to_clients = [(t - sent[s]) * 1000 for s, ts in arrivals.items() if s in sent for t in ts]
        last_client = [(max(ts) - sent[s]) * 1000 for s, ts in arrivals.items() if s in sent]
        to_redis = [(t - sent[s]) * 1000 for s, t in seen_redis.items() if s in sent]
        fanout = [
            (max(arrivals[s]) - seen_redis[s]) * 1000
            for s in sent
            if s in seen_redis and s in arrivals
        ]
        expected = args.clients * len(sent)
        for tr in transports:
            tr.close()
        return {
            "clients": args.clients,
            "messages": len(sent),
            "rate_per_s": args.rate,
            "deliveries": len(to_clients),
            "deliveries_expected": expected,
            "connect_all_s": round(connect_s, 2),
            "delay_ms_p50": round(pct(to_clients, 50), 1),
            "delay_ms_p99": round(pct(to_clients, 99), 1),
            "delay_ms_max": round(max(to_clients, default=float("nan")), 1),
            "last_client_ms_p99": round(pct(last_client, 99), 1),
            "to_redis_ms_p50": round(pct(to_redis, 50), 1),
            "to_redis_ms_p99": round(pct(to_redis, 99), 1),
            "fanout_ms_p50": round(pct(fanout, 50), 1),
            "fanout_ms_p99": round(pct(fanout, 99), 1),
            "gateway_rss_mib_one_screen": round(rss0 / 1024, 1),
            "gateway_rss_mib_all_screens": round(rss1 / 1024, 1),
            "gateway_rss_mib_after_run": round(rss2 / 1024, 1),
            "memory_per_client_kib": round((rss1 - rss0) / args.clients, 1),
            "gateway_cpu_s": cpu,
            "mean_delay_ms": round(statistics.fmean(to_clients), 1) if to_clients else None,
        }
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
        for proc in (gateway, writer):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        parts = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return round((int(parts[11]) + int(parts[12])) / ticks, 2)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0, help="unit-scores messages per second")
    parser.add_argument("--bootstrap", help="an existing Kafka (default: start one)")
    parser.add_argument("--redis-url", help="an existing Redis (default: start one)")
    parser.add_argument("--port", type=int, default=0, help="gateway port (default: any free)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    from bando.infra import KafkaBroker, RedisServer

    with tempfile.TemporaryDirectory(prefix="bando-bench-") as tmp_name:
        tmp = Path(tmp_name)
        broker = redis = None
        try:
            if not args.bootstrap:
                broker = KafkaBroker(data_dir=tmp / "kafka", partitions=4)
                broker.start()
            if not args.redis_url:
                redis = RedisServer(data_dir=tmp / "redis")
                redis.start()
            bootstrap = args.bootstrap or broker.bootstrap  # type: ignore[union-attr]
            redis_url = args.redis_url or redis.url  # type: ignore[union-attr]
            result = asyncio.run(bench(args, bootstrap, redis_url, tmp))
        finally:
            if redis is not None:
                redis.stop()
            if broker is not None:
                broker.stop()
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for k, v in result.items():
            print(f"{k:<{width}}  {v}")
        ok = result["delay_ms_p99"] < 1000
        print(f"goal p99 < 1000 ms: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
