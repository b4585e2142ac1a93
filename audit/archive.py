"""``bando archive``: export topic history to compressed daily files that replay can read.

Layout: ``DIR/<topic>/<YYYY-MM-DD>.jsonl.gz`` (one JSON object per line: partition, offset,
broker timestamp, key and value bytes, see ``audit.sources.encode_record``) and
``DIR/manifest.json`` (per topic and partition, the next offset to export and the largest
timestamp seen). Why daily gzip JSON lines: any tool can read them (``zcat | jq``), a day is
a natural unit to copy to cold storage, and gzip files can be appended to (each run adds a
member), so the archive grows incrementally: re-running exports only what is new.

A record goes to the file of the day (Asia/Ho_Chi_Minh) of the *largest timestamp seen so far
on its partition*: producer timestamps may go backwards, but files never do, so reading them
in day order gives each partition in offset order (``audit.sources.ArchiveSource``).

Crash safety: data files are written first and the manifest is replaced atomically after each
topic. A run interrupted in between re-exports some records on the next run; readers drop a
partition's repeated offsets, so the archive still reads as the exact topic.
"""

from __future__ import annotations

import gzip
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from audit.exceptions import AuditError
from audit.sources import Source, day_of_ms, encode_record, topic_dir

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1


def load_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.exists():
        return {"format": FORMAT, "topics": {}}
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise AuditError(f"unreadable archive manifest {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise AuditError(f"{path}: not an archive manifest: {type(data).__name__}, not an object")
    if data.get("format") != FORMAT:
        raise AuditError(f"{path}: archive format {data.get('format')!r}, expected {FORMAT}")
    problem = _manifest_problem(data)
    if problem:  # found here, not as a traceback from export or a read: exit 2, not 1
        raise AuditError(f"{path}: not an archive manifest: {problem}")
    return data


def _manifest_problem(data: dict[str, Any]) -> str | None:
    topics = data.get("topics")
    if not isinstance(topics, dict):
        return f"'topics' is {type(topics).__name__}, not an object"
    for topic, entry in topics.items():
        if not isinstance(entry, dict) or type(entry.get("records")) is not int:
            return f"topic {topic!r} has no 'records' count"
        for name in ("next", "max_ts"):
            table = entry.get(name)
            if not isinstance(table, dict) or not all(
                    p.isdecimal() and type(v) is int for p, v in table.items()):
                return f"topic {topic!r}: {name!r} is not partition -> integer"
    return None


def _save_manifest(root: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=root)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / MANIFEST)


class _DayFiles:
    """Appends to day files, keeping a few open (partitions interleave, days mostly advance)."""

    def __init__(self, directory: Path, keep_open: int = 16):
        self.directory = directory
        self.keep_open = keep_open
        self.files: OrderedDict[str, gzip.GzipFile] = OrderedDict()
        self.days: set[str] = set()
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, day: str, lines: list[bytes]) -> None:
        fh = self.files.get(day)
        if fh is None:
            if len(self.files) >= self.keep_open:
                _, oldest = self.files.popitem(last=False)
                oldest.close()
            # kept open across batches on purpose, closed by close()
            fh = gzip.open(self.directory / f"{day}.jsonl.gz", "ab")  # noqa: SIM115
            self.files[day] = fh
        else:
            self.files.move_to_end(day)
        fh.write(b"".join(lines))
        self.days.add(day)

    def close(self) -> None:
        while self.files:
            _, fh = self.files.popitem()
            fh.close()


def export(source: Source, topics: Iterable[str], root: str | Path,
           until_ms: int | None = None) -> dict[str, Any]:
    """Append every record not archived yet (up to ``until_ms``) to the day files."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(root)
    summary: dict[str, Any] = {}
    for topic in topics:
        if not source.has_topic(topic):
            log.warning("%s: no topic %r, skipped", source.name, topic)
            continue
        started = time.perf_counter()
        entry = manifest["topics"].setdefault(topic, {"next": {}, "max_ts": {}, "records": 0})
        start = {int(p): int(o) for p, o in entry["next"].items()}
        max_ts = {int(p): int(ts) for p, ts in entry["max_ts"].items()}
        files = _DayFiles(topic_dir(root, topic))
        written = 0
        try:
            for batch in source.read(topic, until_ms=until_ms, start_offsets=start):
                by_day: dict[str, list[bytes]] = {}
                for rec in batch:
                    p, ts = rec.partition, rec.timestamp_ms
                    if ts is not None and ts >= 0 and ts > max_ts.get(p, -1):
                        max_ts[p] = ts
                    day = day_of_ms(max_ts[p]) if p in max_ts else "1970-01-01"
                    by_day.setdefault(day, []).append(encode_record(rec))
                    start[p] = rec.offset + 1
                for day, lines in by_day.items():
                    files.write(day, lines)
                written += len(batch)
        finally:
            files.close()
        entry["next"] = {str(p): o for p, o in sorted(start.items())}
        entry["max_ts"] = {str(p): t for p, t in sorted(max_ts.items())}
        entry["records"] = int(entry["records"]) + written
        _save_manifest(root, manifest)
        seconds = time.perf_counter() - started
        summary[topic] = {"records": written, "days": sorted(files.days),
                          "next": entry["next"], "seconds": round(seconds, 3)}
        log.info("archived %d records of %s into %d day file(s) in %.1fs", written, topic,
                 len(files.days), seconds)
    return summary
