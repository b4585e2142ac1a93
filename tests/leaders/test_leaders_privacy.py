"""Officer data never reaches the public side: the wall display (page, board, push stream,
Redis), the public ``/metrics`` of every service, the score topics, nor any log.

The whole stack runs as real processes on the session's broker and Redis: the scorer
(``bando worker``), the board writer, the display gateway, ``bando signals`` and ``bando
officer`` (reading Kafka), fed the scripted events whose every dossier step carries an
``officer_id``. The officer view is used, including a refused request for another officer's
page, so its own logs are exercised too.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from leaders_support import (
    OFFICERS,
    UNITS,
    Child,
    child_env,
    free_port,
    produce,
    read_topic,
    scenario,
    write_catalog,
    write_jsonl,
)

from bando.infra import create_topics, ensure_project_topics

pytestmark = pytest.mark.integration

OFFICER_IDS = sorted({o for names in OFFICERS.values() for o in names})


def _get(url: str, token: str | None = None, limit: int | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                 if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(limit) if limit else resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def _poll(check: Any, timeout: float, what: str, children: list[Child]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await asyncio.to_thread(check)
        except OSError:
            value = None
        if value:
            return value
        dead = [c.module + " " + " ".join(c.args[:1]) for c in children if not c.alive()]
        assert not dead, f"exited: {dead}\n" + "\n".join(c.log_text()[-2000:] for c in children)
        assert time.monotonic() < deadline, f"timed out after {timeout}s: {what}"
        await asyncio.sleep(0.5)


def _sse_first_chunk(url: str) -> bytes:
    """The push stream's first snapshot (read until the board data has been sent)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        data = b""
        deadline = time.monotonic() + 10
        while b"d-harsh" not in data and time.monotonic() < deadline:
            data += resp.read1(65536)
        return data


