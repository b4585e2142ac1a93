"""Dead-letter records for refused input (SPEC section 1, "Bad input")."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson

# The DLQ copy of a value, a key or a detail is capped so the message always fits a Kafka
# message (base64 and JSON escaping can inflate text six-fold); the full original stays in
# the source topic, which keeps history for ever, at the partition and offset the record names.
MAX_VALUE_CHARS = 128 * 1024
MAX_KEY_CHARS = 1024  # a unit id is a few dozen; the broker accepts keys near 1 MB
MAX_DETAIL_CHARS = 1024
# faust's producer_max_request_size (aiokafka's max_request_size): key, value and record
# overhead together. A DLQ message over it fails its send, which stops the worker on the same
# message after every restart. The caps keep one under 810 kB: at most six bytes a character
# (a control character escaped), and a topic name has at most 249 characters.
MAX_MESSAGE_BYTES = 1_000_000


def dlq_record(
    code: str, detail: str, topic: str, partition: int, offset: int,
    key: bytes | None, value: bytes | None, rejected_at: datetime | None = None,
) -> dict[str, Any]:
    """The original bytes are kept as text when they are UTF-8, else as base64."""
    record: dict[str, Any] = {
        "error": code,
        "detail": detail[:MAX_DETAIL_CHARS],
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": None,
        "rejected_at": (rejected_at or datetime.now(UTC)).isoformat(),
    }
    if key is not None:
        _copy(record, "key", key, MAX_KEY_CHARS)
    _copy(record, "value", value or b"", MAX_VALUE_CHARS)
    return record


def dlq_message(
    code: str, detail: str, topic: str, partition: int, offset: int,
    key: bytes | None, value: bytes | None, rejected_at: datetime | None = None,
) -> tuple[bytes | None, bytes]:
    """The DLQ message (key, JSON value) for a refused input message.

    The message key is the input key, so a unit's rejects share a partition, cut to its first
    ``MAX_KEY_CHARS`` bytes: a key that long is junk, and its prefix places it the same way
    every time."""
    record = dlq_record(code, detail, topic, partition, offset, key, value, rejected_at)
    return (None if key is None else key[:MAX_KEY_CHARS]), orjson.dumps(record)


def _copy(record: dict[str, Any], field: str, raw: bytes, max_chars: int) -> None:
    """``record[field]``: ``raw`` as text or base64 (``<field>_encoding``), cut to ``max_chars``
    (``<field>_truncated``, and the original size in ``<field>_bytes``)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = base64.b64encode(raw).decode("ascii")
        record[f"{field}_encoding"] = "base64"
    if len(text) > max_chars:
        text = text[:max_chars]
        record[f"{field}_truncated"] = True
        record[f"{field}_bytes"] = len(raw)
    record[field] = text
