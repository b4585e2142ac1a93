"""dlq_record: the dead-letter record of SPEC section 1 "Bad input"."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import orjson

from streams.dlq import dlq_record

SPEC_FIELDS = {"error", "detail", "topic", "partition", "offset", "key", "value", "rejected_at"}


def test_utf8_value_is_kept_as_text() -> None:
    value = '{"event_id": "x", "name": "Quận 1 <b>"'.encode()
    at = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
    rec = dlq_record("invalid_json", "not JSON: eof", "procedure-events", 2, 41, b"quan-01",
                     value, rejected_at=at)
    assert set(rec) >= SPEC_FIELDS
    assert rec == {
        "error": "invalid_json", "detail": "not JSON: eof", "topic": "procedure-events",
        "partition": 2, "offset": 41, "key": "quan-01",
        "value": '{"event_id": "x", "name": "Quận 1 <b>"', "rejected_at": at.isoformat(),
    }
    assert orjson.loads(orjson.dumps(rec)) == rec


def test_non_utf8_value_is_base64_and_key_is_kept() -> None:
    raw = b"\x00not json \xff\xfe\x80 at all"
    rec = dlq_record("invalid_json", "not JSON", "procedure-events", 0, 7, b"so-01", raw)
    assert set(rec) >= SPEC_FIELDS
    assert rec["value_encoding"] == "base64"
    assert base64.b64decode(rec["value"]) == raw
    assert rec["key"] == "so-01"
    assert "key_encoding" not in rec
    assert (rec["error"], rec["topic"], rec["partition"], rec["offset"]) == (
        "invalid_json", "procedure-events", 0, 7)
    orjson.dumps(rec)  # a JSON document as it is


def test_non_utf8_key_is_base64_too() -> None:
    rec = dlq_record("unknown_unit", "no such unit", "t", 1, 2, b"\xff\xfe", b"{}")
    assert rec["key_encoding"] == "base64"
    assert base64.b64decode(rec["key"]) == b"\xff\xfe"
    assert rec["value"] == "{}" and "value_encoding" not in rec


def test_missing_key_and_value() -> None:
    rec = dlq_record("schema_violation", "empty", "t", 3, 0, None, None)
    assert set(rec) >= SPEC_FIELDS
    assert rec["key"] is None and "key_encoding" not in rec
    assert rec["value"] == ""


def test_rejected_at_defaults_to_now_with_an_offset() -> None:
    before = datetime.now(UTC)
    rec = dlq_record("too_large", "70000 bytes", "t", 0, 0, None, b"x")
    stamp = datetime.fromisoformat(rec["rejected_at"])
    assert stamp.tzinfo is not None
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC) + timedelta(seconds=1)
    ict = datetime(2024, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=7)))
    assert dlq_record("x", "y", "t", 0, 0, None, b"", rejected_at=ict)["rejected_at"] == (
        "2024-05-01T10:00:00+07:00")


def test_a_huge_value_is_capped_so_the_dlq_record_still_fits_a_kafka_message() -> None:
    from streams.dlq import MAX_VALUE_CHARS

    raw = b'"' * 800_000  # JSON-escapes to 1.6 MB; base64 of non-UTF-8 would be 1.07 MB
    record = dlq_record("too_large", "x", "procedure-events", 0, 7, b"k", raw)
    assert record["value_truncated"] is True
    assert record["value_bytes"] == 800_000
    assert len(record["value"]) == MAX_VALUE_CHARS
    assert len(orjson.dumps(record)) < 1_000_000


def test_a_huge_key_is_capped_like_the_value() -> None:
    from streams.dlq import MAX_KEY_CHARS

    rec = dlq_record("invalid_json", "x", "procedure-events", 0, 7, b"k" * 520_000, b"{")
    assert rec["key"] == "k" * MAX_KEY_CHARS
    assert (rec["key_truncated"], rec["key_bytes"]) == (True, 520_000)
    rec = dlq_record("invalid_json", "x", "procedure-events", 0, 7, b"\xff" * 5000, b"{")
    assert rec["key_encoding"] == "base64" and len(rec["key"]) == MAX_KEY_CHARS
    assert base64.b64decode(rec["key"]) == b"\xff" * (MAX_KEY_CHARS // 4 * 3)  # a clean cut
    assert rec["key_bytes"] == 5000
    short = dlq_record("invalid_json", "x", "procedure-events", 0, 7, b"u" * MAX_KEY_CHARS, b"{")
    assert "key_truncated" not in short and "key_bytes" not in short


def test_the_dlq_message_key_is_the_input_key_cut_short() -> None:
    from streams.dlq import MAX_KEY_CHARS, dlq_message

    key, value = dlq_message("unknown_unit", "no such unit", "procedure-events", 1, 2,
                             b"quan-01", b"{}")
    assert key == b"quan-01" and orjson.loads(value)["key"] == "quan-01"
    assert dlq_message("x", "y", "t", 0, 0, None, b"{}")[0] is None
    long_key = bytes(range(256)) * 1000
    assert dlq_message("x", "y", "t", 0, 0, long_key, b"{}")[0] == long_key[:MAX_KEY_CHARS]


def test_the_largest_dlq_message_fits_the_producer() -> None:
    """Every text field at its cap, every character JSON-escaped to six bytes; the topic name
    at Kafka's 249-character limit."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    from streams.dlq import MAX_MESSAGE_BYTES, dlq_message

    worst = b"\x01" * 1_000_000
    key, value = dlq_message("conflicting_duplicate", worst.decode(), "\x01" * 249, 2**31 - 1,
                             2**63 - 1, worst, worst)
    rec = orjson.loads(value)
    assert rec["value_truncated"] and rec["key_truncated"] and len(rec["detail"]) <= 1024
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
    assert size < MAX_MESSAGE_BYTES
