"""Replay timelines equal ``bando score`` at every instant; the fast totals equal ``rate``;
archives read back as the exact topic (since/until semantics included)."""

from __future__ import annotations

import gzip
import random
from fractions import Fraction
from pathlib import Path

import orjson
import pytest

from audit.archive import export, load_manifest
from audit.replay import (
    Acceptor,
    TimelineSpec,
    Totals,
    _may_move,
    csv_lines,
    day_ends,
    load_history,
    timeline,
    window_state,
)
from audit.running import UnitReplay
from audit.sources import ArchiveSource, FileSource, MemorySource, Record, day_files
from bando.batch import load, score_report
from scoring.indicators import count
from scoring.model import model_from_dict
from scoring.points import rate
from scoring.timeutil import parse_ts, resolve_window


@pytest.fixture(scope="module")
def history(example_dir, example_catalog):  # type: ignore[no-untyped-def]
    acceptor = Acceptor(example_catalog, 64 * 1024)
    h = load_history(FileSource(example_dir / "events.jsonl"), "procedure-events", acceptor)
    return h, acceptor.stats


@pytest.fixture(scope="module")
def loaded(example_dir, example_catalog, model):  # type: ignore[no-untyped-def]
    return load(example_dir / "events.jsonl", example_catalog, model)


def state_at(rows, t):  # type: ignore[no-untyped-def]
    """The latest row per unit at or before t (rows are in time order)."""
    out = {}
    for r in rows:
        if parse_ts(r["at"]) <= t:
            out[r["unit_id"]] = r
    return out


def test_ingest_matches_bando_score(history, loaded):  # type: ignore[no-untyped-def]
    _, stats = history
    assert stats.accepted == loaded.accepted
    assert sum(stats.rejected.values()) == len(loaded.rejected)


@pytest.mark.parametrize("kind", ["month", "year", "quarter:2024-Q1"])
def test_change_timeline_equals_bando_score_at_every_instant(history, loaded, example_catalog,
                                                             model, kind):
    h, _ = history
    rows = list(timeline(h, example_catalog, model, TimelineSpec(window=kind)))
    assert rows
    times = sorted({parse_ts(r["at"]) for r in rows})
    probes = random.Random(7).sample(times, 12) + [times[0], times[-1]]
    probes += [t - 1 for t in probes[:4]] + [t + 3_600_000_000 for t in probes[:4]]
    for t in probes:
        if t < times[0]:
            continue
        now = state_at(rows, t)
        truth = score_report(loaded, resolve_window(kind, t), t, "")
        for unit in truth["units"]:
            row = now.get(unit["unit_id"])
            got = (row["window"], row["total"], row["band"], row["rank"], row["peer_count"])
            assert got == (truth["window"], unit["total"], unit["band"], unit["rank"],
                           unit["peer_count"]), (t, unit["unit_id"])


def test_day_timeline_and_unit_filter(history, loaded, example_catalog, model):
    h, _ = history
    start, end = parse_ts("2024-03-01T00:00:00+07:00"), parse_ts("2024-03-10T12:00:00+07:00")
    spec = TimelineSpec(window="month", start=start, end=end, every="day", units=("quan-01",))
    rows = list(timeline(h, example_catalog, model, spec))
    assert [r["unit_id"] for r in rows] == ["quan-01"] * 10
    assert rows[-1]["at"] == "2024-03-10T12:00:00+07:00"
    assert rows[0]["at"] == "2024-03-01T23:59:59.999999+07:00"
    for r in rows:
        t = parse_ts(r["at"])
        truth = score_report(loaded, resolve_window("month", t), t, "")
        unit = next(u for u in truth["units"] if u["unit_id"] == "quan-01")
        assert (r["total"], r["band"], r["rank"]) == (unit["total"], unit["band"], unit["rank"])
    every = list(timeline(h, example_catalog, model, TimelineSpec(window="month", start=start,
                                                                  end=end)))
    mine = [r for r in every if r["unit_id"] == "quan-01"]
    only = list(timeline(h, example_catalog, model, TimelineSpec(
        window="month", start=start, end=end, units=("quan-01",))))
    assert only == mine


def test_running_counts_equal_the_core_count_as_time_moves(history, example_catalog, model):
    h, _ = history
    rng = random.Random(5)
    lo, hi = h.first_ts, h.last_ts
    for unit_id in example_catalog.by_id:
        instants = sorted(rng.randint(lo - 86_400_000_000, hi) for _ in range(8))
        replay = UnitReplay(h.states.get(unit_id), instants[0], model.timezone)
        for t in instants:
            replay.advance(t)
            window = resolve_window(rng.choice(["month", "quarter", "year"]), t)
            got = replay.counts(window)
            full = count(window_state(h.states.get(unit_id), window), window, t)
            assert got.values == full.values, (unit_id, t)
            assert (got.items > 0) == (full.items > 0)
    with pytest.raises(ValueError):
        replay.advance(instants[0] - 1)


