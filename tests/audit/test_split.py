"""``bando replay --jobs N`` (``audit.split``): the units split between processes give the
one-process replay's rows and statistics exactly, byte for byte against ``--jobs 1`` on the
worked example (as it is, and written compactly with ids shared across units and a misleading
line) and on a simulated city; the processes' protocol when a worker fails, dies, or must read
again. The workers' ingest itself: ``test_splitingest.py``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import orjson
import pytest
from stream_samples import LIMIT, misleading

import audit.split
from audit.exceptions import AuditError
from audit.ingest import Acceptor, History, load_history
from audit.replay import TimelineSpec, timeline
from audit.sources import FileSource
from audit.split import SplitReplay
from bando.cli import main
from scoring.catalog import Catalog
from scoring.model import Model

UNITS = Catalog.from_list([{"unit_id": u, "name": u, "peer_group": "g"} for u in ("u1", "u2")])


def test_a_worker_whose_last_event_is_refused_reads_all_its_units_again(
        tmp_path: Path, model: Model, caplog: pytest.LogCaptureFixture) -> None:
    """u2's only event repeats u1's id: refused, it takes u2's worker's last instant with it,
    and what the next one is only a full second pass can tell."""
    lines = [orjson.dumps({"event_id": "e1", "type": "dossier.synced", "unit_id": u,
                           "dossier_id": "d1", "occurred_at": f"2024-04-01T{h}:00:00+07:00"})
             for u, h in [("u1", "08"), ("u1", "09"), ("u2", "10")]]
    lines[1] = lines[1].replace(b'"e1"', b'"e2"')
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    source = FileSource(tmp_path / "events.jsonl")
    caplog.set_level(logging.INFO, logger="audit.split")
    split = SplitReplay(source, UNITS, model, TimelineSpec(every="day"), LIMIT, 2)
    try:
        stats = split.ingest()
    finally:
        split.close()
    reference = Acceptor(UNITS, LIMIT)
    history = load_history(source, source.topic, reference)
    assert (stats.accepted, dict(stats.rejected)) == (2, {"conflicting_duplicate": 1}) == (
        reference.stats.accepted, dict(reference.stats.rejected))
    assert (split.first_ts, split.last_ts) == (history.first_ts, history.last_ts)
    assert "read all its units again" in caplog.text


# --- the command ----------------------------------------------------------------------------


def _replay(tmp_path: Path, name: str, *args: str) -> bytes:
    out = tmp_path / name
    assert main(["replay", *args, "-o", str(out)]) == 0
    return out.read_bytes()


def _without_timing(doc: bytes) -> dict[str, Any]:
    d = orjson.loads(doc)
    for key in ("timeline_seconds", "events_per_s"):
        d.pop(key)
    for key in ("seconds", "records_per_s"):
        d["ingest"].pop(key)
    return d


@pytest.mark.parametrize("every", [["--every", "day"], [], ["--unit", "quan-01"]])
def test_the_example_replays_the_same_on_two_processes(
        tmp_path: Path, example_dir: Path, every: list[str]) -> None:
    args = ["--events", str(example_dir / "events.jsonl"), "--units",
            str(example_dir / "catalog.json"), "--window", "month", *every]
    one = _replay(tmp_path, "one.json", *args)
    two = _replay(tmp_path, "two.json", *args, "--jobs", "2")
    assert _without_timing(two) == _without_timing(one)
    assert len(orjson.loads(one)["rows"]) > 10
    csv1 = _replay(tmp_path, "one.csv", *args, "--format", "csv")
    assert _replay(tmp_path, "three.csv", *args, "--format", "csv", "--jobs", "3") == csv1


@pytest.mark.parametrize("mislead", [False, True])
def test_ids_shared_across_processes_and_misleading_lines_replay_the_same(
        tmp_path: Path, example_dir: Path, caplog: pytest.LogCaptureFixture, mislead: bool
) -> None:
    """The worked example written compactly (so lines are routed by their bytes), with
    events repeated under other units before and after their originals: the processes
    accept some ids twice and settle them with a second pass; with a misleading line too,
    every process first reads again without routing."""
    catalog = orjson.loads((example_dir / "catalog.json").read_bytes())
    units = [u["unit_id"] for u in (catalog["units"] if type(catalog) is dict else catalog)]
    lines, bodies = [], []
    for line in (example_dir / "events.jsonl").read_bytes().splitlines():
        try:  # compact, or as it is (a bad line)
            bodies.append(orjson.loads(line))
            lines.append(orjson.dumps(bodies[-1]))
        except orjson.JSONDecodeError:
            lines.append(line)
    with_unit = [b for b in bodies if type(b) is dict and "unit_id" in b][:60]
    moved = [orjson.dumps({**b, "unit_id": units[i % len(units)]})
             for i, b in enumerate(with_unit)]
    lines = moved[:30] + lines + moved[30:]
    if mislead:
        lines.insert(len(lines) // 2, misleading(orjson.dumps(with_unit[-1]), units[0]))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    args = ["--events", str(path), "--units", str(example_dir / "catalog.json"),
            "--window", "month", "--every", "day"]
    one = _replay(tmp_path, "one.json", *args)
    assert orjson.loads(one)["ingest"]["rejected"]["conflicting_duplicate"] >= 50
    caplog.set_level(logging.INFO, logger="audit.split")
    for jobs in ("2", "3"):
        caplog.clear()
        assert _without_timing(_replay(tmp_path, f"{jobs}.json", *args, "--jobs", jobs)) \
            == _without_timing(one)
        assert "accepted by two workers" in caplog.text
        assert ("ingesting again, every line decoded" in caplog.text) == mislead
        # the units of shared ids alone are read again (their bounds stay)
        assert "read units with shared ids again" in caplog.text


def test_a_simulated_city_replays_the_same_on_two_processes(tmp_path: Path) -> None:
    """The bundled city (many units, peer groups of several sizes), a simulated month."""
    path = tmp_path / "sim.jsonl"
    assert main(["simulate", "file", "--out", str(path), "--start", "2024-03-20", "--end",
                 "2024-04-10", "--scale", "0.05", "--bad-rate", "0.01", "--dup-rate",
                 "0.02"]) == 0
    args = ["--events", str(path), "--every", "day", "--format", "csv"]
    one = _replay(tmp_path, "one.csv", *args)
    assert one.count(b"\n") > 100
    assert _replay(tmp_path, "two.csv", *args, "--jobs", "2") == one


def test_bad_requests_are_refused_before_reading(tmp_path: Path, example_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    events = ["--events", str(example_dir / "events.jsonl"), "--units",
              str(example_dir / "catalog.json")]
    for args, text in [([*events, "--jobs", "0"], "at least 1"),
                       (["--archive", str(tmp_path), "--jobs", "2"], "an --events file"),
                       ([*events, "--jobs", "2", "--unit", "quan-01", "--chart",
                         str(tmp_path / "c.svg")], "need the whole history"),
                       ([*events, "--jobs", "2", "--verify"], "--jobs cannot be used"),
                       ([*events, "--jobs", "2", "--topic", "ev", "--dlq-topic", "ev"],
                        "reads no dead-letter topic")]:
        assert main(["replay", *args]) == 2
        assert text in capsys.readouterr().err


def test_a_request_the_history_refuses_stops_the_workers(
        tmp_path: Path, example_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The window starts after the last event: refused once the ingest is done, in the
    parent, and the workers waiting for the range end with it at once (before the review of
    session 11 each held its own pipe's other end, never saw it closed and was killed after
    5 s)."""
    args = ["replay", "--events", str(example_dir / "events.jsonl"), "--units",
            str(example_dir / "catalog.json"), "--window", "month:2031-01", "--jobs", "2",
            "-o", str(tmp_path / "out.json")]
    started = time.perf_counter()
    assert main(args) == 2
    assert time.perf_counter() - started < 4
    assert "starts after the last event" in capsys.readouterr().err


