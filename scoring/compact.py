"""Forgetting what no later score can read: bounded records for a worker whose time only
moves forward.

A dossier keeps every ``dossier.rated`` and ``dossier.supplement_requested`` (a petition every
``petition.rated``), by event id, because a score at T reads the latest one at or before T
(SPEC 2) and ``bando score`` or a replay may ask any T. The live worker only scores at its
partition's watermark, which never goes back; so of the entries at or before it, only those a
later T can still read are kept. Without this, input that rates one dossier thousands of times
grew its facts record past the producer's message limit (the worker then stopped on it at
every restart), and every evaluation of the dossier walked all of them.
"""

from __future__ import annotations

from typing import Any

from scoring.facts import Dossier, Petition

COMPACT_AT = 8  # entries of one kind in a record before it is compacted


def compact(record: Dossier | Petition, t: int) -> bool:
    """Drop the ratings and supplements of ``record`` that no score at T >= ``t`` reads
    (``scoring.indicators``): of those at or before ``t``, a rating only if it is the latest
    (by occurred_at, then event id), a supplement unless it is the latest one with a new due
    time or one of the two latest (two make the dossier late). Entries after ``t`` all stay.
    Only a record with more than ``COMPACT_AT`` of a kind is looked at; returns whether
    something was dropped."""
    dropped = False
    ratings = record.ratings
    if ratings is not None and len(ratings) > COMPACT_AT:
        keep = _latest(ratings, t, 1)
        record.ratings = {k: v for k, v in ratings.items() if v[0] > t or k in keep}
        dropped = len(record.ratings) < len(ratings)
    if not isinstance(record, Dossier):
        return dropped
    supplements = record.supplements
    if supplements is not None and len(supplements) > COMPACT_AT:
        keep = _latest(supplements, t, 2)
        keep |= _latest({k: v for k, v in supplements.items() if v[1] is not None}, t, 1)
        record.supplements = {k: v for k, v in supplements.items() if v[0] > t or k in keep}
        dropped = dropped or len(record.supplements) < len(supplements)
    return dropped


def _latest(entries: dict[str, tuple[int, Any]], t: int, n: int) -> set[str]:
    """The ids of the ``n`` latest entries at or before ``t``, as ``scoring.indicators``
    orders them: by (occurred_at, event id)."""
    past = sorted((v[0], k) for k, v in entries.items() if v[0] <= t)
    return {k for _, k in past[-n:]}
