"""The catch-up mark: what screens see is history moving forward, not the current board.

``P:catchup`` maps "topic/partition" to the end offset the board must reach. A writer sets it

* when it positions partitions at their beginning (a rebuild after Redis lost the board, or a
  first start): each such partition that holds records, whatever its size;
* when the board is far behind the topics: at each sync (a start, a resume after Kafka or
  Redis was away) and each lag check while it runs, the board's lag is the sum, over the
  partitions it holds a position for, of the consumer's end offset minus that stored position
  (``P:offsets``). Above ``threshold`` messages (:func:`lag_targets`; the writer's
  ``catchup_lag``), every partition behind gets its end as target. Message counts, not event
  time: one end-offsets request and one Redis read, no record to fetch and parse; a writer
  back from a long outage is behind by thousands of messages, a live one by a batch at most.

While the board stays that far behind, each check moves the targets to the newer ends; once
it is within the threshold they stay, so the mark ends: the mark holds targets, not an owner,
and :func:`display.store.apply_batch` clears it in the transaction whose stored positions reach
every target, whichever writer runs it (a writer that died part way leaves nothing behind once
another one, or its restart, has read that far).

A target above its partition's end now can never be reached: offsets only grow, so the topic
was deleted and created again (or lost its tail). Each check drops such targets
(:func:`unreachable`, :func:`drop_targets`); the mark ends with its last target, or when the
board already holds what is left. A deleted topic not created again keeps its targets: the
board cannot be current without it.

Setting and clearing the mark publish on ``P:changes``; the gateways then send every screen a
fresh snapshot, which says whether the board is catching up.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from display import store
from display.exceptions import DisplayError

log = logging.getLogger(__name__)

Positions = dict[tuple[str, int], int]


def lag_targets(ends: Positions, stored: Positions, threshold: int) -> Positions:
    """The ends of the partitions behind, if the board is behind by more than ``threshold``
    messages in all; else nothing. Partitions without a stored position are left out: the
    writer reads them from their beginning, which marks them anyway. A stored position past
    the end (a topic created again) is not behind."""
    behind = {tp: end for tp, end in ends.items() if tp in stored and end > stored[tp]}
    lag = sum(end - stored[tp] for tp, end in behind.items())
    return behind if lag > threshold else {}


def unreachable(targets: Positions, ends: Positions) -> Positions:
    """The targets above their partition's end: no read can reach them any more.

    ``targets`` must be read before ``ends``: a target set after the ends were read may be
    above them and still reachable. Partitions without a known end are kept.
    """
    return {tp: t for tp, t in targets.items() if tp in ends and ends[tp] < t}


async def mark_catchup(
    redis: Redis, keys: store.Keys, ends: Positions, *, max_attempts: int = 100
) -> bool:
    """Mark the board as catching up until its stored positions reach ``ends``; True if marked.

    Partitions the board already holds up to their end are left out (another writer may have
    rebuilt them meanwhile: the mark would announce a rebuild nobody needs); several writers'
    targets merge, the furthest one per partition.
    """
    fields = {store.offset_field(t, p): end for (t, p), end in ends.items()}
    if not fields:
        return False
    names = list(fields)
    for _attempt in range(max_attempts):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                # not the offsets: a position stored meanwhile only makes the mark end sooner
                await pipe.watch(keys.catchup)
                stored = await pipe.hmget(keys.offsets, names)
                marked = await pipe.hmget(keys.catchup, names)
                new: dict[Any, Any] = {  # redis-py's mapping type is invariant in its keys
                    f: fields[f]
                    for f, s, m in zip(names, stored, marked, strict=True)
                    if max(int(s) if s else -1, int(m) if m else -1) < fields[f]
                }
                if not new:
                    return False
                existed = await pipe.exists(keys.catchup)
                pipe.multi()
                pipe.hset(keys.catchup, mapping=new)
                if not existed:
                    pipe.publish(keys.channel, store.CATCHUP_ON)
                await pipe.execute()
                return True
            except WatchError:
                log.debug("catch-up mark conflicted with another writer; retrying")
    raise DisplayError(f"catch-up mark kept conflicting after {max_attempts} attempts")


async def drop_targets(
    redis: Redis, keys: store.Keys, dropped: Positions, *, max_attempts: int = 100
) -> bool:
    """Remove the targets ``dropped`` (from :func:`unreachable`); True if any was removed.

    Only a field still holding the dropped value goes: another writer may have set a new,
    reachable target meanwhile. The mark ends if nothing is left, or if the stored positions
    already reach what is left (no batch may come to end it: the writer can be idle).
    """
    for _attempt in range(max_attempts):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(keys.catchup)
                marked = store.parse_positions(await pipe.hgetall(keys.catchup))
                gone = [tp for tp, t in dropped.items() if marked.get(tp) == t]
                if not gone:
                    return False
                rest = {tp: t for tp, t in marked.items() if tp not in gone}
                stored = store.parse_positions(await pipe.hgetall(keys.offsets))
                done = all(stored.get(tp, -1) >= t for tp, t in rest.items())
                pipe.multi()
                if done:
                    pipe.delete(keys.catchup)
                    pipe.publish(keys.channel, store.CATCHUP_OFF)
                else:
                    pipe.hdel(keys.catchup, *[store.offset_field(t, p) for t, p in gone])
                await pipe.execute()
                return True
            except WatchError:
                log.debug("catch-up targets changed while being dropped; retrying")
    raise DisplayError(f"dropping catch-up targets kept conflicting after {max_attempts} attempts")


async def read_catchup(redis: Redis, keys: store.Keys) -> Positions:
    """The targets of the catch-up in progress (empty: the board is caught up)."""
    return store.parse_positions(await redis.hgetall(keys.catchup))
