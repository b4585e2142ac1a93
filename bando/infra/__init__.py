"""Local infrastructure: a real Kafka broker and a Redis server as child processes.

Used by ``bando infra up``, the demo and the test fixtures (tests/conftest.py)::

    from bando.infra import KafkaBroker, RedisServer
    broker = KafkaBroker(partitions=4); broker.start()   # blocks until ready
    broker.bootstrap                                      # "127.0.0.1:PORT"
    broker.kill(); broker.start()                         # crash, then same port, same data
    redis = RedisServer(); redis.start(); redis.url       # "redis://127.0.0.1:PORT/0"

Names are loaded lazily so that ``python -m bando.infra.kafka`` runs without importing
itself twice, and importing Redis helpers does not pay for Kafka ones.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bando.infra.cli import ensure_project_topics, project_topics
    from bando.infra.exceptions import InfraError
    from bando.infra.kafka import KafkaBroker, create_topics, create_topics_async
    from bando.infra.kafka_jars import ensure_kafka_jars
    from bando.infra.redis import RedisServer

_EXPORTS = {
    "InfraError": "bando.infra.exceptions",
    "KafkaBroker": "bando.infra.kafka",
    "create_topics": "bando.infra.kafka",
    "create_topics_async": "bando.infra.kafka",
    "ensure_kafka_jars": "bando.infra.kafka_jars",
    "ensure_project_topics": "bando.infra.cli",
    "project_topics": "bando.infra.cli",
    "RedisServer": "bando.infra.redis",
}

__all__ = [
    "InfraError",
    "KafkaBroker",
    "RedisServer",
    "create_topics",
    "create_topics_async",
    "ensure_kafka_jars",
    "ensure_project_topics",
    "project_topics",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bando.infra' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
