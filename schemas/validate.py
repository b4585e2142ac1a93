"""Validate raw ``procedure-events`` messages into ``scoring.events.Event`` values.

The rules are compiled from ``procedure-event.schema.json`` into plain per-field checks (a
general JSON Schema engine is an order of magnitude slower and gives vaguer errors); the few
rules JSON Schema cannot express (SPEC section 1) are checked here by hand. Check order decides
the code when several apply: size, JSON, shape, type, fields, unit, clock skew.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

import orjson

from schemas.exceptions import EventRejected
from scoring.events import EVENT_TYPES, Event
from scoring.timeutil import parse_ts

SCHEMA_PATH = Path(__file__).parent / "procedure-event.schema.json"
Check = Callable[[Any], str | None]  # returns a problem, or None when the value is fine


def _compile_field(spec: dict[str, Any], defs: dict[str, Any]) -> tuple[Check, bool]:
    """-> (check, is_timestamp)."""
    if "$ref" in spec:
        return _compile_field(defs[spec["$ref"].rsplit("/", 1)[1]], defs)
    if spec.get("format") == "date-time":
        return (lambda v: None if parse_ts(v) is not None else "is not an RFC 3339 timestamp "
                "with an offset"), True
    if "enum" in spec:
        allowed = tuple(spec["enum"])
        return (lambda v: None if isinstance(v, str) and v in allowed
                else f"must be one of {', '.join(allowed)}"), False
    if "const" in spec:
        const = spec["const"]
        return (lambda v: None if v == const and type(v) is type(const)
                else f"must be {const!r}"), False
    kind = spec.get("type")
    if kind == "boolean":
        return (lambda v: None if v is True or v is False else "must be true or false"), False
    if kind == "integer":
        lo = spec.get("minimum")

        def check_int(v: Any) -> str | None:
            if type(v) is not int:
                return "must be an integer"
            if lo is not None and v < lo:
                return f"must be >= {lo}"
            return None

        return check_int, False
    if kind == "string":
        lo, hi = spec.get("minLength", 0), spec.get("maxLength", 1 << 30)

        def check_str(v: Any) -> str | None:
            if not isinstance(v, str):
                return "must be a string"
            if not lo <= len(v) <= hi:
                return f"must have {lo} to {hi} characters"
            return None

        return check_str, False
    raise ValueError(f"schema construct not supported by the compiler: {spec}")


class _TypeRules:
    __slots__ = ("required", "checks", "timestamps")

    def __init__(self, required: list[str], checks: dict[str, Check], timestamps: list[str]):
        self.required = required
        self.checks = checks
        self.timestamps = timestamps


def _compile(schema: dict[str, Any]) -> tuple[dict[str, Check], dict[str, _TypeRules]]:
    defs = schema["$defs"]
    common = {k: _compile_field(v, defs)[0] for k, v in schema["properties"].items() if k != "type"}
    rules: dict[str, _TypeRules] = {}
    for clause in schema["allOf"]:
        type_name = clause["if"]["properties"]["type"]["const"]
        spec = defs[clause["then"]["$ref"].rsplit("/", 1)[1]]
        checks, stamps = {}, []
        for name, field_spec in spec["properties"].items():
            checks[name], is_ts = _compile_field(field_spec, defs)
            if is_ts:
                stamps.append(name)
        rules[type_name] = _TypeRules(list(spec["required"]), checks, stamps)
    if set(rules) != set(EVENT_TYPES):
        raise ValueError("schema and scoring.events disagree on the event types")
    return common, rules


SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
_COMMON, _RULES = _compile(SCHEMA)


def event_digest(body: dict[str, Any]) -> bytes:
    """Identity of a body for duplicate detection: key order and whitespace do not matter."""
    return hashlib.blake2b(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=12).digest()


class Validator:
    """Turns raw bytes into an ``Event`` or raises ``EventRejected`` with its DLQ code.

    ``units``: the catalog's unit ids. ``now_us``: live mode's wall clock (microseconds), to
    refuse events too far in the future; None offline, where the future is just "after T".
    """

    def __init__(
        self,
        units: Container[str],
        max_bytes: int = 64 * 1024,
        max_skew_us: int = 300_000_000,
        now_us: Callable[[], int] | None = None,
    ):
        self.units = units
        self.max_bytes = max_bytes
        self.max_skew_us = max_skew_us
        self.now_us = now_us

    def decode(self, raw: bytes | str) -> dict[str, Any]:
        if len(raw) > self.max_bytes:
            raise EventRejected("too_large", f"{len(raw)} bytes, limit {self.max_bytes}")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EventRejected("invalid_json", f"not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise EventRejected("schema_violation", "an event must be a JSON object")
        return body

    def validate(self, raw: bytes | str) -> Event:
        return self.check(self.decode(raw))

    def check(self, body: dict[str, Any]) -> Event:
        event_type = body.get("type")
        if not isinstance(event_type, str):
            raise EventRejected("schema_violation", "field 'type' is missing or not a string")
        rules = _RULES.get(event_type)
        if rules is None:
            raise EventRejected("unknown_type", f"unknown event type {event_type[:80]!r}")
        for name in ("event_id", "occurred_at"):
            if name not in body:
                raise EventRejected("schema_violation", f"field {name!r} is required")
        for name, check in _COMMON.items():
            if name in body and (problem := check(body[name])) is not None:
                if name == "unit_id" and event_type == "clock.tick":
                    continue
                raise EventRejected("schema_violation", f"field {name!r} {problem}")
        for name in rules.required:
            if name not in body:
                raise EventRejected("schema_violation", f"{event_type}: field {name!r} is required")
        times: dict[str, int] = {}
        for name, check in rules.checks.items():
            if name not in body or (body[name] is None and name not in rules.required):
                continue
            if (problem := check(body[name])) is not None:
                raise EventRejected("schema_violation", f"{event_type}: field {name!r} {problem}")
        ts = parse_ts(body["occurred_at"])
        assert ts is not None  # checked above
        for name in rules.timestamps:
            if body.get(name) is not None:
                times[name] = parse_ts(body[name])  # type: ignore[assignment]
        if "due_at" in times and times["due_at"] <= ts:
            raise EventRejected(
                "schema_violation", f"{event_type}: due_at must be after occurred_at"
            )
        if body.get("full_online") is True and body.get("channel") != "online":
            raise EventRejected("schema_violation", "full_online is true only with channel online")
        unit_id = None
        if event_type != "clock.tick":
            unit_id = body["unit_id"]
            if unit_id not in self.units:
                raise EventRejected("unknown_unit", f"unit {unit_id[:128]!r} is not in the catalog")
        if self.now_us is not None and ts > self.now_us() + self.max_skew_us:
            raise EventRejected(
                "future_timestamp",
                f"occurred_at is more than {self.max_skew_us // 1_000_000} s ahead of wall time",
            )
        try:
            digest = event_digest(body)
        except orjson.JSONEncodeError:
            # orjson reads up to 1024 levels but writes only 254: an extra field nested in
            # between must be refused like deeper input, not crash the caller
            raise EventRejected("invalid_json", "values nested too deeply") from None
        return Event(body["event_id"], event_type, ts, unit_id, body, digest, times)
