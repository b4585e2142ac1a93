"""``bando signals``: harassment and inconvenience signals, live on Kafka or from a file.

    bando signals [--config THRESHOLDS.json] [--webhook [NAME=]URL ...] [--interval S]
                  [--group-id G] [--signals-topic T] [--metrics-port P]      # the live service
    bando signals --events FILE.jsonl [--at T] [--unit U ...] [--format text|json] [--all]

The live service reads ``BANDO_EVENTS_TOPIC`` with its own consumer group and publishes each
threshold crossing once to ``signals`` (key unit_id), alerting raised signals through the same
sinks as ``bando notify`` (log, webhooks: ``BANDO_ALERT_WEBHOOKS``, token and signing secret
from ``BANDO_ALERT_WEBHOOK_TOKEN[_FILE]`` / ``BANDO_ALERT_WEBHOOK_SECRET[_FILE]``, never from
flags). With ``--events`` it prints the signals at T (default: the file's last event) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

import orjson

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    parser.add_argument("--config", metavar="FILE", default=os.environ.get(
        "BANDO_SIGNALS_CONFIG"), help="thresholds JSON (default: built-in, docs/LEADERS.md)")
    parser.add_argument("--units", metavar="CATALOG", help="unit catalog (default settings)")
    off = parser.add_argument_group("offline (a file of events)")
    off.add_argument("--events", metavar="FILE", help="JSON-lines events: print and exit")
    off.add_argument("--at", metavar="T", help="RFC 3339 or a date (its end); default: the "
                     "file's last event time")
    off.add_argument("--unit", action="append", metavar="UNIT", help="only these units")
    off.add_argument("--all", action="store_true", help="also signals below their threshold")
    off.add_argument("--format", choices=("text", "json"), default="text")
    live = parser.add_argument_group("live service")
    live.add_argument("--bootstrap", default=None, help="Kafka bootstrap (overrides settings)")
    live.add_argument("--signals-topic", default=os.environ.get("BANDO_SIGNALS_TOPIC",
                                                                "signals"))
    live.add_argument("--group-id", default=os.environ.get("BANDO_SIGNALS_GROUP_ID",
                                                           "bando-signals"))
    live.add_argument("--interval", type=float, default=5.0,
                      help="wall seconds between evaluations (default 5)")
    live.add_argument("--webhook", action="append", default=[], metavar="[NAME=]URL",
                      help="POST raised signals here (default: $BANDO_ALERT_WEBHOOKS)")
    live.add_argument("--no-log-sink", action="store_true", help="do not log each alert")
    live.add_argument("--alert-clears", action="store_true", help="alert cleared signals too")
    live.add_argument("--dead-letter", default=os.environ.get("BANDO_ALERT_DEAD_LETTER",
                                                              "kafka"),
                      metavar="DEST", help="'kafka' (--alerts-dlq-topic) or a JSON-lines file")
    live.add_argument("--alerts-dlq-topic", default="alerts-dlq")
    live.add_argument("--no-create-topics", action="store_true")
    live.add_argument("--metrics-port", type=int, default=None,
                      help="serve /metrics here (default $BANDO_METRICS_PORT; 0: off)")


def _secret(name: str) -> str | None:
    value = os.environ.get("BANDO_ALERT_" + name)
    path = os.environ.get("BANDO_ALERT_" + name + "_FILE")
    if not value and path:
        with open(path, encoding="utf-8") as fh:
            value = fh.read().strip()
    return value or None


def offline(args: argparse.Namespace) -> int:
    from audit.replay_cli import parse_time
    from bando.settings import Settings
    from leaders.history import load_file
    from leaders.signals import evaluate
    from scoring.catalog import load_catalog
    from scoring.model import load_model
    from scoring.timeutil import format_ts

    settings = Settings.from_env()
    catalog = load_catalog(args.units or settings.catalog_path or None)
    model = load_model(settings.model)
    config = _thresholds(args)
    data = load_file(args.events, catalog)
    t = parse_time(args.at, model.timezone, end=True) if args.at else data.last_ts
    if t is None:
        print("bando signals: the file holds no event; give --at", file=sys.stderr)
        return 2
    units = args.unit or None
    for u in units or []:
        if u not in catalog:
            print(f"bando signals: unit {u!r} is not in the catalog", file=sys.stderr)
            return 2
    found = [s for s in evaluate(data.history.states, catalog, t, config, units=units)
             if args.all or s.is_active()]
    found.sort(key=lambda s: (s.unit_id, s.kind, s.procedure_id or ""))
    rows = [{**s.to_dict(model.timezone, config.max_listed), "active": s.is_active()}
            for s in found]
    if args.format == "json":
        doc = {"as_of": format_ts(t, model.timezone), "config": config.digest, "signals": rows}
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    print(f"signals at {format_ts(t, model.timezone)} (thresholds {config.digest}): "
          f"{sum(r['active'] for r in rows)} raised")
    for r in rows:
        where = f" {r['procedure_id']}" if r["procedure_id"] else ""
        mark = "RAISED" if r["active"] else "below"
        print(f"  {mark:6} {r['unit_id']} {r['kind']}{where}: {r['value']:g} "
              f"(threshold {r['threshold']:g}) {r['dossier_count']} dossier(s): "
              f"{', '.join(r['dossiers'][:6])}{' ...' if r['dossier_count'] > 6 else ''}")
    return 0


def _thresholds(args: argparse.Namespace) -> Any:
    from leaders.signals import SignalConfig

    return SignalConfig.load(args.config)


def build(args: argparse.Namespace, settings: Any) -> Any:
    """The service the arguments describe (separate from ``run`` so tests can build one)."""
    from alerts.notifier import kafka_client_kwargs
    from alerts.sinks import FileDeadLetter, KafkaDeadLetter, LogSink, WebhookSink
    from leaders.signals_service import ServiceConfig, SignalsService
    from scoring.catalog import load_catalog
    from scoring.model import load_model

    kafka = kafka_client_kwargs(settings)
    sinks: list[Any] = [] if args.no_log_sink else [LogSink()]
    specs = list(args.webhook) or [s.strip() for s in os.environ.get(
        "BANDO_ALERT_WEBHOOKS", "").replace("\n", ",").split(",") if s.strip()]
    token, secret = _secret("WEBHOOK_TOKEN"), _secret("WEBHOOK_SECRET")
    for i, spec in enumerate(specs, 1):
        name, sep, url = spec.partition("=")
        if not sep or "://" in name:
            name, url = ("webhook" if len(specs) == 1 else f"webhook-{i}"), spec
        sinks.append(WebhookSink(url, name=name, token=token, secret=secret))
    dead = (KafkaDeadLetter(args.alerts_dlq_topic, **kafka) if args.dead_letter == "kafka"
            else FileDeadLetter(args.dead_letter))
    config = ServiceConfig(
        events_topic=settings.events_topic, signals_topic=args.signals_topic,
        dlq_topic=settings.dlq_topic, group_id=args.group_id, interval=args.interval,
        max_bytes=settings.max_message_bytes,
        max_skew_us=int(settings.max_clock_skew_seconds * 1_000_000),
        alert_clears=args.alert_clears, kafka=kafka)
    return SignalsService(config, load_catalog(args.units or settings.catalog_path or None),
                          load_model(settings.model), _thresholds(args), sinks, dead)


async def _main(service: Any, settings: Any, create: bool, extra_topics: list[str]) -> int:
    from aiokafka.errors import KafkaError

    from alerts.exceptions import DeadLetterError

    if create:
        from bando.infra.kafka import create_topics_async
        from bando.kafka_auth import client_kwargs

        names = [service.config.signals_topic, *extra_topics]
        try:  # with the cluster's security: a TLS listener needs it without a username too
            await create_topics_async(settings.kafka_bootstrap, names, settings.partitions,
                                      settings.replication_factor, {"retention.ms": "-1"},
                                      security=client_kwargs(settings))
        except Exception as exc:  # noqa: BLE001 - the consumer reports a real problem clearly
            log.warning("could not ensure topics %s: %s", names, exc)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.run(stop)
    except DeadLetterError as exc:  # an alert could be neither delivered nor kept: stop
        log.critical("stopping before publishing: %s", exc)
        return 1
    except KafkaError as exc:
        log.critical("stopping: Kafka error: %s", exc)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    from bando.exceptions import BandoError
    from bando.metrics import start_metrics_server
    from bando.settings import Settings
    from leaders.signals import SignalConfigError

    try:
        if args.events:
            return offline(args)
        settings = Settings.from_env(kafka_bootstrap=args.bootstrap)
        service = build(args, settings)
    except (BandoError, OSError, ValueError, SignalConfigError) as exc:
        print(f"bando signals: {exc}", file=sys.stderr)
        return 2
    port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    server = start_metrics_server(port, settings.metrics_host, service="signals") if port else None
    extra = [args.alerts_dlq_topic] if args.dead_letter == "kafka" else []
    create = not args.no_create_topics and not settings.kafka_username
    try:
        return asyncio.run(_main(service, settings, create, extra))
    finally:
        if server is not None:
            server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bando signals")
    configure(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
