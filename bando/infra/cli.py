"""``bando infra``: run the local Kafka broker and Redis for development and the demo.

``bando infra up`` starts both, creates the project's topics, prints shell-exportable
``BANDO_KAFKA_BOOTSTRAP=...`` / ``BANDO_REDIS_URL=...`` lines on stdout (logs go to stderr,
so ``eval``-ing or grepping stdout is safe), then waits for Ctrl-C or SIGTERM and stops
both cleanly. Data stays in ``--data-dir``, so the next ``up`` continues where it left off.
``bando infra fetch`` only downloads the broker's jars (setup scripts, CI).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from bando.infra.exceptions import InfraError
from bando.infra.kafka import KafkaBroker, create_topics
from bando.infra.kafka_jars import DEFAULT_KAFKA_VERSION, ensure_kafka_jars
from bando.infra.ports import port_is_free
from bando.infra.redis import RedisServer
from bando.kafka_auth import client_kwargs
from bando.settings import Settings

log = logging.getLogger(__name__)


def project_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """The project's topics (SPEC section 4) from ``bando.settings.Settings``, with configs.

    History is kept forever (``retention.ms=-1``): auditors replay events and check
    published scores from the topics themselves.
    """
    keep = {"retention.ms": "-1"}
    return {name: dict(keep) for name in (
        settings.events_topic, settings.dlq_topic, settings.scores_topic,
        settings.rank_changes_topic, settings.band_changes_topic, settings.at_risk_topic)}


def ensure_project_topics(bootstrap: str, settings: Settings) -> list[str]:
    """Create the project's topics with ``settings.partitions``; return those created.
    Connects with the settings' credentials (on a secured cluster the topics usually exist
    already, created by the operator: then nothing is created)."""
    created: list[str] = []
    for name, config in project_topics(settings).items():
        created += create_topics(bootstrap, [name], settings.partitions,
                                 settings.replication_factor, config,
                                 security=client_kwargs(settings))
    return created


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="infra_action", metavar="ACTION")
    actions.required = True
    up = actions.add_parser("up", help="start Kafka and Redis until Ctrl-C")
    up.add_argument("--data-dir", help="where broker and Redis keep their data "
                    "(default: BANDO_DATA_DIR/infra, i.e. .bando-data/infra)")
    up.add_argument("--partitions", type=int, help="partitions per project topic "
                    "(default: BANDO_PARTITIONS, 4)")
    up.add_argument("--kafka-port", type=int, help="broker port (default: the port of "
                    "BANDO_KAFKA_BOOTSTRAP if free, else any; 0: any free port)")
    up.add_argument("--redis-port", type=int, help="Redis port (default: the port of "
                    "BANDO_REDIS_URL if free, else any; 0: any free port)")
    up.add_argument("--no-redis", action="store_true", help="start the broker only")
    fetch = actions.add_parser("fetch", help="download the Kafka broker's jars if missing")
    fetch.add_argument("--kafka-version", default=DEFAULT_KAFKA_VERSION)


def run(args: argparse.Namespace) -> int:
    try:
        if args.infra_action == "fetch":
            print(ensure_kafka_jars(args.kafka_version))
            return 0
        return _up(args)
    except InfraError as exc:
        log.error("%s", exc)
        return 1


def _default_port(requested: int | None, address: str, what: str) -> int | None:
    """The port to use: ``requested``, else the configured one if it is free, else any."""
    if requested is not None:
        return requested or None
    port = _port_of(address)
    if port is not None and port_is_free(port):
        return port
    log.warning("%s port %s is taken; using a free port instead", what, port)
    return None


def _port_of(address: str) -> int | None:
    tail = address.rsplit(":", 1)[-1].split("/", 1)[0]
    return int(tail) if tail.isdigit() else None


def _up(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.partitions is not None:
        settings = settings.with_(partitions=args.partitions)
    data_dir = Path(args.data_dir or Path(settings.data_dir) / "infra")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    broker = KafkaBroker(data_dir=data_dir / "kafka", partitions=settings.partitions,
                         port=_default_port(args.kafka_port, settings.kafka_bootstrap, "Kafka"))
    redis: RedisServer | None = None
    if not args.no_redis:
        redis = RedisServer(port=_default_port(args.redis_port, settings.redis_url, "Redis"),
                            data_dir=data_dir / "redis", appendonly=True)
    try:
        broker.start()
        created = ensure_project_topics(broker.bootstrap, settings)
        log.info("topics ready (created: %s)", ", ".join(created) or "none, all existed")
        if redis is not None:
            redis.start()
        print(f"BANDO_KAFKA_BOOTSTRAP={broker.bootstrap}")
        if redis is not None:
            print(f"BANDO_REDIS_URL={redis.url}")
        sys.stdout.flush()
        log.info("running; Ctrl-C to stop (data in %s)", data_dir)
        while not stop.wait(1.0):
            for server in (broker, redis):
                if server is not None and not server.running:
                    raise InfraError(f"{server.name} exited unexpectedly "
                                     f"(log: {server.log_path})", server.log_tail())
        log.info("stopping")
        return 0
    finally:
        # Stopping must not be cut short by a second Ctrl-C: it only sets the event now.
        for server in (redis, broker):
            if server is not None:
                server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
