"""``audit.splitingest``: the workers of a split replay (``audit.split``) together ingest
what one process does.

Checked without forking, worker by worker and the tables compared as the workers do
(``ingest_here``), on random files (``stream_samples.streams``: bad lines, repeats and
conflicting repeats of ids shared by units of different workers, unknown units, blank and too
large lines; some lines whose bytes name another unit than their JSON, ``misleading``), with
random unit assignments and once more with every id hashing alike: the workers' summed
statistics, their states together, and the first and last instants equal ``load_history``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from stream_samples import FILE_PROPS, LIMIT, every_id_colliding, growing_lines, misleading, streams

import audit.splitingest
from audit.ingest import Acceptor, History, load_history
from audit.sources import FileSource
from audit.split import assign
from audit.splitingest import Misrouted, load_part, refusals, second_pass, shared
from scoring.catalog import Catalog

PROPS = FILE_PROPS
UNITS = Catalog.from_list([{"unit_id": u, "name": u, "peer_group": "g"} for u in ("u1", "u2")])


def _stats(acceptor: Acceptor) -> dict[str, Any]:
    stats = acceptor.stats.to_dict()
    del stats["seconds"], stats["records_per_s"]
    return stats


def _states(states: dict[str, Any]) -> dict[str, Any]:
    return {u: ([(k, d.to_dict()) for k, d in s.dossiers.items()],
                [(k, p.to_dict()) for k, p in s.petitions.items()],
                [(k, p) for k, p in s.publications.items()]) for u, s in states.items()}


def ingest_here(source: FileSource, assignment: dict[str, int], jobs: int, route: bool = True
                ) -> tuple[list[tuple[Acceptor, History]], dict[str, Any]]:
    """The workers' ingest as ``audit.split`` runs it, one after the other in this process:
    each worker's lines (all again without routing if one was misrouted), the tables
    compared, a second pass for those that must refuse shared ids. Also what happened."""
    parts: dict[int, tuple[Acceptor, History, Any]] = {}
    try:
        for k in range(jobs):
            acceptor = Acceptor(UNITS, LIMIT)
            parts[k] = (acceptor, *load_part(source, acceptor, assignment, k, route=route))
    except Misrouted:
        assert route, "misrouted without routing"
        got, seen = ingest_here(source, assignment, jobs, route=False)
        return got, {**seen, "misrouted": True}
    tables = {k: part[2] for k, part in parts.items()}
    found = [f for k in range(jobs) for f in shared(source.path, k, tables)]
    refuse = refusals(found)
    passes = {"few": 0, "all": 0}
    for k, ids in refuse.items():
        acceptor, history, table = parts[k]
        if second_pass(source, acceptor, assignment, route=route, first=history,
                       slots=table, refuse=ids) is not None:
            passes["few"] += 1
            continue
        passes["all"] += 1
        acceptor = Acceptor(UNITS, LIMIT)
        parts[k] = (acceptor, *load_part(source, acceptor, assignment, k, route=route,
                                         refuse=[(e, first) for e, first, _ in ids]))
    return ([(a, h) for a, h, _ in parts.values()],
            {"misrouted": False, "refused": sum(map(len, refuse.values())), **passes})


def _agree(path: Path, lines: list[bytes], assignment: dict[str, int], jobs: int
           ) -> dict[str, Any]:
    path.write_bytes(b"\n".join(lines) + b"\n")
    source = FileSource(path)
    reference = Acceptor(UNITS, LIMIT)
    history = load_history(source, source.topic, reference)
    want = (_stats(reference), history.first_ts, history.last_ts, _states(history.states))
    total: dict[str, Any] = {"records": 0, "accepted": 0, "duplicates": 0, "rejected": {}}
    states: dict[str, Any] = {}
    firsts, lasts = [], []
    parts, seen = ingest_here(source, assignment, jobs)
    for acceptor, part in parts:
        st_ = _stats(acceptor)
        for name in ("records", "accepted", "duplicates"):
            total[name] += st_[name]
        for code, n in st_["rejected"].items():
            total["rejected"][code] = total["rejected"].get(code, 0) + n
        assert not set(states) & set(part.states), "a unit folded by two workers"
        states.update(part.states)
        firsts += [part.first_ts] if part.first_ts is not None else []
        lasts += [part.last_ts] if part.last_ts is not None else []
    got_stats = {**want[0], **total, "rejected": dict(sorted(total["rejected"].items()))}
    assert got_stats == want[0]
    assert (min(firsts, default=None), max(lasts, default=None)) == want[1:3]
    # each unit's facts in the same order as in one process
    assert _states(states) == want[3]
    return seen



@st.composite
def cases(draw: st.DrawFn) -> tuple[list[bytes], dict[str, int], int]:
    jobs = draw(st.sampled_from([2, 2, 3]))
    assignment = {u: draw(st.integers(0, jobs - 1)) for u in ("u1", "u2")}
    lines = draw(streams())
    if draw(st.integers(0, 2)) == 0:  # now and then a line whose bytes mislead the routing
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = misleading(lines[i], draw(st.sampled_from(["u1", "u2", "u3"])))
    return lines, assignment, jobs


@PROPS
@given(cases())
def test_the_workers_together_ingest_what_one_process_does(tmp_path: Path, case: Any) -> None:
    _agree(tmp_path / "events.jsonl", *case)


@PROPS
@given(cases())
def test_the_workers_agree_when_every_id_collides(tmp_path: Path, case: Any) -> None:
    with every_id_colliding():
        _agree(tmp_path / "events.jsonl", *case)


def test_an_id_both_workers_accepted_is_refused_by_the_later_one(tmp_path: Path) -> None:
    """The first copy of e1 (u1's, worker 0) is invalid (no dossier id), so u2's e1 is new, as
    in one process; u2's e2 repeats u1's valid e2 with another body: worker 1 accepts it at
    first, finds it in worker 0's table, and refuses it on its second pass as the
    conflicting repeat it is."""
    lines = [
        orjson.dumps({"event_id": "e1", "type": "dossier.synced", "unit_id": "u1",
                      "occurred_at": "2024-04-01T08:00:00+07:00"}),
        orjson.dumps({"event_id": "e2", "type": "dossier.synced", "unit_id": "u1",
                      "dossier_id": "d1", "occurred_at": "2024-04-01T08:00:00+07:00"}),
        orjson.dumps({"event_id": "e1", "type": "dossier.synced", "unit_id": "u2",
                      "dossier_id": "d9", "occurred_at": "2024-04-01T09:00:00+07:00"}),
        orjson.dumps({"event_id": "e2", "type": "dossier.synced", "unit_id": "u2",
                      "dossier_id": "d9", "occurred_at": "2024-04-01T09:00:00+07:00"}),
    ]
    assert _agree(tmp_path / "events.jsonl", lines, {"u1": 0, "u2": 1}, 2) == {
        "misrouted": False, "refused": 1, "few": 1, "all": 0}  # u2 alone read again
    source = FileSource(tmp_path / "events.jsonl")
    acceptor = Acceptor(UNITS, LIMIT)
    _, table = load_part(source, acceptor, {"u1": 0, "u2": 1}, 0)
    acceptor = Acceptor(UNITS, LIMIT)
    part, other = load_part(source, acceptor, {"u1": 0, "u2": 1}, 1)
    assert acceptor.stats.accepted == 2 and not acceptor.stats.rejected  # its lines alone
    found = shared(source.path, 0, {0: table, 1: other}) + shared(
        source.path, 1, {0: table, 1: other})
    e2 = len(lines[0]) + 1  # the byte offset of u1's e2
    assert refusals(found) == {1: [("e2", e2, e2 + len(lines[1]) + len(lines[2]) + 2)]}
    acceptor = Acceptor(UNITS, LIMIT)
    part, _ = load_part(source, acceptor, {"u1": 0, "u2": 1}, 1, refuse=[("e2", e2)])
    assert acceptor.stats.accepted == 1 and acceptor.stats.rejected == {
        "conflicting_duplicate": 1}
    assert list(part.states["u2"].dossiers) == ["d9"]


def test_a_second_pass_over_a_few_units_decodes_all_the_workers_lines(tmp_path: Path
                                                                        ) -> None:
    """Worker 1 holds u1 and u2 and reads u1 again (its e0 repeats worker 0's tick). A line
    whose bytes name u2 but whose JSON names u1 (no harm in the first pass: one worker) must
    be read for u1 then too (found by hypothesis when the second pass routed by bytes)."""
    def synced(event_id: str, unit: str, hour: str) -> bytes:
        return orjson.dumps({"event_id": event_id, "type": "dossier.synced", "unit_id": unit,
                             "dossier_id": f"d{event_id}",
                             "occurred_at": f"2024-04-01T{hour}:00:00Z"})

    lines = [orjson.dumps({"event_id": "e0", "type": "clock.tick",
                           "occurred_at": "2024-04-01T01:00:00Z"}),
             synced("e1", "u1", "02"), synced("e0", "u1", "03"),
             misleading(synced("e2", "u1", "04"), "u2"), synced("e3", "u2", "05")]
    assert _agree(tmp_path / "events.jsonl", lines, {"u1": 1, "u2": 1}, 2) == {
        "misrouted": False, "refused": 1, "few": 1, "all": 0}


def test_a_line_whose_bytes_mislead_the_routing_is_ingested_again_decoded(
        tmp_path: Path) -> None:
    """u2's event named u1 first (a repeated key: JSON keeps the last): routed to worker 0,
    which finds it is u2's. Every worker then reads again, deciding by the JSON."""
    lines = [orjson.dumps({"event_id": f"e{i}", "type": "dossier.synced", "unit_id": u,
                           "dossier_id": "d1", "occurred_at": "2024-04-01T08:00:00+07:00"})
             for i, u in enumerate(["u1", "u2", "u2"])]
    lines[1] = misleading(lines[1], "u1")
    assert _agree(tmp_path / "events.jsonl", lines, {"u1": 0, "u2": 1}, 2)["misrouted"]
    source = FileSource(tmp_path / "events.jsonl")
    with pytest.raises(Misrouted):
        load_part(source, Acceptor(UNITS, LIMIT), {"u1": 0, "u2": 1}, 0)
    acceptor = Acceptor(UNITS, LIMIT)
    part, _ = load_part(source, acceptor, {"u1": 0, "u2": 1}, 1)  # it does not see it
    assert acceptor.stats.accepted == 1
    acceptor = Acceptor(UNITS, LIMIT)
    part, _ = load_part(source, acceptor, {"u1": 0, "u2": 1}, 1, route=False)
    assert acceptor.stats.accepted == 2 and set(part.states) == {"u2"}


def test_lines_routed_by_their_bytes_are_read_by_one_worker_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of routing: a worker decodes none of the other's lines (a line that is not
    JSON but names a unit is refused by that unit's worker)."""
    lines = [orjson.dumps({"event_id": f"e{i}", "type": "dossier.synced", "unit_id": u,
                           "dossier_id": "d1", "occurred_at": "2024-04-01T08:00:00+07:00"})
             for i, u in enumerate(["u1", "u2", "u2", "u1"])]
    lines.append(lines[1][:-1])  # u2's, cut short
    lines.append(b'{"unit_id": "u2", "pad": "' + b"x" * LIMIT + b'"}')  # not routed, too large
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    source = FileSource(tmp_path / "events.jsonl")
    decoded: list[bytes] = []
    real = orjson.loads
    monkeypatch.setattr(audit.splitingest.orjson, "loads",
                        lambda raw: decoded.append(bytes(raw).strip()) or real(raw))
    for k, own in [(0, [lines[0], lines[3]]), (1, [lines[1], lines[2], lines[4]])]:
        decoded.clear()
        acceptor = Acceptor(UNITS, LIMIT)
        load_part(source, acceptor, {"u1": 0, "u2": 1}, k)
        assert sorted(set(decoded)) == sorted(own)
        assert acceptor.stats.rejected == ({"invalid_json": 1} if k else {"too_large": 1})


def test_the_tables_grow_on_both_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    """Tables sized for almost nothing, ids shared by the workers: the second pass's table
    also holds the other's first copies, unchecked."""
    monkeypatch.setattr(audit.splitingest, "TYPICAL_LINE", 1 << 40)
    lines = [line.replace(b'"u1"', b'"u2"') if i % 3 == 0 else line
             for i, line in enumerate(growing_lines())]
    assert _agree(tmp_path / "events.jsonl", lines, {"u1": 0, "u2": 1}, 2)["refused"] > 20


def test_units_are_dealt_out_by_their_share_of_the_first_lines(tmp_path: Path) -> None:
    catalog = Catalog.from_list([{"unit_id": u, "name": u, "peer_group": "g"}
                                 for u in ("big", "mid", "small", "none")])
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"unit_id": u}, option=orjson.OPT_APPEND_NEWLINE)
                              for u in ["big"] * 6 + ["mid"] * 4 + ["small"] * 2))
    got = assign(str(path), catalog, 2)
    assert got["big"] != got["mid"] and got["mid"] == got["small"]
    assert set(got) == {"big", "mid", "small", "none"}
