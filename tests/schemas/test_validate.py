"""The event validator (SPEC section 1): every DLQ code, hostile input, and agreement with the
JSON Schema file it is compiled from."""

from __future__ import annotations

import copy
import json
import re

import orjson
import pytest

from schemas import CODES, EventRejected, Validator, event_digest
from schemas.validate import SCHEMA_PATH
from scoring.events import EVENT_TYPES

UNITS = frozenset({"u1", "u2"})
OCC = "2024-04-01T08:00:00+07:00"
LATER = "2024-04-10T08:00:00+07:00"
EARLIER = "2024-03-25T08:00:00+07:00"


def body_of(event_type: str, **overrides: object) -> dict:
    """A valid body of ``event_type``; keyword overrides replace fields (``DROP`` removes)."""
    common = {"event_id": f"e-{event_type}", "type": event_type, "occurred_at": OCC,
              "unit_id": "u1"}
    own: dict[str, object] = {
        "dossier.received": {
            "dossier_id": "d1", "procedure_id": "p1", "channel": "online", "due_at": LATER,
            "online_eligible": True, "full_online": True, "fee_required": False,
            "reused_data": False, "pds_linked": True, "population_db": False,
        },
        "dossier.digitized": {"dossier_id": "d1"},
        "dossier.synced": {"dossier_id": "d1"},
        "dossier.paid": {"dossier_id": "d1", "online": True, "amount_vnd": 50_000},
        "dossier.supplement_requested": {"dossier_id": "d1", "new_due_at": LATER},
        "dossier.completed": {"dossier_id": "d1", "e_result": True},
        "dossier.withdrawn": {"dossier_id": "d1"},
        "dossier.rated": {"dossier_id": "d1", "rating": "neutral"},
        "petition.received": {"petition_id": "p1", "due_at": LATER},
        "petition.resolved": {"petition_id": "p1"},
        "petition.rated": {"petition_id": "p1", "rating": "dissatisfied"},
        "procedure.published": {"procedure_id": "pr1", "announced_on_time": True,
                                "publicized_on_time": False, "complete": True},
        "clock.tick": {},
    }[event_type]  # type: ignore[assignment]
    body = {**common, **own}  # type: ignore[dict-item]
    if event_type == "clock.tick":
        del body["unit_id"]
    for key, value in overrides.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


DROP = object()


def raw(body: object) -> bytes:
    return json.dumps(body).encode()


def rejected_code(validator: Validator, data: bytes | str) -> str:
    with pytest.raises(EventRejected) as info:
        validator.validate(data)
    assert info.value.code in CODES
    assert info.value.detail  # a human-readable reason, never empty
    return info.value.code


@pytest.fixture
def v() -> Validator:
    return Validator(UNITS)


# ---------------------------------------------------------------- valid events


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_type_has_a_valid_example(v: Validator, event_type: str) -> None:
    body = body_of(event_type)
    event = v.validate(raw(body))
    assert event.type == event_type
    assert event.event_id == body["event_id"]
    assert event.body == body
    # 2024-04-01T08:00:00+07:00 == 2024-04-01T01:00:00Z
    assert event.ts == 1_711_933_200 * 1_000_000
    if event_type == "clock.tick":
        assert event.unit_id is None
    else:
        assert event.unit_id == "u1"


def test_parsed_due_times(v: Validator) -> None:
    ev = v.validate(raw(body_of("dossier.received")))
    assert ev.times["due_at"] - ev.ts == 9 * 86_400 * 1_000_000
    ev = v.validate(raw(body_of("dossier.supplement_requested")))
    assert ev.times["new_due_at"] - ev.ts == 9 * 86_400 * 1_000_000
    ev = v.validate(raw(body_of("dossier.supplement_requested", new_due_at=DROP)))
    assert "new_due_at" not in ev.times


