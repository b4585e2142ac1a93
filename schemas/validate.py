"""Validate raw ``procedure-events`` messages into ``scoring.events.Event`` values.

The rules are compiled from ``procedure-event.schema.json`` into plain per-field checks (a
general JSON Schema engine is an order of magnitude slower and gives vaguer errors); the few
rules JSON Schema cannot express (SPEC section 1) are checked here by hand. Check order decides
the code when several apply: size, JSON, shape, type, fields, unit, clock skew.

Two paths, one set of rules. ``Validator.check`` is the reference: it walks the compiled checks
and names the first problem. ``validate`` first tries a *fast check* generated per event type
from the same compiled schema (straight-line code, no per-field calls); it accepts only what
the reference accepts, returning the same ``Event``, and answers "not sure" for anything else
(a problem, an unusual extra field, a new timestamp shape), which then goes to the reference
for its verdict and its error. ``tests/scoring/test_perf_equivalence.py`` checks the two agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Mapping
from pathlib import Path
from typing import Any

import orjson

from schemas.exceptions import EventRejected
from schemas.fastcheck import DUE_AFTER_OCCURRED, extras_check, fast_source
from scoring.catalog import Catalog
from scoring.events import EVENT_TYPES, NO_TIMES, Event, body_digest
from scoring.timeutil import FAST_TABLES, parse_ts

SCHEMA_PATH = Path(__file__).parent / "procedure-event.schema.json"
Check = Callable[[Any], str | None]  # returns a problem, or None when the value is fine
# What a field must be, read from its schema: ("str", min, max) | ("bool",) | ("int", minimum)
# | ("enum", values) | ("const", value) | ("timestamp",)
Kind = tuple[Any, ...]


def _kind(spec: dict[str, Any], defs: dict[str, Any]) -> Kind:
    if "$ref" in spec:
        return _kind(defs[spec["$ref"].rsplit("/", 1)[1]], defs)
    if spec.get("format") == "date-time":
        return ("timestamp",)
    if "enum" in spec:
        return ("enum", tuple(spec["enum"]))
    if "const" in spec:
        return ("const", spec["const"])
    kind = spec.get("type")
    if kind == "boolean":
        return ("bool",)
    if kind == "integer":
        return ("int", spec.get("minimum"))
    if kind == "string":
        return ("str", spec.get("minLength", 0), spec.get("maxLength", 1 << 30))
    raise ValueError(f"schema construct not supported by the compiler: {spec}")


def _is_integer(v: Any) -> bool:
    """JSON Schema's ``integer``: a number with no fractional part, so ``5.0`` is one (the SPEC
    says only "integer"; where it is silent the schema decides). A bool is not a number."""
    return type(v) is int or (type(v) is float and v.is_integer())


def _json_equal(v: Any, const: Any) -> bool:
    """JSON Schema's ``const`` equality: numbers compare by value (``1.0`` is ``1``), and
    ``true`` is not ``1``."""
    if type(const) is int and type(v) is float:
        return v == const
    return type(v) is type(const) and v == const


def _compile_field(kind: Kind) -> Check:
    if kind[0] == "timestamp":
        return (lambda v: None if parse_ts(v) is not None else "is not an RFC 3339 timestamp "
                "with an offset")
    if kind[0] == "enum":
        allowed = kind[1]
        return (lambda v: None if isinstance(v, str) and v in allowed
                else f"must be one of {', '.join(allowed)}")
    if kind[0] == "const":
        const = kind[1]
        return lambda v: None if _json_equal(v, const) else f"must be {const!r}"
    if kind[0] == "bool":
        return lambda v: None if v is True or v is False else "must be true or false"
    if kind[0] == "int":
        lo = kind[1]

        def check_int(v: Any) -> str | None:
            if not _is_integer(v):
                return "must be an integer"
            if lo is not None and v < lo:
                return f"must be >= {lo}"
            return None

        return check_int
    lo, hi = kind[1], kind[2]

    def check_str(v: Any) -> str | None:
        if not isinstance(v, str):
            return "must be a string"
        if not lo <= len(v) <= hi:
            return f"must have {lo} to {hi} characters"
        return None

    return check_str


class _TypeRules:
    __slots__ = ("required", "checks", "timestamps", "kinds")

    def __init__(self, required: list[str], kinds: dict[str, Kind]):
        self.required = required
        self.kinds = kinds
        self.checks = {name: _compile_field(kind) for name, kind in kinds.items()}
        self.timestamps = [name for name, kind in kinds.items() if kind[0] == "timestamp"]


def _compile(schema: dict[str, Any]) -> tuple[dict[str, Kind], dict[str, _TypeRules]]:
    defs = schema["$defs"]
    common = {k: _kind(v, defs) for k, v in schema["properties"].items() if k != "type"}
    rules: dict[str, _TypeRules] = {}
    for clause in schema["allOf"]:
        type_name = clause["if"]["properties"]["type"]["const"]
        spec = defs[clause["then"]["$ref"].rsplit("/", 1)[1]]
        kinds = {name: _kind(field_spec, defs) for name, field_spec in spec["properties"].items()}
        rules[type_name] = _TypeRules(list(spec["required"]), kinds)
    if set(rules) != set(EVENT_TYPES):
        raise ValueError("schema and scoring.events disagree on the event types")
    return common, rules


FastCheck = Callable[..., Event | None]


def _compile_fast(
    common: dict[str, Kind], rules: dict[str, _TypeRules]
) -> tuple[dict[str, FastCheck], dict[str, str]]:
    schema_names = {*common, "type", *(n for r in rules.values() for n in r.kinds)}

    fast: dict[str, FastCheck] = {}
    sources: dict[str, str] = {}
    for event_type, type_rules in rules.items():
        extras_ok = extras_check({*common, "type", *type_rules.kinds}, schema_names)
        source = fast_source(event_type, type_rules, common)
        hours, tails = FAST_TABLES
        namespace: dict[str, Any] = {"parse_ts": parse_ts, "make": Event, "extras_ok": extras_ok,
                                     "NO_TIMES": NO_TIMES, "hours": hours, "tails": tails}
        exec(compile(source, f"<fast check {event_type}>", "exec"), namespace)  # noqa: S102
        fast[event_type] = namespace["fast"]
        sources[event_type] = source
    return fast, sources


SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
_COMMON_KINDS, _RULES = _compile(SCHEMA)
_COMMON = {name: _compile_field(kind) for name, kind in _COMMON_KINDS.items()}
_FAST, FAST_SOURCES = _compile_fast(_COMMON_KINDS, _RULES)

event_digest = body_digest  # identity of a body for duplicate detection (scoring.events)


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
        # the same membership test as ``unit_id in units``, minus a Python-level __contains__
        self._members: Container[str] = units.by_id if isinstance(units, Catalog) else units

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
        # decode + fast_check inlined: this runs once per message
        if len(raw) <= self.max_bytes:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            if type(body) is dict:
                event_type = body.get("type")
                fast = _FAST.get(event_type) if type(event_type) is str else None
                if fast is not None:
                    event = fast(body, self._members)
                    if event is not None and (
                        self.now_us is None or event.ts <= self.now_us() + self.max_skew_us
                    ):
                        return event
                return self.check(body)
        return self.check(self.decode(raw))  # raises the rejection

    def fast_path(self) -> tuple[Mapping[str, FastCheck], Container[str]]:
        """For a caller that runs its own decode loop (the offline load): the per-type fast
        checks, and the units to pass them as ``fast(body, units)``. Like ``fast_check``, an
        answer of None means "call ``validate``". Offline only: they do not read the clock."""
        if self.now_us is not None:
            raise ValueError("the fast checks alone do not refuse future timestamps")
        return _FAST, self._members

    def fast_check(self, body: dict[str, Any]) -> Event | None:
        """The Event ``check`` would return, or None when unsure (``check`` then decides)."""
        event_type = body.get("type")
        fast = _FAST.get(event_type) if type(event_type) is str else None
        if fast is None:
            return None
        event = fast(body, self._members)
        if (event is not None and self.now_us is not None
                and event.ts > self.now_us() + self.max_skew_us):
            return None
        return event

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
                raise EventRejected("schema_violation", f"field {name!r} {problem}")
        for name in rules.required:
            if name not in body:
                raise EventRejected("schema_violation", f"{event_type}: field {name!r} is required")
        times: dict[str, int] = {}
        for name, check in rules.checks.items():
            if name not in body:
                continue
            if (problem := check(body[name])) is not None:
                raise EventRejected("schema_violation", f"{event_type}: field {name!r} {problem}")
        ts = parse_ts(body["occurred_at"])
        assert ts is not None  # checked above
        for name in rules.timestamps:
            if body.get(name) is not None:
                times[name] = parse_ts(body[name])  # type: ignore[assignment]
        if event_type in DUE_AFTER_OCCURRED and times["due_at"] <= ts:
            raise EventRejected(
                "schema_violation", f"{event_type}: due_at must be after occurred_at"
            )
        # a rule of the type that has the field (dossier.received); elsewhere full_online is an
        # unknown extra field, ignored (SPEC 1)
        if ("full_online" in rules.kinds and body.get("full_online") is True
                and body.get("channel") != "online"):
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
