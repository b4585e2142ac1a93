"""Soak: a steady stream for minutes, faults on a schedule; memory, lag and the final truth.

    python bench/soak.py                         # the long run: 10 minutes, a fault every 40 s
    python bench/soak.py --duration 1800         # half an hour
    python bench/soak.py --duration 120 --fault-every 25 --json report.json   # CI's run

It starts its own Kafka broker and Redis (loopback, temporary directory), one ``bando worker``
and one ``bando board``, then produces simulated HCMC activity (with chaos: bad lines,
duplicates, bounded shuffle) at ``--rate`` messages/s. Every ``--fault-every`` seconds it
injects the next fault of the cycle: SIGKILL the worker (restarted 1 s later), SIGKILL Redis
(restarted with its data 3 s later), SIGKILL the broker (restarted with its data 3 s later).
Every second it samples the worker's and the board writer's resident memory and the
worker group's lag; a fault counts as recovered when everything that was in Kafka when it
struck has been processed since (worker and broker faults: the group's committed offsets;
Redis: the board's position stored in Redis).

At the end it sends a final clock tick to every partition and waits for the lag to reach zero,
then compares the latest ``unit-scores`` and the board in Redis with ``bando score`` over the
exact messages produced. The run passes (exit status 0) when: scores and board equal the
truth; the lag returned to zero; every fault was recovered from; and memory stayed flat (the
board writer, never restarted, grew less than ``--max-growth-mb``; no worker exceeded
``--max-rss-mb``). ``tests/reliability/test_fault_soak.py`` runs the short version in CI and
checks this report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bando.infra import KafkaBroker, RedisServer, ensure_project_topics
from bando.infra.ports import pdeathsig_prefix
from bando.settings import Settings
from bando.simulator import Chaos, Generator, messages, read_catalog
from scoring.timeutil import format_ts, parse_ts

REPO = Path(__file__).resolve().parents[1]
FAULTS = ("worker", "redis", "broker")
PREFIX = "soak:board"


# -- processes ----------------------------------------------------------------------------------

class Proc:
    """A ``bando`` subcommand as a child process (its own group, so SIGKILL takes it all)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path):
        self.name, self.args, self.env, self.log = name, args, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            # pdeathsig: if this script is killed, its children die with it
            self.proc = subprocess.Popen([*pdeathsig_prefix(), sys.executable, "-m",
                                          "bando.cli", *self.args],
                                         cwd=REPO, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int, wait: float = 20.0) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def rss_mb(self) -> float | None:
        if not self.alive():
            return None
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            return None
        return None


def child_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    for f in fields(settings):
        env["BANDO_" + f.name.upper()] = str(getattr(settings, f.name))
    return env


# -- producing ----------------------------------------------------------------------------------

@dataclass
class ProducerState:
    sent: int = 0
    resent: int = 0
    last_event_time: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    error: str = ""


def stream(partitions: int, seed: int, scale: float) -> Any:
    """(key, value, partition) of simulated activity with chaos, for as long as asked."""
    gen = Generator(read_catalog(), start="2024-01-01", end="2026-01-01", seed=seed,
                    rate_scale=scale, tick_every=3600)
    chaos = Chaos(bad_rate=0.01, dup_rate=0.02, shuffle_window=30)
    for _, key, value in messages(gen.events(), chaos, seed):
        if key is None:  # a tick: one copy per partition, as bando simulate live sends it
            tick = orjson.loads(value)
            base = tick["event_id"]
            for p in range(partitions):
                tick["event_id"] = f"{base}-p{p}"
                yield None, orjson.dumps(tick), p
        else:
            yield key, value, None


async def produce(bootstrap: str, topic: str, rate: float, partitions: int, seed: int,
                  scale: float, record: Path, state: ProducerState) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                acks="all", linger_ms=5, request_timeout_ms=60000)
    await producer.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    pending: list[tuple[asyncio.Future[Any], bytes | None, bytes, int | None]] = []

    async def settle(keep: int) -> None:
        while len(pending) > keep:
            fut, key, value, part = pending.pop(0)
            while True:
                try:
                    await fut
                    break
                except Exception:  # noqa: BLE001 - an outage outlived the timeout: again
                    state.resent += 1
                    fut = await producer.send(topic, value, key=key, partition=part)

    try:
        with open(record, "wb") as out:
            for i, (key, value, part) in enumerate(stream(partitions, seed, scale)):
                if state.stop.is_set():
                    break
                delay = t0 + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                out.write(value + b"\n")  # the truth file: every message, in send order
                pending.append((await producer.send(topic, value, key=key, partition=part),
                                key, value, part))
                state.sent += 1
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
                    ts = parse_ts(orjson.loads(value).get("occurred_at"))
                    if ts and ts > state.last_event_time:
                        state.last_event_time = ts
                if len(pending) > 1000:
                    await settle(500)
        await settle(0)
    finally:
        await producer.stop()


