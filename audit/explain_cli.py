"""``bando explain UNIT --at T [--window W]``: why a unit has its score at T.

    bando explain district-01 --at 2024-05-31T17:00:00+07:00 --window month
                  [--events FILE | --archive DIR | --bootstrap HOST:PORT]
                  [--format text|json] [--limit N] [--chart PEERS.svg]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import orjson

from audit.replay_cli import Context, add_source_options, fail, parse_time
from bando.exceptions import BandoError
from scoring.timeutil import resolve_window

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    parser.add_argument("unit", help="unit_id")
    parser.add_argument("--at", required=True, metavar="T",
                        help="RFC 3339 time, or a date (its end)")
    parser.add_argument("--window", default="month",
                        help="month | quarter | year (the one holding --at) or month:2024-04 ...")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--limit", type=_count, default=10,
                        help="items listed per indicator that lost points (default 10)")
    parser.add_argument("--chart", metavar="FILE.svg",
                        help="also draw the peer group at --at, this unit highlighted")
    parser.add_argument("--output", "-o", metavar="FILE", help="default: standard output")
    add_source_options(parser)


def _count(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


def run(args: argparse.Namespace) -> int:
    from audit.explain import explain, render_text

    try:
        ctx = Context(args)
        tz = ctx.model.timezone
        t = parse_time(args.at, tz, end=True)
        assert t is not None
        window = resolve_window(args.window, t, tz)
        history, _ = ctx.history(window.start_us)
        doc = explain(history, ctx.catalog, ctx.model, args.unit, t, window, limit=args.limit)
        data = (orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n" if args.format == "json"
                else render_text(doc).encode())
        if args.output and args.output != "-":
            Path(args.output).write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
        if args.chart:
            from audit.charts import peer_chart

            scores = [{**u, "name": ctx.catalog.by_id[u["unit_id"]].name}
                      for u in doc["peers"]["units"]]
            title = f"{doc['peer_group']} - {doc['window']} - as of {doc['as_of']}"
            Path(args.chart).write_text(peer_chart(scores, ctx.model, title=title,
                                                   highlight=args.unit), encoding="utf-8")
    except (BandoError, OSError) as exc:  # an unwritable -o or --chart too: exit 2
        return fail("explain", exc)
    return 0
