"""Passwords for Bando's secured Kafka and Redis: generated, and checked before use.

Separate so that the Kafka side (``bando.infra.security``) and the Redis side
(``bando.infra.redis_acl``) share one rule for what a password may contain without either
importing the other.
"""

from __future__ import annotations

import secrets


def new_password() -> str:
    """A random password of URL-safe characters (safe in JAAS strings and ACL files)."""
    return secrets.token_urlsafe(24)


def check_secret(value: str, what: str) -> str:
    if not value or any(c in value for c in '"\\;\n\r ') or value.startswith(("#", ">", "<")):
        raise ValueError(f"{what}: empty, or contains a character JAAS/ACL files cannot hold")
    return value
