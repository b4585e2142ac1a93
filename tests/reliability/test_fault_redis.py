"""Fault test 4: Redis killed. Scoring goes on; the board catches up when Redis returns.

The worker does not use Redis at all; the board writer (``bando board``, a real process)
keeps its Kafka position in Redis with the rows, so it resumes from there when Redis comes
back with its data, and rebuilds the whole board from the topics when Redis comes back empty.

What screens show meanwhile is the display engineer's part, tested against a real Redis kill:
``tests/display/test_display_gateway.py::test_screens_resync_after_redis_restarts`` (the push
stream says Redis is away, then sends a fresh snapshot) and, in real Chromium,
``tests/display/test_display_page.py::test_redis_away_is_shown_then_the_board_comes_back``
(the page shows "reconnecting", then the board again).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from fault_support import (
    Msg,
    Service,
    TopicTail,
    diff_against,
    final_time,
    produce,
    scores_equal,
    services,
    simulated_messages,
    ticks,
    truths,
    wait_until,
    worker,
    write_events,
)

from bando.infra import RedisServer
from bando.settings import Settings

pytestmark = pytest.mark.integration

RATE = 200.0


def board_scores(url: str, prefix: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest score message of every row of the current boards, as Redis holds them."""
    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=2)
    try:
        current = client.hgetall(f"{prefix}:current")
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for raw in current.values():
            window = raw.decode() if isinstance(raw, bytes) else raw
            for unit, blob in client.hgetall(f"{prefix}:w:{window}:units").items():
                row = orjson.loads(blob)
                if row.get("score"):
                    out[(window, unit.decode() if isinstance(unit, bytes) else unit)] = (
                        row["score"])
        return out
    finally:
        client.close()


def board_equals(url: str, prefix: str, expected: list[dict[str, Any]]) -> Any:
    def check() -> list[str]:
        latest = board_scores(url, prefix)
        problems: list[str] = []
        for t in expected:
            problems += diff_against(t, latest)
        return problems
    return check


def test_redis_killed_scoring_goes_on_and_the_board_catches_up(
    fault_settings: Settings, score_tail: TopicTail, tmp_path: Path, unique: str
) -> None:
    server = RedisServer(data_dir=tmp_path / "redis", appendonly=True)
    server.start()
    port = server.port
    s = fault_settings.with_(redis_url=server.url)
    prefix = f"test:{unique}:board"
    msgs = simulated_messages("2024-03-04", "2024-03-09", s.partitions, seed=15)
    third = len(msgs) // 3
    part1, part2, part3 = msgs[:third], msgs[third:2 * third], msgs[2 * third:]
    mid_at = final_time(part1 + part2)
    mid_ticks = ticks(mid_at, s.partitions, "mid")
    mid = truths(write_events(tmp_path / "mid.jsonl", part1 + part2 + mid_ticks), mid_at)
    end_at = final_time(msgs)
    end_ticks = ticks(end_at, s.partitions, "end")
    end = truths(write_events(tmp_path / "end.jsonl", msgs + mid_ticks + end_ticks), end_at)
    w = worker(s, tmp_path / "worker.log")
    board = Service(s, ["board", "--prefix", prefix], tmp_path / "board.log")
    replacement: RedisServer | None = None

    def logs() -> str:
        return f"--- worker\n{w.log_tail()}\n--- board\n{board.log_tail()}"

    try:
        with services(w, board):
            w.start()
            board.start()
            produce(s.kafka_bootstrap, s.events_topic, part1, RATE)
            wait_until(lambda: [] if board_scores(server.url, prefix) else ["empty board"], 90,
                       "first rows on the board", logs)
            server.kill()
            # Redis is away: scoring goes on, exactly.
            produce(s.kafka_bootstrap, s.events_topic, part2 + mid_ticks, RATE)
            wait_until(scores_equal(score_tail, mid), 120,
                       "scores while Redis is down != bando score", logs)
            assert board.running, "the board writer waits for Redis, it does not exit"
            server.start()  # with its data (append-only file): resume from its offsets
            catch_up = wait_until(board_equals(server.url, prefix, mid), 90,
                                  "board after Redis returned != bando score", logs)
            # Redis lost for good: a new, empty one on the same address.
            server.kill()
            replacement = RedisServer(port=port, data_dir=tmp_path / "redis-new")
            replacement.start()
            # New scores arrive: the writer finds the board gone and rebuilds it from the
            # topics (an idle writer finds out by itself: the test below).
            produce(s.kafka_bootstrap, s.events_topic, part3 + end_ticks, RATE)
            produced = time.monotonic()
            wait_until(scores_equal(score_tail, end), 120, "final scores != bando score", logs)
            wait_until(board_equals(replacement.url, prefix, end), 90,
                       "board rebuilt into an empty Redis != bando score", logs)
            rebuilt = time.monotonic() - produced
            assert w.running and board.running and w.starts == 1 and board.starts == 1
        print(f"\n[redis kill] scores equal the truth with Redis down; board caught up "
              f"{catch_up:.1f} s after Redis returned with its data; rebuilt into an empty "
              f"Redis {rebuilt:.1f} s after the last input")
    finally:
        server.kill()
        server.cleanup()
        if replacement is not None:
            replacement.stop()
            replacement.cleanup()


def _score(unit: str, total: float, rank: int) -> dict[str, Any]:
    """A ``unit-scores`` message as CONTRACTS.md defines it."""
    return {"unit_id": unit, "name": unit.upper(), "peer_group": "district",
            "window": "month:2024-04", "as_of": "2024-04-14T17:00:00+07:00", "model": "vn766@1",
            "total": total, "band": "good", "rank": rank, "peer_count": 5,
            "groups": {"progress": {"points": 10.0, "max": 20}},
            "indicators": {"on_time": {"num": 1, "den": 2, "points": 10.0, "max": 20,
                                       "applicable": True}},
            "input": {"topic": "procedure-events", "partition": 0, "offset": rank}}


def test_an_idle_board_writer_rebuilds_a_redis_that_came_back_empty(
    live_settings: Settings, tmp_path: Path, unique: str
) -> None:
    """Redis replaced by an empty one while no score arrives: the board must come back within
    a bound anyway (the topics still hold everything)."""
    from bando.infra import create_topics

    s = live_settings
    create_topics(s.kafka_bootstrap, [s.scores_topic, s.rank_changes_topic,
                                      s.band_changes_topic], 2)
    server = RedisServer(data_dir=tmp_path / "redis")
    server.start()
    port = server.port
    replacement: RedisServer | None = None
    s = s.with_(redis_url=server.url)
    prefix = f"test:{unique}:board"
    board = Service(s, ["board", "--prefix", prefix], tmp_path / "board.log")
    msgs = [_score(f"u{i}", 80.0 + i, 5 - i) for i in range(5)]
    produce(s.kafka_bootstrap, s.scores_topic,
            [Msg(orjson.dumps(m), m["unit_id"].encode()) for m in msgs])
    try:
        with services(board):
            board.start()
            wait_until(lambda: [] if len(board_scores(server.url, prefix)) == 5 else ["rows"],
                       60, "board built", board.log_tail)
            server.kill()
            fresh = replacement = RedisServer(port=port, data_dir=tmp_path / "redis-new")
            fresh.start()
            wait_until(lambda: [] if len(board_scores(fresh.url, prefix)) == 5
                       else ["board still empty"], 25, "idle writer rebuilds the board",
                       board.log_tail)
    finally:
        server.kill()
        server.cleanup()
        if replacement is not None:
            replacement.stop()
            replacement.cleanup()