async def test_officer_data_stays_off_the_public_side(live_settings, unique, tmp_path):
    catalog = write_catalog(tmp_path / "catalog.json")
    settings = live_settings.with_(catalog_path=str(catalog), coalesce_seconds=0.5)
    ensure_project_topics(settings.kafka_bootstrap, settings)
    signals_topic = f"signals-{unique}"
    create_topics(settings.kafka_bootstrap, [signals_topic, f"alerts-dlq-{unique}"],
                  settings.partitions)
    prefix = f"test:{unique}:board"
    ports = {name: free_port() for name in ("worker_m", "board_m", "display", "display_m",
                                            "signals_m", "officer")}
    env = child_env(settings)
    children = [
        Child("bando.cli", ["worker", "--log-level", "info", "--metrics-port",
                            str(ports["worker_m"])], tmp_path / "worker.log", env),
        Child("bando.cli", ["board", "--prefix", prefix, "--metrics-port",
                            str(ports["board_m"])], tmp_path / "board.log", env),
        Child("bando.cli", ["display", "--prefix", prefix, "--port", str(ports["display"]),
                            "--metrics-port", str(ports["display_m"])],
              tmp_path / "display.log", env),
        Child("leaders.signals_cli", ["--signals-topic", signals_topic, "--group-id",
                                      f"signals-{unique}", "--interval", "0.5",
                                      "--alerts-dlq-topic", f"alerts-dlq-{unique}",
                                      "--metrics-port", str(ports["signals_m"])],
              tmp_path / "signals.log", env),
    ]
    tokens = tmp_path / "tokens.jsonl"
    minted = {}
    for officer in ("officer-harsh", "officer-kind"):
        from leaders.tokens import hash_line, new_token

        minted[officer] = new_token()
        with open(tokens, "a", encoding="utf-8") as fh:
            fh.write(hash_line(officer, minted[officer]) + "\n")
    for c in children:
        c.start()
    try:
        await produce(settings.kafka_bootstrap, settings.events_topic, scenario().events,
                      settings.partitions)
        display = f"http://127.0.0.1:{ports['display']}"

        def scored() -> bool:
            board = json.loads(_get(display + "/api/board")[1])
            text = json.dumps(board)
            return all(u in text for u in ("d-harsh", "d-slow", "d-sitting", "d-fine"))

        await _poll(scored, 180, "the four districts on the board", children)
        await _poll(lambda: len(asyncio.run(read_topic(settings.kafka_bootstrap,
                                                       signals_topic))) >= 5,
                    120, "the five signals", children)
        officer = Child("leaders.officer_cli", ["--tokens", str(tokens), "--port",
                                                str(ports["officer"])],
                        tmp_path / "officer.log", env).start()
        children.append(officer)
        base = f"http://127.0.0.1:{ports['officer']}"
        await _poll(lambda: _get(base + "/healthz")[0] == 200, 120, "the officer view",
                    children)
        status, body = _get(base + "/officer/officer-harsh?format=json",
                            minted["officer-harsh"])
        assert status == 200  # the officer view works, from Kafka ...
        rows = {i["indicator"]: i for i in json.loads(body)["units"][0]["indicators"]}
        assert (rows["on_time"]["num"], rows["on_time"]["den"]) == (0, 6)
        assert _get(base + "/officer/officer-kind", minted["officer-harsh"])[0] == 403
        assert _get(base + "/officer/officer-sit")[0] == 401

        # the digest reads Kafka like `bando explain` does, and says what the file says
        _digest_from_kafka_equals_file(settings, catalog, tmp_path)

        public: dict[str, bytes] = {
            "display page": _get(display + "/")[1],
            "display board": _get(display + "/api/board")[1],
            "display stream": await asyncio.to_thread(_sse_first_chunk, display + "/events"),
        }
        for name in ("worker_m", "board_m", "display_m", "signals_m"):
            public[f"/metrics of {name}"] = _get(f"http://127.0.0.1:{ports[name]}/metrics")[1]
        assert b"d-harsh" in public["display board"] and b"d-harsh" in public["display stream"]
        assert b"bando_signals_published" in public["/metrics of signals_m"]
        assert b"bando_events_consumed" in public["/metrics of worker_m"]
        for topic in (settings.scores_topic, settings.band_changes_topic,
                      settings.rank_changes_topic, signals_topic):
            public[f"topic {topic}"] = json.dumps(
                await read_topic(settings.kafka_bootstrap, topic)).encode()
        assert len(public[f"topic {settings.scores_topic}"]) > 1000
        public["redis board"] = await _redis_dump(settings.redis_url, prefix)
        assert b"d-harsh" in public["redis board"]
    finally:
        for c in children:
            c.stop()
    for c in children:
        public[f"log of {c.log_path.name}"] = c.log_text().encode()
    assert b"GET /officer/{officer_id} 403" in public["log of officer.log"]
    # the officer view's route template "/officer/{officer_id}" names the field, not a value
    leaks = {(where, o) for where, text in public.items() for o in [*OFFICER_IDS, "officer_id"]
             if o.encode() in text.replace(b"{officer_id}", b"")}
    assert not leaks, f"officer data found on the public side: {sorted(leaks)}"
    assert all(t.encode() not in b"".join(public.values()) for t in minted.values())
    assert {u["unit_id"] for u in UNITS} >= {"d-harsh", "d-fine"}


def _digest_from_kafka_equals_file(settings: Any, catalog: Any, tmp_path: Any) -> None:
    from leaders.digest_cli import main as digest_main

    events = write_jsonl(tmp_path / "events.jsonl", scenario().events)
    pages = {}
    for name, source in (("file", ["--events", str(events)]),
                         ("kafka", ["--bootstrap", settings.kafka_bootstrap, "--topic",
                                    settings.events_topic, "--dlq-topic", settings.dlq_topic])):
        out = tmp_path / f"digest-{name}"
        assert digest_main(["--unit", "d-harsh", "--week", "2024-W15", "--units", str(catalog),
                            "--format", "json", "--out", str(out), *source]) == 0
        pages[name] = json.loads((out / "digest-d-harsh-2024-W15.json").read_text())["pages"]
    assert pages["kafka"] == pages["file"]
    assert {s["kind"] for s in pages["file"][0]["signals"]} == {
        "repeated_supplements", "due_pushed_back", "supplement_rate"}


async def _redis_dump(url: str, prefix: str) -> bytes:
    """Every key and value the board writer keeps under ``prefix``."""
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    out = []
    try:
        async for key in redis.scan_iter(match=f"{prefix}*"):
            kind = (await redis.type(key)).decode()
            if kind == "hash":
                value: Any = await redis.hgetall(key)
            elif kind == "string":
                value = await redis.get(key)
            elif kind == "zset":
                value = await redis.zrange(key, 0, -1, withscores=True)
            elif kind == "list":
                value = await redis.lrange(key, 0, -1)
            elif kind == "stream":
                value = await redis.xrange(key)
            else:
                value = kind
            out.append(repr((key, value)).encode())
    finally:
        await redis.aclose()
    return b"\n".join(out)