def producer_thread(bootstrap: str, topic: str, rate: float, partitions: int, seed: int,
                    scale: float, record: Path, state: ProducerState) -> threading.Thread:
    def run() -> None:
        try:
            asyncio.run(produce(bootstrap, topic, rate, partitions, seed, scale, record, state))
        except BaseException as exc:  # noqa: BLE001 - reported in the result
            state.error = repr(exc)
        finally:
            state.done.set()

    thread = threading.Thread(target=run, daemon=True, name="soak-producer")
    thread.start()
    return thread


async def _send_ticks(bootstrap: str, topic: str, partitions: int, at: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for p in range(partitions):
            tick = {"event_id": f"soak-final-{p}", "type": "clock.tick", "occurred_at": at}
            await producer.send_and_wait(topic, orjson.dumps(tick), partition=p)
    finally:
        await producer.stop()


# -- observing ----------------------------------------------------------------------------------

async def _positions(bootstrap: str, group: str, topics: list[str]
                     ) -> dict[str, tuple[int, int]]:
    """topic -> (offsets committed by ``group``, end offsets), summed over partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await consumer.start()
        committed = await admin.list_consumer_group_offsets(group)
        await consumer._client.force_metadata_update()
        out = {}
        for topic in topics:
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            ends = await consumer.end_offsets(tps)
            out[topic] = (sum(committed[tp].offset for tp in tps if tp in committed),
                          sum(ends.values()))
        return out
    finally:
        await consumer.stop()
        await admin.close()


def positions(bootstrap: str, group: str, topics: list[str]) -> dict[str, tuple[int, int]]:
    try:
        return asyncio.run(asyncio.wait_for(_positions(bootstrap, group, topics), 10))
    except Exception:  # noqa: BLE001 - the broker may be down on purpose
        return {}


def board_position(url: str, topic: str) -> int | None:
    """Sum of the next offsets of ``topic`` the board writer stored in Redis with its rows."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
    try:
        raw = client.hgetall(f"{PREFIX}:offsets")
    except Exception:  # noqa: BLE001 - Redis may be down on purpose
        return None
    finally:
        client.close()
    return sum(int(v) for k, v in raw.items() if _text(k).rpartition("/")[0] == topic)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _read_all(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1500, max_records=20000)
            if not batch:
                return out
            for recs in batch.values():
                out.extend(orjson.loads(r.value) for r in recs)
    finally:
        await consumer.stop()


def board_scores(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=3)
    try:
        out = {}
        for window in client.hgetall(f"{PREFIX}:current").values():
            w = _text(window)
            for unit, blob in client.hgetall(f"{PREFIX}:w:{w}:units").items():
                row = orjson.loads(blob)
                if row.get("score"):
                    out[(w, _text(unit))] = row["score"]
        return out
    finally:
        client.close()


def bando_score(events: Path, as_of: str, window: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bando.cli", "score", "--events", str(events),
                           "--as-of", as_of, "--window", window], cwd=REPO, check=True,
                          capture_output=True, timeout=600)
    return dict(orjson.loads(done.stdout))


def differences(truth: dict[str, Any], latest: dict[tuple[str, str], dict[str, Any]]
                ) -> list[str]:
    problems = []
    for unit in truth["units"]:
        msg = latest.get((truth["window"], unit["unit_id"]))
        if msg is None:
            if unit["total"] is not None:
                problems.append(f"{unit['unit_id']} {truth['window']}: missing")
            continue
        for k in ("total", "band", "rank", "peer_count", "indicators", "groups"):
            if msg.get(k) != unit[k]:
                problems.append(f"{unit['unit_id']} {truth['window']} {k}: "
                                f"{str(msg.get(k))[:60]} != {str(unit[k])[:60]}")
    return problems


