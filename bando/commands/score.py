"""``bando score``: score a file of events offline (SPEC section 5)."""

from __future__ import annotations

import argparse
import gc
import sys

import orjson

from bando.batch import load, score_report
from bando.cli import park
from bando.exceptions import BandoError
from scoring.catalog import load_catalog
from scoring.model import DEFAULT_MODEL, load_model
from scoring.timeutil import parse_ts, resolve_window


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", required=True, help="JSON lines file of events")
    parser.add_argument("--units", default="", help="unit catalog JSON (default: HCMC 2024)")
    parser.add_argument("--as-of", required=True, help="RFC 3339 timestamp with offset")
    parser.add_argument("--window", required=True,
                        help="month | quarter | year | month:2024-04 | quarter:2024-Q2 | year:2024")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model reference or file")
    parser.add_argument("--pretty", action="store_true", help="indent the JSON output")


def run(args: argparse.Namespace) -> int:
    # The millions of fact objects hold no reference cycles, so the cyclic collector would
    # only re-scan them while scoring (a fifth of its time) and once more when loading ends.
    # They are freed by reference counting when _score returns (or never: bando.cli.park).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _score(args)
    finally:
        if gc_was_enabled:
            gc.enable()


def _score(args: argparse.Namespace) -> int:
    as_of = parse_ts(args.as_of)
    if as_of is None:
        print(f"bando score: --as-of {args.as_of!r} is not an RFC 3339 timestamp with offset",
              file=sys.stderr)
        return 2
    try:
        model = load_model(args.model)
        catalog = load_catalog(args.units or None)
        window = resolve_window(args.window, as_of, model.timezone)
        loaded = load(args.events, catalog, model)
        park(loaded)  # not freed at exit (bando.cli.park)
    except (BandoError, OSError) as exc:
        print(f"bando score: {exc}", file=sys.stderr)
        return 2
    report = score_report(loaded, window, as_of, args.as_of)
    option = orjson.OPT_INDENT_2 if args.pretty else 0
    sys.stdout.buffer.write(orjson.dumps(report, option=option) + b"\n")
    return 0
