"""The catch-up mark: the board is being rebuilt from the topics' beginning, so what screens
see is history moving forward, not the current board.

A writer that positions partitions at their beginning (a rebuild after Redis lost the board,
or a first start) records the end offsets those partitions had then in ``P:catchup``. The mark
holds targets, not an owner: :func:`display.store.apply_batch` clears it in the transaction
whose positions reach every target, whichever writer runs it, so a writer that died mid-rebuild
leaves nothing behind once another one (or its restart) has read that far. Setting and
clearing it publish on ``P:changes``; the gateways then send every screen a fresh snapshot,
which says whether the board is catching up.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from display import store
from display.exceptions import DisplayError

log = logging.getLogger(__name__)


async def mark_catchup(
    redis: Redis, keys: store.Keys, ends: dict[tuple[str, int], int], *, max_attempts: int = 100
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


async def read_catchup(redis: Redis, keys: store.Keys) -> dict[tuple[str, int], int]:
    """The targets of the catch-up in progress (empty: the board is caught up)."""
    return store.parse_positions(await redis.hgetall(keys.catchup))
