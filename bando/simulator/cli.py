"""``bando simulate``: realistic HCMC activity, to a JSON-lines file or live into Kafka.

    bando simulate file --out events.jsonl --start 2024-01-01 --end 2024-04-01 [--seed N]
                        [--units CATALOG] [--scale X] [--bad-rate F] [--dup-rate F]
                        [--shuffle-window N]
    bando simulate live [--bootstrap HOST:PORT] [--topic T] --rate 2000 --speed 600
                        [--start ...] [--duration SECONDS]
    bando simulate profiles [--units CATALOG] [--seed N]     # each unit's habits, as JSON

Defaults (bootstrap, topic, catalog, partitions) come from ``Settings.from_env()`` so a demo
and the worker agree without repeating flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import orjson

from bando.settings import Settings
from bando.simulator.generate import Generator
from bando.simulator.profiles import make_profiles, read_catalog
from bando.simulator.stream import BAD_KINDS, Chaos, write_jsonl

log = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--units", metavar="CATALOG", default=None,
                   help="unit catalog JSON (default: BANDO_CATALOG_PATH or the HCMC 2024 one)")
    p.add_argument("--seed", default="0", help="same seed and arguments, same events (default 0)")


def _activity(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tick-every", type=int, default=900, metavar="SECONDS",
                   help="event-time seconds between clock.tick events (0: none; default 900)")
    p.add_argument("--bad-rate", type=float, default=0.0, metavar="F",
                   help="fraction of lines that are malformed (default 0)")
    p.add_argument("--bad-kinds", default=",".join(BAD_KINDS),
                   help=f"comma-separated kinds of bad lines (default {','.join(BAD_KINDS)})")
    p.add_argument("--dup-rate", type=float, default=0.0, metavar="F",
                   help="fraction of events delivered twice, byte for byte (default 0)")
    p.add_argument("--shuffle-window", type=int, default=0, metavar="N",
                   help="deliver out of order, each line at most N positions off (default 0)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Realistic HCMC activity, to a JSON-lines file or live into Kafka."
    sub = parser.add_subparsers(dest="sim_mode", metavar="MODE", required=True)

    f = sub.add_parser("file", help="write a JSON-lines file of events in event-time order")
    f.add_argument("--out", required=True, help="output file ('-': standard output)")
    f.add_argument("--start", default="2024-01-01", help="first instant (default 2024-01-01)")
    f.add_argument("--end", default="2024-04-01", help="end, exclusive (default 2024-04-01)")
    f.add_argument("--scale", type=float, default=1.0, help="activity multiplier (default 1)")
    _common(f)
    _activity(f)

    live = sub.add_parser("live", help="produce to Kafka, paced by event time")
    live.add_argument("--bootstrap", default=None, help="HOST:PORT (default BANDO_KAFKA_BOOTSTRAP)")
    live.add_argument("--topic", default=None, help="topic (default BANDO_EVENTS_TOPIC)")
    live.add_argument("--rate", type=float, default=2000.0,
                      help="messages per wall second in office hours, and a ceiling "
                           "(default 2000; 0: natural volume, no ceiling)")
    live.add_argument("--speed", type=float, default=600.0,
                      help="simulated seconds per wall second (default 600: 1 s = 10 min)")
    live.add_argument("--scale", type=float, default=None,
                      help="activity multiplier; overrides --rate")
    live.add_argument("--start", default=None,
                      help="first event time (default: 07:00 seven days ago)")
    live.add_argument("--end", default=None, help="stop at this event time (default: never)")
    live.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help="stop after this many wall seconds (default: until Ctrl-C)")
    live.add_argument("--linger-ms", type=int, default=20, help="producer batching delay")
    live.add_argument("--no-create-topic", action="store_true",
                      help="do not create the topic when it is missing")
    _common(live)
    _activity(live)

    prof = sub.add_parser("profiles", help="print each unit's simulated habits as JSON")
    _common(prof)


def _seed(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def _chaos(args: argparse.Namespace) -> Chaos:
    kinds = tuple(k.strip() for k in args.bad_kinds.split(",") if k.strip())
    return Chaos(bad_rate=args.bad_rate, dup_rate=args.dup_rate,
                 shuffle_window=args.shuffle_window, bad_kinds=kinds)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        catalog = read_catalog(args.units or settings.catalog_path or None)
        seed = _seed(args.seed)
        if args.sim_mode == "profiles":
            data = [p.as_dict() for p in make_profiles(catalog, seed)]
            sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
            return 0
        chaos = _chaos(args)
    except (OSError, ValueError) as exc:
        print(f"bando simulate: {exc}", file=sys.stderr)
        return 2
    if args.sim_mode == "file":
        return _run_file(args, catalog, seed, chaos)
    from bando.simulator.live import run_live

    produced = run_live(
        catalog, bootstrap=args.bootstrap or settings.kafka_bootstrap,
        topic=args.topic or settings.events_topic, speed=args.speed, rate=args.rate,
        rate_scale=args.scale, start=args.start, end=args.end, duration=args.duration,
        seed=seed, tick_every=args.tick_every, chaos=chaos, linger_ms=args.linger_ms,
        create_topic=not args.no_create_topic, partitions=settings.partitions,
        replication=settings.replication_factor, settings=settings)
    print(produced)
    return 0


def _run_file(args: argparse.Namespace, catalog: list[dict[str, str]], seed: int | str,
              chaos: Chaos) -> int:
    try:
        gen = Generator(catalog, start=args.start, end=args.end, seed=seed,
                        rate_scale=args.scale, tick_every=args.tick_every)
    except ValueError as exc:
        print(f"bando simulate: {exc}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    if args.out == "-":
        lines = write_jsonl(sys.stdout.buffer, gen.events(), chaos, seed)
        sys.stdout.buffer.flush()
    else:
        try:
            with Path(args.out).open("wb", buffering=1 << 20) as out:
                lines = write_jsonl(out, gen.events(), chaos, seed)
        except OSError as exc:
            print(f"bando simulate: {exc}", file=sys.stderr)
            return 1
    took = time.perf_counter() - began
    log.info("wrote %d lines in %.2f s (%.0f lines/s), run %s", lines, took,
             lines / took if took > 0 else 0.0, gen.tag)
    return 0
