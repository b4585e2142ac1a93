"""What goes into and out of ``streams.scorer.ScorerCore``, apart from its logic: the input
message, the store it writes its tables to, a batch's outcome, and the score message."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas import EventRejected
from scoring.engine import UnitScore
from scoring.events import Event
from scoring.points import largest_losses
from scoring.timeutil import Window, format_ts


class Store(Protocol):
    """What the scorer needs of its tables: read, and write to a given changelog partition."""

    def get(self, table: str, key: str) -> Any: ...

    def put(self, table: str, partition: int, key: str, value: Any) -> None: ...

    def items(self, table: str) -> Iterable[tuple[str, Any]]: ...


class Prefetching(Store, Protocol):
    """A store whose reads cost a call each (on disk): ``process`` hands it the keys it is
    about to ``get`` so that it reads them in bulk first. Optional: found by ``getattr``."""

    def prefetch(self, table: str, keys: list[str]) -> None: ...


@dataclass(slots=True)
class Message:
    """One incoming message of the events topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None  # broker/producer timestamp, for latency metrics only


@dataclass(slots=True)
class Outcome:
    accepted: list[Event] = field(default_factory=list)
    rejected: list[tuple[Message, EventRejected]] = field(default_factory=list)
    duplicates: int = 0


def score_message(score: UnitScore, window: Window, t: int, tz: str, model_ref: str,
                  input_at: dict[str, Any], arrived_ms: int | None) -> dict[str, Any]:
    """A ``unit-scored`` message (SPEC 4) without its rank, which the ranker adds."""
    msg = score.to_dict()
    del msg["rank"], msg["peer_count"]
    losses = largest_losses(score.rated.lost)  # largest first, ties by indicator id
    msg.update({
        "window": window.name,
        "as_of": format_ts(t, tz),
        "model": model_ref,
        "input": input_at,
        "top_losses": [{"indicator": i, "points_lost": round(float(v), 4)}
                       for i, v in losses[:3]],
        "arrived_ms": arrived_ms,
    })
    return msg
