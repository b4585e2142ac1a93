"""Fixtures of the display tests that talk to the session's real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from display import store


@pytest.fixture
async def redis(redis_server) -> AsyncIterator[Redis]:  # type: ignore[no-untyped-def]
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def keys(unique: str) -> store.Keys:
    """Keys of a board of its own, so tests share the Redis server."""
    return store.Keys(f"test:{unique}:board")
