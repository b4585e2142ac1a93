"""``scoring.compact``: a compacted record reads the same at every T at or after the
compaction time, and stays small whatever the input repeats."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.compact import COMPACT_AT, compact
from scoring.facts import Dossier, Petition
from scoring.indicators import dossier_due, latest_rating

RATINGS = ("satisfied", "neutral", "dissatisfied")
times = st.integers(0, 60)  # few distinct instants: ties by event id are common
ratings = st.dictionaries(st.text("abc", min_size=1, max_size=3),
                          st.tuples(times, st.sampled_from(RATINGS)), max_size=30)
supplements = st.dictionaries(st.text("abc", min_size=1, max_size=3),
                              st.tuples(times, st.one_of(st.none(), st.integers(100, 200))),
                              max_size=30)


@settings(max_examples=400, deadline=None)
@given(ratings, supplements, times, st.booleans())
def test_every_later_reading_is_unchanged(r, s, t, petition):  # type: ignore[no-untyped-def]
    record: Dossier | Petition = Petition() if petition else Dossier()
    record.ratings = dict(r) or None
    if isinstance(record, Dossier):
        record.due = 150
        record.supplements = dict(s) or None
    before = [(latest_rating(r or None, at), dossier_due(_with(s), at)) for at in range(t, 62)]
    compact(record, t)
    after = [(latest_rating(record.ratings, at),
              dossier_due(_with(record.supplements if isinstance(record, Dossier) else s), at))
             for at in range(t, 62)]
    # the count of supplements matters only up to two (two make a dossier late)
    assert [(x, (due, min(n, 2))) for x, (due, n) in before] == \
        [(x, (due, min(n, 2))) for x, (due, n) in after]
    if len(r) > COMPACT_AT:  # of the ratings at or before t, only the latest is left
        assert sum(v[0] <= t for v in (record.ratings or {}).values()) <= 1


def _with(supplements):  # type: ignore[no-untyped-def]
    d = Dossier()
    d.due = 150
    d.supplements = dict(supplements) if supplements else None
    return d


def test_a_dossier_rated_thousands_of_times_stays_small() -> None:
    d = Dossier()
    d.ratings, d.supplements = {}, {}
    for i in range(5000):
        d.ratings[f"r{i}"] = (i, RATINGS[i % 3])
        d.supplements[f"s{i}"] = (i, 100 + i if i % 7 == 0 else None)
        compact(d, i)
    assert len(d.ratings) <= COMPACT_AT + 1 and len(d.supplements) <= COMPACT_AT + 1
    assert latest_rating(d.ratings, 10**6) == RATINGS[4999 % 3]
    assert dossier_due(d, 10**6) == (100 + 4998, 2)  # the last with a new due: 4998 = 7 * 714
