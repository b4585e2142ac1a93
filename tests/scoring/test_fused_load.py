"""The offline load's fused code (``bando.fastload``: checks, de-duplication and fold in one
generated function per event type) gives exactly the reference path's answers: the reference
validator, ``Deduper`` and ``scoring.facts.apply_event`` (``bando.batch.accept``).

Random event streams with bad lines, repeats, conflicting repeats, orphans (facts before their
``received``), ties on the same instant (one instant in two spellings), unknown types and units,
odd field values, key orders and extra fields: same accepted, duplicate and rejected outcomes
(codes, details, line numbers), same latest instant, same facts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from event_samples import VALID, facts_of
from hypothesis import HealthCheck, given, settings
from stream_samples import INSTANTS, LIMIT, growing_lines, streams

import bando.batch
import scoring.dedup
from bando.batch import Rejection, accept, iter_lines, load
from bando.fastload import FUSED_SOURCE, _inline_fold
from schemas import Validator
from schemas.validate import _RULES
from scoring.catalog import Catalog
from scoring.dedup import Deduper
from scoring.engine import Engine
from scoring.events import EVENT_TYPES
from scoring.model import load_model

PROPS = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
UNITS = Catalog.from_list([{"unit_id": u, "name": u, "peer_group": "g"} for u in ("u1", "u2")])
VN766 = load_model("vn766@1")


def _reference(path: Path) -> tuple[list[dict], int, int, int | None, dict[str, Any]]:
    engine = Engine(UNITS, VN766)
    rejected, accepted, max_ts = [], 0, None
    for _, item in accept(iter_lines(path), Validator(UNITS, max_bytes=LIMIT), Deduper()):
        if isinstance(item, Rejection):
            rejected.append(item.to_dict())
        else:
            accepted += 1
            max_ts = item.ts if max_ts is None else max(max_ts, item.ts)
            engine.apply(item)
    duplicates = sum(1 for _ in iter_lines(path)) - accepted - len(rejected)
    return rejected, accepted, duplicates, max_ts, facts_of(engine)


def _fused(path: Path) -> tuple[list[dict], int, int, int | None, dict[str, Any]]:
    loaded = load(path, UNITS, VN766, max_bytes=LIMIT)
    return ([r.to_dict() for r in loaded.rejected], loaded.accepted, loaded.duplicates,
            loaded.max_ts, facts_of(loaded.engine))


def _agree(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        assert _fused(path) == _reference(path)


@PROPS
@given(streams())
def test_fused_load_equals_the_reference(lines: list[bytes]) -> None:
    _agree(lines)


@PROPS
@given(streams())
def test_fused_load_equals_the_reference_when_every_id_collides(lines: list[bytes]) -> None:
    """Every id has the same hash: the fused probe hands each repeat of a tag to ``check``,
    which must still tell ids apart (and the table grows through long probe chains)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(scoring.dedup, "_hash", lambda _: 12345)
    try:
        _agree(lines)
    finally:
        mp.undo()


def test_ordinary_events_never_reach_the_reference_validator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The point of the fused code: a plain event of a folded type is checked, de-duplicated
    and folded without ``Validator.validate`` or an ``Event``."""
    calls: list[bytes] = []
    original = Validator.validate
    monkeypatch.setattr(Validator, "validate",
                        lambda self, raw: calls.append(raw) or original(self, raw))
    lines = []
    for i, (event_type, own) in enumerate(sorted(VALID.items())):
        body = {"event_id": f"e{i}", "type": event_type, "occurred_at": INSTANTS[0], **own}
        if event_type != "clock.tick":
            body["unit_id"] = "u1"
        lines += [orjson.dumps(body), orjson.dumps({**body, "event_id": f"x{i}", "seq": i})]
        if "officer_id" in _RULES[event_type].kinds:
            lines.append(orjson.dumps({**body, "event_id": f"o{i}", "officer_id": "o1"}))
    path = tmp_path / "plain.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    loaded = load(path, UNITS, VN766, max_bytes=LIMIT)
    assert loaded.accepted == len(lines) and not loaded.rejected
    assert calls == []
    assert _fused(path) == _reference(path)


def test_fused_source_covers_every_type() -> None:
    for event_type in EVENT_TYPES:
        assert repr(event_type) in FUSED_SOURCE


def test_fused_load_grows_the_table_mid_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A table sized for almost nothing: it grows many times under the fused code's inline
    insertions, and the repeats after each growth are still found."""
    monkeypatch.setattr(bando.batch, "TYPICAL_LINE", 1 << 40)
    lines = growing_lines()
    _agree(lines)


def _early_exit(d: Any, ts: int, eid: str, body: dict, times: Any) -> None:
    if ts < 0:
        return
    d.synced = ts


def _plain(d: Any, ts: int, eid: str, body: dict, times: Any) -> None:
    """A docstring, left out."""
    current = d.completed_ts
    if current is None or ts < current:
        d.completed_ts, d.completed_id = ts, eid
        d.flags = body["e_result"] + times["due_at"] + len(body["note"])


def test_folds_are_inlined_from_their_own_source_or_called() -> None:
    assert _inline_fold(_early_exit, {}) is None  # a return: called, not inlined
    lines = _inline_fold(_plain, {"e_result": "v4", "times:due_at": "t_v6"})
    assert lines == [
        "    l_current = d.completed_ts",
        "    if l_current is None or ts < l_current:",
        "        d.completed_ts, d.completed_id = (ts, v0)",
        "        d.flags = v4 + t_v6 + len(body['note'])",
    ]
    assert "fold_" not in FUSED_SOURCE  # every rule of scoring.facts is plain enough today