ORPHAN = """
import sys, time
import audit.split
from audit.sources import FileSource
from audit.replay import TimelineSpec
from scoring.catalog import load_catalog
from scoring.model import load_model
if sys.argv[3] == "busy":  # the workers read no pipe for a minute, as in a year's ingest
    audit.split.load_part = lambda *_, **__: time.sleep(60)
split = audit.split.SplitReplay(FileSource(sys.argv[1]), load_catalog(sys.argv[2]),
                                load_model(), TimelineSpec(every="day"), 4096, 2)
if sys.argv[3] == "waiting":
    split.ingest()
print(" ".join(str(p.pid) for p in split.procs), flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("stage", ["busy", "waiting"])
def test_workers_die_with_their_parent(example_dir: Path, stage: str) -> None:
    """A parent killed (the OOM killer, a timeout) leaves no worker holding its memory,
    whether the workers are busy (killed with it: ``PR_SET_PDEATHSIG``) or waiting for it
    (their pipe closes)."""
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN, str(example_dir / "events.jsonl"),
                             str(example_dir / "catalog.json"), stage],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_reading_again_has_let_go_of_its_first_pass(
        example_dir: Path, example_catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Told to ingest again (a misrouted line elsewhere), a worker drops its first history and
    empties its dump before the second pass: a year's history is many GB."""
    histories: list[weakref.ref[History]] = []
    real = audit.split.load_part
    dump = audit.split._scratch(0)

    def load(*args: Any, **kwargs: Any) -> Any:
        assert all(h() is None for h in histories), "the first pass's history is alive"
        assert os.fstat(dump).st_size == 0 or not histories, "the first pass's dump is kept"
        history, slots = real(*args, **kwargs)
        histories.append(weakref.ref(history))
        return history, slots

    class Parent:
        def __init__(self) -> None:
            self.said: list[Any] = []
            self.answers: list[Any] = ["again", "compare", []]

        def send(self, message: Any) -> None:
            self.said.append(message)

        def recv(self) -> Any:
            return self.answers.pop(0)

    monkeypatch.setattr(audit.split, "load_part", load)
    parent = Parent()
    history = audit.split._ingest(0, FileSource(example_dir / "events.jsonl"), example_catalog,
                                  LIMIT, {u: 0 for u in example_catalog.by_id}, 1000,
                                  [dump], parent)  # type: ignore[arg-type]
    assert len(histories) == 2 and histories[1]() is history
    assert [m[0] for m in parent.said] == ["ingested", "ingested", "shared", "ingest"]


