"""``bando replay``: timelines rebuilt from history, and ``--verify`` of published scores.

    bando replay [--events FILE | --archive DIR | --bootstrap HOST:PORT]
                 [--window month|quarter|year|month:2024-04] [--start T] [--end T]
                 [--unit UNIT ...] [--every change|day] [--format json|csv] [--output FILE]
                 [--known-at T] [--lookback HOURS | --from-beginning]
                 [--chart UNIT.svg] [--peer-chart GROUP.svg --day YYYY-MM-DD [--peer-group G]]
    bando replay --verify [--archive DIR | --bootstrap ...] [--unit UNIT ...] [--report FILE]

Times are RFC 3339 or a local date (``2024-05-15``: the start of that day for --start, its
end for --end and --day). Defaults (bootstrap, topics, catalog, model) come from
``Settings.from_env()``, like the worker's.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from bando.cli import park
from bando.exceptions import BandoError
from bando.settings import Settings
from scoring.catalog import Catalog, load_catalog
from scoring.model import Model, load_model
from scoring.timeutil import format_ts, parse_ts, to_us

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 30.0  # between progress lines of a long timeline
LOOKBACK_HOURS = 24.0


# --- shared by replay, explain and archive ---------------------------------------------------


def add_source_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("history (default: Kafka, BANDO_KAFKA_BOOTSTRAP)")
    g.add_argument("--events", metavar="FILE", help="a JSON-lines event file instead of Kafka")
    g.add_argument("--archive", metavar="DIR", help="files written by `bando archive`")
    g.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers")
    g.add_argument("--topic", help="events topic (default BANDO_EVENTS_TOPIC)")
    g.add_argument("--dlq-topic", help="dead-letter topic (default BANDO_DLQ_TOPIC)")
    g.add_argument("--no-dlq", action="store_true",
                   help="ignore the DLQ: re-validate every event, skip none")
    g.add_argument("--units", metavar="CATALOG", help="unit catalog (default BANDO_CATALOG_PATH)")
    g.add_argument("--model", help="model reference or file (default BANDO_MODEL)")
    g.add_argument("--known-at", metavar="T",
                   help="only events that had arrived by T (broker timestamp)")
    # default None, not 24: `replay --verify` must tell a given --lookback from the default
    g.add_argument("--lookback", type=hours, metavar="HOURS",
                   help="read from this long (plus the clock skew) before the first window "
                        f"(default {LOOKBACK_HOURS:g})")
    g.add_argument("--from-beginning", action="store_true",
                   help="read the whole retained history, not from the first window")


def hours(text: str) -> float:
    """``--lookback``: a negative span would read less than the first window needs (a wrong
    timeline, exit 0), and nan or inf cannot become a start offset."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of hours >= 0, not {text!r}")
    return value


def parse_time(text: str | None, tz: str, end: bool = False) -> int | None:
    """RFC 3339, or a local date (start of day; with ``end``, its last microsecond)."""
    if text is None:
        return None
    us = parse_ts(text)
    if us is not None:
        return us
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BandoError(f"not a time: {text!r} (RFC 3339 or YYYY-MM-DD)") from None
    from zoneinfo import ZoneInfo

    start = datetime.combine(day, time(0), tzinfo=ZoneInfo(tz))
    return to_us(start + timedelta(days=1)) - 1 if end else to_us(start)


