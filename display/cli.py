"""``bando display``: serve the wall page and its push stream (one process, read-only)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from bando.metrics import start_metrics_server
from bando.settings import Settings
from display import store
from display.gateway import GatewayConfig, serve

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port", type=int, help="serve /metrics here (default BANDO_METRICS_PORT; 0: off)"
    )
    parser.add_argument("--host", help="listen address (default: BANDO_DISPLAY_HOST, loopback)")
    parser.add_argument("--port", type=int, help="listen port (default: BANDO_DISPLAY_PORT)")
    parser.add_argument("--redis-url", help="redis://host:port/db (default: BANDO_REDIS_URL)")
    parser.add_argument("--prefix", default=store.DEFAULT_PREFIX, help="Redis key prefix")
    parser.add_argument(
        "--ping-seconds", type=float, default=15.0, help="heartbeat interval of the push stream"
    )
    parser.add_argument(
        "--max-screens", type=int, default=5000, help="push streams one process accepts"
    )


def config_from(args: argparse.Namespace, settings: Settings | None = None) -> GatewayConfig:
    s = settings or Settings.from_env()
    return GatewayConfig(
        redis_url=args.redis_url or s.redis_url,
        redis_password=s.redis_password,
        prefix=args.prefix,
        host=args.host or s.display_host,
        port=s.display_port if args.port is None else args.port,
        ping_seconds=args.ping_seconds,
        max_screens=args.max_screens,
    )


async def _main(config: GatewayConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "display gateway reading %s (prefix %s)", store.redact(config.redis_url), config.prefix
    )
    await serve(config, stop)


def _metrics(args: argparse.Namespace, settings: Settings) -> None:
    port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    if port:
        start_metrics_server(port, settings.metrics_host, service="display")


def run(args: argparse.Namespace) -> int:
    _metrics(args, Settings.from_env())
    asyncio.run(_main(config_from(args)))
    return 0
