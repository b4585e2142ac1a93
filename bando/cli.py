"""``bando`` command line: a thin dispatcher.

Each subcommand lives in its own module exposing ``configure(parser)`` and ``run(args) -> int``;
it is imported only when used, so ``bando score`` never pays for faust or Kafka imports.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("bando.commands.score", "score a file of events offline (SPEC section 5)"),
    "rate": ("bando.commands.rate", "apply a model's points rules to given counts"),
    "worker": ("streams.worker", "run a live scorer worker (faust)"),
    "ranker": ("streams.ranker_cli", "run the ranker stage alone (workers with BANDO_RANKER=off)"),
    "simulate": ("bando.simulator.cli", "generate realistic HCMC activity (file or live)"),
    "infra": ("bando.infra.cli", "start/stop the local Kafka broker and Redis"),
    "demo": ("bando.demo", "run the whole demo: broker, Redis, simulator, scorer, display"),
    "watch": ("bando.commands.watch", "print live score updates in the terminal"),
    "board": ("display.board_cli", "keep the wall-display board in Redis"),
    "display": ("display.cli", "serve the wall display (page + push stream)"),
    "notify": ("alerts.cli", "deliver band-drop alerts to webhooks and logs"),
    "replay": ("audit.replay_cli", "rebuild or verify published scores from history"),
    "explain": ("audit.explain_cli", "explain a unit's score at a time"),
    "archive": ("audit.archive_cli", "export event history to daily files"),
    "digest": ("leaders.digest_cli", "weekly digest of a unit or peer group (HTML, PDF)"),
    "signals": ("leaders.signals_cli", "harassment and inconvenience signals"),
    "officer": ("leaders.officer_cli", "serve the token-protected officer view"),
    "officer-token": ("leaders.officer_token_cli", "make an officer's access token and hash line"),
}


# A batch command that holds a year of state (``bando score``, ``bando replay``: ~17 GB in tens
# of millions of objects) parks it here rather than letting it go: freed object by object it
# costs seconds per 10M events at exit, and nothing needs it freed. The console entry
# (``entry``) then leaves with ``os._exit`` once its output is flushed. ``main()`` called from
# Python (tests, other tools) never parks: there ``park`` does nothing.
_parked: list[object] = []
_leaving = False


def park(state: object) -> None:
    """Keep ``state`` until the process ends (console entry only); see ``_parked``."""
    if _leaving:
        _parked.append(state)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bando", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == only:
            module = importlib.import_module(module_name)
            module.configure(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command in COMMANDS:
        try:
            parser = build_parser(only=command)
        except ImportError as exc:
            print(f"bando {command}: not available ({exc})", file=sys.stderr)
            return 2
    else:
        parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if command is None else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        for noisy in ("aiokafka", "kafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    rc = args._run(args)
    return int(rc or 0)


def entry() -> int:
    """The ``bando`` console script: ``main()``, then a quick exit if a command parked state."""
    global _leaving
    _leaving = True
    rc = main()
    if _parked:
        gc.disable()
        logging.shutdown()  # flushes the handlers
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # e.g. the reader of a pipe left: as Python's own exit says it
            rc = rc or 120
        os._exit(rc)
    return rc


if __name__ == "__main__":
    # run as ``python -m bando.cli``, this file is ``__main__``; the commands call ``park`` of
    # ``bando.cli``, another copy of it: its entry is the one that knows what they parked
    from bando import cli

    raise SystemExit(cli.entry())
