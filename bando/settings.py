"""One frozen settings object, read from the environment (``BANDO_*``) at the entry point.

Every listener binds to loopback unless an operator sets a host explicitly.

Secrets (``kafka_password``, ``redis_password``) may come from ``BANDO_<NAME>_FILE`` instead
of the variable itself, and never appear in ``redacted()`` or ``repr()``; nor does a password
written into a URL. Kafka security: a username turns SASL on (``kafka_security_protocol``
defaults to ``SASL_PLAINTEXT`` then, ``kafka_sasl_mechanism`` to ``SCRAM-SHA-256``);
``bando.kafka_auth`` turns these into client options. A Redis ACL user goes in the URL
(``redis://bando-board@host:6379/0``) with its password in ``BANDO_REDIS_PASSWORD_FILE``.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

_SECRET_FIELDS = {"kafka_password", "redis_password"}
_URL_AUTHORITY = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<auth>[^/?#\s]*)", re.IGNORECASE)


def _mask_authority(m: re.Match[str]) -> str:
    # as clients (redis-py, urllib) read it: the userinfo runs to the *last* "@", the user to
    # its first ":"; so a user or a password may hold an unencoded "@"
    userinfo, at, host = m["auth"].rpartition("@")
    if not at or ":" not in userinfo:
        return m[0]
    return f"{m['scheme']}{userinfo.partition(':')[0]}:***@{host}"


def mask_url(url: str) -> str:
    """``url`` with any password in its userinfo replaced by ``***`` (``user:***@host``)."""
    return _URL_AUTHORITY.sub(_mask_authority, url)


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_username: str = ""
    kafka_password: str = ""
    kafka_security_protocol: str = ""  # empty: SASL_PLAINTEXT with a username, else PLAINTEXT
    kafka_sasl_mechanism: str = "SCRAM-SHA-256"
    kafka_ssl_cafile: str = ""  # CA bundle for SSL / SASL_SSL listeners (empty: system CAs)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: str = ""
    events_topic: str = "procedure-events"
    dlq_topic: str = "procedure-events-dlq"
    scores_topic: str = "unit-scores"
    rank_changes_topic: str = "rank-changes"
    band_changes_topic: str = "band-changes"
    at_risk_topic: str = "at-risk"
    at_risk_horizon_seconds: float = 3 * 86400.0  # open dossiers falling due within this
    at_risk_interval_seconds: float = 10.0  # how often a worker re-assesses (0: never)
    partitions: int = 4
    replication_factor: int = 1
    catalog_path: str = ""  # empty: the built-in HCMC catalog
    model: str = "vn766@1"
    coalesce_seconds: float = 0.25  # 1 s made the p99 event-to-score latency miss 500 ms
    ranker: str = "inline"  # "inline": in each worker; "off": a `bando ranker` process ranks
    max_clock_skew_seconds: float = 300.0
    max_message_bytes: int = 64 * 1024
    app_id: str = "bando-scorer"
    data_dir: str = ".bando-data"
    # the scorer's tables: "memory" (faust's memory store) or "rocksdb" (on disk, rocksdict;
    # streams.diskstore) in store_dir (empty: <data_dir>/faust-<app_id>/v1/tables; a relative
    # path is under <data_dir>/faust-<app_id>/v1); one worker per directory
    store: str = "memory"
    store_dir: str = ""
    # keep every dossier's facts in memory, settled ones too (streams.scorer); the default
    # drops them and reads them back from the store when an event comes for one
    keep_settled: bool = False
    web_host: str = "127.0.0.1"
    web_port: int = 0  # 0: faust's web server is not started
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0  # 0: no /metrics listener
    display_host: str = "127.0.0.1"
    display_port: int = 8080

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get("BANDO_" + f.name.upper())
            # an empty secret (compose's ``VAR: ${VAR:-}``) gives way to its file
            if raw is None or (not raw and f.name in _SECRET_FIELDS):
                file_path = env.get("BANDO_" + f.name.upper() + "_FILE")
                if file_path and f.name in _SECRET_FIELDS:
                    with open(file_path, encoding="utf-8") as fh:
                        raw = fh.read().strip()
            if raw is None:
                continue
            default = getattr(cls, f.name)
            if isinstance(default, bool):
                values[f.name] = raw.lower() in {"1", "true", "yes", "on"}
            elif isinstance(default, int):
                values[f.name] = int(raw)
            elif isinstance(default, float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def redacted(self) -> dict[str, Any]:
        """A dump that is safe to log: secrets are masked."""
        out = asdict(self)
        for name in _SECRET_FIELDS:
            if out.get(name):
                out[name] = "***"
        for name, value in out.items():
            if isinstance(value, str) and "://" in value:
                out[name] = mask_url(value)
        return out

    def __repr__(self) -> str:  # never print a secret by accident
        inner = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Settings({inner})"
