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


# --- fast checks ------------------------------------------------------------------------------

_SCALARS = (str, int, float, bool, type(None))


def _value_test(kind: Kind, var: str) -> str:
    """Python source that is true when ``var`` is a fine value of ``kind`` (timestamps are
    parsed separately)."""
    if kind[0] == "str":
        return f"type({var}) is str and {kind[1]} <= len({var}) <= {kind[2]}"
    if kind[0] == "bool":
        return f"({var} is True or {var} is False)"
    if kind[0] == "int":
        low = "" if kind[1] is None else f" and {var} >= {kind[1]!r}"
        return f"type({var}) is int{low}"  # 5.0 and the like: the reference decides
    if kind[0] == "enum":
        allowed = ", ".join(repr(v) for v in sorted(kind[1]))
        return f"type({var}) is str and {var} in {{{allowed}}}"
    if kind[0] == "const":
        return f"type({var}) is {type(kind[1]).__name__} and {var} == {kind[1]!r}"
    if kind[0] == "timestamp":
        return f"type({var}) is str"
    raise ValueError(kind)


def _required_names(event_type: str, rules: _TypeRules) -> list[str]:
    """The fields a fast check reads at once, in the order of its variables v0, v1, ..."""
    required = ["event_id", "occurred_at"] + [n for n in rules.required if n != "unit_id"]
    if event_type != "clock.tick":
        required.insert(2, "unit_id")  # common field, required by every other type
    return required


def _parse_source(var: str, target: str, indent: str) -> list[str]:
    """Source that sets ``target`` to ``parse_ts(var)`` or returns None: the two table lookups
    of ``parse_ts``'s fast path inline (``scoring.timeutil.FAST_TABLES``), the call otherwise."""
    return [f"{indent}{target} = hours.get({var}[:13])",
            f"{indent}if {target} is not None:",
            f"{indent}    rest = tails.get({var}[13:])",
            f"{indent}    {target} = {target} + rest if rest is not None else parse_ts({var})",
            f"{indent}else:",
            f"{indent}    {target} = parse_ts({var})",
            f"{indent}if {target} is None:",
            f"{indent}    return None"]


def _fast_source(event_type: str, rules: _TypeRules, common: dict[str, Kind]) -> str:
    """Source of ``fast(body, units) -> Event | None``: the checks
    of ``Validator.check`` for one event type, on a body that breaks none of them; None means
    "ask the reference" (never "rejected")."""
    tick = event_type == "clock.tick"
    required = _required_names(event_type, rules)
    optional = [n for n in rules.kinds if n not in required]
    kinds = {**rules.kinds, **{n: common[n] for n in ("event_id", "occurred_at", "unit_id")}}
    var = {name: f"v{i}" for i, name in enumerate(required + optional)}
    out = ["def fast(body, units):", "    try:"]
    out += [f"        {var[n]} = body[{n!r}]" for n in required]
    out += ["    except KeyError:", "        return None"]
    # required fields ("type" was read already to pick this function)
    for n in required:
        if n == "unit_id":
            out.append(f"    if not ({_value_test(kinds[n], var[n])} and {var[n]} in units):")
        else:
            out.append(f"    if not ({_value_test(kinds[n], var[n])}):")
        out.append("        return None")
    out.append(f"    n = {len(required) + 1}")
    # optional fields of the type: absent is fine, present must be valid (null is not: the
    # schema says "string" or "timestamp", and the SPEC types them the same)
    for n in optional:
        out += [f"    {var[n]} = body.get({n!r})", f"    if {var[n]} is not None:",
                "        n += 1", f"        if not ({_value_test(kinds[n], var[n])}):",
                "            return None", f"    elif {n!r} in body:", "        return None"]
    # optional common fields: checked when present (a tick's unit_id too, though it names
    # no catalog unit)
    out += ["    if 'schema_version' in body:", "        n += 1",
            "        sv = body['schema_version']",
            f"        if not ({_value_test(common['schema_version'], 'sv')}):",
            "            return None"]
    if tick:
        out += ["    if 'unit_id' in body:", "        n += 1", "        unit = body['unit_id']",
                f"        if not ({_value_test(common['unit_id'], 'unit')}):",
                "            return None"]
    out += ["    if n != len(body) and not extras_ok(body):", "        return None"]
    out += _parse_source("v1", "ts", "    ")
    stamps = []
    for n in rules.timestamps:
        t = f"t_{var[n]}"
        stamps.append(f"{n!r}: {t}")
        if n in required:
            out += _parse_source(var[n], t, "    ")
        else:  # optional: no entry in ``times`` when absent
            out += [f"    if {var[n]} is None:", "        times = NO_TIMES",
                    "    else:", *_parse_source(var[n], t, "        "),
                    f"        times = {{{n!r}: {t}}}"]
    if len(stamps) > 1:
        raise ValueError(f"{event_type}: the fast check handles one timestamp besides occurred_at")
    if not rules.timestamps:
        out.append("    times = NO_TIMES")
    elif rules.timestamps[0] in required:
        out.append(f"    times = {{{stamps[0]}}}")
    # the rules JSON Schema cannot say (as in ``Validator.check``)
    if "due_at" in rules.timestamps:
        out += [f"    if t_{var['due_at']} <= ts:", "        return None"]
    if "full_online" in rules.kinds:
        channel = var["channel"] if "channel" in required else "body.get('channel')"
        out += [f"    if {var['full_online']} is True and {channel} != 'online':",
                "        return None"]
    unit = "None" if tick else var["unit_id"]
    out.append(f"    return make(v0, {event_type!r}, ts, {unit}, body, None, times)")
    return "\n".join(out) + "\n"


FastCheck = Callable[..., Event | None]


def _compile_fast(
    common: dict[str, Kind], rules: dict[str, _TypeRules]
) -> tuple[dict[str, FastCheck], dict[str, str]]:
    # an extra field may not share a name with any field of the schema (the cross-field rules
    # look at full_online and channel whatever the type) and must be a plain value (nested
    # values go to the reference, which refuses what orjson cannot write back for the digest)
    schema_names = {*common, "type", *(n for r in rules.values() for n in r.kinds)}

    fast: dict[str, FastCheck] = {}
    sources: dict[str, str] = {}
    for event_type, type_rules in rules.items():
        known = {*common, "type", *type_rules.kinds}

        def extras_ok(body: dict[str, Any], known: set[str] = known) -> bool:
            for name, value in body.items():
                if name not in known and (name in schema_names or type(value) not in _SCALARS):
                    return False
            return True

        source = _fast_source(event_type, type_rules, common)
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
