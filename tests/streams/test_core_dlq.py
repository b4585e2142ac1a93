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
