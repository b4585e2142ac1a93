"""``bando notify``: deliver band-drop (and optionally band-rise) alerts and early warnings.

Connection settings come from ``Settings`` (``BANDO_KAFKA_BOOTSTRAP``, ...). Alert options have
flags and ``BANDO_ALERT_*`` environment defaults so a container needs no command-line edits.
Secrets (a bearer token, an HMAC signing key) come only from the environment or a file
(``BANDO_ALERT_WEBHOOK_TOKEN`` / ``..._FILE``, ``BANDO_ALERT_WEBHOOK_SECRET`` / ``..._FILE``),
never from flags, which other users of the machine can read in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

from aiokafka.errors import KafkaError

from alerts.exceptions import DeadLetterError
from alerts.notifier import Notifier, NotifierConfig, kafka_client_kwargs
from alerts.policy import AlertPolicy, PolicyConfig
from alerts.sinks import (
    DeadLetter,
    FileDeadLetter,
    KafkaDeadLetter,
    LogSink,
    RetryPolicy,
    Sink,
    WebhookSink,
    redact_url,
)
from bando.exceptions import BandoError
from bando.metrics import start_metrics_server
from bando.settings import Settings

log = logging.getLogger(__name__)


def _env(name: str, default: str) -> str:
    return os.environ.get("BANDO_ALERT_" + name, default)


def _secret(name: str) -> str | None:
    value = os.environ.get("BANDO_ALERT_" + name)
    path = os.environ.get("BANDO_ALERT_" + name + "_FILE")
    if not value and path:
        with open(path, encoding="utf-8") as fh:
            value = fh.read().strip()
    return value or None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="POST alerts here (repeatable; default: $BANDO_ALERT_WEBHOOKS, comma-separated)",
    )
    parser.add_argument("--no-log-sink", action="store_true", help="do not log each alert")
    parser.add_argument(
        "--rises",
        action="store_true",
        default=_env("RISES", "").lower() in {"1", "true", "yes", "on"},
        help="alert band rises too ($BANDO_ALERT_RISES)",
    )
    parser.add_argument(
        "--cooldown",
        type=float,
        default=float(_env("COOLDOWN_SECONDS", "3600")),
        metavar="SECONDS",
        help="event-time cool-down per unit and window (default %(default)s)",
    )
    parser.add_argument(
        "--hysteresis",
        type=float,
        default=float(_env("HYSTERESIS_POINTS", "1.0")),
        metavar="POINTS",
        help="a rise re-arms drop alerts only this far above the threshold",
    )
    parser.add_argument("--top", type=int, default=3, help="indicators listed per alert")
    parser.add_argument(
        "--dead-letter",
        default=_env("DEAD_LETTER", "kafka"),
        metavar="DEST",
        help="'kafka' (topic --dlq-topic) or a JSON-lines file path",
    )
    parser.add_argument("--dlq-topic", default=_env("DLQ_TOPIC", "alerts-dlq"))
    parser.add_argument(
        "--at-risk-topic",
        default=None,
        help="topic of early warnings ('' to ignore; default $BANDO_AT_RISK_TOPIC or 'at-risk')",
    )
    parser.add_argument("--group-id", default=_env("GROUP_ID", "bando-notifier"))
    parser.add_argument(
        "--from",
        dest="offset_reset",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a new consumer group starts",
    )
    parser.add_argument(
        "--no-create-topics",
        action="store_true",
        help="do not create missing topics (clusters where operators create them)",
    )
    parser.add_argument(
        "--no-rebuild",
        action="store_true",
        help="do not rebuild anti-flapping state from the topic on start",
    )
    parser.add_argument("--max-attempts", type=int, default=6, help="webhook attempts per alert")
    parser.add_argument("--backoff", type=float, default=0.5, help="first retry delay, seconds")
    parser.add_argument("--max-backoff", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=10.0, help="webhook request timeout")
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap (overrides settings)")
    parser.add_argument("--metrics-host", default=None)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics here (default $BANDO_METRICS_PORT; 0: off)",
    )


def _webhooks(args: argparse.Namespace) -> list[tuple[str, str]]:
    specs = list(args.webhook) or [
        s.strip() for s in _env("WEBHOOKS", "").replace("\n", ",").split(",") if s.strip()
    ]
    out = []
    for i, spec in enumerate(specs, 1):
        name, sep, url = spec.partition("=")
        if not sep or "://" in name:
            name, url = ("webhook" if len(specs) == 1 else f"webhook-{i}"), spec
        out.append((name, url))
    return out


def build(args: argparse.Namespace, settings: Settings) -> Notifier:
    """The notifier the arguments describe (separate from ``run`` so tests can build one)."""
    from scoring.catalog import load_catalog
    from scoring.model import load_model

    policy = AlertPolicy(
        PolicyConfig.for_model(
            load_model(settings.model),
            send_rises=args.rises,
            cooldown_seconds=args.cooldown,
            hysteresis_points=args.hysteresis,
            top_n=args.top,
        )
    )
    retry = RetryPolicy(
        max_attempts=args.max_attempts, initial_backoff=args.backoff, max_backoff=args.max_backoff
    )
    token, secret = _secret("WEBHOOK_TOKEN"), _secret("WEBHOOK_SECRET")
    sinks: list[Sink] = [] if args.no_log_sink else [LogSink()]
    for name, url in _webhooks(args):
        sinks.append(
            WebhookSink(
                url, name=name, timeout=args.timeout, retry=retry, token=token, secret=secret
            )
        )
        log.info("webhook sink %s -> %s", name, redact_url(url))
    if not sinks:
        raise ValueError("no sink: give --webhook or drop --no-log-sink")
    kafka: dict[str, Any] = kafka_client_kwargs(settings)
    dead: DeadLetter
    if args.dead_letter == "kafka":
        dead = KafkaDeadLetter(args.dlq_topic, **kafka)
    else:
        dead = FileDeadLetter(args.dead_letter)
    at_risk = args.at_risk_topic
    if at_risk is None:
        at_risk = getattr(
            settings, "at_risk_topic", os.environ.get("BANDO_AT_RISK_TOPIC", "at-risk")
        )
    config = NotifierConfig(
        band_changes_topic=settings.band_changes_topic,
        at_risk_topic=at_risk,
        group_id=args.group_id,
        auto_offset_reset=args.offset_reset,
        rebuild=not args.no_rebuild,
        kafka=kafka,
        unit_names={u.unit_id: u.name for u in load_catalog(settings.catalog_path).units},
    )
    return Notifier(config, policy, sinks, dead)


async def _ensure_topics(notifier: Notifier, settings: Settings, dlq_topic: str | None) -> None:
    """Create the notifier's topics if missing (local and compose setups; never with SASL,
    where operators create topics with their own replication settings, see SCALE-OUT.md)."""
    from bando.infra.kafka import create_topics_async
    from bando.kafka_auth import client_kwargs

    names = [*notifier.config.topics, *([dlq_topic] if dlq_topic else [])]
    try:
        await create_topics_async(
            settings.kafka_bootstrap,
            names,
            settings.partitions,
            settings.replication_factor,
            {"retention.ms": "-1"},
            security=client_kwargs(settings),  # a TLS listener needs it without a username too
        )
    except Exception as exc:  # noqa: BLE001 - the consumer reports a real problem clearly
        log.warning("could not ensure topics %s: %s", names, exc)


async def _main(notifier: Notifier, before: Any = None) -> int:
    if before is not None:
        await before
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await notifier.run(stop)
    except DeadLetterError as exc:
        log.critical("stopping: %s", exc)
        return 1
    except KafkaError as exc:  # unreachable cluster, denied access: say so, exit non-zero
        log.critical("stopping: Kafka error: %s", exc)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env(kafka_bootstrap=args.bootstrap)
    try:
        notifier = build(args, settings)
    except (ValueError, OSError, BandoError) as exc:
        log.error("bando notify: %s", exc)
        return 2
    host = args.metrics_host or settings.metrics_host
    port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    server = start_metrics_server(port, host, service="notifier") if port else None
    ensure = None
    if not args.no_create_topics and not settings.kafka_username:
        dlq = args.dlq_topic if args.dead_letter == "kafka" else None
        ensure = _ensure_topics(notifier, settings, dlq)
    try:
        return asyncio.run(_main(notifier, ensure))
    finally:
        if server is not None:
            server.close()
