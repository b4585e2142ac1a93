"""Fixtures of the fault tests: settings on the session broker, topics created, fast coalescing.

Tests that kill the broker or Redis start their own (``bando.infra``), never the session's:
other tests share those.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fault_support import TopicTail

from bando.infra import ensure_project_topics
from bando.settings import Settings


@pytest.fixture
def fault_settings(live_settings: Settings) -> Settings:
    """``live_settings`` (unique topics and group) with the project's topics created."""
    s = live_settings.with_(coalesce_seconds=0.5)
    ensure_project_topics(s.kafka_bootstrap, s)
    return s


@pytest.fixture
def score_tail(fault_settings: Settings) -> Iterator[TopicTail]:
    """A reader of ``unit-scores`` running for the whole test."""
    tail = TopicTail(fault_settings.kafka_bootstrap, fault_settings.scores_topic)
    tail.start()
    yield tail
    tail.stop()
