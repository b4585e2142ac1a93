"""``bando display``: serve the wall page and its push stream (one process, read-only)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from bando.metrics import start_metrics_server
from bando.settings import Settings
from display import store
from display.commitments import ENV_PATH, WallCommitments
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
    parser.add_argument(
        "--commitments",
        metavar="FILE",
        help=f"commitments JSON shown on the rows of their units (default: {ENV_PATH}); "
        "re-read on SIGHUP",
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
        commitments_path=getattr(args, "commitments", None) or os.environ.get(ENV_PATH, ""),
        model=s.model,
        catalog_path=s.catalog_path,
    )


async def _main(config: GatewayConfig, commitments: WallCommitments | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if commitments is not None:
        loop.add_signal_handler(signal.SIGHUP, commitments.reload_logged)
        log.info("%d commitments from %s (SIGHUP re-reads it)", len(commitments), commitments.path)
    log.info(
        "display gateway reading %s (prefix %s)", store.redact(config.redis_url), config.prefix
    )
    await serve(config, stop, commitments)


def _metrics(args: argparse.Namespace, settings: Settings) -> None:
    port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    if port:
        start_metrics_server(port, settings.metrics_host, service="display")


def run(args: argparse.Namespace) -> int:
    from leaders.commitments import CommitmentError
    from scoring.exceptions import ScoringError

    config = config_from(args)
    commitments = None
    if config.commitments_path:
        try:  # a broken file stops the start, with a message (a reload keeps the old one)
            commitments = WallCommitments.load(
                config.commitments_path, config.model, config.catalog_path
            )
        except (CommitmentError, ScoringError) as exc:
            print(f"bando display: {exc}", file=sys.stderr)
            return 2
    _metrics(args, Settings.from_env())
    asyncio.run(_main(config, commitments))
    return 0