def test_change_timeline_rechecked_against_the_core(history, example_catalog, model):
    h, _ = history
    spec = TimelineSpec(window="month", check_core=True)
    rows = list(timeline(h, example_catalog, model, spec))
    assert rows == list(timeline(h, example_catalog, model, TimelineSpec(window="month")))


def test_a_peer_that_moves_changes_a_shown_rank_only_by_crossing_it():
    # ranks count the peers strictly above: reaching a tie or leaving one is a crossing
    assert _may_move([(60.0, 50.0)], [50.0]) and _may_move([(50.0, 60.0)], [50.0])
    assert _may_move([(40.0, 55.0)], [50.0])
    assert not _may_move([(40.0, 50.0)], [50.0]) and not _may_move([(50.0, 40.0)], [50.0])
    assert not _may_move([(60.0, 55.0), (10.0, 20.0)], [50.0, None])
    assert _may_move([(None, 10.0)], [50.0]) and _may_move([(10.0, None)], [50.0])  # scored
    assert not _may_move([(None, None)], [50.0]) and not _may_move([(60.0, 10.0)], [None])


def test_day_ends_follow_the_local_calendar():
    t0 = parse_ts("2024-02-28T10:00:00+07:00")
    ends = day_ends(t0, parse_ts("2024-03-01T08:00:00+07:00"), "Asia/Ho_Chi_Minh")
    assert ends == [parse_ts("2024-02-28T23:59:59.999999+07:00"),
                    parse_ts("2024-02-29T23:59:59.999999+07:00"),
                    parse_ts("2024-03-01T08:00:00+07:00")]


def test_fast_totals_equal_rate(model):
    totals = Totals(model)
    rng = random.Random(3)
    ids = [i.id for i in model.indicators]
    for _ in range(4000):
        counts = {}
        for i in ids:
            den = rng.choice([0, 0, 1, 2, 3, 7, 9, 40, 97, 333, 1000])
            counts[i] = (rng.randint(0, den), den)
        rated = rate(model, counts)
        assert totals.of(counts, True) == (rated.total, rated.band)
        assert totals.of(counts, False) == (None, None)


def test_fast_totals_on_rounding_boundaries_and_other_models(model):
    # one indicator, points 1: total = 100 * num/den; 1/8 -> 12.5 exactly at 2 digits is not a
    # boundary, but 1/16000 is 0.00625 -> needs the exact path at the third digit
    data = {"name": "t", "version": 1, "groups": [{"id": "g", "indicators": [
        {"id": "on_time", "points": 3, "target": "0.9"},
        {"id": "digitized", "points": 1, "empty": "exclude"},
        {"id": "petitions_on_time", "points": 2, "empty": "full"}]}],
        "bands": [{"band": "hi", "min": 50}, {"band": "lo", "min": 0}],
        "rounding": {"total": 2}}
    m = model_from_dict(data)
    totals = Totals(m)
    for num in range(0, 401):
        for den in (400, 3, 0):
            counts = {"on_time": (min(num, den), den), "digitized": (0, 0)}
            rated = rate(m, counts)
            assert totals.of(counts, True) == (rated.total, rated.band), counts
    # 100 * 3*(x/0.9)/5 on a .xx5 boundary: x = 0.6195/ (100*3/(0.9*5)) ... brute force
    hits = 0
    for den in range(1, 300):
        for num in range(den + 1):
            value = 100 * 3 * min(Fraction(1), Fraction(num, den) / Fraction(9, 10)) / 5
            if (value * 100 - int(value * 100)) == Fraction(1, 2):
                hits += 1
                counts = {"on_time": (num, den)}
                assert totals.of(counts, True)[0] == rate(m, counts).total
    assert hits and totals.exact_calls >= hits


def test_csv_has_a_header_and_blank_nulls():
    rows = [{"at": "x", "unit_id": "u", "peer_group": "g", "window": "w", "total": None,
             "band": None, "rank": None, "peer_count": None}]
    text = "".join(csv_lines(rows))
    assert text == "at,unit_id,peer_group,window,total,band,rank,peer_count\nx,u,g,w,,,,\n"


# --- archive ---------------------------------------------------------------------------


