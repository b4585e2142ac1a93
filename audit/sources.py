"""Where history is read from: Kafka, archive files, a JSON-lines file, or memory.

Every source yields batches of ``Record`` values with one contract, so replay, verification
and explanations never care where the history lives:

* records of one partition come in offset order (partitions may interleave);
* ``since_ms`` starts each partition at its first record whose timestamp is >= since_ms,
  ``until_ms`` stops it before its first record whose timestamp is > until_ms (Kafka's
  ``offsets_for_times`` semantics, which the archive reproduces exactly);
* ``start_offsets`` starts a partition at a given offset (the archiver resumes with it).

The Kafka reader lives in ``audit.kafka_source``.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson

from audit.exceptions import AuditError
from scoring.timeutil import format_ts

ARCHIVE_SUFFIX = ".jsonl.gz"
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl\.gz$")


class Record(NamedTuple):
    """One message of a topic, as the broker stored it (a tuple: cheap to make by the million)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None


class Source(Protocol):
    name: str

    def read(
        self,
        topic: str,
        since_ms: int | None = None,
        until_ms: int | None = None,
        start_offsets: Mapping[int, int] | None = None,
    ) -> Iterator[list[Record]]: ...

    def has_topic(self, topic: str) -> bool: ...


def day_of_ms(ms: int) -> str:
    """The Asia/Ho_Chi_Minh calendar day of a broker timestamp (archive file names)."""
    return format_ts(ms * 1000)[:10]


# --- archive lines ---------------------------------------------------------------------------


def _text_or_b64(raw: bytes | None) -> tuple[str | None, bool]:
    if raw is None:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), True


def encode_record(rec: Record) -> bytes:
    """One archive line. Bytes are kept exactly: text when UTF-8, else base64 (flag ``kb``/
    ``vb``), so a replay from the archive validates the very bytes the worker saw."""
    key, kb = _text_or_b64(rec.key)
    value, vb = _text_or_b64(rec.value)
    line: dict[str, Any] = {"p": rec.partition, "o": rec.offset, "ts": rec.timestamp_ms,
                            "k": key, "v": value}
    if kb:
        line["kb"] = 1
    if vb:
        line["vb"] = 1
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)


def _bytes_of(d: dict[str, Any], name: str, flag: str) -> bytes | None:
    text = d.get(name)
    if text is None:
        return None
    if type(text) is not str:
        raise AuditError(f"{name!r} is {type(text).__name__}, not a string")
    if not d.get(flag):
        return text.encode()
    try:  # validate: a corrupt line must not become other bytes (b64decode drops junk)
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise AuditError(f"{name!r} is not base64: {exc}") from exc


def decode_record(topic: str, line: bytes) -> Record:
    """An archive line back into its record; a line of another shape is an ``AuditError``
    (a corrupt archive cannot be audited: exit 2, not a traceback read as a mismatch)."""
    d = orjson.loads(line)
    if type(d) is not dict:
        raise AuditError(f"a line is {type(d).__name__}, not an object")
    p, o, ts = d.get("p"), d.get("o"), d.get("ts")
    if type(p) is not int or type(o) is not int or not (ts is None or type(ts) is int):
        raise AuditError(f"p, o, ts are {p!r}, {o!r}, {ts!r}: not integers")
    return Record(topic, p, o, ts, _bytes_of(d, "k", "kb"), _bytes_of(d, "v", "vb"))


def topic_dir(root: Path, topic: str) -> Path:
    if not topic or "/" in topic or topic.startswith("."):
        raise AuditError(f"not a topic name usable as a directory: {topic!r}")
    return root / topic


def day_files(root: Path, topic: str) -> list[tuple[str, Path]]:
    """The archive's files of a topic, oldest day first."""
    d = topic_dir(root, topic)
    if not d.is_dir():
        return []
    out = [(m.group(1), p) for p in d.iterdir() if (m := _DAY_FILE.match(p.name))]
    return sorted(out)


class _Window:
    """Applies since/until/start_offsets per partition, identically for every source."""

    def __init__(self, since_ms: int | None, until_ms: int | None,
                 start_offsets: Mapping[int, int] | None):
        self.since, self.until = since_ms, until_ms
        self.start_offsets = dict(start_offsets or {})
        self.started: set[int] = set()
        self.stopped: set[int] = set()
        self.last: dict[int, int] = {}

    def admit(self, rec: Record) -> bool:
        return self.admit_at(rec.partition, rec.offset, rec.timestamp_ms)

    def admit_at(self, p: int, offset: int, ts: int | None) -> bool:
        if p in self.stopped or offset <= self.last.get(p, -1):
            return False  # ended, or a repeat (an archive run that was re-done after a crash)
        if offset < self.start_offsets.get(p, 0):
            return False
        if p not in self.started:
            if self.since is not None and (ts is None or ts < self.since):
                return False
            self.started.add(p)
        if self.until is not None and ts is not None and ts > self.until:
            self.stopped.add(p)
            return False
        self.last[p] = offset
        return True