def test_unknown_extra_fields_accepted_and_kept(v: Validator) -> None:
    body = body_of("dossier.completed", note={"a": [1, 2, {"b": None}]}, zzz="x",
                   officer_id="officer-7")
    ev = v.validate(raw(body))
    assert ev.body["note"] == {"a": [1, 2, {"b": None}]}
    assert ev.body["zzz"] == "x"
    # petitions have no officer_id in the schema: there it is just an unknown extra field
    ev = v.validate(raw(body_of("petition.resolved", officer_id=12)))
    assert ev.body["officer_id"] == 12


def test_clock_tick_may_carry_no_unit(v: Validator) -> None:
    assert v.validate(raw(body_of("clock.tick"))).unit_id is None
    # a tick naming a unit that is not in the catalog is still just a tick
    assert v.validate(raw(body_of("clock.tick", unit_id="nowhere"))).unit_id is None


@pytest.mark.parametrize("version", [DROP, 1, 1.0])
def test_schema_version_absent_or_one(v: Validator, version: object) -> None:
    v.validate(raw(body_of("dossier.synced", schema_version=version)))


@pytest.mark.parametrize("version", [2, 0, "1", True, None])
def test_schema_version_other_rejected(v: Validator, version: object) -> None:
    assert rejected_code(v, raw(body_of("dossier.synced", schema_version=version))) == (
        "schema_violation"
    )


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("2024-04-01T01:00:00.123456789Z", 123_456),  # 9 digits: nanoseconds, truncated
        ("2024-04-01T08:00:00.5+07:00", 500_000),
        ("2024-04-01T01:00:00.000001z", 1),
        ("2024-04-01t01:00:00Z", 0),
        ("2024-04-01 01:00:00+00:00", 0),
        ("2024-03-31T20:00:00-05:00", 0),
    ],
)
def test_timestamp_forms_accepted(v: Validator, text: str, micros: int) -> None:
    ev = v.validate(raw(body_of("dossier.synced", occurred_at=text)))
    assert ev.ts == 1_711_933_200 * 1_000_000 + micros


@pytest.mark.parametrize(
    "text",
    [
        "2024-04-01T01:00:00",  # no offset
        "2024-04-01",  # no time
        "2024-04-01T01:00:00.1234567890Z",  # 10 fractional digits
        "2024-04-01T01:00Z",  # no seconds
        "2024-13-01T01:00:00Z",
        "2024-02-30T01:00:00Z",
        "2024-04-01T24:00:00Z",
        "2024-04-01T01:00:60Z",
        "2024-04-01T01:00:00+24:00",
        "2024-04-01T01:00:00+0700",
        "2024-04-01T01:00:00Z\n",
        "\u0662\u0660\u0662\u0664-04-01T01:00:00Z",  # Arabic-Indic digits
        "1711933200",
        "0001-01-01T00:00:00+01:00",  # valid RFC 3339, but before year 1 in UTC
        "9999-12-31T23:59:59-23:59",  # valid RFC 3339, but in year 10000 in UTC
        "",
        1711933200,
        None,
    ],
)
def test_bad_timestamp_is_schema_violation(v: Validator, text: object) -> None:
    assert rejected_code(v, raw(body_of("dossier.synced", occurred_at=text))) == (
        "schema_violation"
    )
    assert rejected_code(v, raw(body_of("petition.received", due_at=text))) == (
        "schema_violation"
    )


# ---------------------------------------------------------------- DLQ codes


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b'{"event_id": "e1",',
        b"",
        b"   ",
        b"{'event_id': 'e1'}",
        b'{"a": NaN}',
        b'{"a": 1} trailing',
        b'{"a": 1e400}',
    ],
)
def test_invalid_json(v: Validator, data: bytes) -> None:
    assert rejected_code(v, data) == "invalid_json"


@pytest.mark.parametrize(
    "data",
    [
        b'{"event_id": "\xff\xfe", "type": "clock.tick", "occurred_at": "2024-04-01T01:00:00Z"}',
        "{\"event_id\": \"é\"}".encode("latin-1"),
        b"\xc3\x28",
        b'"\xed\xa0\x80"',  # UTF-8-encoded lone surrogate
    ],
)
def test_non_utf8_is_invalid_json(v: Validator, data: bytes) -> None:
    assert rejected_code(v, data) == "invalid_json"


