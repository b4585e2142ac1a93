"""Drive Bando's real processes through faults and compare what they publish with the truth.

(No ``__init__``: pytest puts this folder on ``sys.path``, hence the distinctive module name;
``tests/security`` imports it too, through its conftest.)

The truth is always ``bando score`` (the real command, in a subprocess) over a file holding
exactly the messages that were produced, in produce order. A fault test passes only if, after
the fault, the latest ``unit-scores`` message of every unit and window equals that truth in
total, band, rank, peer count, every indicator's numerator and denominator (and is not ahead
of the final watermark): one event lost or counted twice changes a numerator or a denominator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bando.infra.ports import pdeathsig_prefix
from bando.settings import Settings
from scoring.timeutil import format_ts, parse_ts

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO.parent / "shared" / "examples" / "vn766"
WINDOWS = ("month", "year")


# -- processes ---------------------------------------------------------------------------------

def settings_env(settings: Settings, extra: dict[str, str | None] | None = None
                 ) -> dict[str, str]:
    """The environment of a child process configured by ``settings`` only (no BANDO_* leaks
    from the developer's shell); ``extra`` adds variables, or removes those mapped to None."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    for f in fields(settings):
        env["BANDO_" + f.name.upper()] = str(getattr(settings, f.name))
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class Service:
    """One ``bando <command>`` as a real process, so it can be SIGKILLed like a crash."""

    def __init__(self, settings: Settings, args: Sequence[str], log_path: Path,
                 extra_env: dict[str, str | None] | None = None, module: str = "bando.cli"):
        self.settings = settings
        self.args = list(args)
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.module = module
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Service:
        with open(self.log_path, "ab") as log:
            log.write(f"==== start {self.starts + 1}: {' '.join(self.args)}\n".encode())
            log.flush()
            # pdeathsig: a test run killed outright takes its services along
            self.proc = subprocess.Popen(
                [*pdeathsig_prefix(), sys.executable, "-m", self.module, *self.args], cwd=REPO,
                env=settings_env(self.settings, self.extra_env), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_mb(self) -> float:
        """Resident memory of the process now (``/proc``), in MB."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""


def worker(settings: Settings, log_path: Path, extra_env: dict[str, str | None] | None = None
           ) -> Service:
    # BANDO_TEST_WORKER_LOG=info keeps the workers' recovery and rebalance steps in their logs
    level = os.environ.get("BANDO_TEST_WORKER_LOG", "warning")
    return Service(settings, ["worker", "--log-level", level], log_path, extra_env)


@contextlib.contextmanager
def services(*items: Service) -> Any:
    """Stop every service at the end, whatever happened (no process is left behind)."""
    try:
        yield items
    finally:
        for s in items:
            s.stop()


# -- messages ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Msg:
    """One message to produce: value, key (None: a tick, sent to ``partition``)."""

    value: bytes
    key: bytes | None = None
    partition: int | None = None


def key_of(value: bytes) -> bytes:
    try:
        unit = orjson.loads(value).get("unit_id")
    except (orjson.JSONDecodeError, AttributeError):
        return b"-"
    return unit.encode() if isinstance(unit, str) else b"-"


def keyed(values: Iterable[bytes]) -> list[Msg]:
    return [Msg(v, key_of(v)) for v in values]


def example_messages() -> list[Msg]:
    """The SPEC's worked example: shuffled, duplicated, orphaned, with bad lines."""
    path = EXAMPLE / "events.jsonl"
    if not path.is_file():
        raise AssertionError(f"the worked example is missing: {path}")
    return keyed(line.strip() for line in path.read_bytes().splitlines() if line.strip())


def simulated_messages(start: str, end: str, partitions: int, *, seed: int = 1,
                       scale: float = 0.05, tick_every: int = 3600, bad_rate: float = 0.02,
                       dup_rate: float = 0.03, shuffle_window: int = 40) -> list[Msg]:
    """Simulated HCMC activity with chaos (bad lines, duplicates, bounded shuffle). Ticks go to
    every partition with a per-partition event id, as ``bando simulate live`` sends them."""
    from bando.simulator import Chaos, Generator, messages, read_catalog

    gen = Generator(read_catalog(), start=start, end=end, seed=seed, rate_scale=scale,
                    tick_every=tick_every)
    chaos = Chaos(bad_rate=bad_rate, dup_rate=dup_rate, shuffle_window=shuffle_window)
    out: list[Msg] = []
    for _, key, value in messages(gen.events(), chaos, seed):
        if key is None:
            tick = orjson.loads(value)
            base = tick["event_id"]
            for p in range(partitions):
                tick["event_id"] = f"{base}-p{p}"
                out.append(Msg(orjson.dumps(tick), None, p))
        else:
            out.append(Msg(value, key))
    return out


def final_time(msgs: Iterable[Msg]) -> str:
    """One second after the latest ``occurred_at`` among the messages (the final watermark)."""
    latest = 0
    for m in msgs:
        try:
            ts = parse_ts(orjson.loads(m.value).get("occurred_at"))
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            continue
        latest = max(latest, ts or 0)
    return format_ts(latest + 1_000_000)


def ticks(at: str, partitions: int, tag: str) -> list[Msg]:
    """A ``clock.tick`` at ``at`` on every partition: each one's watermark reaches ``at``."""
    return [Msg(orjson.dumps({"event_id": f"tick-{tag}-{p}", "type": "clock.tick",
                              "occurred_at": at}), None, p) for p in range(partitions)]


# -- the truth -----------------------------------------------------------------------------------

def write_events(path: Path, msgs: Iterable[Msg]) -> Path:
    """The produced messages as a JSON-lines file, in produce order."""
    with open(path, "wb") as fh:
        for m in msgs:
            if b"\n" in m.value or b"\r" in m.value or m.value != m.value.strip():
                raise ValueError(f"message not representable as one line: {m.value[:60]!r}")
            fh.write(m.value + b"\n")
    return path


def bando_score(events: Path, as_of: str, window: str, catalog: str = "") -> dict[str, Any]:
    """``bando score`` itself, in a subprocess: the truth every live result must equal."""
    argv = [sys.executable, "-m", "bando.cli", "score", "--events", str(events),
            "--as-of", as_of, "--window", window]
    if catalog:
        argv += ["--units", catalog]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, check=False, timeout=300,
                          env={k: v for k, v in os.environ.items() if not k.startswith("BANDO_")})
    if done.returncode != 0:
        raise AssertionError(f"bando score failed: {done.stderr.decode()[-2000:]}")
    return dict(orjson.loads(done.stdout))


def truths(events: Path, as_of: str, catalog: str = "") -> list[dict[str, Any]]:
    return [bando_score(events, as_of, w, catalog) for w in WINDOWS]


class Scenario(NamedTuple):
    as_of: str  # the final watermark
    final: list[Msg]  # ticks that bring every partition to it
    events: Path  # msgs + final as a file, for ``bando score``
    expected: list[dict[str, Any]]  # the truth: ``bando score`` at as_of, month and year


def scenario(msgs: list[Msg], partitions: int, tmp_path: Path, catalog: str = "") -> Scenario:
    """What closes a test's messages (final ticks) and ``bando score``'s truth over both."""
    as_of = final_time(msgs)
    final = ticks(as_of, partitions, "final")
    events = write_events(tmp_path / "events.jsonl", msgs + final)
    return Scenario(as_of, final, events, truths(events, as_of, catalog))


def diff_against(truth: dict[str, Any], latest: dict[tuple[str, str], dict[str, Any]]
                 ) -> list[str]:
    """Differences between a ``bando score`` report and the latest published messages."""
    problems = []
    window = truth["window"]
    as_of = parse_ts(truth["as_of"])
    for unit in truth["units"]:
        msg = latest.get((window, unit["unit_id"]))
        if msg is None:
            if unit["total"] is not None:
                problems.append(f"{unit['unit_id']} {window}: no message, expected "
                                f"{unit['total']}")
            continue
        # A score is published only when its result changes, so the latest message may carry
        # an earlier as_of; it must never be ahead of the final watermark.
        if (parse_ts(msg["as_of"]) or 0) > (as_of or 0):
            problems.append(f"{unit['unit_id']} {window}: as_of {msg['as_of']} "
                            f"> {truth['as_of']}")
        for k in ("total", "band", "rank", "peer_count", "indicators", "groups"):
            if msg[k] != unit[k]:
                problems.append(f"{unit['unit_id']} {window} {k}: live {str(msg[k])[:100]} "
                                f"!= offline {str(unit[k])[:100]}")
    return problems


# -- Kafka I/O ----------------------------------------------------------------------------------

@dataclass
class ProduceStats:
    acked: int = 0
    resent: int = 0
    max_ack_seconds: float = 0.0  # the longest a message waited for its ack (producer stall)
    positions: dict[int, tuple[int, int]] = field(default_factory=dict)  # index -> (p, offset)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class ProducerThread(threading.Thread):
    """Produces ``msgs`` at ``rate`` messages/s (None: as fast as acks allow) in its own event
    loop, so the test thread is free to kill things meanwhile. Idempotent, ``acks=all``: a
    broker outage delays messages but never duplicates them; a send that still fails after
    ``request_timeout_ms`` is sent again (a duplicate that de-duplication absorbs)."""

    def __init__(self, bootstrap: str, topic: str, msgs: Sequence[Msg], rate: float | None,
                 client: dict[str, Any] | None = None, window: int = 500):
        super().__init__(daemon=True, name="producer")
        self.bootstrap, self.topic, self.msgs, self.rate = bootstrap, topic, msgs, rate
        self.client = client or {}
        self.window = window
        self.stats = ProduceStats()

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - reported by wait()
            self.stats.error = exc
        finally:
            self.stats.done.set()

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True,
                                    acks="all", linger_ms=5, request_timeout_ms=60000,
                                    **self.client)
        await producer.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        pending: dict[int, tuple[asyncio.Future[Any], float]] = {}
        try:
            for i, m in enumerate(self.msgs):
                if self.rate:
                    delay = t0 + i / self.rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                pending[i] = (await producer.send(self.topic, m.value, key=m.key,
                                                  partition=m.partition), loop.time())
                if len(pending) >= self.window:
                    await self._settle(producer, pending, loop, keep=self.window // 2)
            await self._settle(producer, pending, loop, keep=0)
        finally:
            await producer.stop()

    async def _settle(self, producer: AIOKafkaProducer, pending: dict[int, Any],
                      loop: asyncio.AbstractEventLoop, keep: int) -> None:
        while len(pending) > keep:
            i = min(pending)
            fut, sent = pending.pop(i)
            while True:
                try:
                    meta = await fut
                    break
                except Exception:  # noqa: BLE001 - timed out in an outage: send it again
                    self.stats.resent += 1
                    m = self.msgs[i]
                    fut = await producer.send(self.topic, m.value, key=m.key,
                                              partition=m.partition)
            self.stats.max_ack_seconds = max(self.stats.max_ack_seconds, loop.time() - sent)
            self.stats.positions[i] = (meta.partition, meta.offset)
            self.stats.acked += 1

    def wait(self, timeout: float) -> ProduceStats:
        if not self.stats.done.wait(timeout):
            raise AssertionError(f"producer not done after {timeout:.0f}s "
                                 f"({self.stats.acked}/{len(self.msgs)} acked)")
        if self.stats.error is not None:
            raise AssertionError(f"producer failed: {self.stats.error!r}")
        return self.stats


def produce(bootstrap: str, topic: str, msgs: Sequence[Msg], rate: float | None = None,
            client: dict[str, Any] | None = None, timeout: float = 180.0) -> ProduceStats:
    thread = ProducerThread(bootstrap, topic, msgs, rate, client)
    thread.start()
    return thread.wait(timeout)


class TopicTail(threading.Thread):
    """Reads a topic from the beginning, for as long as the test runs, in its own loop.

    Keeps every record with the wall time it was read, so a test can ask for the latest
    message per key and for the longest silence (a stall) in a time range.
    """

    def __init__(self, bootstrap: str, topic: str, client: dict[str, Any] | None = None):
        super().__init__(daemon=True, name=f"tail-{topic}")
        self.bootstrap, self.topic, self.client = bootstrap, topic, client or {}
        self.records: list[tuple[float, int, int, bytes]] = []
        self.lock = threading.Lock()
        self._stop_flag = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - reported by the checks
            self.error = exc

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    group_id=None, **self.client)
        await consumer.start()
        try:
            while not self._stop_flag.is_set():
                batch = await consumer.getmany(timeout_ms=300)
                now = time.monotonic()
                with self.lock:
                    for tp, recs in batch.items():
                        self.records.extend((now, tp.partition, r.offset, r.value)
                                            for r in recs)
        finally:
            await consumer.stop()

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(30)

    def values(self) -> list[dict[str, Any]]:
        with self.lock:
            return [orjson.loads(v) for _, _, _, v in self.records]

    def latest(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The latest score message per (window, unit); anything else on the topic is skipped."""
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for m in self.values():
            if isinstance(m, dict) and "window" in m and "unit_id" in m:
                latest[(m["window"], m["unit_id"])] = m
        return latest

    def count(self) -> int:
        with self.lock:
            return len(self.records)

    def arrivals(self) -> list[float]:
        with self.lock:
            return [t for t, *_ in self.records]


@contextlib.contextmanager
def tailing(bootstrap: str, topic: str, client: dict[str, Any] | None = None) -> Any:
    """A running :class:`TopicTail`, stopped at the end of the block."""
    tail = TopicTail(bootstrap, topic, client)
    tail.start()
    try:
        yield tail
    finally:
        tail.stop()


def longest_silence(arrivals: list[float], start: float, end: float) -> float:
    """The longest stretch in [start, end] without any arrival (seconds)."""
    points = [start, *sorted(t for t in arrivals if start < t < end), end]
    return max(b - a for a, b in zip(points, points[1:], strict=False))


def _read_all(bootstrap: str, topic: str, client: dict[str, Any] | None = None,
              idle_ms: int = 1500) -> list[Any]:
    """Every record of ``topic`` (aiokafka ``ConsumerRecord``s), read until idle."""

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    **(client or {}))
        await consumer.start()
        out: list[Any] = []
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=idle_ms)
                if not batch:
                    return out
                for recs in batch.values():
                    out.extend(recs)
        finally:
            await consumer.stop()

    return asyncio.run(run())


def read_topic(bootstrap: str, topic: str, client: dict[str, Any] | None = None,
               idle_ms: int = 1500) -> list[tuple[int, int, bytes]]:
    """Every record of ``topic`` as (partition, offset, value), read until idle."""
    return [(r.partition, r.offset, r.value) for r in _read_all(bootstrap, topic, client, idle_ms)]


def group_lag(bootstrap: str, group: str, topic: str,
              client: dict[str, Any] | None = None) -> int | None:
    """Messages of ``topic`` not yet committed by ``group`` (None: nothing committed yet)."""

    async def run() -> int | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client or {}))
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    **(client or {}))
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(group)
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            ends = await consumer.end_offsets(tps)
            if not any(tp in committed for tp in tps):
                return None
            return sum(ends[tp] - (committed[tp].offset if tp in committed else 0)
                       for tp in tps)
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(run())


def group_assignment(bootstrap: str, group: str, topic: str,
                     client: dict[str, Any] | None = None) -> list[set[int]]:
    """Partitions of ``topic`` assigned to each member of ``group`` (one set per member)."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    async def run() -> list[set[int]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client or {}))
        await admin.start()
        try:
            described = await admin.describe_consumer_groups([group])
        finally:
            await admin.close()
        out: list[set[int]] = []
        for response in described:
            for g in response.groups:
                for member in g[5]:
                    mine: set[int] = set()
                    if member[4]:
                        assignment = ConsumerProtocolMemberAssignment.decode(member[4])
                        for t, parts in assignment.assignment:
                            if t == topic:
                                mine.update(parts)
                    out.append(mine)
        return out

    return asyncio.run(run())


# -- checks ------------------------------------------------------------------------------------

def wait_until(check: Callable[[], list[str]], timeout: float, what: str,
               on_fail: Callable[[], str] = lambda: "", interval: float = 1.0) -> float:
    """Poll ``check`` (a list of problems) until it is empty; return the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    problems: list[str] = ["not checked"]
    while time.monotonic() < deadline:
        try:
            problems = check()
        except Exception as exc:  # noqa: BLE001 - a service may be down on purpose
            problems = [f"check raised {exc!r}"]
        if not problems:
            return time.monotonic() - t0
        time.sleep(interval)
    raise AssertionError(f"{what} after {timeout:.0f}s ({len(problems)} problems): "
                         f"{problems[:8]}\n{on_fail()}")


def scores_equal(tail: TopicTail, expected: list[dict[str, Any]]) -> Callable[[], list[str]]:
    """A ``wait_until`` check: the latest scores equal every ``bando score`` report."""

    def check() -> list[str]:
        if tail.error is not None:
            return [f"score reader failed: {tail.error!r}"]
        latest = tail.latest()
        problems: list[str] = []
        for t in expected:
            problems += diff_against(t, latest)
        return problems
    return check


def check_dlq(dlq: list[tuple[int, int, bytes]], msgs: Sequence[Msg], stats: ProduceStats,
              truth: dict[str, Any], topic: str) -> list[str]:
    """Every message ``bando score`` rejects is in the DLQ at its position with the same code,
    and the DLQ holds nothing else (a batch replayed after a crash may repeat a record: the
    guarantee is at-least-once, so repeats of the same position are allowed)."""
    expected: dict[tuple[int, int], str] = {}
    bad_values: dict[bytes, str] = {}
    for r in truth["rejected"]:
        index = r["line"] - 1  # one message per line, in produce order
        expected[stats.positions[index]] = r["error"]
        bad_values[msgs[index].value] = r["error"]
    got: dict[tuple[int, int], set[str]] = {}
    originals: dict[tuple[int, int], bytes] = {}
    problems = []
    for _, _, value in dlq:
        record = orjson.loads(value)
        if record["topic"] != topic:
            problems.append(f"DLQ record for topic {record['topic']}")
        pos = (record["partition"], record["offset"])
        got.setdefault(pos, set()).add(record["error"])
        originals[pos] = dlq_original(record)
    for pos, code in expected.items():
        if pos not in got:
            problems.append(f"missing from DLQ: {pos} ({code})")
        elif got[pos] != {code}:
            problems.append(f"DLQ code at {pos}: {sorted(got[pos])} != {code}")
    for pos in set(got) - set(expected):
        # A send that timed out in an outage and was sent again may have landed twice.
        if stats.resent and got[pos] == {bad_values.get(originals[pos])}:
            continue
        problems.append(f"unexpected DLQ record at {pos}: {sorted(got[pos])}")
    return problems


def dlq_original(record: dict[str, Any]) -> bytes:
    """The original message bytes a DLQ record carries (text, or base64)."""
    import base64

    if record.get("value_encoding") == "base64":
        return base64.b64decode(record["value"])
    return str(record["value"]).encode("utf-8")


def shuffled(msgs: list[Msg], seed: int) -> list[Msg]:
    out = list(msgs)
    random.Random(seed).shuffle(out)
    return out


# -- listeners ---------------------------------------------------------------------------------

def _hex_ip(text: str) -> str:
    """An address of /proc/net/tcp{,6} (little-endian 32-bit words) as text."""
    import ipaddress

    raw = bytes.fromhex(text)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    mapped = getattr(address, "ipv4_mapped", None)  # a JVM binds 127.0.0.1 as ::ffff:127.0.0.1
    return str(mapped or address)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that process ``pid`` holds, IPv4
    and IPv6, read from ``/proc`` (no psutil, no ``ss``)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as fh:
            next(fh)
            for line in fh:
                parts = line.split()
                local, state, inode = parts[1], parts[3], parts[9]
                if state == "0A" and inode in inodes:  # 0A: LISTEN
                    ip, port = local.split(":")
                    out.append((_hex_ip(ip), int(port, 16)))
    return sorted(out)


def wait_listening(pid: int, count: int, timeout: float = 60.0) -> list[tuple[str, int]]:
    """The listeners of ``pid`` once it has at least ``count`` of them."""
    found: list[tuple[str, int]] = []

    def check() -> list[str]:
        nonlocal found
        found = listening_sockets(pid)
        return [] if len(found) >= count else [f"listening on {found}"]

    wait_until(check, timeout, f"pid {pid} listening on {count} sockets", interval=0.3)
    return found


# -- diagnosis ---------------------------------------------------------------------------------

def read_keys(bootstrap: str, topic: str, client: dict[str, Any] | None = None
              ) -> list[tuple[int, int, bytes | None]]:
    """Every record of ``topic`` as (partition, offset, key)."""
    return [(r.partition, r.offset, r.key) for r in _read_all(bootstrap, topic, client)]


def never_processed(settings: Settings, msgs: Sequence[Msg], stats: ProduceStats,
                    truth: dict[str, Any]) -> list[str]:
    """Accepted input whose event id never reached the worker's ``seen`` table changelog
    (``<app_id>-seen-changelog``): events a worker skipped, as "partition@offset event_id"."""
    seen = {orjson.loads(k) for _, _, k in read_keys(settings.kafka_bootstrap,
                                                     f"{settings.app_id}-seen-changelog") if k}
    rejected = {r["line"] - 1 for r in truth["rejected"]}
    out = []
    for i, m in enumerate(msgs):
        if i in rejected or i not in stats.positions:
            continue
        event_id = orjson.loads(m.value).get("event_id")
        if event_id not in seen:
            p, off = stats.positions[i]
            out.append(f"p{p}@{off} {event_id}")
    return out


def merged(*parts: tuple[int, ProduceStats]) -> ProduceStats:
    """One ``ProduceStats`` for messages produced in several calls: (index of the call's
    first message in the whole sequence, its stats)."""
    out = ProduceStats()
    for start, stats in parts:
        out.positions.update({start + i: pos for i, pos in stats.positions.items()})
        out.acked += stats.acked
        out.resent += stats.resent
        out.max_ack_seconds = max(out.max_ack_seconds, stats.max_ack_seconds)
    return out


def wait_scores_equal(tail: TopicTail, expected: list[dict[str, Any]], timeout: float,
                      what: str, on_fail: Callable[[], str], settings: Settings,
                      msgs: Sequence[Msg], stats: ProduceStats) -> float:
    """``wait_until(scores_equal(...))``; on failure the message also lists the input events
    the workers never processed (from the ``seen`` changelog), the usual cause."""
    try:
        return wait_until(scores_equal(tail, expected), timeout, what, on_fail)
    except AssertionError as exc:
        skipped = never_processed(settings, msgs, stats, expected[0])
        raise AssertionError(f"{exc}\n{len(skipped)} events never processed: "
                             f"{skipped[:20]}") from None
