"""The live pipeline's faust-free stages, run in-process, writing topics into a MemorySource.

Why: ``audit.verify`` must reproduce what ``streams.app`` publishes; the Kafka test proves it
end to end, but slowly. Here ``ScorerCore`` and ``RankerCore`` run exactly as the faust agents
drive them (random batch sizes, flushes between batches, the ranker consuming the internal
topic in random slices stamped with ``rank_basis``), so many interleavings are checked in
milliseconds. (No ``__init__``: pytest puts this folder on ``sys.path``.)
"""

from __future__ import annotations

import random
import zlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import orjson

from audit.sources import MemorySource, Record
from scoring.catalog import Catalog
from scoring.model import Model
from streams.dlq import dlq_record
from streams.ranker import RankerCore
from streams.scorer import Message, ScorerCore

EVENTS, DLQ, SCORES, INTERNAL = "procedure-events", "procedure-events-dlq", "unit-scores", \
    "bando-scorer-unit-scored"


class DictStore:
    """A table store whose values round-trip through JSON, like a changelog."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = defaultdict(dict)

    def get(self, table: str, key: str) -> Any:
        return self.tables[table].get(key)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        self.tables[table][key] = orjson.loads(orjson.dumps(value))

    def items(self, table: str) -> list[tuple[str, Any]]:
        return list(self.tables[table].items())


def partition_of(key: bytes | None, partitions: int) -> int:
    return zlib.crc32(key or b"-") % partitions


def key_of(value: bytes) -> bytes:
    try:
        unit = orjson.loads(value).get("unit_id")
    except (orjson.JSONDecodeError, AttributeError):
        return b"-"
    return unit.encode() if isinstance(unit, str) else b"-"


class SimulatedPipeline:
    def __init__(self, catalog: Catalog, model: Model, *, partitions: int = 4, seed: int = 0,
                 now_us: int | None = None):
        self.partitions = partitions
        self.rng = random.Random(seed)
        self.topics: dict[str, list[Record]] = {EVENTS: [], DLQ: [], SCORES: [], INTERNAL: []}
        self.offsets: dict[tuple[str, int], int] = defaultdict(int)
        self.scorer = ScorerCore(catalog, model, DictStore(), topic=EVENTS,
                                 now_us=(lambda: now_us) if now_us is not None else None)
        self.ranker_store = DictStore()
        self.ranker = RankerCore(self.ranker_store)
        self.ranked_upto = 0  # next internal offset the ranker reads
        self.last_slice: tuple[int, int] | None = None

    def _append(self, topic: str, partition: int, key: bytes | None, value: bytes) -> Record:
        offset = self.offsets[(topic, partition)]
        self.offsets[(topic, partition)] += 1
        rec = Record(topic, partition, offset, 1_700_000_000_000 + len(self.topics[topic]), key,
                     value)
        self.topics[topic].append(rec)
        return rec

    def produce(self, values: Iterable[bytes]) -> None:
        for value in values:
            key = key_of(value)
            self._append(EVENTS, partition_of(key, self.partitions), key, value)

    def produce_ticks(self, at: str, tag: str) -> None:
        for p in range(self.partitions):
            tick = {"event_id": f"tick-{tag}-{p}", "type": "clock.tick", "occurred_at": at}
            self._append(EVENTS, p, None, orjson.dumps(tick))

    def run(self, processed_from: int = 0) -> None:
        """Consume the events produced so far in random batches, flushing and ranking between
        batches as the faust timer and ranker agent would; then drain."""
        pending = self.topics[EVENTS][processed_from:]
        i = 0
        while i < len(pending):
            n = self.rng.randint(1, 60)
            batch = pending[i:i + n]
            i += n
            out = self.scorer.process([Message(r.partition, r.offset, r.key, r.value)
                                       for r in batch])
            for msg, exc in out.rejected:
                record = dlq_record(exc.code, exc.detail, EVENTS, msg.partition, msg.offset,
                                    msg.key, msg.value)
                self._append(DLQ, 0, msg.key, orjson.dumps(record))
            if self.rng.random() < 0.3:
                self.flush()
            if self.rng.random() < 0.4:
                self.rank(self.rng.randint(1, 30))
        self.flush()
        while self.ranked_upto < len(self.topics[INTERNAL]):
            self.rank(self.rng.randint(1, 30))

    def flush(self) -> None:
        for msg in self.scorer.flush():
            self._append(INTERNAL, 0, msg["peer_group"].encode(), orjson.dumps(msg))

    def rank(self, n: int) -> None:
        internal = self.topics[INTERNAL]
        first = self.ranked_upto
        last = min(len(internal), first + n) - 1
        if last < first:
            return
        incoming = [orjson.loads(r.value or b"") for r in internal[first:last + 1]]
        out = self.ranker.process(incoming, {"topic": INTERNAL, "offsets": [first, last]})
        for msg in out.scores:
            key = msg["unit_id"].encode()
            self._append(SCORES, partition_of(key, self.partitions), key, orjson.dumps(msg))
        self.ranked_upto = last + 1
        self.last_slice = (first, last)

    def restart_ranker(self) -> None:
        """A crash after publishing but before committing: the last slice is delivered again
        to a ranker rebuilt from its changelog."""
        self.ranker = RankerCore(self.ranker_store)
        self.ranker.rebuild()
        if self.last_slice is not None:
            self.ranked_upto = self.last_slice[0]

    def source(self) -> MemorySource:
        return MemorySource({t: list(recs) for t, recs in self.topics.items() if recs})

    def published(self) -> list[Record]:
        return list(self.topics[SCORES])

    def tamper(self, rec: Record, **changes: Any) -> Record:
        """Produce a modified copy of a published message (same key, so same partition)."""
        msg = orjson.loads(rec.value or b"")
        msg.update(changes)
        return self._append(SCORES, rec.partition, rec.key, orjson.dumps(msg))
