"""Which fetched records of an input partition the worker may process: never past one unseen.

faust commits an input offset once every offset before it is acked or registered as a gap
(offsets that do not exist: aborted transactions, compaction). Its own drain loop registers a
gap whenever a record arrives past its read offset. That is unsafe for batches fetched before a
seek: aiokafka's fetcher runs ahead of the worker, so after a rebalance (or any seek back to the
committed offset) a batch from the old fetch position can still be handed over, starting far
past the next offset to process. Taking it and calling the offsets before it a gap made faust
commit past events never processed: a loss, seen in the two-worker fault test (and, when the
gap overlapped offsets already acked, duplicate acks that held commits back for minutes).

Here a batch that starts past the next offset to process is refused and the partition is read
again from that offset; only when the re-read starts at the same place is the hole real, and
then (only then) it is reported as a gap. Pure bookkeeping, no Kafka: ``BatchConsumer`` in
``streams.batch_consumer`` applies the verdicts.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class Admission:
    """What to do with a fetched batch: process ``offsets[start:]`` after registering
    ``gaps`` (inclusive ranges of offsets that do not exist), or, if ``reseek`` is set, process
    nothing and read the partition again from that offset."""

    start: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    reseek: int | None = None


class Positions:
    """Per partition: the next offset to process (``None``: take whatever comes first)."""

    def __init__(self) -> None:
        self.next: dict[Hashable, int | None] = {}
        self._probe: dict[Hashable, tuple[int, int]] = {}

    def reset(self, offsets: Mapping[Hashable, int | None]) -> None:
        """After a seek of every partition: where each was sent. Partitions not named are not
        readable until the next reset (an assignment is always followed by a seek)."""
        self.next = dict(offsets)
        self._probe.clear()

    def forget(self, parts: Iterable[Hashable]) -> None:
        for part in parts:
            self.next.pop(part, None)
            self._probe.pop(part, None)

    def admit(self, part: Hashable, offsets: Sequence[int]) -> Admission:
        """The verdict on a fetched batch of ``part`` (its offsets, ascending)."""
        if part not in self.next:
            return Admission(start=len(offsets))  # before the seek: it re-reads these
        expected = self.next[part]
        verdict = Admission(start=len(offsets))
        taking = False
        for i, offset in enumerate(offsets):
            if expected is not None and offset != expected:
                if offset < expected:
                    continue  # processed already, or read twice
                if not taking and self._probe.get(part) != (expected, offset):
                    self._probe[part] = (expected, offset)
                    return Admission(start=len(offsets), reseek=expected)
                verdict.gaps.append((expected, offset - 1))
            if not taking:
                verdict.start, taking = i, True
            expected = offset + 1
        return verdict

    def processed(self, part: Hashable, last_offset: int) -> None:
        """Records up to ``last_offset`` were processed (and acked)."""
        if part in self.next:
            self.next[part] = last_offset + 1
