"""Shared fixtures: one real Kafka broker and one Redis server per test session.

The broker is a real JVM (bando.infra.KafkaBroker), so it is started once per session and
shared; tests isolate themselves with unique topic and group names (``unique``,
``topic_prefix``, ``live_settings``). If the broker or Redis cannot start, every test that
needs it FAILS with the server's log tail: a missing broker must never look like a pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bando.infra import InfraError, KafkaBroker, RedisServer
from bando.settings import Settings


def _start_or_fail(server: KafkaBroker | RedisServer, what: str) -> None:
    try:
        server.start()
    except InfraError as exc:
        server.kill()
        problem = str(exc)
    else:
        return
    # Outside the except block, so the report shows the log tail and not a chained trace.
    pytest.fail(f"the test {what} did not start: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A started single-node Kafka broker, shared by the whole session."""
    broker = KafkaBroker(data_dir=tmp_path_factory.mktemp("kafka"), partitions=4)
    _start_or_fail(broker, "Kafka broker")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A started Redis server on a free loopback port, shared by the whole session."""
    server = RedisServer(data_dir=tmp_path_factory.mktemp("redis"))
    _start_or_fail(server, "Redis server")
    yield server
    server.stop()


@pytest.fixture
def unique() -> str:
    """A short suffix, unique per test, for topic, group and key names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def topic_prefix(unique: str) -> str:
    """A prefix for names of topics that only this test uses."""
    return f"t-{unique}-"


@pytest.fixture
def live_settings(
    kafka: KafkaBroker, redis_server: RedisServer, unique: str, tmp_path: Path
) -> Settings:
    """Settings pointing at the session's broker and Redis, with topic names of this test.

    Topics are not created here (tests that need them call ``bando.infra.create_topics``
    or ``ensure_project_topics``); the developer's own BANDO_* variables are ignored.
    """
    return Settings.from_env(
        env={},
        kafka_bootstrap=kafka.bootstrap,
        redis_url=redis_server.url,
        events_topic=f"procedure-events-{unique}",
        dlq_topic=f"procedure-events-dlq-{unique}",
        scores_topic=f"unit-scores-{unique}",
        rank_changes_topic=f"rank-changes-{unique}",
        band_changes_topic=f"band-changes-{unique}",
        at_risk_topic=f"at-risk-{unique}",
        app_id=f"bando-test-{unique}",
        data_dir=str(tmp_path / "bando-data"),
    )
