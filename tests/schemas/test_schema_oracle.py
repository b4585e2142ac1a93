"""The compiled validator against a general JSON Schema engine (``jsonschema``) as the oracle.

``procedure-event.schema.json`` is the contract: on any body the validator must accept exactly
what the schema accepts, except for the rules the schema cannot say and lists in its
description (``due_at`` after ``occurred_at``, ``full_online`` only with channel ``online``,
``unit_id`` in the catalog). The generated bodies keep those out of the way (every ``due_at``
is after every ``occurred_at``, every unit string is in the catalog) or the test applies the
rule itself (``full_online``). Timestamps are either valid or break the schema's pattern, so
the schema's ``format`` (an annotation only, in draft 2020-12) never has to decide.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema  # a dev dependency (pyproject): this test must never be skipped
import orjson
import pytest
from event_samples import DUE, OCC, VALID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import EventRejected, Validator
from schemas.validate import SCHEMA_PATH
from scoring.events import EVENT_TYPES


class _EveryUnit:
    """A catalog that holds every unit id: membership is the catalog's rule, not the schema's."""

    def __contains__(self, unit_id: object) -> bool:
        return True


FIELDS = sorted({"event_id", "type", "occurred_at", "unit_id", "schema_version", "officer_id",
                 "new_due_at", "extra", *(k for v in VALID.values() for k in v)})
DROP = object()
VALUES: list[Any] = [
    DROP, None, True, False, 0, 1, -1, 2, 5, 0.0, -0.0, 1.0, 5.0, 10.5, -1.0, 1e20, "", "x",
    "1", "u1", "x" * 128, "x" * 129, "online", "postal", "fax", "neutral", "happy",
    "dossier.received", "clock.tick", "dossier.teleported", [], ["u1"], {"a": 1},
]
# occurred_at values are all before due values: the "due_at after occurred_at" rule never fires
OCCURRED = [OCC, "2024-04-01T01:00:00Z", "2024-04-01T01:00:00.123456789z", "2024-04-01",
            "2024-04-01T01:00:00", "yesterday"]
DUES = [DUE, "2024-04-10T10:00:00.5Z", "2024-04-10 10:00:00+00:00", "soon",
        "2024-04-10T10:00:00+0000"]
TIMESTAMP_FIELDS = {"occurred_at": OCCURRED, "due_at": DUES, "new_due_at": DUES}

SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
ORACLE = jsonschema.Draft202012Validator(SCHEMA)


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from(sorted(EVENT_TYPES)))
    body: dict[str, Any] = {"event_id": "e1", "type": event_type, "occurred_at": OCC,
                            **({} if event_type == "clock.tick" else {"unit_id": "u1"}),
                            **VALID[event_type]}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(FIELDS))
        pool = VALUES + TIMESTAMP_FIELDS.get(name, [])
        value = draw(st.sampled_from(pool))
        if value is DROP:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def schema_verdict(body: dict[str, Any]) -> bool:
    if not ORACLE.is_valid(body):
        return False
    # the one cross-field rule these bodies can break (listed in the schema's description)
    return not (body.get("type") == "dossier.received" and body.get("full_online") is True
                and body.get("channel") != "online")


def accepted(fn: Any, arg: Any) -> bool:
    try:
        fn(arg)
    except EventRejected:
        return False
    return True


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_validator_accepts_what_the_schema_accepts(body: dict[str, Any]) -> None:
    v = Validator(_EveryUnit())
    expected = schema_verdict(body)
    assert accepted(v.check, body) == expected, body
    assert accepted(v.validate, orjson.dumps(body)) == expected, body  # the fast path too


@pytest.mark.parametrize(
    ("event_type", "name", "value", "valid"),
    [
        # the three disagreements found before the oracle test existed (schema side won)
        ("dossier.supplement_requested", "new_due_at", None, False),
        ("dossier.completed", "officer_id", None, False),
        ("clock.tick", "unit_id", 5, False),
        ("clock.tick", "unit_id", "anything", True),
        ("dossier.paid", "amount_vnd", 5.0, True),
        ("dossier.synced", "schema_version", 1.0, True),
    ],
)
def test_former_disagreements(event_type: str, name: str, value: Any, valid: bool) -> None:
    body = {"event_id": "e1", "type": event_type, "occurred_at": OCC, "unit_id": "u1",
            **VALID[event_type], name: value}
    if event_type == "clock.tick" and name != "unit_id":
        del body["unit_id"]
    assert ORACLE.is_valid(body) == valid
    v = Validator(_EveryUnit())
    assert accepted(v.check, body) == valid
    assert accepted(v.validate, orjson.dumps(body)) == valid