# -- the run ------------------------------------------------------------------------------------

@dataclass
class Fault:
    """One injected fault. Recovered when everything that was in Kafka at the fault has been
    processed since: the worker group's commits (worker, broker) or the board's stored
    position in Redis (redis) pass the end offsets seen at the fault."""

    kind: str
    at: float  # seconds since the start of production
    target: int = 0  # end offsets (summed) of the watched topic at the fault
    recovered_s: float | None = None


@dataclass
class Report:
    duration_s: float
    rate: float
    messages: int = 0
    resent: int = 0
    faults: list[Fault] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    lag_zero_after_s: float | None = None
    scores_equal: bool = False
    board_equal: bool = False
    problems: list[str] = field(default_factory=list)
    worker_max_rss_mb: float = 0.0
    board_rss_growth_mb: float = 0.0
    worker_starts: int = 0
    ok: bool = False


def run(args: argparse.Namespace) -> Report:
    report = Report(duration_s=args.duration, rate=args.rate)
    base = Path(args.data_dir or tempfile.mkdtemp(prefix="bando-soak-"))
    base.mkdir(parents=True, exist_ok=True)
    broker = KafkaBroker(data_dir=base / "kafka", partitions=args.partitions)
    redis_server = RedisServer(data_dir=base / "redis", appendonly=True)
    broker.start()
    redis_server.start()
    tag = uuid.uuid4().hex[:8]
    settings = Settings.from_env(env={}).with_(
        kafka_bootstrap=broker.bootstrap, redis_url=redis_server.url,
        partitions=args.partitions, app_id=f"bando-soak-{tag}", coalesce_seconds=1.0,
        data_dir=str(base / "bando-data"))
    ensure_project_topics(settings.kafka_bootstrap, settings)
    env = child_env(settings)
    worker = Proc("worker", ["worker", "--log-level", "warning"], env, base / "worker.log")
    board = Proc("board", ["board", "--prefix", PREFIX], env, base / "board.log")
    record = base / "events.jsonl"
    state = ProducerState()
    try:
        worker.start()
        board.start()
        thread = producer_thread(settings.kafka_bootstrap, settings.events_topic, args.rate,
                                 args.partitions, args.seed, args.scale, record, state=state)
        t0 = time.monotonic()
        next_fault = args.fault_every
        recovering: Fault | None = None
        cycle = 0
        while time.monotonic() - t0 < args.duration:
            now = time.monotonic() - t0
            # no fault in the last stretch: each one gets time to show its recovery
            quiet_end = args.duration - min(args.fault_every, 30.0)
            if now >= next_fault and recovering is None and now < quiet_end:
                kind = args.faults[cycle % len(args.faults)]
                cycle += 1
                watched = settings.scores_topic if kind == "redis" else settings.events_topic
                ends = positions(settings.kafka_bootstrap, settings.app_id, [watched])
                recovering = Fault(kind, round(now, 1), ends.get(watched, (0, 0))[1])
                report.faults.append(recovering)
                print(f"[{now:6.1f}s] fault: {kind}", flush=True)
                if kind == "worker":
                    worker.signal(signal.SIGKILL)
                    time.sleep(1.0)
                    worker.start()
                elif kind == "redis":
                    redis_server.kill()
                    time.sleep(3.0)
                    redis_server.start()
                else:
                    broker.kill()
                    time.sleep(3.0)
                    broker.start()
                next_fault = (time.monotonic() - t0) + args.fault_every
            pos = positions(settings.kafka_bootstrap, settings.app_id,
                            [settings.events_topic, settings.scores_topic])
            events = pos.get(settings.events_topic)
            sample: dict[str, Any] = {"t": round(time.monotonic() - t0, 1), "sent": state.sent,
                      "lag": events[1] - events[0] if events else None,
                      "worker_mb": worker.rss_mb(), "board_mb": board.rss_mb()}
            report.samples.append(sample)
            if recovering is not None:
                if recovering.kind == "redis":
                    done = board_position(redis_server.url, settings.scores_topic)
                else:
                    done = events[0] if events else None
                if done is not None and done >= recovering.target:
                    recovering.recovered_s = round(sample["t"] - recovering.at, 1)
                    print(f"[{sample['t']:6.1f}s] recovered from {recovering.kind} in "
                          f"{recovering.recovered_s} s", flush=True)
                    recovering = None
            if not worker.alive() or not board.alive():
                report.problems.append(f"a service died at {sample['t']} s: see {base}")
                break
            if state.error:
                report.problems.append(f"producer failed: {state.error}")
                break
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - sample["t"])))
        state.stop.set()
        thread.join(120)
        report.messages, report.resent = state.sent, state.resent
        as_of = format_ts(state.last_event_time + 1_000_000)
        asyncio.run(_send_ticks(settings.kafka_bootstrap, settings.events_topic,
                                args.partitions, as_of))
        with open(record, "ab") as out:
            for p in range(args.partitions):
                out.write(orjson.dumps({"event_id": f"soak-final-{p}", "type": "clock.tick",
                                        "occurred_at": as_of}) + b"\n")
        t_end = time.monotonic()
        while time.monotonic() - t_end < 180:
            pos = positions(settings.kafka_bootstrap, settings.app_id, [settings.events_topic])
            committed, end = pos.get(settings.events_topic, (-1, 0))
            if committed == end:
                report.lag_zero_after_s = round(time.monotonic() - t_end, 1)
                break
            time.sleep(1.0)
        truths = [bando_score(record, as_of, w) for w in ("month", "year")]
        deadline = time.monotonic() + 180
        problems: list[str] = ["not compared"]
        while problems and time.monotonic() < deadline:
            latest: dict[tuple[str, str], dict[str, Any]] = {}
            for m in asyncio.run(_read_all(settings.kafka_bootstrap, settings.scores_topic)):
                latest[(m["window"], m["unit_id"])] = m
            problems = [p for t in truths for p in differences(t, latest)]
            report.scores_equal = not problems
            if not problems:
                board_problems = [p for t in truths
                                  for p in differences(t, board_scores(redis_server.url))]
                report.board_equal = not board_problems
                problems = [f"board: {p}" for p in board_problems]
            if problems:
                time.sleep(2.0)
        report.problems += problems[:20]
    finally:
        state.stop.set()
        worker.signal(signal.SIGTERM)
        board.signal(signal.SIGTERM)
        redis_server.stop()
        broker.stop()
        if not args.data_dir and not args.keep:
            redis_server.cleanup()
            broker.cleanup()
    report.worker_starts = worker.starts
    worker_mb = [s["worker_mb"] for s in report.samples if s["worker_mb"]]
    board_mb = [s["board_mb"] for s in report.samples if s["board_mb"]]
    report.worker_max_rss_mb = max(worker_mb, default=0.0)
    if len(board_mb) >= 8:  # after warm-up (the first quarter) to the end
        report.board_rss_growth_mb = round(board_mb[-1] - board_mb[len(board_mb) // 4], 1)
    unrecovered = [f for f in report.faults if f.recovered_s is None]
    if unrecovered:
        report.problems.append(f"no recovery seen after {[f.kind for f in unrecovered]}")
    if report.lag_zero_after_s is None:
        report.problems.append("the lag did not return to zero")
    if report.worker_max_rss_mb > args.max_rss_mb:
        report.problems.append(f"worker RSS {report.worker_max_rss_mb} MB > {args.max_rss_mb}")
    if report.board_rss_growth_mb > args.max_growth_mb:
        report.problems.append(f"board writer grew {report.board_rss_growth_mb} MB")
    report.ok = (report.scores_equal and report.board_equal and not report.problems)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of input")
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second")
    parser.add_argument("--fault-every", type=float, default=40.0, help="seconds")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help="cycle of faults (worker, redis, broker)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--scale", type=float, default=0.05, help="simulator activity scale")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--max-rss-mb", type=float, default=400.0)
    parser.add_argument("--max-growth-mb", type=float, default=40.0)
    parser.add_argument("--data-dir", help="keep everything here (default: a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # so that every server is stopped

    signal.signal(signal.SIGTERM, on_term)
    # Clients complain loudly while the broker is down on purpose; the report says the rest.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    args.faults = [f for f in args.faults.split(",") if f]
    if any(f not in FAULTS for f in args.faults):
        parser.error(f"faults are among {', '.join(FAULTS)}")
    report = run(args)
    data = asdict(report)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
    print(json.dumps({k: v for k, v in data.items() if k != "samples"}, indent=1))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
