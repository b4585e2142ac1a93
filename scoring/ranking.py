"""Competition ranking within a peer group (ties share a rank: 1, 2, 2, 4)."""

from __future__ import annotations

from collections.abc import Mapping


def competition_ranks(totals: Mapping[str, float | None]) -> dict[str, int | None]:
    """rank = 1 + number of scored peers with a strictly higher (rounded) total."""
    scored = sorted((t for t in totals.values() if t is not None), reverse=True)
    first_index: dict[float, int] = {}
    for i, t in enumerate(scored):
        first_index.setdefault(t, i)
    return {u: (None if t is None else first_index[t] + 1) for u, t in totals.items()}
