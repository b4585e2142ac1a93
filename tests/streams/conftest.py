"""Fixtures for the faust-free pipeline stages (``streams.scorer``, ``streams.ranker``).

``MemStore`` is the ``streams.scorer.Store`` protocol over a dict of dicts. Like a faust table it
keeps live values as given, and like the table's changelog it records every put, in order, with
its partition and the value as the JSON the changelog would carry. ``recovered()`` builds what
changelog recovery gives a fresh worker: only the latest value per (table, key), decoded from
JSON, optionally restricted to the partitions that worker owns.

Helpers are exposed as fixtures (``feed``, ``ev``, ``score_msg``) so test modules need no
imports from here.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from scoring.catalog import Catalog
from scoring.model import Model, load_model
from scoring.timeutil import format_ts, parse_ts
from streams.scorer import Message

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
EXAMPLE = SHARED / "examples" / "vn766"


class MemStore:
    """An in-memory ``Store`` with a changelog of every put."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = defaultdict(dict)
        # (table, partition, key, JSON bytes of the value), in put order
        self.changelog: list[tuple[str, int, str, bytes]] = []

    def get(self, table: str, key: str) -> Any:
        return self.tables[table].get(key)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        assert isinstance(key, str), f"table keys must be str, got {key!r}"
        assert isinstance(partition, int) and partition >= 0, partition
        # serialize now, as a changelog record would; raises if the value is not JSON-able
        raw = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        self.tables[table][key] = value
        self.changelog.append((table, partition, key, raw))

    def items(self, table: str) -> Iterable[tuple[str, Any]]:
        return list(self.tables[table].items())

    def puts(self, table: str | None = None) -> list[tuple[str, int, str, Any]]:
        """The changelog records (decoded), optionally of one table."""
        return [(t, p, k, orjson.loads(v)) for t, p, k, v in self.changelog
                if table is None or t == table]

    def recovered(
        self,
        partitions: set[int] | None = None,
        keep: Callable[[int, str], bool] | None = None,
    ) -> MemStore:
        """A fresh store as changelog recovery builds it: the latest value per (table, key)
        among the records whose partition is in ``partitions`` and for which
        ``keep(index_in_changelog, table)`` is true."""
        fresh = MemStore()
        for i, (table, partition, key, raw) in enumerate(self.changelog):
            if partitions is not None and partition not in partitions:
                continue
            if keep is not None and not keep(i, table):
                continue
            fresh.tables[table][key] = orjson.loads(raw)
            fresh.changelog.append((table, partition, key, raw))
        return fresh


class Feed:
    """Builds ``Message``s with consecutive offsets per partition."""

    def __init__(self) -> None:
        self.next_offset: dict[int, int] = defaultdict(int)

    def msg(self, body: dict[str, Any] | bytes, partition: int = 0) -> Message:
        value = body if isinstance(body, bytes) else orjson.dumps(body)
        key = None
        if isinstance(body, dict) and isinstance(body.get("unit_id"), str):
            key = body["unit_id"].encode()
        offset = self.next_offset[partition]
        self.next_offset[partition] = offset + 1
        return Message(partition, offset, key, value)

    def batch(self, bodies: Iterable[dict[str, Any] | bytes], partition: int = 0) -> list[Message]:
        return [self.msg(b, partition) for b in bodies]


class Events:
    """Valid event bodies with sensible defaults; keyword arguments override fields."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def _id(self) -> str:
        return f"ev-{next(self._ids)}"

    def received(self, unit: str, dossier: str, at: str, due: str, **kw: Any) -> dict[str, Any]:
        body = {
            "event_id": self._id(), "type": "dossier.received", "occurred_at": at,
            "unit_id": unit, "dossier_id": dossier, "procedure_id": "proc-1",
            "channel": "online", "due_at": due, "online_eligible": True, "full_online": True,
            "fee_required": False, "reused_data": True, "pds_linked": True,
            "population_db": True,
        }
        body.update(kw)
        return body

    def dossier(self, kind: str, unit: str, dossier: str, at: str, **kw: Any) -> dict[str, Any]:
        body = {"event_id": self._id(), "type": f"dossier.{kind}", "occurred_at": at,
                "unit_id": unit, "dossier_id": dossier}
        body.update(kw)
        return body

    def tick(self, at: str, event_id: str | None = None) -> dict[str, Any]:
        return {"event_id": event_id or self._id(), "type": "clock.tick", "occurred_at": at}


@pytest.fixture
def mem_store() -> MemStore:
    return MemStore()


@pytest.fixture
def feed() -> Feed:
    return Feed()


@pytest.fixture
def ev() -> Events:
    return Events()


@pytest.fixture(scope="session")
def model() -> Model:
    return load_model("vn766@1")


@pytest.fixture(scope="session")
def small_catalog() -> Catalog:
    """Four units of one peer group and one of another."""
    return Catalog.from_list([
        {"unit_id": "u1", "name": "Unit 1", "peer_group": "g"},
        {"unit_id": "u2", "name": "Unit 2", "peer_group": "g"},
        {"unit_id": "u3", "name": "Unit 3", "peer_group": "g"},
        {"unit_id": "u4", "name": "Unit 4", "peer_group": "g"},
        {"unit_id": "x1", "name": "Other 1", "peer_group": "h"},
    ])


@pytest.fixture(scope="session")
def example_dir() -> Path:
    """The SPEC's worked example, beside SPEC.md in the shared folder next to the repo."""
    needed = ("catalog.json", "events.jsonl", "expected-2024-04-14-year.json")
    missing = [n for n in needed if not (EXAMPLE / n).is_file()]
    if missing:
        pytest.fail(f"worked example not found: {EXAMPLE} lacks {missing} (expected the shared "
                    f"folder as a sibling of the repository root)", pytrace=False)
    return EXAMPLE


@pytest.fixture
def score_msg(model: Model) -> Callable[..., dict[str, Any]]:
    """A scorer output message (as ``ScorerCore.flush`` yields it: no rank / peer_count)."""

    def make(unit: str, total: float | None, as_of: str = "2024-05-01T00:00:00+07:00",
             group: str = "g", window: str = "year:2024", **kw: Any) -> dict[str, Any]:
        msg = {
            "unit_id": unit, "name": unit.upper(), "peer_group": group, "window": window,
            "as_of": format_ts(parse_ts(as_of)),  # type: ignore[arg-type]
            "model": model.ref, "total": total, "band": model.band(total),
            "groups": {}, "indicators": {},
            "input": {"topic": "procedure-events", "partition": 0, "offset": 0},
            "top_losses": [{"indicator": "on_time", "points_lost": 1.5}],
            "arrived_ms": None,
        }
        msg.update(kw)
        return msg

    return make
