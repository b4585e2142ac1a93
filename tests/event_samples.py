"""A valid body of every event type (SPEC section 1), for tests that mutate one field at a time
and compare two implementations (the validator against the schema, a fast path against its
reference); and ``facts_of``, the folded facts of an engine in a comparable form.
``tests/`` is on ``sys.path`` through ``tests/conftest.py``."""

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


def facts_of(engine: Any) -> dict[str, Any]:
    """Every unit's dossiers, petitions and publications as plain data (``scoring.engine.Engine``
    states), so two loads of the same events compare with ``==``."""
    return {u: ({k: d.to_dict() for k, d in s.dossiers.items()},
                {k: p.to_dict() for k, p in s.petitions.items()},
                {k: (p.ts, p.announced_on_time, p.publicized_on_time, p.complete)
                 for k, p in s.publications.items()})
            for u, s in engine.states.items()}
