"""A valid body of every event type (SPEC section 1), for tests that mutate one field at a time
and compare two implementations (the validator against the schema, a fast path against its
reference). ``tests/`` is on ``sys.path`` through ``tests/conftest.py``."""

from __future__ import annotations

from typing import Any

OCC, DUE = "2024-04-01T08:00:00+07:00", "2024-04-10T17:00:00+07:00"

VALID: dict[str, dict[str, Any]] = {
    "dossier.received": {"dossier_id": "d1", "procedure_id": "p1", "channel": "online",
                         "due_at": DUE, "online_eligible": True, "full_online": False,
                         "fee_required": False, "reused_data": False, "pds_linked": True,
                         "population_db": False},
    "dossier.digitized": {"dossier_id": "d1"},
    "dossier.synced": {"dossier_id": "d1"},
    "dossier.paid": {"dossier_id": "d1", "online": True, "amount_vnd": 50_000},
    "dossier.supplement_requested": {"dossier_id": "d1", "new_due_at": DUE},
    "dossier.completed": {"dossier_id": "d1", "e_result": True},
    "dossier.withdrawn": {"dossier_id": "d1"},
    "dossier.rated": {"dossier_id": "d1", "rating": "neutral"},
    "petition.received": {"petition_id": "p1", "due_at": DUE},
    "petition.resolved": {"petition_id": "p1"},
    "petition.rated": {"petition_id": "p1", "rating": "dissatisfied"},
    "procedure.published": {"procedure_id": "pr1", "announced_on_time": True,
                            "publicized_on_time": False, "complete": True},
    "clock.tick": {},
}