class ArchiveSource:
    """Daily gzip files written by ``bando archive`` (``DIR/<topic>/<YYYY-MM-DD>.jsonl.gz``).

    A record is filed under the day of the largest timestamp seen so far on its partition, so
    reading the files in day order gives every partition in offset order even when producer
    timestamps go backwards; that is also why files before ``since``'s day can be skipped.
    """

    def __init__(self, root: str | Path, batch: int = 5000):
        self.root = Path(root)
        self.batch = batch
        self.name = f"archive:{self.root}"
        if not self.root.is_dir():
            raise AuditError(f"no archive directory {self.root}")

    def has_topic(self, topic: str) -> bool:
        return bool(day_files(self.root, topic))

    def check_complete(self, topic: str, records: int) -> None:
        """After a read of a topic's whole history: its files must hold at least the records
        the manifest says were archived (a missing or cut day file would pass unnoticed, and
        change every score after it). More is fine: a run cut before its manifest update."""
        from audit.archive import load_manifest  # here: audit.archive imports this module

        archived = load_manifest(self.root)["topics"].get(topic, {}).get("records")
        if isinstance(archived, int) and records < archived:
            raise AuditError(f"{self.name}: {topic!r} holds {records} records, but "
                             f"{archived} were archived (manifest.json): a day file is "
                             "missing or cut")

    def files(self, topic: str, since_ms: int | None = None) -> list[Path]:
        """The files ``read`` reads, in its order."""
        files = day_files(self.root, topic)
        if not files:
            raise AuditError(f"{self.name}: no files for topic {topic!r}")
        first_day = day_of_ms(since_ms) if since_ms is not None else ""
        return [path for day, path in files if day >= first_day]

    def read(self, topic: str, since_ms: int | None = None, until_ms: int | None = None,
             start_offsets: Mapping[int, int] | None = None) -> Iterator[list[Record]]:
        window = _Window(since_ms, until_ms, start_offsets)
        batch: list[Record] = []
        admitted = 0
        for path in self.files(topic, since_ms):
            try:
                with gzip.open(path, "rb") as fh:
                    for number, line in enumerate(fh, 1):
                        try:
                            rec = decode_record(topic, line)
                        except (ValueError, AuditError) as exc:  # not JSON, or not a record
                            raise AuditError(f"{self.name}: cannot read {path} line {number}: "
                                             f"{exc}") from exc
                        if window.admit(rec):
                            admitted += 1
                            batch.append(rec)
                            if len(batch) >= self.batch:
                                yield batch
                                batch = []
            except (OSError, EOFError, zlib.error) as exc:  # a corrupt gzip: exit 2, not 1
                raise AuditError(f"{self.name}: cannot read {path}: {exc}") from exc
        if since_ms is None and until_ms is None and not start_offsets:
            self.check_complete(topic, admitted)
        if batch:
            yield batch


class FileSource:
    """A JSON-lines file of events (as ``bando score`` reads): partition 0, offset = line - 1.

    It holds only the events topic (whatever its name); it has no DLQ, so replay validates
    every line itself, exactly like ``bando score``.
    """

    def __init__(self, path: str | Path, topic: str = "procedure-events", batch: int = 5000):
        self.path = Path(path)
        self.topic = topic
        self.batch = batch
        self.name = f"file:{self.path}"
        if not self.path.is_file():
            raise AuditError(f"no event file {self.path}")

    def has_topic(self, topic: str) -> bool:
        return topic == self.topic

    def read(self, topic: str, since_ms: int | None = None, until_ms: int | None = None,
             start_offsets: Mapping[int, int] | None = None) -> Iterator[list[Record]]:
        if topic != self.topic:
            raise AuditError(f"{self.name} holds only {self.topic!r}, not {topic!r}")
        first = dict(start_offsets or {}).get(0, 0)
        batch: list[Record] = []
        with open(self.path, "rb") as fh:
            for offset, line in enumerate(fh):
                line = line.strip()
                if not line or offset < first:
                    continue
                batch.append(Record(topic, 0, offset, None, None, line))
                if len(batch) >= self.batch:
                    yield batch
                    batch = []
        if batch:
            yield batch


class MemorySource:
    """Records held in memory (tests, and pipelines simulated in-process)."""

    def __init__(self, topics: Mapping[str, list[Record]], name: str = "memory"):
        self.topics = {t: sorted(recs, key=lambda r: (r.partition, r.offset))
                       for t, recs in topics.items()}
        self.name = name

    def has_topic(self, topic: str) -> bool:
        return topic in self.topics

    def read(self, topic: str, since_ms: int | None = None, until_ms: int | None = None,
             start_offsets: Mapping[int, int] | None = None) -> Iterator[list[Record]]:
        window = _Window(since_ms, until_ms, start_offsets)
        out = [r for r in self.topics.get(topic, []) if window.admit(r)]
        for i in range(0, len(out), 5000):
            yield out[i:i + 5000]


def open_source(settings: Any, events: str | None = None, archive: str | None = None,
                bootstrap: str | None = None, topic: str | None = None) -> Source:
    """The CLI's choice: ``--events FILE``, ``--archive DIR``, else Kafka (``--bootstrap``);
    a file's lines are records of ``topic`` (default: the settings' events topic)."""
    if events and archive:
        raise AuditError("give --events or --archive, not both")
    if events:
        return FileSource(events, topic=topic or settings.events_topic)
    if archive:
        return ArchiveSource(archive)
    # here, not at the top: audit.kafka_source imports Record from this module
    from audit.kafka_source import KafkaSource, security_of

    return KafkaSource(bootstrap or settings.kafka_bootstrap, security=security_of(settings))
