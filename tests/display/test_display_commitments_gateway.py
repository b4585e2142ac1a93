"""Commitments on the wall: the gateway judges them on every pushed row, in event time."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis
from wall_support import SseReader, catalog_units, score_message

from bando.settings import Settings
from display import board, cli, store
from display.commitments import ENV_PATH, WallCommitments
from display.gateway import GatewayConfig, build_app

W, MARCH = "month:2024-04", "month:2024-03"
AS_OF = "2024-04-14T17:00:00+07:00"
AFTER = "2024-04-21T09:00:00+07:00"  # after district-01's on_time deadline (2024-04-20)

COMMITMENTS = {
    "commitments": [
        {"unit_id": "district-01", "indicator": "on_time", "target": 0.9, "deadline": "2024-04-20"},
        {"unit_id": "district-01", "indicator": "total", "target": 60, "deadline": "2024-06-30"},
        # deadline in a window that is over: judged on that window's last row (March)
        {
            "unit_id": "district-08",
            "indicator": "on_time",
            "target": 0.75,
            "deadline": "2024-03-31",
        },
        # a yearly commitment is not shown on month rows
        {
            "unit_id": "district-08",
            "indicator": "total",
            "target": 50,
            "deadline": "2024-12-31",
            "window": "year",
        },
        # its window's board is gone: nothing to judge on, so nothing shown
        {"unit_id": "district-04", "indicator": "on_time", "target": 0.5, "deadline": "2024-02-29"},
    ]
}
UNITS = {u["unit_id"]: u for u in catalog_units()}


def score(
    uid: str, window: str, as_of: str, total: float, on_time: tuple[int, int], offset: int = 0
) -> dict[str, Any]:
    msg = score_message(UNITS[uid], window, as_of, total, 1, 22, offset=offset)
    msg["indicators"]["on_time"].update(num=on_time[0], den=on_time[1])
    return msg


def items(msgs: list[dict[str, Any]], ts: int = 1000) -> list[store.Item]:
    return [store.Item(board.SCORE, board.check(board.SCORE, m), ts) for m in msgs]


def row_of(snap: dict[str, Any], uid: str) -> dict[str, Any]:
    return next(r for rs in snap["boards"][W].values() for r in rs if r["unit_id"] == uid)


def by_indicator(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["indicator"]: c for c in row["commitments"]}


@pytest.fixture
def commitments_file(tmp_path: Path) -> Path:
    path = tmp_path / "commitments.json"
    path.write_text(json.dumps(COMMITMENTS), encoding="utf-8")
    return path


@pytest.mark.integration
async def test_rows_carry_their_commitments_judged_at_the_score_as_of(
    redis_server, unique, commitments_file
):
    keys = store.Keys(f"test:{unique}:board")
    redis = Redis.from_url(redis_server.url)
    await store.ensure_epoch(redis, keys, "t")
    await store.apply_batch(
        redis,
        keys,
        items([score("district-08", MARCH, "2024-03-31T20:00:00+07:00", 70.0, (3, 4))]),
        {},
    )
    await store.apply_batch(
        redis,
        keys,
        items(
            [
                score("district-01", W, AS_OF, 70.0, (1, 2), 1),
                score("district-08", W, AS_OF, 55.0, (1, 2), 2),
                score("district-03", W, AS_OF, 80.0, (1, 2), 3),
                score("district-04", W, AS_OF, 65.0, (1, 2), 4),
            ]
        ),
        {},
    )
    commitments = WallCommitments.load(commitments_file, "vn766@1")
    app = build_app(
        GatewayConfig(redis_url=redis_server.url, prefix=keys.prefix, ping_seconds=1),
        commitments=commitments,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url("/"))) as session:
            async with session.get("/events") as resp:
                sse = SseReader(resp)
                snap = await sse.until("snapshot")
                # the wall clock is long past 2024-04-20: still open, judged at the as_of
                d01 = by_indicator(row_of(snap, "district-01"))
                assert d01["on_time"]["status"] == "open" and d01["on_time"]["missed"] is False
                assert d01["on_time"]["value"] == 0.5 and d01["on_time"]["target"] == 0.9
                assert d01["on_time"]["deadline"] == "2024-04-20"
                assert d01["on_time"]["days_left"] == 7  # ceil, as in the digest
                assert (d01["on_time"]["num"], d01["on_time"]["den"]) == (1, 2)
                assert d01["total"]["status"] == "met" and d01["total"]["value"] == 70.0
                d02 = row_of(snap, "district-08")["commitments"]
                assert [(c["indicator"], c["status"], c["value"]) for c in d02] == [
                    ("on_time", "kept", 0.75)
                ]  # March's value; the yearly one is not here
                for uid in ("district-03", "district-04"):
                    assert "commitments" not in row_of(snap, uid)

                await store.apply_batch(
                    redis,
                    keys,
                    items([score("district-01", W, AFTER, 71.0, (1, 2), 9)], ts=5000),
                    {},
                )
                change = await sse.until("change")
                assert change["unit"]["unit_id"] == "district-01"
                d01 = by_indicator(change["unit"])
                assert d01["on_time"]["status"] == "missed" and d01["on_time"]["missed"] is True
                assert d01["total"]["status"] == "met"

                await store.apply_batch(
                    redis,
                    keys,
                    items([score("district-03", W, AFTER, 81.0, (1, 2), 10)], ts=5001),
                    {},
                )
                change = await sse.until("change")
                assert change["unit"]["unit_id"] == "district-03"
                assert "commitments" not in change["unit"]

                # SIGHUP: the file is read again and every screen gets a fresh snapshot
                commitments_file.write_text(
                    json.dumps({"commitments": COMMITMENTS["commitments"][2:]}), encoding="utf-8"
                )
                commitments.reload_logged()
                snap = await sse.until("snapshot")
                assert "commitments" not in row_of(snap, "district-01")
                assert row_of(snap, "district-08")["commitments"][0]["status"] == "kept"
                # a broken edit is logged and the commitments in force stay
                commitments_file.write_text("{not json", encoding="utf-8")
                commitments.reload_logged()
                assert len(commitments) == 3
            async with session.get("/api/board") as resp:
                body = await resp.json()
            assert row_of(body, "district-08")["commitments"][0]["status"] == "kept"
    finally:
        await server.close()
        await redis.aclose()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    return parser.parse_args(list(argv))


def test_the_option_and_the_environment_name_the_file(monkeypatch, commitments_file):
    settings = Settings.from_env(env={})
    monkeypatch.delenv(ENV_PATH, raising=False)
    assert cli.config_from(_args(), settings).commitments_path == ""
    monkeypatch.setenv(ENV_PATH, "/from/env.json")
    assert cli.config_from(_args(), settings).commitments_path == "/from/env.json"
    config = cli.config_from(_args("--commitments", str(commitments_file)), settings)
    assert config.commitments_path == str(commitments_file)
    assert config.model == settings.model


def test_a_broken_commitments_file_stops_the_start(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(ENV_PATH, raising=False)
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "commitments": [
                    {
                        "unit_id": "district-01",
                        "indicator": "no_such",
                        "target": 0.5,
                        "deadline": "2024-04-30",
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    assert cli.run(_args("--commitments", str(bad), "--metrics-port", "0")) == 2
    assert "unknown indicator" in capsys.readouterr().err
