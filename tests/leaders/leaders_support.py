"""Scripted scenarios with known answers for the leaders' tools (issue 8).

(No ``__init__``: pytest puts this folder on ``sys.path``, hence the distinctive module name.)

The scenario: four districts handle the same procedure ``proc-birth`` (national procedure
codes are shared across units). In ``d-harsh`` officer ``officer-harsh`` asks for papers twice
on six dossiers, moving the due time later each time; every other dossier of every unit is
completed on time, except that ``d-slow`` takes about three times longer than its peers (still
within the legal time) and ``d-sitting`` leaves five dossiers open past their due time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

TZ = timezone(timedelta(hours=7))
UNITS = [
    {"unit_id": "d-harsh", "name": "Harsh District", "peer_group": "district"},
    {"unit_id": "d-slow", "name": "Slow District", "peer_group": "district"},
    {"unit_id": "d-sitting", "name": "Sitting District", "peer_group": "district"},
    {"unit_id": "d-fine", "name": "Fine <b>District</b>", "peer_group": "district"},
    {"unit_id": "w-one", "name": "Ward One", "peer_group": "ward"},
]
START = datetime(2024, 4, 1, 8, 0, tzinfo=TZ)  # a Monday
HARSH_DOSSIERS = [f"d-harsh-{i:02d}" for i in range(6)]
SITTING_OPEN = [f"d-sitting-{i:02d}" for i in range(5)]
OFFICERS = {"d-harsh": ["officer-harsh", "officer-kind"], "d-slow": ["officer-slow"],
            "d-sitting": ["officer-sit"], "d-fine": ["officer-fine"], "w-one": ["officer-ward"]}
PROC = "proc-birth"


def ts(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


class Script:
    def __init__(self, prefix: str = "ev") -> None:
        self.events: list[dict[str, Any]] = []
        self.n = 0
        self.prefix = prefix

    def add(self, type_: str, at: datetime, unit: str | None, **fields: Any) -> dict[str, Any]:
        self.n += 1
        ev: dict[str, Any] = {"event_id": f"{self.prefix}-{self.n}", "type": type_,
                              "occurred_at": ts(at)}
        if unit is not None:
            ev["unit_id"] = unit
        ev.update(fields)
        self.events.append(ev)
        return ev

    def dossier(self, unit: str, did: str, at: datetime, officer: str, *, due_days: int = 10,
                done_hours: float | None = 24, supplements: int = 0, push: bool = True,
                proc: str = PROC) -> None:
        due = at + timedelta(days=due_days)
        self.add("dossier.received", at, unit, dossier_id=did, procedure_id=proc,
                 channel="online", due_at=ts(due), online_eligible=True, full_online=True,
                 fee_required=False, reused_data=True, pds_linked=True, population_db=True,
                 officer_id=officer)
        self.add("dossier.synced", at + timedelta(minutes=5), unit, dossier_id=did)
        self.add("dossier.digitized", at + timedelta(minutes=10), unit, dossier_id=did,
                 officer_id=officer)
        for k in range(supplements):
            when = at + timedelta(hours=1 + 2 * k)
            extra = {"new_due_at": ts(due + timedelta(days=3 * (k + 1)))} if push else {}
            self.add("dossier.supplement_requested", when, unit, dossier_id=did,
                     officer_id=officer, **extra)
        if done_hours is not None:
            self.add("dossier.completed", at + timedelta(hours=done_hours), unit,
                     dossier_id=did, e_result=True, officer_id=officer)

    def tick(self, at: datetime) -> None:
        self.add("clock.tick", at, None)


def scenario(prefix: str = "ev") -> Script:
    """The scripted fortnight (see the module docstring); ends with a tick on 2024-04-14."""
    s = Script(prefix)
    for unit in ("d-harsh", "d-slow", "d-sitting", "d-fine"):
        for i in range(10):
            at = START + timedelta(days=i % 5, hours=i)
            did = f"{unit}-{i:02d}"
            if unit == "d-harsh":
                harsh = did in HARSH_DOSSIERS
                s.dossier(unit, did, at, OFFICERS[unit][0] if harsh else OFFICERS[unit][1],
                          supplements=2 if harsh else 0, done_hours=20 + i)
            elif unit == "d-slow":
                s.dossier(unit, did, at, "officer-slow", done_hours=72 + i)
            elif unit == "d-sitting":
                s.dossier(unit, did, at, "officer-sit", due_days=2,
                          done_hours=None if did in SITTING_OPEN else 20 + i)
            else:
                s.dossier(unit, did, at, "officer-fine", done_hours=20 + i)
    s.dossier("w-one", "w-one-00", START, "officer-ward", done_hours=5)
    s.add("procedure.published", START + timedelta(hours=1), "d-fine", procedure_id=PROC,
          announced_on_time=True, publicized_on_time=True, complete=True)
    s.add("petition.received", START + timedelta(hours=2), "d-harsh", petition_id="p-1",
          due_at=ts(START + timedelta(days=10)))
    s.tick(datetime(2024, 4, 14, 12, 0, tzinfo=TZ))
    return s


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events),
                    encoding="utf-8")
    return path


def write_catalog(path: Path, units: list[dict[str, str]] | None = None) -> Path:
    path.write_text(json.dumps(units or UNITS, ensure_ascii=False), encoding="utf-8")
    return path


def accepted_events(events: list[dict[str, Any]]) -> Iterator[Any]:
    """The events as the core sees them (validated with the scenario's catalog)."""
    from schemas import Validator

    v = Validator({u["unit_id"] for u in UNITS})
    for e in events:
        yield v.validate(json.dumps(e))


async def produce(bootstrap: str, topic: str, events: list[dict[str, Any]],
                  partitions: int, raw: list[bytes] | None = None) -> None:
    """Events keyed by unit (SPEC 1); a ``clock.tick`` goes to every partition; ``raw``
    messages (bad input) go to partition 0."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for ev in events:
            value = json.dumps(ev).encode()
            if ev.get("unit_id"):
                await producer.send(topic, key=ev["unit_id"].encode(), value=value)
            else:
                for p in range(partitions):
                    await producer.send(topic, value=value, partition=p)
        for value in raw or []:
            await producer.send(topic, value=value, partition=0)
        await producer.flush()
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every message of a topic (JSON values), read without a consumer group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                              enable_auto_commit=False)
    await reader.start()
    try:
        cluster = await reader._client.fetch_all_metadata()
        tps = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        out: list[tuple[int, int, dict[str, Any]]] = []
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            batch = await reader.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                out += [(r.timestamp, r.offset, {**json.loads(r.value), "_key": r.key.decode()})
                        for r in records if r.offset < ends[tp]]
            for tp in list(pending):
                if await reader.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return [m for _, _, m in sorted(out, key=lambda x: (x[0], x[1]))]
    finally:
        await reader.stop()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A child process (``python -m MODULE ARGS``) with its output in a log file."""

    def __init__(self, module: str, args: list[str], log_path: Path, env: dict[str, str]):
        self.module, self.args, self.log_path, self.env = module, args, log_path, env
        self.proc: Any = None

    def start(self) -> Child:
        import subprocess
        import sys

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args], cwd=REPO, env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stop(self, timeout: float = 20) -> None:
        import signal
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


REPO = Path(__file__).resolve().parents[2]


def child_env(settings: Any, **extra: str) -> dict[str, str]:
    """Our environment without any BANDO_* of the developer, then ``settings`` as BANDO_*."""
    import os
    from dataclasses import fields

    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    for f in fields(settings):
        env["BANDO_" + f.name.upper()] = str(getattr(settings, f.name))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env
