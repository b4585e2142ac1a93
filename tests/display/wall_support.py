"""Helpers of the wall-display tests: synthetic score messages, and the gateway / board
writer run as real child processes (``python -m bando.cli ...``), as in production.

(No ``__init__``: pytest puts this folder on ``sys.path``, hence the distinctive module name.)
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "scoring" / "catalogs" / "hcmc-2024.json"
XSS_NAME = "<img src=x onerror=alert(1)>"


def bands(total: float | None) -> str | None:
    if total is None:
        return None
    for band, floor in (("excellent", 90), ("good", 80), ("fair", 70), ("average", 50)):
        if total >= floor:
            return band
    return "weak"


def catalog_units() -> list[dict[str, str]]:
    return json.loads(CATALOG.read_text(encoding="utf-8"))


def ranked(units: list[dict[str, Any]], totals: dict[str, float | None]) -> dict[str, int | None]:
    """SPEC 3: 1 + number of scored peers with a strictly higher total (ties share)."""
    out: dict[str, int | None] = {}
    for u in units:
        t = totals.get(u["unit_id"])
        peers = [totals.get(p["unit_id"]) for p in units if p["peer_group"] == u["peer_group"]]
        out[u["unit_id"]] = (
            None if t is None else 1 + sum(1 for p in peers if p is not None and p > t)
        )
    return out


def score_message(
    unit: dict[str, str],
    window: str,
    as_of: str,
    total: float | None,
    rank: int | None,
    peer_count: int,
    offset: int = 0,
) -> dict[str, Any]:
    return {
        "unit_id": unit["unit_id"],
        "name": unit["name"],
        "peer_group": unit["peer_group"],
        "window": window,
        "as_of": as_of,
        "model": "vn766@1",
        "total": total,
        "band": bands(total),
        "rank": rank,
        "peer_count": peer_count,
        "groups": {"progress": {"points": 10.0, "max": 20}},
        "indicators": {
            "on_time": {"num": 1, "den": 2, "points": 10.0, "max": 20, "applicable": True}
        },
        "input": {"topic": "procedure-events", "partition": 0, "offset": offset},
    }


def sample_board(
    window: str = "month:2024-04",
    as_of: str = "2024-04-14T17:00:00+07:00",
    seed: int = 7,
    units: list[dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """A plausible board: one score message per catalog unit, ranked per peer group."""
    rnd = random.Random(seed)
    units = units if units is not None else catalog_units()
    totals: dict[str, float | None] = {
        u["unit_id"]: (None if rnd.random() < 0.04 else round(rnd.uniform(42, 97), 2))
        for u in units
    }
    ranks = ranked(units, totals)
    counts: dict[str, int] = {}
    for u in units:
        if totals[u["unit_id"]] is not None:
            counts[u["peer_group"]] = counts.get(u["peer_group"], 0) + 1
    return [
        score_message(
            u,
            window,
            as_of,
            totals[u["unit_id"]],
            ranks[u["unit_id"]],
            counts.get(u["peer_group"], 0),
            offset=i,
        )
        for i, u in enumerate(units)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A ``python -m bando.cli`` child process with its output in a log file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.args = args
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bando.cli", *self.args],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def gateway(redis_url: str, prefix: str, port: int, log_path: Path, ping: float = 15) -> Child:
    return Child(
        [
            "display",
            "--redis-url",
            redis_url,
            "--prefix",
            prefix,
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--ping-seconds",
            str(ping),
        ],
        log_path,
    )


def board_writer(
    bootstrap: str, redis_url: str, prefix: str, topics: dict[str, str], log_path: Path
) -> Child:
    return Child(
        [
            "board",
            "--kafka-bootstrap",
            bootstrap,
            "--redis-url",
            redis_url,
            "--prefix",
            prefix,
            "--scores-topic",
            topics["score"],
            "--rank-changes-topic",
            topics["rank"],
            "--band-changes-topic",
            topics["band"],
        ],
        log_path,
    )


def wait_http(url: str, timeout: float = 20, child: Child | None = None) -> bytes:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if child is not None and child.proc is not None and child.proc.poll() is not None:
            raise AssertionError(f"{child.args[0]} exited:\n{child.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bytes(resp.read())
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {timeout}s: {last!r}")


class SseReader:
    """Reads Server-Sent Events from an aiohttp response: ``await next_event()``."""

    def __init__(self, resp: Any):
        self.resp = resp

    async def next_event(self, timeout: float = 10) -> tuple[str, Any]:
        import asyncio

        event, data = "message", list[str]()
        while True:
            line = await asyncio.wait_for(self.resp.content.readline(), timeout)
            if not line:
                raise EOFError("the stream ended")
            text = line.decode().rstrip("\n")
            if text == "":
                if data:
                    return event, json.loads("\n".join(data))
                event = "message"
                continue
            if text.startswith(":"):
                continue
            name, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)

    async def until(self, kind: str, timeout: float = 10) -> Any:
        import asyncio

        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} event in {timeout}s")
            event, data = await self.next_event(left)
            if event == kind:
                return data


def settings_env(settings: Any, **extra: str) -> dict[str, str]:
    """The child's environment: ours without any BANDO_* of the developer, then ``settings``."""
    from dataclasses import fields

    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    for f in fields(settings):
        env["BANDO_" + f.name.upper()] = str(getattr(settings, f.name))
    env.update(extra)
    return env


async def produce_events(
    bootstrap: str, topic: str, events: list[dict[str, Any]], partitions: int
) -> list[Any]:
    """Events keyed by unit (SPEC 1); a ``clock.tick`` goes to every partition."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for ev in events:
            value = json.dumps(ev).encode()
            if ev.get("unit_id"):
                futures.append(await producer.send(topic, key=ev["unit_id"].encode(), value=value))
            else:
                for p in range(partitions):
                    futures.append(await producer.send(topic, value=value, partition=p))
        await producer.flush()
        return [await f for f in futures]  # RecordMetadata: partition, offset
    finally:
        await producer.stop()
