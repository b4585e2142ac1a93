"""Redis ACL users for the board: per-role rules, the ACL file, a server that enforces them.

Separate from ``bando.infra.security`` (Kafka's users and ACLs) because Redis shares nothing
with it but the password rules (``bando.infra.passwords``): a Redis-only caller need not load
Kafka's protocol code. Passwords are stored as SHA-256, never in clear. The board writer may
read and write keys under the board prefix and publish on its channel; the gateway may only
read those keys and subscribe; the default user is off.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from bando.infra.passwords import check_secret
from bando.infra.redis import RedisServer


def redis_acl_rules(prefix: str = "bando:board") -> dict[str, str]:
    """ACL rules (without user name and password) per role, for keys under ``prefix``.

    ``-@dangerous`` removes FLUSHALL, KEYS, CONFIG, DEBUG and the like, which key patterns
    alone would not stop. The gateway's keys are read-only (``%R~``) on top of its commands.
    """
    keys, channel = f"{prefix}:*", f"{prefix}:changes"
    return {
        "board": (f"~{keys} resetchannels &{channel} -@all +@read +@write +@transaction "
                  "+@connection +publish -@dangerous"),
        "gateway": (f"%R~{keys} resetchannels &{channel} -@all +@read +@connection "
                    "+subscribe +unsubscribe -@dangerous"),
        "admin": "~* &* +@all",
    }


def redis_acl_file(users: Mapping[str, tuple[str, str]], prefix: str = "bando:board") -> str:
    """ACL file text; ``users``: user name -> (role, password). The default user is off."""
    rules = redis_acl_rules(prefix)
    lines = ["user default off resetkeys resetchannels -@all"]
    for name, (role, password) in users.items():
        check_secret(password, f"password of {name}")
        digest = hashlib.sha256(password.encode("utf-8")).hexdigest()
        lines.append(f"user {name} on #{digest} {rules[role]}")
    return "\n".join(lines) + "\n"


def _redis_auth_ping(host: str, port: int, user: str, password: str) -> bool:
    def bulk(*parts: str) -> bytes:
        out = f"*{len(parts)}\r\n".encode()
        for p in parts:
            raw = p.encode()
            out += b"$%d\r\n%s\r\n" % (len(raw), raw)
        return out

    with socket.create_connection((host, port), timeout=1.0) as sock:
        sock.sendall(bulk("AUTH", user, password) + bulk("PING"))
        data = b""
        while data.count(b"\r\n") < 2:
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
        return data.startswith(b"+OK\r\n+PONG")


class SecureRedisServer(RedisServer):
    """``RedisServer`` with ACL users from a file; the default user is off.

    ``users``: name -> (role, password), roles from :func:`redis_acl_rules` ("board",
    "gateway", "admin"); one "admin" user is needed (the readiness check logs in with it).
    """

    name = "redis"

    def __init__(self, users: Mapping[str, tuple[str, str]], prefix: str = "bando:board",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        admins = [(n, pw) for n, (role, pw) in users.items() if role == "admin"]
        if not admins:
            raise ValueError("SecureRedisServer needs one user with the admin role")
        self._admin = admins[0]
        self.acl_path = self.data_dir / "users.acl"
        self.acl_path.touch(mode=0o600)
        self.acl_path.chmod(0o600)
        self.acl_path.write_text(redis_acl_file(users, prefix))

    def url_for(self, user: str) -> str:
        """``redis://user@host:port/0``: the password goes separately (redis_password)."""
        return f"redis://{user}@{self.host}:{self.port}/0"

    def _spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        super()._spawn([*argv, "--aclfile", str(self.acl_path)], env)

    def _wait_ready(self, probe: Any, timeout: float, what: str) -> None:
        assert self.port is not None
        host, port, (user, password) = self.host, self.port, self._admin
        super()._wait_ready(lambda: _redis_auth_ping(host, port, user, password), timeout,
                            what)