class Context:
    """What every audit command resolves from its arguments and the environment."""

    def __init__(self, args: argparse.Namespace):
        from audit.sources import open_source

        self.settings = Settings.from_env()
        s = self.settings
        self.events_topic: str = args.topic or s.events_topic
        self.dlq_topic: str | None = None if args.no_dlq else (args.dlq_topic or s.dlq_topic)
        self.catalog: Catalog = load_catalog(args.units or s.catalog_path or None)
        self.model: Model = load_model(args.model or s.model)
        self.source = open_source(s, events=args.events, archive=args.archive,
                                  bootstrap=args.bootstrap, topic=self.events_topic)
        if args.known_at and args.events:
            # a file's lines carry no arrival time: the cut would silently keep everything
            raise BandoError("--known-at needs arrival times: an --archive or Kafka, not "
                             "--events")

        # the worker's limit, for files too: `bando score` and the live map agree on too_large
        self.max_bytes = s.max_message_bytes
        tz = self.model.timezone
        self.known_at_ms = None
        if args.known_at:
            known = parse_time(args.known_at, tz, end=True)
            assert known is not None
            self.known_at_ms = known // 1000
        lookback = LOOKBACK_HOURS if args.lookback is None else args.lookback
        self.lookback_us = 0 if args.from_beginning else int(
            (lookback * 3600 + s.max_clock_skew_seconds) * 1_000_000)
        self.from_beginning = bool(args.from_beginning)

    def since_ms(self, first_event_time_us: int | None) -> int | None:
        """Where to start reading: the first window's start, less lookback and clock skew."""
        if self.from_beginning or first_event_time_us is None:
            return None
        return (first_event_time_us - self.lookback_us) // 1000

    def history(self, first_event_time_us: int | None) -> Any:
        from audit.ingest import Acceptor, load_history, read_dlq

        dlq = read_dlq(self.source, self.dlq_topic, self.events_topic) if self.dlq_topic else None
        acceptor = Acceptor(self.catalog, self.max_bytes, dlq)
        history = load_history(self.source, self.events_topic, acceptor,
                               self.since_ms(first_event_time_us), self.known_at_ms)
        return history, self.log_ingest(acceptor.stats)

    def log_ingest(self, st: Any) -> Any:
        """Log an ingest's statistics (``audit.ingest.IngestStats``); returns them."""
        log.info("read %d records from %s in %.2fs (%s records/s): %d accepted, %d duplicates, "
                 "%d skipped as dead-lettered, %d rejected, %d anomalies", st.records,
                 self.source.name, st.seconds, st.to_dict()["records_per_s"], st.accepted,
                 st.duplicates, st.dlq_skipped, sum(st.rejected.values()), st.anomaly_count)
        for text in st.anomalies[:10]:
            log.warning("anomaly: %s", text)
        return st


def fail(command: str, exc: Exception) -> int:
    print(f"bando {command}: {exc}", file=sys.stderr)
    return 2


def open_output(path: str | None) -> IO[bytes]:
    return open(path, "wb") if path and path != "-" else sys.stdout.buffer  # noqa: SIM115


# --- replay ---------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    add_source_options(parser)
    parser.add_argument("--verify", action="store_true",
                        help="check every published unit-scores message against history")
    parser.add_argument("--scores-topic", help="unit-scores topic (default BANDO_SCORES_TOPIC)")
    parser.add_argument("--internal-topic",
                        help="the ranker's input topic (default: named by rank_basis)")
    parser.add_argument("--report", metavar="FILE", help="--verify: write the JSON report here")
    # the timeline's options default to None (the defaults are applied in _replay) so that
    # --verify can refuse any of them that is given: it would ignore it
    parser.add_argument("--window",
                        help="month (default) | quarter | year (follows time) or month:2024-04 ...")
    parser.add_argument("--start", metavar="T", help="timeline start (event time)")
    parser.add_argument("--end", metavar="T", help="timeline end (event time)")
    parser.add_argument("--unit", action="append", default=[], help="only this unit (repeat)")
    parser.add_argument("--every", choices=("change", "day"),
                        help="a row at every change (default) or at each day's end")
    parser.add_argument("--check-core", action="store_true",
                        help="re-check every incremental count against the core's count "
                             "(slow; for the suspicious auditor)")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="replay an --events file on N processes, its units split "
                             "between them (default 1; 2 on a 2-core machine: ~1.4x as "
                             "fast, ~1.2x the memory in all; not with charts)")
    parser.add_argument("--format", choices=("json", "csv"), help="json (default) or csv")
    parser.add_argument("--output", "-o", metavar="FILE", help="default: standard output")
    parser.add_argument("--chart", metavar="FILE.svg", help="SVG of the --unit's timeline")
    parser.add_argument("--peer-chart", metavar="FILE.svg",
                        help="SVG of a peer group's scores at the end of --day")
    parser.add_argument("--day", help="day of --peer-chart (YYYY-MM-DD)")
    parser.add_argument("--peer-group", help="group of --peer-chart (default: --unit's)")


