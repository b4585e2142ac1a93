"""``bando officer``: serve the officer view (each officer's own indicators, token-protected).

    bando officer --tokens TOKENS.jsonl --events FILE.jsonl [--host 127.0.0.1] [--port 8090]
    bando officer --tokens TOKENS.jsonl [--bootstrap HOST:PORT | --archive DIR]

Tokens come from ``bando officer-token`` (the file holds salted hashes only; default
``$BANDO_OFFICER_TOKENS_FILE``). The history is read at start and again on SIGHUP, together
with the token file, so a new officer or a revoked token needs no restart. Binds to loopback
unless ``--host`` says otherwise: put a TLS proxy in front for other machines.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    from audit.replay_cli import add_source_options

    parser.description = __doc__.splitlines()[0] if __doc__ else None
    parser.add_argument("--tokens", default=os.environ.get("BANDO_OFFICER_TOKENS_FILE"),
                        metavar="FILE", help="token hashes (default $BANDO_OFFICER_TOKENS_FILE)")
    parser.add_argument("--host", default=os.environ.get("BANDO_OFFICER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("BANDO_OFFICER_PORT",
                                                                       "8090")))
    add_source_options(parser)


def _load(args: argparse.Namespace, catalog: Any) -> Any:
    from leaders.history import load_file, load_from_context

    if args.events:
        return load_file(args.events, catalog)
    from audit.replay_cli import Context

    args.from_beginning = True  # an officer's dossiers may be of any window: read it all
    return load_from_context(Context(args), None)


async def serve(app: Any, host: str, port: int, reload: Any,
                started: asyncio.Event | None = None) -> None:
    from aiohttp import web

    from leaders.officer_view import RouteAccessLogger

    runner = web.AppRunner(app, access_log_class=RouteAccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("officer view on http://%s:%d/officer/{officer_id}", host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload()))
    if started is not None:
        started.set()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    from bando.exceptions import BandoError
    from bando.settings import Settings
    from leaders.officer_view import OfficerData, make_app
    from leaders.tokens import TokenFileError, TokenStore
    from scoring.catalog import load_catalog
    from scoring.model import load_model

    if not args.tokens:
        print("bando officer: give --tokens FILE (see bando officer-token)", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    try:
        catalog = load_catalog(args.units or settings.catalog_path or None)
        model = load_model(args.model or settings.model)
        store = {"tokens": TokenStore.load(args.tokens)}
        data = OfficerData(_load(args, catalog), catalog, model)
    except (BandoError, OSError, TokenFileError) as exc:
        print(f"bando officer: {exc}", file=sys.stderr)
        return 2
    log.info("%d officer token(s), %d officer(s) in the history", len(store["tokens"]),
             len(data.data.officers))

    async def reload() -> None:
        try:
            store["tokens"] = TokenStore.load(args.tokens)
            log.info("reloaded: %d token(s)", len(store["tokens"]))
            data.replace(await asyncio.to_thread(_load, args, catalog))
            log.info("reloaded the history")
        except (BandoError, OSError, TokenFileError) as exc:
            log.error("reload failed, keeping the previous data: %s", exc)

    app = make_app(data, lambda: store["tokens"])
    asyncio.run(serve(app, args.host, args.port, reload))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bando officer")
    configure(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
