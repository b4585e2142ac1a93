"""``bando ranker``: the ranker stage in a process of its own (``streams.rank_service``).

For workers started with ``BANDO_RANKER=off``: ranking then gets a core of its own instead of
sharing the scorer's event loop. Several may run (same ``BANDO_APP_ID``): one ranks, the others
take over when it dies.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from bando.settings import Settings

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap (env BANDO_KAFKA_BOOTSTRAP)")
    parser.add_argument("--app-id", help="the workers' consumer group / topic prefix")
    parser.add_argument("--metrics-port", type=int, help="serve /metrics on 127.0.0.1:PORT")


async def _serve(settings: Settings) -> None:
    from streams.rank_service import RankerService

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await RankerService(settings).run()
    except asyncio.CancelledError:
        log.info("ranker stopped")


def run(args: argparse.Namespace) -> int:
    from bando import kafka_auth, metrics
    from streams.rank_service import create_ranker_topics

    settings = Settings.from_env(kafka_bootstrap=args.bootstrap, app_id=args.app_id,
                                 metrics_port=args.metrics_port)
    log.info("settings: %s", settings.redacted())
    log.info("kafka security: %s", kafka_auth.describe(settings))
    create_ranker_topics(settings)
    if settings.metrics_port:
        metrics.start_metrics_server(settings.metrics_port, settings.metrics_host, service="ranker")
    asyncio.run(_serve(settings))
    return 0
