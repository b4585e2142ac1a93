"""``bando archive --out DIR``: export topic history to compressed daily files.

    bando archive --out DIR [--bootstrap HOST:PORT] [--topic T ...] [--with-scores]
                  [--until T]

By default the events topic and its DLQ are exported (what replay and explain need);
``--with-scores`` adds ``unit-scores`` and the ranker's internal topic, so that
``bando replay --verify --archive DIR`` works without the broker. Re-running appends only what
is new (see ``audit.archive``).
"""

from __future__ import annotations

import argparse
import sys

import orjson

from audit.replay_cli import fail, parse_time
from bando.exceptions import BandoError
from bando.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    parser.add_argument("--out", required=True, metavar="DIR", help="archive directory")
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="default BANDO_KAFKA_BOOTSTRAP")
    parser.add_argument("--topic", action="append", default=[],
                        help="topic to export (repeat; default: events and DLQ topics)")
    parser.add_argument("--with-scores", action="store_true",
                        help="also unit-scores and <app_id>-unit-scored (for --verify)")
    parser.add_argument("--until", metavar="T", help="only records with broker time <= T")


def run(args: argparse.Namespace) -> int:
    from audit.archive import export
    from audit.kafka_source import KafkaSource, security_of

    settings = Settings.from_env()
    topics = list(args.topic) or [settings.events_topic, settings.dlq_topic]
    if args.with_scores:
        topics += [settings.scores_topic, f"{settings.app_id}-unit-scored"]
    try:
        until = parse_time(args.until, "Asia/Ho_Chi_Minh", end=True)
        source = KafkaSource(args.bootstrap or settings.kafka_bootstrap,
                             security=security_of(settings))
        summary = export(source, dict.fromkeys(topics), args.out,
                         until_ms=None if until is None else until // 1000)
    except (BandoError, OSError) as exc:
        return fail("archive", exc)
    sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return 0
