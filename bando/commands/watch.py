"""``bando watch``: live score updates in the terminal (a board for people without a browser)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import Any

import orjson

from bando.settings import Settings

log = logging.getLogger(__name__)

_ARROW = {None: " ", 0: "="}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap (env BANDO_KAFKA_BOOTSTRAP)")
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--window", choices=["month", "year", "all"], default="all")


def format_update(msg: dict, previous_rank: int | None) -> str:
    total = "  -  " if msg.get("total") is None else f"{msg['total']:6.2f}"
    rank = msg.get("rank")
    move = ""
    if previous_rank is not None and rank is not None and rank != previous_rank:
        move = f"  {'↑' if rank < previous_rank else '↓'}{abs(previous_rank - rank)}"
    return (f"{msg.get('as_of', '')[:19]}  {msg.get('window', ''):14} "
            f"{str(msg.get('peer_group', ''))[:10]:10} #{rank or '-':<3} {total} "
            f"{str(msg.get('band') or ''):9} {str(msg.get('name', ''))[:40]}{move}")


class Board:
    """The lines to print for the messages of ``unit-scores``, one message at a time.

    A watcher is a bystander of the topic: a message it cannot read (not JSON, not an object,
    fields of the wrong type) is skipped and counted, never the end of the board."""

    def __init__(self, window: str):
        self.window = window
        self.ranks: dict[tuple[Any, Any], Any] = {}
        self.skipped = 0

    def line(self, value: bytes | None, where: str = "") -> str | None:
        try:
            msg = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict):
            self._skip(where, "not a JSON object")
            return None
        if self.window != "all" and not str(msg.get("window", "")).startswith(self.window):
            return None
        try:
            key = (msg.get("window"), msg.get("unit_id"))
            text = format_update(msg, self.ranks.get(key))
        except (TypeError, ValueError) as exc:  # a total that is text, a window that is a list
            self._skip(where, f"not a score update ({exc})")
            return None
        self.ranks[key] = msg.get("rank")
        return text

    def _skip(self, where: str, why: str) -> None:
        self.skipped += 1
        log.warning("skipped message %s: %s (%d skipped so far)", where, why, self.skipped)


async def _watch(settings: Settings, from_beginning: bool, window: str) -> None:
    from aiokafka import AIOKafkaConsumer

    from bando.kafka_auth import client_kwargs

    consumer = AIOKafkaConsumer(settings.scores_topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                **client_kwargs(settings))
    board = Board(window)
    try:  # start() inside: a consumer that failed to start must still be stopped
        await consumer.start()
        async for record in consumer:
            text = board.line(record.value, f"{record.topic}[{record.partition}]@{record.offset}")
            if text is not None:
                print(text, flush=True)
    finally:
        await consumer.stop()


def run(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    try:
        settings = Settings.from_env(kafka_bootstrap=args.bootstrap)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_watch(settings, args.from_beginning, args.window))
    except (KafkaError, OSError, ValueError) as exc:  # unreachable broker, bad security setup
        print(f"bando watch: {exc}", file=sys.stderr)
        return 2
    return 0