@pytest.mark.parametrize("depth", [300, 1000, 5000, 100_000])
def test_deep_nesting_is_rejected_not_a_crash(v: Validator, depth: int) -> None:
    bare = b"[" * depth + b"]" * depth
    # not an object either way: unreadable (too deep for the parser) or not an event
    assert rejected_code(Validator(UNITS, max_bytes=1 << 20), bare) in (
        "invalid_json", "schema_violation")
    # the same nesting hidden in an unknown extra field of an otherwise valid event
    wrapped = raw(body_of("clock.tick"))[:-1] + b', "x": ' + bare + b"}"
    code = rejected_code(Validator(UNITS, max_bytes=1 << 20), wrapped)
    assert code == "invalid_json"
    objects = b'{"a":' * depth + b"1" + b"}" * depth
    assert rejected_code(Validator(UNITS, max_bytes=1 << 20), objects) in (
        "invalid_json", "schema_violation")


def test_moderate_nesting_in_extra_field_is_fine(v: Validator) -> None:
    depth = 100
    nested = b"[" * depth + b"]" * depth
    data = raw(body_of("clock.tick"))[:-1] + b', "x": ' + nested + b"}"
    ev = v.validate(data)
    assert ev.type == "clock.tick"


@pytest.mark.parametrize("data", [b"[]", b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_non_object_json_is_schema_violation(v: Validator, data: bytes) -> None:
    assert rejected_code(v, data) == "schema_violation"


SCHEMA_VIOLATIONS = [
    # (name, event type, overrides)
    ("missing event_id", "dossier.synced", {"event_id": DROP}),
    ("missing occurred_at", "dossier.synced", {"occurred_at": DROP}),
    ("missing type", "dossier.synced", {"type": DROP}),
    ("type not a string", "dossier.synced", {"type": 7}),
    ("missing unit_id", "dossier.synced", {"unit_id": DROP}),
    ("null unit_id", "dossier.synced", {"unit_id": None}),
    ("unit_id not a string", "dossier.synced", {"unit_id": ["u1"]}),
    ("missing dossier_id", "dossier.synced", {"dossier_id": DROP}),
    ("missing due_at", "dossier.received", {"due_at": DROP}),
    ("missing flag", "dossier.received", {"pds_linked": DROP}),
    ("missing e_result", "dossier.completed", {"e_result": DROP}),
    ("missing rating", "dossier.rated", {"rating": DROP}),
    ("missing petition_id", "petition.resolved", {"petition_id": DROP}),
    ("missing complete", "procedure.published", {"complete": DROP}),
    ("empty event_id", "dossier.synced", {"event_id": ""}),
    ("event_id too long", "dossier.synced", {"event_id": "e" * 129}),
    ("event_id a number", "dossier.synced", {"event_id": 12}),
    ("dossier_id a number", "dossier.synced", {"dossier_id": 12}),
    ("empty dossier_id", "dossier.digitized", {"dossier_id": ""}),
    ("bad channel", "dossier.received", {"channel": "fax"}),
    ("channel wrong case", "dossier.received", {"channel": "Online", "full_online": False}),
    ("bad rating", "dossier.rated", {"rating": "happy"}),
    ("bad petition rating", "petition.rated", {"rating": 5}),
    ("bool given as 1", "dossier.received", {"online_eligible": 1}),
    ("bool given as 0", "dossier.paid", {"online": 0}),
    ("bool given as string", "dossier.completed", {"e_result": "true"}),
    ("bool given as null", "procedure.published", {"complete": None}),
    ("negative amount", "dossier.paid", {"amount_vnd": -1}),
    ("fractional amount", "dossier.paid", {"amount_vnd": 10.5}),
    ("amount as string", "dossier.paid", {"amount_vnd": "10"}),
    ("amount as bool", "dossier.paid", {"amount_vnd": True}),
    ("due_at before occurred_at", "dossier.received", {"due_at": EARLIER}),
    ("due_at equal to occurred_at", "dossier.received", {"due_at": OCC}),
    ("full_online in person", "dossier.received", {"channel": "in_person"}),
    ("full_online postal", "dossier.received", {"channel": "postal"}),
    ("bad new_due_at", "dossier.supplement_requested", {"new_due_at": "soon"}),
    ("officer_id a number", "dossier.completed", {"officer_id": 5}),
    ("officer_id null", "dossier.completed", {"officer_id": None}),
    ("new_due_at null", "dossier.supplement_requested", {"new_due_at": None}),
    ("tick unit_id a number", "clock.tick", {"unit_id": 5}),
    ("tick unit_id null", "clock.tick", {"unit_id": None}),
    ("tick unit_id empty", "clock.tick", {"unit_id": ""}),
    ("bad occurred_at", "dossier.synced", {"occurred_at": "2024-04-01T01:00:00"}),
]


@pytest.mark.parametrize(
    ("event_type", "overrides"),
    [(t, o) for _, t, o in SCHEMA_VIOLATIONS],
    ids=[name for name, _, _ in SCHEMA_VIOLATIONS],
)
def test_schema_violation(v: Validator, event_type: str, overrides: dict) -> None:
    assert rejected_code(v, raw(body_of(event_type, **overrides))) == "schema_violation"


def test_due_at_equal_is_rejected_but_one_microsecond_later_accepted(v: Validator) -> None:
    v.validate(raw(body_of("dossier.received", due_at="2024-04-01T08:00:00.000001+07:00")))
    # the same instant written in another offset is still "not after"
    assert rejected_code(v, raw(body_of("dossier.received", due_at="2024-04-01T01:00:00Z"))) == (
        "schema_violation"
    )


@pytest.mark.parametrize("due", [EARLIER, OCC])
def test_petition_may_arrive_already_due(v: Validator, due: str) -> None:
    # SPEC 1 sets "due_at after occurred_at" for dossier.received only
    body = body_of("petition.received", due_at=due)
    event = v.validate(raw(body))
    assert event.times["due_at"] <= event.ts
    fast, members = v.fast_path()
    assert fast["petition.received"](body, members) == event
    assert rejected_code(v, raw(body_of("dossier.received", due_at=due))) == "schema_violation"


def test_full_online_false_with_any_channel_ok(v: Validator) -> None:
    for channel in ("in_person", "online", "postal"):
        v.validate(raw(body_of("dossier.received", channel=channel, full_online=False)))


@pytest.mark.parametrize("event_type", ["dossier.teleported", "dossier", "", "CLOCK.TICK",
                                        "dossier.received ", "x" * 1000])
def test_unknown_type(v: Validator, event_type: str) -> None:
    assert rejected_code(v, raw(body_of("dossier.synced", type=event_type))) == "unknown_type"


@pytest.mark.parametrize("unit", ["nowhere", "U1", "u1 ", "u" * 128])
def test_unknown_unit(v: Validator, unit: str) -> None:
    assert rejected_code(v, raw(body_of("dossier.synced", unit_id=unit))) == "unknown_unit"
    assert rejected_code(v, raw(body_of("procedure.published", unit_id=unit))) == "unknown_unit"


def test_future_timestamp_with_injected_clock() -> None:
    now = 1_711_933_200 * 1_000_000  # 2024-04-01T01:00:00Z
    live = Validator(UNITS, now_us=lambda: now)
    five_min = "2024-04-01T01:05:00Z"
    just_over = "2024-04-01T01:05:00.000001Z"
    assert live.validate(raw(body_of("dossier.synced", occurred_at=five_min))).ts == (
        now + 300_000_000
    )
    assert rejected_code(live, raw(body_of("dossier.synced", occurred_at=just_over))) == (
        "future_timestamp"
    )
    # the past is never refused
    live.validate(raw(body_of("dossier.synced", occurred_at="2001-01-01T00:00:00Z")))
    # ticks too are held to the wall clock
    assert rejected_code(live, raw(body_of("clock.tick", occurred_at="2024-04-02T00:00:00Z"))) == (
        "future_timestamp"
    )
    # a custom skew
    tight = Validator(UNITS, now_us=lambda: now, max_skew_us=1_000_000)
    assert rejected_code(tight, raw(body_of("dossier.synced", occurred_at=five_min))) == (
        "future_timestamp"
    )
    # offline there is no wall clock: a far-future event is simply accepted
    offline = Validator(UNITS)
    offline.validate(raw(body_of("dossier.synced", occurred_at="2099-01-01T00:00:00Z")))


def test_future_timestamp_reads_the_clock_each_time() -> None:
    clock = [1_711_933_200 * 1_000_000]
    live = Validator(UNITS, now_us=lambda: clock[0])
    data = raw(body_of("dossier.synced", occurred_at="2024-04-01T02:00:00Z"))
    assert rejected_code(live, data) == "future_timestamp"
    clock[0] += 3_600 * 1_000_000
    live.validate(data)


def test_too_large() -> None:
    data = raw(body_of("dossier.synced", padding="x" * 500))
    exact = Validator(UNITS, max_bytes=len(data))
    exact.validate(data)
    small = Validator(UNITS, max_bytes=len(data) - 1)
    assert rejected_code(small, data) == "too_large"
    # size is checked before anything else: even garbage is "too large" first
    assert rejected_code(small, b"{" * len(data)) == "too_large"
    # the default limit (64 KiB) refuses a 1 MiB message
    assert rejected_code(Validator(UNITS), raw(body_of("clock.tick", pad="y" * (1 << 20)))) == (
        "too_large"
    )


def test_check_order_unknown_type_before_field_errors(v: Validator) -> None:
    # the type decides which fields exist, so an unknown type is reported as such
    body = body_of("dossier.synced", type="nope", event_id=DROP, unit_id="nowhere")
    assert rejected_code(v, raw(body)) == "unknown_type"
    # a schema violation wins over an unknown unit
    body = body_of("dossier.paid", unit_id="nowhere", amount_vnd=-5)
    assert rejected_code(v, raw(body)) == "schema_violation"


def test_str_input_and_bytes_input_agree(v: Validator) -> None:
    body = body_of("dossier.rated", dossier_id="hồ sơ 1")
    a = v.validate(json.dumps(body, ensure_ascii=False))
    b = v.validate(json.dumps(body, ensure_ascii=False).encode())
    assert a == b


# ---------------------------------------------------------------- digest


def test_digest_ignores_key_order_and_whitespace_but_not_values(v: Validator) -> None:
    body = body_of("dossier.paid")
    reordered = dict(reversed(list(body.items())))
    a = v.validate(json.dumps(body).encode())
    b = v.validate(json.dumps(reordered, indent=3).encode())
    assert a.digest == b.digest == event_digest(body)
    c = v.validate(raw(body_of("dossier.paid", amount_vnd=50_001)))
    assert c.digest != a.digest
    d = v.validate(raw(body_of("dossier.paid", extra=1)))
    assert d.digest != a.digest


# ---------------------------------------------------------------- the schema file


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def test_schema_file_structure() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"event_id", "type", "occurred_at"}
    assert set(schema["properties"]["type"]["enum"]) == set(EVENT_TYPES)
    defs = schema["$defs"]
    for event_type in EVENT_TYPES:
        assert event_type in defs, event_type
        assert defs[event_type]["type"] == "object"
    branches = {}
    for clause in schema["allOf"]:
        branches[clause["if"]["properties"]["type"]["const"]] = clause["then"]["$ref"]
    assert branches == {t: f"#/$defs/{t}" for t in EVENT_TYPES}
    # every $ref resolves inside the document
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    for ref in re.findall(r'"\$ref":\s*"([^"]+)"', text):
        assert ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in defs, ref
    # every non-tick type requires a unit; dossier types a dossier, petition types a petition
    for event_type in EVENT_TYPES - {"clock.tick"}:
        required = set(defs[event_type]["required"])
        assert "unit_id" in required, event_type
        if event_type.startswith("dossier."):
            assert "dossier_id" in required
        if event_type.startswith("petition."):
            assert "petition_id" in required
    assert defs["clock.tick"]["required"] == []


def test_schema_fields_match_spec_table() -> None:
    defs = load_schema()["$defs"]
    spec = {
        "dossier.received": {"dossier_id", "procedure_id", "channel", "due_at",
                             "online_eligible", "full_online", "fee_required", "reused_data",
                             "pds_linked", "population_db"},
        "dossier.digitized": {"dossier_id"},
        "dossier.synced": {"dossier_id"},
        "dossier.paid": {"dossier_id", "online", "amount_vnd"},
        "dossier.supplement_requested": {"dossier_id"},
        "dossier.completed": {"dossier_id", "e_result"},
        "dossier.withdrawn": {"dossier_id"},
        "dossier.rated": {"dossier_id", "rating"},
        "petition.received": {"petition_id", "due_at"},
        "petition.resolved": {"petition_id"},
        "petition.rated": {"petition_id", "rating"},
        "procedure.published": {"procedure_id", "announced_on_time", "publicized_on_time",
                                "complete"},
        "clock.tick": set(),
    }
    for event_type, fields in spec.items():
        assert set(defs[event_type]["required"]) - {"unit_id"} == fields, event_type
    assert "new_due_at" in defs["dossier.supplement_requested"]["properties"]
    for event_type in EVENT_TYPES:
        if event_type.startswith("dossier."):
            assert "officer_id" in defs[event_type]["properties"], event_type
            assert "officer_id" not in defs[event_type]["required"]


def agreement_samples() -> list[tuple[str, dict | list | str, bool]]:
    """(name, body, valid?) where the verdict is expressible in JSON Schema alone (no catalog,
    no cross-field rules, no Python-vs-ECMA regex subtleties)."""
    samples: list[tuple[str, dict | list | str, bool]] = []
    for t in sorted(EVENT_TYPES):
        samples.append((f"valid {t}", body_of(t), True))
        samples.append((f"valid {t} with extra", body_of(t, extra_field={"k": [1]}), True))
        samples.append((f"{t} missing event_id", body_of(t, event_id=DROP), False))
        samples.append((f"{t} missing occurred_at", body_of(t, occurred_at=DROP), False))
        samples.append((f"{t} bad occurred_at", body_of(t, occurred_at="yesterday"), False))
        samples.append((f"{t} schema_version 1", body_of(t, schema_version=1), True))
        samples.append((f"{t} schema_version 2", body_of(t, schema_version=2), False))
        if t != "clock.tick":
            samples.append((f"{t} missing unit", body_of(t, unit_id=DROP), False))
            required = load_schema()["$defs"][t]["required"]
            for name in required:
                if name != "unit_id":
                    samples.append((f"{t} missing {name}", body_of(t, **{name: DROP}), False))
    samples += [
        ("unknown type", body_of("dossier.synced", type="dossier.teleported"), False),
        ("no type", body_of("dossier.synced", type=DROP), False),
        ("array", [1, 2], False),
        ("string", "event", False),
        ("bad channel", body_of("dossier.received", channel="fax"), False),
        ("bool as 1", body_of("dossier.received", fee_required=1), False),
        ("negative amount", body_of("dossier.paid", amount_vnd=-1), False),
        ("zero amount", body_of("dossier.paid", amount_vnd=0), True),
        ("amount string", body_of("dossier.paid", amount_vnd="1"), False),
        ("bad rating", body_of("petition.rated", rating="meh"), False),
        ("event_id 128", body_of("dossier.synced", event_id="e" * 128), True),
        ("event_id 129", body_of("dossier.synced", event_id="e" * 129), False),
        ("empty event_id", body_of("dossier.synced", event_id=""), False),
        ("9-digit fraction",
         body_of("dossier.synced", occurred_at="2024-04-01T01:00:00.123456789Z"), True),
        ("10-digit fraction",
         body_of("dossier.synced", occurred_at="2024-04-01T01:00:00.1234567891Z"), False),
        ("no offset", body_of("dossier.synced", occurred_at="2024-04-01T01:00:00"), False),
        ("supplement without new_due_at", body_of("dossier.supplement_requested",
                                                  new_due_at=DROP), True),
        ("supplement bad new_due_at", body_of("dossier.supplement_requested",
                                              new_due_at="2024-04-01"), False),
        ("officer_id number", body_of("dossier.withdrawn", officer_id=3), False),
        ("officer_id string", body_of("dossier.withdrawn", officer_id="o-3"), True),
        # optional means "may be absent", not "may be null": the SPEC types both fields
        ("officer_id null", body_of("dossier.received", officer_id=None), False),
        ("new_due_at null", body_of("dossier.supplement_requested", new_due_at=None), False),
        ("petition officer_id null (an extra field there)",
         body_of("petition.resolved", officer_id=None), True),
        # a tick names no unit, but a unit_id it carries is still a string (SPEC: unit_id)
        ("tick unit_id number", body_of("clock.tick", unit_id=5), False),
        ("tick unit_id list", body_of("clock.tick", unit_id=["u1"]), False),
        ("tick unit_id null", body_of("clock.tick", unit_id=None), False),
        ("tick unit_id 129", body_of("clock.tick", unit_id="u" * 129), False),
        ("tick unit_id string", body_of("clock.tick", unit_id="u1"), True),
        # JSON Schema's integer is a number without a fraction: 5.0 is one
        ("amount 5.0", body_of("dossier.paid", amount_vnd=5.0), True),
        ("amount 0.0", body_of("dossier.paid", amount_vnd=0.0), True),
        ("amount 1e20", body_of("dossier.paid", amount_vnd=1e20), True),
        ("amount 10.5", body_of("dossier.paid", amount_vnd=10.5), False),
        ("amount -1.0", body_of("dossier.paid", amount_vnd=-1.0), False),
        ("amount true", body_of("dossier.paid", amount_vnd=True), False),
        ("schema_version 1.0", body_of("dossier.synced", schema_version=1.0), True),
        ("schema_version 1.5", body_of("dossier.synced", schema_version=1.5), False),
        ("schema_version true", body_of("dossier.synced", schema_version=True), False),
        ("schema_version null", body_of("dossier.synced", schema_version=None), False),
    ]
    return samples


def test_validator_and_json_schema_agree() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    reference = jsonschema.Draft202012Validator(schema)
    ours = Validator(UNITS)
    disagreements = []
    for name, body, expected in agreement_samples():
        schema_ok = reference.is_valid(body)
        try:
            ours.validate(raw(body))
            ours_ok = True
        except EventRejected:
            ours_ok = False
        if not (schema_ok == ours_ok == expected):
            disagreements.append((name, expected, schema_ok, ours_ok))
    assert not disagreements, disagreements


def test_cross_field_rules_are_the_validators_job() -> None:
    """What JSON Schema cannot say (its description lists it) the validator still refuses."""
    description = load_schema()["description"]
    assert "due_at is after occurred_at" in description
    assert "full_online is true only with channel online" in description
    v = Validator(UNITS)
    for body in (body_of("dossier.received", due_at=EARLIER),
                 body_of("dossier.received", channel="postal")):
        assert rejected_code(v, raw(body)) == "schema_violation"
    # on another type full_online is an unknown extra field, ignored (SPEC 1): accepted, by
    # the reference and the offline fast checks alike
    fast, members = v.fast_path()
    for event_type in ("dossier.digitized", "dossier.synced", "clock.tick"):
        body = {**body_of(event_type), "full_online": True}
        assert v.validate(raw(body)).type == event_type
        assert fast[event_type](body, members) in (None, v.validate(raw(body)))


def test_validate_does_not_mutate_or_alias_caller_body() -> None:
    v = Validator(UNITS)
    body = body_of("dossier.received")
    before = copy.deepcopy(body)
    v.check(body)
    assert body == before
    assert orjson.loads(orjson.dumps(body)) == before
