"""Which fetched input records the worker processes (``streams.positions``): never one past an
offset it has not seen, so faust can never commit past an unprocessed event."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.positions import Admission, Positions


def test_nothing_is_taken_before_the_seek_that_follows_an_assignment() -> None:
    pos = Positions()
    assert pos.admit("p0", [5, 6, 7]) == Admission(start=3)
    pos.reset({"p0": 5})
    assert pos.admit("p0", [5, 6, 7]) == Admission(start=0)


def test_a_batch_fetched_before_the_seek_is_refused_and_read_again() -> None:
    """The case seen in the two-worker fault test: committed 129, a stale batch from 431."""
    pos = Positions()
    pos.reset({"p3": 129})
    verdict = pos.admit("p3", list(range(431, 440)))
    assert verdict.reseek == 129 and verdict.start == 9 and not verdict.gaps
    # the re-read from 129 comes back contiguous: taken, no gap
    assert pos.admit("p3", list(range(129, 140))) == Admission(start=0)


def test_a_hole_the_broker_confirms_is_a_gap() -> None:
    """Offsets that do not exist (transaction markers, compaction): the re-read from the next
    offset starts at the same place, so the hole is real."""
    pos = Positions()
    pos.reset({"p0": 10})
    assert pos.admit("p0", [12, 13]).reseek == 10
    assert pos.admit("p0", [12, 13]) == Admission(start=0, gaps=[(10, 11)])


def test_records_already_processed_are_skipped() -> None:
    pos = Positions()
    pos.reset({"p0": 0})
    pos.processed("p0", 4)
    assert pos.admit("p0", [3, 4, 5, 6]) == Admission(start=2)


def test_a_hole_inside_one_fetched_batch_is_a_gap() -> None:
    pos = Positions()
    pos.reset({"p0": 0})
    assert pos.admit("p0", [0, 1, 3]) == Admission(start=0, gaps=[(2, 2)])


def test_revoked_partitions_are_not_read_until_the_next_seek() -> None:
    pos = Positions()
    pos.reset({"p0": 0, "p1": 0})
    pos.forget(["p1"])
    assert pos.admit("p1", [0]).start == 1
    assert pos.admit("p0", [0]).start == 0


def test_a_fresh_partition_takes_whatever_comes_first() -> None:
    pos = Positions()
    pos.reset({"p0": None})
    assert pos.admit("p0", [7, 8]) == Admission(start=0)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_every_offset_is_processed_or_a_real_hole(data: st.DataObject) -> None:
    """A log with holes, read the way aiokafka and faust read it: the fetcher keeps one fetch
    in flight ahead of the worker, and a seek (a rebalance's seek back to the committed
    offset, or ``Positions``' own re-read) does not recall a batch already fetched, which is
    handed over afterwards from the old position. Whatever the interleaving, every offset is
    processed or reported as a gap, none twice, and every gap is a real hole."""
    size = data.draw(st.integers(5, 60))
    holes = set(data.draw(st.sets(st.integers(1, size - 1), max_size=size // 4)))
    log_offsets = [o for o in range(size) if o not in holes]
    pos = Positions()
    pos.reset({"p": 0})
    fetch_at = 0  # where the fetcher reads next
    in_flight: list[int] | None = None  # fetched, not yet handed over
    committed = 0
    covered: list[int] = []

    def fetch() -> list[int]:
        nonlocal fetch_at
        batch = [o for o in log_offsets if o >= fetch_at][:data.draw(st.integers(1, 8))]
        if batch:
            fetch_at = batch[-1] + 1
        return batch

    for step in range(300):
        if step < 150 and data.draw(st.integers(0, 9)) == 0:
            # a rebalance: back to an offset between the last commit and the next to process
            nxt = pos.next["p"]
            assert nxt is not None
            committed = data.draw(st.integers(committed, nxt))
            pos.reset({"p": committed})
            covered = [o for o in covered if o < committed]
            fetch_at = committed
        if in_flight is not None:
            batch, in_flight = in_flight, None
        else:
            batch = fetch()
        if data.draw(st.booleans()):
            in_flight = fetch()  # fetched ahead, handed over at the next step
        if not batch:
            if fetch_at > log_offsets[-1] and not in_flight:
                break
            continue
        verdict = pos.admit("p", batch)
        if verdict.reseek is not None:
            fetch_at = verdict.reseek
            continue
        for first, last in verdict.gaps:
            gap = list(range(first, last + 1))
            assert set(gap) <= holes, f"gap {gap} covers offsets that exist"
            covered.extend(gap)
        taken = batch[verdict.start:]
        covered.extend(taken)
        if taken:
            pos.processed("p", taken[-1])
    assert sorted(covered) == list(range(log_offsets[-1] + 1)), "an offset skipped or twice"
