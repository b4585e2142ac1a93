"""``bando watch``: live score updates in the terminal (a board for people without a browser)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import orjson

from bando.settings import Settings

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


async def _watch(settings: Settings, from_beginning: bool, window: str) -> None:
    from aiokafka import AIOKafkaConsumer

    from bando.kafka_auth import client_kwargs

    consumer = AIOKafkaConsumer(settings.scores_topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                **client_kwargs(settings))
    await consumer.start()
    ranks: dict[tuple[str, str], int | None] = {}
    try:
        async for record in consumer:
            msg = orjson.loads(record.value)
            if window != "all" and not str(msg.get("window", "")).startswith(window):
                continue
            key = (msg.get("window"), msg.get("unit_id"))
            print(format_update(msg, ranks.get(key)), flush=True)  # type: ignore[arg-type]
            ranks[key] = msg.get("rank")  # type: ignore[index]
    finally:
        await consumer.stop()


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env(kafka_bootstrap=args.bootstrap)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_watch(settings, args.from_beginning, args.window))
    return 0
