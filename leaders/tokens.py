"""Per-officer access tokens, stored only as salted hashes.

Why this shape: a token file is read by a service and copied by operators, so it must not let
anyone who reads it open an officer's page. Each line keeps an officer id and
``sha256$<salt>$<sha256(salt + token)>``; the token itself is printed once, by
``bando officer-token``, and never stored. Tokens are 32 random bytes (256 bits), so a fast
hash is enough (there is nothing to brute-force; a slow KDF protects *low*-entropy secrets),
and a per-line salt keeps equal tokens from showing equal hashes.

Checking a token compares it with *every* line in constant time (``hmac.compare_digest``, no
early exit), so response time does not tell which officer, if any, a token belongs to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

SCHEME = "sha256"
MAX_TOKEN = 256


class TokenFileError(ValueError):
    """A token file that cannot be used (the message never quotes a hash)."""


@dataclass(frozen=True)
class _Entry:
    officer_id: str
    salt: bytes
    digest: bytes


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _digest(salt: bytes, token: str) -> bytes:
    return hashlib.sha256(salt + token.encode("utf-8")).digest()


def hash_line(officer_id: str, token: str, salt: bytes | None = None) -> str:
    """The token file line for an officer's token (JSON, so any officer id fits)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    value = f"{SCHEME}${salt.hex()}${_digest(salt, token).hex()}"
    return json.dumps({"officer_id": officer_id, "hash": value}, ensure_ascii=False)


class TokenStore:
    def __init__(self, entries: list[_Entry]):
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def parse(cls, text: str, name: str = "token file") -> TokenStore:
        entries = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                item = json.loads(line)
                officer, value = item["officer_id"], item["hash"]
                scheme, salt_hex, digest_hex = value.split("$")
                if scheme != SCHEME or not isinstance(officer, str) or not officer:
                    raise ValueError
                entries.append(_Entry(officer, bytes.fromhex(salt_hex), bytes.fromhex(
                    digest_hex)))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise TokenFileError(f"{name}: line {n} is not "
                                     "{\"officer_id\": ..., \"hash\": \"sha256$salt$hash\"}"
                                     ) from None
        return cls(entries)

    @classmethod
    def load(cls, path: str | Path) -> TokenStore:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenFileError(f"cannot read token file {path}: {exc.strerror}") from None
        return cls.parse(text, str(path))

    def owner(self, token: str) -> str | None:
        """The officer a token belongs to, or None. Looks at every entry whatever the result."""
        if not token or len(token) > MAX_TOKEN:
            return None
        found = None
        for entry in self._entries:
            if hmac.compare_digest(_digest(entry.salt, token), entry.digest):
                found = entry.officer_id
        return found