# options that only one of the two modes reads: given to the other, they would be ignored
# silently (a --verify run that "wrote" a chart, a timeline that "wrote" a report)
TIMELINE_ONLY = {"known_at": "--known-at", "lookback": "--lookback",
                 "from_beginning": "--from-beginning", "window": "--window", "start": "--start",
                 "end": "--end", "every": "--every", "check_core": "--check-core",
                 "jobs": "--jobs",
                 "format": "--format", "output": "--output/-o", "chart": "--chart",
                 "peer_chart": "--peer-chart", "day": "--day", "peer_group": "--peer-group"}
VERIFY_ONLY = {"report": "--report", "scores_topic": "--scores-topic",
               "internal_topic": "--internal-topic"}


def check_modes(args: argparse.Namespace) -> None:
    """Refuse an option the chosen mode would ignore (before any history is read)."""
    def given(options: dict[str, str]) -> list[str]:
        return [flag for dest, flag in options.items()
                if getattr(args, dest, None) not in (None, False)]

    if args.verify:
        if wrong := given(TIMELINE_ONLY):
            raise BandoError(f"--verify checks every published message and writes no timeline: "
                             f"{', '.join(wrong)} cannot be used with it")
    elif wrong := given(VERIFY_ONLY):
        raise BandoError(f"{', '.join(wrong)} only with --verify")
    if not args.peer_chart and (wrong := given({"day": "--day", "peer_group": "--peer-group"})):
        raise BandoError(f"{', '.join(wrong)} only with --peer-chart")


def run(args: argparse.Namespace) -> int:
    try:
        check_modes(args)
        ctx = Context(args)
        for u in args.unit:  # a typo must not pass as "0 of N messages checked: OK"
            if u not in ctx.catalog:
                raise BandoError(f"unit {u!r} is not in the catalog")
        if args.verify:
            return _verify(ctx, args)
        return _replay(ctx, args)
    except (BandoError, OSError) as exc:
        return fail("replay", exc)


def _verify(ctx: Context, args: argparse.Namespace) -> int:
    from audit.verify import verify

    report = verify(ctx.source, ctx.catalog, ctx.model, events_topic=ctx.events_topic,
                    dlq_topic=ctx.dlq_topic,
                    scores_topic=args.scores_topic or ctx.settings.scores_topic,
                    internal_topic=args.internal_topic, max_bytes=ctx.max_bytes,
                    units=args.unit)
    for m in report.mismatches:
        print(m.text())
    st = report.ingest
    print(f"{'OK' if report.ok else 'FAILED'}: {report.checked} of {report.messages} published "
          f"messages checked, {len(report.mismatches)} mismatch(es); {st.records} events "
          f"({st.dlq_skipped} dead-lettered, {st.anomaly_count} anomalies), "
          f"{report.ranker_batches} ranker batches, {report.seconds:.1f}s")
    for text in st.anomalies[:10]:
        print(f"anomaly: {text}")
    if args.report:
        Path(args.report).write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))
    return 0 if report.ok else 1