def records(n: int = 300, partitions: int = 3) -> list[Record]:
    """Timestamps that go backwards now and then (producer clocks), over several days."""
    rng = random.Random(1)
    out, offsets = [], [0] * partitions
    base = parse_ts("2024-05-01T20:00:00+07:00") // 1000
    for i in range(n):
        p = rng.randrange(partitions)
        ts = base + i * 1_200_000 - rng.choice([0, 0, 0, 7_200_000])
        value = b"\xff\xfe" if i == 5 else orjson.dumps({"i": i})
        out.append(Record("ev", p, offsets[p], ts, None if i % 7 == 0 else b"k%d" % i, value))
        offsets[p] += 1
    return out


def read_all(source, topic="ev", **kw):  # type: ignore[no-untyped-def]
    return [r for batch in source.read(topic, **kw) for r in batch]


def per_partition(recs):  # type: ignore[no-untyped-def]
    return sorted(recs, key=lambda r: (r.partition, r.offset))


def test_archive_reads_back_exactly_with_the_same_since_until(tmp_path: Path):
    recs = records()
    mem = MemorySource({"ev": recs})
    export(MemorySource({"ev": recs[:120]}), ["ev"], tmp_path)
    export(mem, ["ev"], tmp_path)  # resumes from the manifest: appends only the rest
    assert load_manifest(tmp_path)["topics"]["ev"]["records"] == len(recs)
    days = [d for d, _ in day_files(tmp_path, "ev")]
    assert len(days) >= 3 and days == sorted(days)
    archive = ArchiveSource(tmp_path)
    assert per_partition(read_all(archive)) == per_partition(recs)
    mid = recs[150].timestamp_ms
    for since, until in [(mid, None), (None, mid), (mid - 86_400_000, mid + 3_600_000)]:
        a = read_all(archive, since_ms=since, until_ms=until)
        b = read_all(mem, since_ms=since, until_ms=until)
        assert per_partition(a) == per_partition(b) and b
    # within a partition, the archive's order is the offset order
    for p in range(3):
        offs = [r.offset for r in read_all(archive) if r.partition == p]
        assert offs == sorted(offs)


def test_archive_survives_a_rerun_after_a_crash(tmp_path: Path):
    recs = records(80)
    export(MemorySource({"ev": recs}), ["ev"], tmp_path)
    manifest = tmp_path / "manifest.json"
    saved = manifest.read_bytes()
    export(MemorySource({"ev": recs}), ["ev"], tmp_path / "other")
    # simulate: data appended again but the manifest never updated
    for _, path in day_files(tmp_path, "ev"):
        with gzip.open(path, "ab") as fh, gzip.open(tmp_path / "other" / "ev" / path.name,
                                                    "rb") as again:
            fh.write(again.read())
    manifest.write_bytes(saved)
    assert per_partition(read_all(ArchiveSource(tmp_path))) == per_partition(recs)


def test_a_missing_or_corrupt_day_file_is_an_error_not_other_scores(tmp_path: Path):
    """The manifest counts what was archived: a whole-history read that finds fewer records
    fails (a lost day file changed every later score, silently); a corrupt gzip or a line
    that is not an object is an AuditError (exit 2), not a traceback (exit 1 = mismatch)."""
    from audit.exceptions import AuditError
    from audit.ingest import Acceptor, load_history
    from scoring.catalog import Catalog

    recs = records(200)
    export(MemorySource({"ev": recs}), ["ev"], tmp_path)
    files = [path for _, path in day_files(tmp_path, "ev")]
    archive = ArchiveSource(tmp_path)
    catalog = Catalog.from_list([{"unit_id": "u1", "name": "u1", "peer_group": "g"}])
    load_history(archive, "ev", Acceptor(catalog, 65536))  # whole: fine
    files[1].unlink()
    with pytest.raises(AuditError, match="missing or cut"):
        read_all(archive)
    with pytest.raises(AuditError, match="missing or cut"):
        load_history(archive, "ev", Acceptor(catalog, 65536))
    assert read_all(archive, since_ms=recs[-1].timestamp_ms)  # a window: not checked
    data = bytearray(files[0].read_bytes())
    data[60:76] = bytes(16)
    files[0].write_bytes(bytes(data))
    for read in (lambda: read_all(archive),
                 lambda: load_history(archive, "ev", Acceptor(catalog, 65536))):
        with pytest.raises(AuditError, match="cannot read"):
            read()
    with gzip.open(files[0], "wb") as fh:
        fh.write(b"[1, 2]\n")
    with pytest.raises(AuditError, match="cannot read"):
        load_history(archive, "ev", Acceptor(catalog, 65536))


def test_file_source_offsets_are_line_numbers(tmp_path: Path):
    f = tmp_path / "e.jsonl"
    f.write_bytes(b'{"a":1}\n\n{"a":2}\n')
    got = read_all(FileSource(f, topic="ev"))
    assert [(r.partition, r.offset, r.value) for r in got] == [(0, 0, b'{"a":1}'),
                                                               (0, 2, b'{"a":2}')]
