"""A Redis server (Debian's ``redis-server``) as a child process on loopback.

The wall-display board lives in Redis; tests and ``bando infra up`` need a private server
on a free port rather than whatever may listen on 6379. Persistence is off by default
(tests want speed, and the board can be rebuilt from Kafka); ``appendonly=True`` keeps
data across a kill, for fault tests and a long-running local setup.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket

from bando.infra.exceptions import InfraError
from bando.infra.ports import LOOPBACK, ServerProcess, free_port

log = logging.getLogger(__name__)


def find_redis_server() -> str:
    """``BANDO_REDIS_SERVER``, else ``redis-server`` on PATH or where Debian puts it."""
    for candidate in (os.environ.get("BANDO_REDIS_SERVER", ""),
                      shutil.which("redis-server") or "", "/usr/bin/redis-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise InfraError("redis-server not found (apt-get install redis-server, "
                     "or run scripts/setup.sh)")


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether ``host:port`` answers PING with PONG (plain socket, no client library)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64).startswith(b"+PONG")


class RedisServer(ServerProcess):
    """One Redis server on loopback; ``kill()`` then ``start()`` reuses its port and dir."""

    name = "redis"

    def __init__(
        self,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        host: str = LOOPBACK,
        appendonly: bool = False,
        save: str = "",
    ) -> None:
        super().__init__(data_dir, host)
        self.port: int | None = port or None
        self.appendonly = appendonly
        self.save = save

    @property
    def url(self) -> str:
        """``redis://host:port/0``; known once the server has been started."""
        if self.port is None:
            raise InfraError("RedisServer.url is unknown before start()")
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        binary = find_redis_server()
        if self.port is None:
            self.port = free_port(self.host)
        port = self.port
        argv = [binary,
                "--port", str(port),
                "--bind", self.host,
                "--protected-mode", "yes",
                "--daemonize", "no",
                "--dir", str(self.data_dir),
                "--logfile", "",
                "--save", self.save,
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "everysec"]
        self._spawn(argv)
        self._wait_ready(lambda: redis_ping(self.host, port), timeout, f"Redis {self.url}")
