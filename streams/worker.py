"""``bando worker``: run one live scorer worker process (start several to scale out)."""

from __future__ import annotations

import argparse
import logging

from bando.settings import Settings

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap (env BANDO_KAFKA_BOOTSTRAP)")
    parser.add_argument("--partitions", type=int, help="partitions of procedure-events")
    parser.add_argument("--coalesce", type=float, help="seconds between a unit's updates")
    parser.add_argument("--catalog", help="unit catalog JSON (default: HCMC 2024)")
    parser.add_argument("--app-id", help="consumer group / table namespace")
    parser.add_argument("--ranker", choices=["inline", "off"],
                        help="rank in this process, or leave it to `bando ranker` "
                             "(env BANDO_RANKER, default inline)")
    parser.add_argument("--metrics-port", type=int, help="serve /metrics on 127.0.0.1:PORT")
    parser.add_argument("--log-level", default="warning")


def run(args: argparse.Namespace) -> int:
    import faust

    from bando import kafka_auth, metrics
    from bando.infra import ensure_project_topics
    from streams.app import create_app
    from streams.rank_service import create_ranker_topics

    settings = Settings.from_env(
        kafka_bootstrap=args.bootstrap, partitions=args.partitions,
        coalesce_seconds=args.coalesce, catalog_path=args.catalog, app_id=args.app_id,
        metrics_port=args.metrics_port, ranker=args.ranker,
    )
    log.info("settings: %s", settings.redacted())
    log.info("kafka security: %s", kafka_auth.describe(settings))
    ensure_project_topics(settings.kafka_bootstrap, settings)
    create_ranker_topics(settings)
    if settings.metrics_port:
        metrics.start_metrics_server(settings.metrics_port, settings.metrics_host, service="worker")
    app = create_app(settings)
    if settings.store == "rocksdb":
        from streams.diskstore import lock_store_dir

        lock_store_dir(app.conf.tabledir)  # held until the process exits
    worker = faust.Worker(app, loglevel=args.log_level, quiet=True)
    worker.execute_from_commandline()
    return 0
