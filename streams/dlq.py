"""Dead-letter records for refused input (SPEC section 1, "Bad input")."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

# The DLQ copy of a value is capped so the record always fits a Kafka message (base64 and JSON
# escaping can inflate a value six-fold); the full original stays in the source topic, which
# keeps history for ever, at the partition and offset the record names.
MAX_VALUE_CHARS = 128 * 1024


def dlq_record(
    code: str, detail: str, topic: str, partition: int, offset: int,
    key: bytes | None, value: bytes | None, rejected_at: datetime | None = None,
) -> dict[str, Any]:
    """The original bytes are kept as text when they are UTF-8, else as base64."""
    record: dict[str, Any] = {
        "error": code,
        "detail": detail,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": _text(key),
        "rejected_at": (rejected_at or datetime.now(UTC)).isoformat(),
    }
    raw = value or b""
    try:
        record["value"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["value"] = base64.b64encode(raw).decode("ascii")
        record["value_encoding"] = "base64"
    if len(record["value"]) > MAX_VALUE_CHARS:
        record["value"] = record["value"][:MAX_VALUE_CHARS]
        record["value_truncated"] = True
        record["value_bytes"] = len(raw)
    if key is not None and record["key"] is None:
        record["key"] = base64.b64encode(key).decode("ascii")
        record["key_encoding"] = "base64"
    return record


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
