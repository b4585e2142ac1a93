"""Replay's fused ingest of a JSON-lines file or an archive (``audit.fastingest``) gives
exactly the generic path's history and statistics: ``source.read`` + ``Acceptor.accept`` +
``History.add``, record by record, with digests in ``Deduper`` (``load_history(...,
fused=False)``).

Random files (``stream_samples.streams``: bad lines, blank lines, repeats, conflicting repeats,
reordered bodies, odd values, unknown types and units) with a random DLQ (positions with
context codes, with other codes, past the end of the file, on another partition), with or
without one de-duplication memory per partition, and once more with every id hashing alike;
the same lines as archives (several partitions over several days, binary and null values,
a re-done archive run, since/until, old files read again for a repeat): same counts,
rejection codes, anomalies (texts and order), first and last instants, facts (and their
order).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from stream_samples import (
    FILE_PROPS,
    INSTANTS,
    LIMIT,
    every_id_colliding,
    growing_lines,
    streams,
)

import audit.fastingest
import audit.ingest
from audit.archive import export
from audit.ingest import CONTEXT_CODES, Acceptor, History, load_history, paused_gc
from audit.sources import ArchiveSource, FileSource, MemorySource, Record, day_files
from scoring.catalog import Catalog

PROPS = FILE_PROPS
UNITS = Catalog.from_list([{"unit_id": u, "name": u, "peer_group": "g"} for u in ("u1", "u2")])
CODES = sorted(CONTEXT_CODES) + ["schema_violation", "invalid_json", "unknown_unit"]


def _generic(source: FileSource, acceptor: Acceptor) -> History:
    """``load_history``'s generic loop, which every other source takes."""
    history = History()
    with paused_gc():
        for batch in source.read(source.topic):
            for rec in batch:
                ev = acceptor.accept(rec)
                if ev is not None:
                    history.add(ev)
    return history


def _outcome(history: History, acceptor: Acceptor) -> tuple[Any, ...]:
    stats = acceptor.stats.to_dict()
    del stats["seconds"], stats["records_per_s"]
    states = {u: ([(k, d.to_dict()) for k, d in s.dossiers.items()],
                  [(k, p.to_dict()) for k, p in s.petitions.items()],
                  [(k, p) for k, p in s.publications.items()])
              for u, s in history.states.items()}
    return stats, history.first_ts, history.last_ts, states


def _agree(path: Path, lines: list[bytes], dlq: dict[tuple[int, int], str] | None,
           per_partition: bool) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")
    source = FileSource(path)
    reference = Acceptor(UNITS, LIMIT, dlq, per_partition)
    expected = _outcome(_generic(source, reference), reference)
    fast = Acceptor(UNITS, LIMIT, dlq, per_partition)
    got = _outcome(load_history(source, source.topic, fast), fast)
    assert not fast.dedupers  # the fused path ran (it keeps no digests)
    assert got == expected


@st.composite
def dlqs(draw: st.DrawFn, n: int) -> dict[tuple[int, int], str] | None:
    if draw(st.booleans()):
        return None
    offsets = st.integers(0, n + 2)  # a few past the end of the file
    return {(draw(st.sampled_from([0, 0, 0, 1, 2])), draw(offsets)): draw(st.sampled_from(CODES))
            for _ in range(draw(st.integers(0, 6)))}


@st.composite
def files(draw: st.DrawFn) -> tuple[list[bytes], dict[tuple[int, int], str] | None, bool]:
    lines = draw(streams())
    return lines, draw(dlqs(len(lines))), draw(st.booleans())


@PROPS
@given(files())
def test_fast_ingest_equals_the_generic_path(tmp_path: Path, case: Any) -> None:
    _agree(tmp_path / "events.jsonl", *case)


@PROPS
@given(files())
def test_fast_ingest_equals_the_generic_path_when_every_id_collides(
        tmp_path: Path, case: Any) -> None:
    with every_id_colliding():
        _agree(tmp_path / "events.jsonl", *case)


def test_fast_ingest_grows_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit.fastingest, "TYPICAL_LINE", 1 << 40)
    lines = growing_lines()
    _agree(tmp_path / "events.jsonl", lines, {(0, 5): "conflicting_duplicate"}, False)