@pytest.mark.parametrize("stage", ["ingested", "shared", "compare"])
def test_a_worker_dying_during_the_ingest_fails_the_replay(
        tmp_path: Path, example_dir: Path, stage: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Worker 1 dies after telling its ingest done, after its comparison, or raises in it:
    the command fails with exit 2 and says why, whether the parent was sending or waiting."""
    real = audit.split._ingest

    def dying(k: int, *args: Any) -> Any:
        dumps, conn = args[-2:]
        if k == 1 and stage != "compare":  # an empty table, for the other to compare with
            os.write(dumps[k], bytes(16 * 16))
        if k == 1 and stage == "ingested":
            conn.send(("ingested", False))
            os._exit(9)
        if k == 1 and stage == "shared":
            conn.send(("ingested", False))
            conn.recv()
            conn.send(("shared", []))
            os._exit(9)
        if k == 1:
            monkeypatch.setattr(audit.split, "shared", lambda *_: 1 / 0)
        return real(k, *args)

    monkeypatch.setattr(audit.split, "_ingest", dying)  # the forked workers inherit it
    code = main(["replay", "--events", str(example_dir / "events.jsonl"), "--units",
                 str(example_dir / "catalog.json"), "--every", "day", "--jobs", "2",
                 "-o", str(tmp_path / "out.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert ("ZeroDivisionError" in err) if stage == "compare" else (
        "a replay worker died" in err)


def test_a_failing_worker_fails_the_replay(tmp_path: Path, example_dir: Path,
                                           example_catalog: Catalog, model: Model,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("the timeline broke")

    monkeypatch.setattr(audit.split, "steps", broken)  # the forked workers inherit it
    split = SplitReplay(FileSource(example_dir / "events.jsonl"), example_catalog, model,
                        TimelineSpec(every="day"), LIMIT, 2)
    stats = split.ingest()
    assert stats.records > 0
    with pytest.raises(AuditError, match="(?s)a replay worker failed: .*the timeline broke"):
        list(split.rows())
    for proc in split.procs:
        assert not proc.is_alive()


@pytest.mark.parametrize("memfd", [True, False])
def test_the_rows_equal_the_timeline_in_process(example_dir: Path, example_catalog: Catalog,
                                                model: Model, memfd: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Also where the tables cannot be dumped into memory files (unnamed temporary files)."""
    if not memfd:
        def refused(*_: Any) -> int:
            raise OSError("memfd_create refused")

        monkeypatch.setattr(audit.split.os, "memfd_create", refused, raising=False)
    source = FileSource(example_dir / "events.jsonl")
    spec = TimelineSpec(window="year", every="change")
    split = SplitReplay(source, example_catalog, model, spec, LIMIT, 2)
    split.ingest()
    got = list(split.rows())
    history = load_history(source, source.topic, Acceptor(example_catalog, LIMIT))
    assert got == list(timeline(history, example_catalog, model, spec))
