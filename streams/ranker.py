"""The ranker stage, free of faust: per-unit scores in, ranked outputs out.

Ranking is global per peer group while units are spread over the partitions of
``procedure-events``. Scorers therefore re-key their (already coalesced) unit scores by peer
group onto one internal topic; a single-partition topic is a deliberate choice: the whole
catalog is a few hundred units, so one ranker holds every group, and a rebalance moves it as a
whole. The ranker keeps each unit's latest published message in a changelog-backed table, so
after a restart it still knows old ranks and bands and reports moves across the crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scoring.ranking import competition_ranks
from scoring.timeutil import parse_ts
from streams.scorer import SEP, Store


@dataclass(slots=True)
class RankerOutput:
    scores: list[dict[str, Any]] = field(default_factory=list)
    rank_changes: list[dict[str, Any]] = field(default_factory=list)
    band_changes: list[dict[str, Any]] = field(default_factory=list)


class RankerCore:
    def __init__(self, store: Store, partition: int = 0):
        self.store = store
        self.partition = partition
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}  # (window, unit) -> published
        self.groups: dict[tuple[str, str], set[str]] = {}  # (window, peer_group) -> units

    def rebuild(self) -> None:
        self.latest.clear()
        self.groups.clear()
        for key, msg in self.store.items("ranked"):
            window, unit_id = key.split(SEP, 1)
            self.latest[(window, unit_id)] = msg
            self.groups.setdefault((window, msg["peer_group"]), set()).add(unit_id)

    def process(
        self, incoming: Iterable[dict[str, Any]], basis: dict[str, Any] | None = None
    ) -> RankerOutput:
        """Take a batch of unit scores; re-rank each touched group once. ``basis`` (where the
        batch came from) is stamped on every published score as ``rank_basis``."""
        out = RankerOutput()
        previous: dict[tuple[str, str], dict[str, Any] | None] = {}
        touched: set[tuple[str, str]] = set()
        for msg in incoming:
            k = (msg["window"], msg["unit_id"])
            old = self.latest.get(k)
            if old is not None and _stale(msg, old):
                continue  # a re-delivered older score never moves the board backwards
            previous.setdefault(k, old)
            self.latest[k] = dict(msg)
            self.groups.setdefault((msg["window"], msg["peer_group"]), set()).add(msg["unit_id"])
            touched.add((msg["window"], msg["peer_group"]))
        for window, group in sorted(touched):
            units = sorted(self.groups[(window, group)])
            totals = {u: self.latest[(window, u)]["total"] for u in units}
            ranks = competition_ranks(totals)
            peer_count = sum(t is not None for t in totals.values())
            for u in units:
                k = (window, u)
                msg = self.latest[k]
                was = previous[k] if k in previous else dict(msg)
                rank = ranks[u]
                pc = peer_count if msg["total"] is not None else None
                changed = k in previous or msg.get("rank") != rank or msg.get("peer_count") != pc
                if not changed:
                    continue
                msg["rank"], msg["peer_count"] = rank, pc
                msg["rank_basis"] = basis
                self.store.put("ranked", self.partition, window + SEP + u, msg)
                out.scores.append(_public(msg))
                old_rank = was.get("rank") if was else None
                if old_rank is not None and rank is not None and old_rank != rank:
                    out.rank_changes.append({
                        "peer_group": group, "window": window, "unit_id": u,
                        "old_rank": old_rank, "new_rank": rank, "total": msg["total"],
                        "as_of": msg["as_of"],
                    })
                old_band = was.get("band") if was else None
                if was and old_band and msg["band"] and old_band != msg["band"]:
                    out.band_changes.append({
                        "unit_id": u, "window": window, "old_band": old_band,
                        "new_band": msg["band"],
                        # bands are ranges of the total, in the model's own names (data, not
                        # code): the total says which way the unit went
                        "direction": "down" if msg["total"] < was["total"] else "up",
                        "total": msg["total"], "as_of": msg["as_of"],
                        "top_losses": msg.get("top_losses", []),
                    })
        return out


def _stale(msg: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether ``msg`` is older than the ``old`` reading of its unit and window: an earlier
    ``as_of``, or the same one from less input of the same partition (a worker that lost part
    of a batch's changelogs in a crash scores again from fewer events until it has read them
    again), or from the same input with other counts (a rebuild whose facts changelog kept
    events its clock did not: the first reading is the one the input up to the offset holds).
    The same reading again, or one of another model, is taken. Offsets of different
    partitions do not compare: the later message wins."""
    new_t, old_t = parse_ts(msg["as_of"]), parse_ts(old["as_of"])
    if new_t != old_t:
        return new_t < old_t  # type: ignore[operator]
    new_in, old_in = msg.get("input") or {}, old.get("input") or {}
    if (new_in.get("partition") != old_in.get("partition")
            or not isinstance(new_in.get("offset"), int)
            or not isinstance(old_in.get("offset"), int)):
        return False
    if new_in["offset"] != old_in["offset"]:
        return new_in["offset"] < old_in["offset"]
    return msg.get("model") == old.get("model") and any(
        msg.get(k) != old.get(k) for k in ("total", "indicators"))


_PUBLIC_KEYS = ("unit_id", "name", "peer_group", "window", "as_of", "model", "total", "band",
                "rank", "peer_count", "groups", "indicators", "input", "rank_basis", "top_losses")


def _public(msg: dict[str, Any]) -> dict[str, Any]:
    return {k: msg.get(k) for k in _PUBLIC_KEYS}
