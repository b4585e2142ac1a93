"""Every listener binds to loopback by default: each service is started with its defaults
(plus a metrics port where it has one) and its LISTEN sockets are read from ``/proc``.

The three-node cluster and the secured broker are checked where they run
(``test_fault_kafka.py``, ``test_security_kafka.py`` use the same ``KafkaBroker``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_support import Service, listening_sockets, services, wait_listening

from bando.infra import KafkaBroker, RedisServer
from bando.infra.ports import free_port
from bando.settings import Settings

pytestmark = pytest.mark.integration


def _only_loopback(found: list[tuple[str, int]], what: str) -> None:
    assert found, f"{what} listens on nothing"
    wide = [(ip, port) for ip, port in found if ip != "127.0.0.1"]
    assert not wide, f"{what} listens beyond loopback: {wide}"


def test_kafka_and_redis_listen_on_loopback_only(kafka: KafkaBroker,
                                                 redis_server: RedisServer) -> None:
    assert kafka.pid is not None and redis_server.pid is not None
    found = listening_sockets(kafka.pid)
    _only_loopback(found, "the Kafka broker")
    assert {p for _, p in found} >= {kafka.port, kafka.controller_port}
    found = listening_sockets(redis_server.pid)
    _only_loopback(found, "Redis")
    assert [p for _, p in found] == [redis_server.port]


def test_bando_services_listen_on_loopback_only(live_settings: Settings, tmp_path: Path) -> None:
    """worker (metrics only: faust's web server is off), board writer (metrics), display
    gateway (page + metrics), notifier (metrics): nothing beyond 127.0.0.1, by default."""
    defaults = Settings()
    assert {defaults.web_host, defaults.metrics_host, defaults.display_host} == {"127.0.0.1"}
    s = live_settings
    ports = {name: free_port() for name in ("worker", "board", "display", "notify")}

    def env(name: str) -> dict[str, str | None]:
        # The hosts are left to their defaults: only the ports are given.
        return {"BANDO_METRICS_PORT": str(ports[name]), "BANDO_METRICS_HOST": None,
                "BANDO_WEB_HOST": None, "BANDO_DISPLAY_HOST": None}

    procs = {
        "worker": Service(s, ["worker"], tmp_path / "worker.log", env("worker")),
        "board": Service(s, ["board"], tmp_path / "board.log", env("board")),
        "display": Service(s, ["display", "--port", "0"], tmp_path / "display.log",
                           env("display")),
        "notify": Service(s, ["notify"], tmp_path / "notify.log", env("notify")),
    }
    expected = {"worker": 1, "board": 1, "display": 2, "notify": 1}
    with services(*procs.values()):
        for p in procs.values():
            p.start()
        for name, p in procs.items():
            found = wait_listening(p.pid, expected[name])
            _only_loopback(found, f"bando {name}")
            assert ("127.0.0.1", ports[name]) in found, (name, found)
        # a worker that has joined its group and runs still opened no other listener
        assert len(listening_sockets(procs["worker"].pid)) == 1
