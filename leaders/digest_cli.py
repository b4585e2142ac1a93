"""``bando digest``: the weekly digest of a unit or a peer group, as HTML and PDF.

    bando digest --unit district-08 --week 2024-W15 --events events.jsonl
    bando digest --peer-group district --week 2024-W15 --events events.jsonl \\
                 [--commitments examples/commitments.json] [--signals-config FILE] \\
                 [--window month] [--weeks 8] [--out DIR] [--format html,pdf,json]

History comes from a JSON-lines file (``--events``, read exactly as ``bando score`` reads it)
or, like ``bando explain``, from Kafka or an archive (``--bootstrap``, ``--archive``; then
``--week`` is required). The week is an ISO week in the model's time zone; "now" is its last
microsecond. Without ``--week`` (file input), the last complete week of the file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from bando.exceptions import BandoError

log = logging.getLogger(__name__)
FORMATS = ("html", "pdf", "json", "png")


def configure(parser: argparse.ArgumentParser) -> None:
    from audit.replay_cli import add_source_options

    parser.description = __doc__.splitlines()[0] if __doc__ else None
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--unit", action="append", metavar="UNIT", help="a unit (repeatable)")
    who.add_argument("--peer-group", metavar="GROUP",
                     help="overview page plus one page per unit of the group")
    parser.add_argument("--week", help="ISO week, e.g. 2024-W15 (default: the file's last "
                        "complete week)")
    parser.add_argument("--window", default="month",
                        help="scoring window: month | quarter | year (the one holding each "
                             "instant) or month:2024-04 ... (default month)")
    parser.add_argument("--weeks", type=int, default=8, help="weeks in the chart (default 8)")
    parser.add_argument("--commitments", metavar="FILE", help="commitments JSON file")
    parser.add_argument("--signals-config", metavar="FILE", help="signal thresholds JSON")
    parser.add_argument("--overview-only", action="store_true",
                        help="with --peer-group: only the overview page")
    parser.add_argument("--out", default=".", metavar="DIR", help="output folder (default .)")
    parser.add_argument("--format", default="html,pdf",
                        help=f"comma-separated among {','.join(FORMATS)} (default html,pdf; "
                             "png: first page, needs pdf)")
    add_source_options(parser)


def _command(args: argparse.Namespace, week: str) -> str:
    who = (f"--peer-group {args.peer_group}" if args.peer_group
           else " ".join(f"--unit {u}" for u in args.unit))
    src = (f"--events {Path(args.events).name}" if args.events else
           f"--archive {args.archive}" if args.archive else "(Kafka)")
    extra = f" --commitments {Path(args.commitments).name}" if args.commitments else ""
    return f"bando digest {who} --week {week} --window {args.window} {src}{extra}"


def build(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any], Any, str]:
    """(pages, provenance, model, week name): everything but the files."""
    from bando.settings import Settings
    from leaders import commitments as cm
    from leaders.digest_data import (
        WEEK_US,
        Scores,
        group_page,
        last_complete_week,
        parse_week,
        signals_by_unit,
        unit_page,
    )
    from leaders.history import load_file, load_from_context
    from leaders.signals import DAY_US, SignalConfig
    from scoring.catalog import load_catalog
    from scoring.model import load_model
    from scoring.timeutil import resolve_window

    settings = Settings.from_env()
    catalog = load_catalog(args.units or settings.catalog_path or None)
    model = load_model(args.model or settings.model)
    tz = model.timezone
    config = SignalConfig.load(args.signals_config)
    commitments = cm.load(args.commitments, model, catalog.by_id)
    week = parse_week(args.week, tz) if args.week else None
    if args.events:
        data = load_file(args.events, catalog)
    else:
        from audit.replay_cli import Context

        if week is None:
            raise BandoError("--week is required when reading Kafka or an archive")
        first = min(resolve_window(args.window, week.end_us - k * WEEK_US, tz).start_us
                    for k in range(max(1, args.weeks)))
        # as far back as a dossier can count in a signal (overdue_open: a year), as the
        # live service keeps: the digest, the signals and the wall agree (LEADERS.md)
        first = min(first, week.end_us - int(config.history_days() * DAY_US))
        data = load_from_context(Context(args), first)
    if week is None:
        if data.last_ts is None:
            raise BandoError("the history is empty: give --week")
        week = last_complete_week(data.last_ts, tz)
    scores = Scores(data.history, catalog, model, args.window)
    groups = ([args.peer_group] if args.peer_group else
              sorted({catalog.by_id[u].peer_group for u in args.unit if u in catalog}))
    units = (list(catalog.peer_groups.get(args.peer_group, ())) if args.peer_group
             else list(args.unit))
    for u in units:
        if u not in catalog:
            raise BandoError(f"unit {u!r} is not in the catalog")
    if args.peer_group and args.peer_group not in catalog.peer_groups:
        raise BandoError(f"no peer group {args.peer_group!r}; known: "
                         f"{', '.join(sorted(catalog.peer_groups))}")
    signals = {}
    for g in groups:
        signals.update(signals_by_unit(data.history, catalog, g, week.end_us, config))
    pages: list[dict[str, Any]] = []
    if args.peer_group:
        pages.append(group_page(data.history, catalog, model, args.peer_group, week,
                                window=args.window, commitments=commitments, signals=signals,
                                signal_config=config, scores=scores))
        if args.overview_only:
            units = []
    for u in units:
        pages.append(unit_page(data.history, catalog, model, u, week, window=args.window,
                               weeks=args.weeks, commitments=commitments,
                               signals=signals.get(u, []), signal_config=config,
                               scores=scores))
    provenance = {"source": data.source if not args.events else Path(args.events).name,
                  "sha256": data.sha256, "accepted": data.accepted,
                  "command": _command(args, week.name), "signals_config": config.digest}
    return pages, provenance, model, week.name


def run(args: argparse.Namespace) -> int:
    from leaders.commitments import CommitmentError
    from leaders.digest import render
    from leaders.digest_data import DigestError
    from leaders.signals import SignalConfigError

    formats = {f.strip() for f in args.format.split(",") if f.strip()}
    if not formats or formats - set(FORMATS):
        print(f"bando digest: --format takes {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    if "png" in formats:
        formats.add("pdf")
    try:
        pages, provenance, model, week = build(args)
        name = args.peer_group or "-".join(args.unit)
        base = f"digest-{_safe(name)}-{week}"
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)

        def out(ext: str) -> Path:
            # Append, never with_suffix: ids keep '.', so with_suffix on
            # "digest-district.hcm-2024-W15" would cut at the group's dot and the
            # digests of different groups and weeks would overwrite each other.
            return out_dir / f"{base}.{ext}"

        written = []
        if "json" in formats:
            doc = {"week": week, "model": model.ref, "provenance": provenance, "pages": pages}
            path = out("json")
            path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
            written.append(path)
        if formats & {"html", "pdf"}:
            html = render(pages, model, title=f"Bando digest {name} {week}",
                          provenance=provenance)
            path = out("html")
            path.write_text(html, encoding="utf-8")
            written.append(path)
            if "pdf" in formats:
                from leaders.pdf import html_to_pdf, pdf_to_png

                pdf = html_to_pdf(path, out("pdf"))
                written.append(pdf)
                if "png" in formats:
                    written.append(pdf_to_png(pdf, out("png")))
                if "html" not in formats:
                    path.unlink()
                    written.remove(path)
    except (BandoError, OSError, DigestError, CommitmentError, SignalConfigError) as exc:
        print(f"bando digest: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def _safe(name: str) -> str:
    """A file-name-safe form of a unit or group id (ids are operator-supplied)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "digest"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bando digest")
    configure(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