def test_plain_events_skip_the_acceptor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the fused path: a plain dossier event never reaches ``Acceptor.accept``
    nor ``Validator.validate``."""
    calls: list[Any] = []
    monkeypatch.setattr(Acceptor, "accept", lambda self, rec: calls.append(rec))
    monkeypatch.setattr(audit.ingest.Validator, "validate", lambda self, raw: calls.append(raw))
    monkeypatch.setattr(audit.ingest.History, "add", lambda self, ev: calls.append(ev))
    path = tmp_path / "plain.jsonl"
    path.write_bytes(b"".join(orjson.dumps(
        {"event_id": f"e{i}", "type": "dossier.synced", "occurred_at": INSTANTS[i % 5],
         "unit_id": "u1", "dossier_id": f"d{i % 3}"}, option=orjson.OPT_APPEND_NEWLINE)
        for i in range(50)))
    acceptor = Acceptor(UNITS, LIMIT)
    history = load_history(FileSource(path), "procedure-events", acceptor)
    assert calls == []
    assert acceptor.stats.accepted == acceptor.stats.records == 50
    assert sorted(history.states["u1"].dossiers) == ["d0", "d1", "d2"]


DAY_MS = 86_400_000
T0_MS = 1_711_900_800_000  # 2024-04-01 (UTC)


@st.composite
def archives(draw: st.DrawFn) -> tuple[list[Record], bool, int | None, int | None]:
    """Records of a stream's lines over up to 3 partitions and ~10 days (some values binary,
    null or padded with whitespace, some without a broker time), whether a day file gets some
    of its lines again (an archive run re-done after a crash), and since/until."""
    lines = draw(streams())
    offsets = [0, 0, 0]
    recs = []
    for i, line in enumerate(lines):
        p = draw(st.integers(0, 2))
        value: bytes | None = draw(st.sampled_from(
            [line] * 8 + [b"\xff\xfe" + line, None, b" " + line + b"\n"]))
        ts = None if draw(st.integers(0, 15)) == 0 else T0_MS + i * DAY_MS // 6 + p
        recs.append(Record("procedure-events", p, offsets[p], ts, None, value))
        offsets[p] += 1
    span = len(lines) * DAY_MS // 6
    since = draw(st.one_of(st.none(), st.integers(T0_MS - DAY_MS, T0_MS + span)))
    until = draw(st.one_of(st.none(), st.integers(T0_MS, T0_MS + span + DAY_MS)))
    return recs, draw(st.booleans()), since, until


def _archive_agree(root: Path, recs: list[Record], redone: bool, since: int | None,
                   until: int | None, dlq: dict[tuple[int, int], str] | None) -> None:
    export(MemorySource({"procedure-events": recs}), ["procedure-events"], root)
    if redone:  # the first day's lines appended again, as a re-done run leaves them
        path = day_files(root, "procedure-events")[0][1]
        with gzip.open(path, "rb") as fh:
            again = fh.read()
        with gzip.open(path, "ab") as fh:
            fh.write(again)
    source = ArchiveSource(root)
    reference = Acceptor(UNITS, LIMIT, dlq)
    expected = _outcome(load_history(source, "procedure-events", reference, since, until,
                                     fused=False), reference)
    fast = Acceptor(UNITS, LIMIT, dlq)
    got = _outcome(load_history(source, "procedure-events", fast, since, until), fast)
    assert not fast.dedupers  # the fused path ran (it keeps no digests)
    assert got == expected


@PROPS
@given(archives(), st.data())
def test_fast_archive_ingest_equals_the_generic_path(tmp_path_factory: Any, case: Any,
                                                     data: st.DataObject) -> None:
    recs = case[0]
    dlq = data.draw(dlqs(len(recs)))
    _archive_agree(tmp_path_factory.mktemp("archive"), *case, dlq)


@PROPS
@given(archives())
def test_fast_archive_ingest_reads_old_files_again(tmp_path_factory: Any, case: Any) -> None:
    """One day file kept in memory, and every id colliding: each repeat, and each id after
    the first, re-reads the file of an earlier copy."""
    with every_id_colliding() as mp:
        mp.setattr(audit.fastingest._DayLines, "KEPT", 1)
        _archive_agree(tmp_path_factory.mktemp("archive"), *case, None)