def _replay(ctx: Context, args: argparse.Namespace) -> int:
    import time as clock

    from audit.replay import TimelineSpec, csv_lines, paused_gc, peer_scores, timeline

    tz = ctx.model.timezone
    window = args.window or "month"
    # every option is checked before a replay that may run for minutes and before -o is
    # written: a typo found after that costs the whole run
    if args.chart and len(args.unit) != 1:
        raise BandoError("--chart needs exactly one --unit")
    day_end = group = None
    if args.peer_chart:
        if not args.day:
            raise BandoError("--peer-chart needs --day")
        if not (args.peer_group or args.unit):
            raise BandoError("--peer-chart needs --peer-group or --unit")
        day_end = parse_time(args.day, tz, end=True)
        group = args.peer_group or ctx.catalog.by_id[args.unit[0]].peer_group
        if group not in ctx.catalog.peer_groups:
            raise BandoError(f"no peer group {group!r} in the catalog")
    jobs = 1 if args.jobs is None else args.jobs
    if jobs < 1:
        raise BandoError("--jobs must be at least 1")
    if jobs > (os.cpu_count() or 1):
        log.warning("--jobs %d on %d cores: the processes take turns", jobs,
                    os.cpu_count() or 1)
    if jobs > 1 and not args.events:
        raise BandoError("--jobs splits the replay of an --events file (an archive or Kafka "
                         "is read by one process)")
    if jobs > 1 and ctx.dlq_topic and ctx.source.has_topic(ctx.dlq_topic):
        raise BandoError("--jobs reads no dead-letter topic: leave it out")
    if jobs > 1 and (args.chart or args.peer_chart):
        raise BandoError("--chart and --peer-chart need the whole history in one process: "
                         "leave out --jobs")
    spec = TimelineSpec(window=window, start=parse_time(args.start, tz),
                        end=parse_time(args.end, tz, end=True), units=tuple(args.unit),
                        every=args.every or "change", check_core=args.check_core)
    history = None
    if jobs > 1:
        from audit.sources import FileSource
        from audit.split import SplitReplay

        assert isinstance(ctx.source, FileSource)  # --events
        split = SplitReplay(ctx.source, ctx.catalog, ctx.model, spec, ctx.max_bytes, jobs)
        stats = ctx.log_ingest(split.ingest())
        produced = split.rows()
    else:
        history, stats = ctx.history(spec.read_since_us(tz))
        park(history)  # not freed at exit (bando.cli.park)
        produced = timeline(history, ctx.catalog, ctx.model, spec)
    started = clock.perf_counter()
    rows: list[dict[str, Any]] = []
    with paused_gc():
        # a year's timeline runs for minutes: say where it is now and then (wall time here
        # only paces the log; the rows are event time)
        due = started + PROGRESS_SECONDS
        for row in produced:
            rows.append(row)
            if not len(rows) & 255 and clock.perf_counter() >= due:
                log.info("timeline: %d rows, up to %s", len(rows), row["at"])
                due = clock.perf_counter() + PROGRESS_SECONDS
    seconds = clock.perf_counter() - started
    total_s = stats.seconds + seconds
    rate = round(stats.records / total_s) if total_s > 0 else None
    log.info("replay: %d events -> %d rows in %.2fs (%s events/s)", stats.records, len(rows),
             total_s, rate)
    out = open_output(args.output)
    try:
        if (args.format or "json") == "csv":
            for chunk in csv_lines(rows):
                out.write(chunk.encode())
        else:
            doc = {"model": ctx.model.ref, "window": spec.window, "every": spec.every,
                   "start": args.start, "end": args.end, "units": list(spec.units),
                   "source": ctx.source.name, "ingest": stats.to_dict(),
                   "timeline_seconds": round(seconds, 3), "events_per_s": rate, "rows": rows}
            out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    if args.chart:
        _unit_chart(ctx, args, rows, history)
    if args.peer_chart:  # its options were checked before the replay
        assert day_end is not None and group is not None and history is not None
        scores, at = peer_scores(history, ctx.catalog, ctx.model, group, window, day_end)
        from audit.charts import peer_chart

        title = f"{group} - {at.name} - end of {args.day}"
        Path(args.peer_chart).write_text(
            peer_chart(scores, ctx.model, title=title,
                       highlight=args.unit[0] if args.unit else None), encoding="utf-8")
    return 0


def _unit_chart(ctx: Context, args: argparse.Namespace, rows: list[dict[str, Any]],
                history: Any) -> None:
    from audit.charts import unit_chart

    unit = ctx.catalog.by_id[args.unit[0]]  # exactly one, in the catalog: checked in run
    mine = [r for r in rows if r["unit_id"] == unit.unit_id]
    end = args.end and parse_time(args.end, ctx.model.timezone, end=True)
    end_text = format_ts(end or history.last_ts, ctx.model.timezone) if (
        end or history.last_ts) else None
    title = f"{unit.name} ({unit.unit_id}) - {args.window or 'month'} score, band and rank"
    Path(args.chart).write_text(unit_chart(mine, ctx.model, title=title, end=end_text),
                                encoding="utf-8")
