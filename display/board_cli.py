"""``bando board``: keep the wall-display board in Redis from the score topics."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from bando import kafka_auth
from bando.metrics import start_metrics_server
from bando.settings import Settings
from display import board, store
from display.board_writer import BoardWriter, WriterConfig

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port", type=int, help="serve /metrics here (default BANDO_METRICS_PORT; 0: off)"
    )
    parser.add_argument("--kafka-bootstrap", help="host:port (default: BANDO_KAFKA_BOOTSTRAP)")
    parser.add_argument("--redis-url", help="redis://host:port/db (default: BANDO_REDIS_URL)")
    parser.add_argument("--prefix", default=store.DEFAULT_PREFIX, help="Redis key prefix")
    parser.add_argument("--scores-topic", help="default: BANDO_SCORES_TOPIC or unit-scores")
    parser.add_argument("--rank-changes-topic", help="default: rank-changes")
    parser.add_argument("--band-changes-topic", help="default: band-changes")
    parser.add_argument(
        "--catchup-lag", type=_positive, default=WriterConfig.catchup_lag,
        help="messages the board may be behind the topics before screens show it catching up "
             "(default %(default)s)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def config_from(args: argparse.Namespace, settings: Settings | None = None) -> WriterConfig:
    s = settings or Settings.from_env()
    return WriterConfig(
        bootstrap=args.kafka_bootstrap or s.kafka_bootstrap,
        redis_url=args.redis_url or s.redis_url,
        prefix=args.prefix,
        redis_password=s.redis_password,
        topics={
            board.SCORE: args.scores_topic or s.scores_topic,
            board.RANK: args.rank_changes_topic or s.rank_changes_topic,
            board.BAND: args.band_changes_topic or s.band_changes_topic,
        },
        kafka_security=kafka_auth.client_kwargs(s),
        catchup_lag=args.catchup_lag,
    )


async def _main(config: WriterConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "board writer: %s -> %s (prefix %s)",
        config.topics,
        store.redact(config.redis_url),
        config.prefix,
    )
    await BoardWriter(config).run(stop)


def _metrics(args: argparse.Namespace, settings: Settings) -> None:
    port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    if port:
        start_metrics_server(port, settings.metrics_host, service="board")


def run(args: argparse.Namespace) -> int:
    _metrics(args, Settings.from_env())
    asyncio.run(_main(config_from(args)))
    return 0
