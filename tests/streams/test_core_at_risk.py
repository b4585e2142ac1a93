"""Early warning wired into the scorer: ``ScorerCore.at_risk`` (issue 4, item 2).

Scenario (event time, +07:00): a district with 12 online dossiers, 5 done on time, 5 due on
April 12 at 15:00 and 2 due on April 20. At 09:00 on the 12th it is excellent; if the five
dossiers due that afternoon go late it falls to good (89.56), so it is at risk.
"""

from __future__ import annotations

from typing import Any

import orjson

from scoring.catalog import Catalog, Unit
from scoring.model import load_model
from streams.scorer import Message, ScorerCore

UNIT = "district-07"


def at(day: int, hour: int = 0, minute: int = 0) -> str:
    return f"2024-04-{day:02d}T{hour:02d}:{minute:02d}:00+07:00"


class Store:
    def __init__(self) -> None:
        self.t: dict[str, dict[str, Any]] = {}

    def get(self, table: str, key: str) -> Any:
        return self.t.get(table, {}).get(key)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        self.t.setdefault(table, {})[key] = value

    def items(self, table: str) -> list[tuple[str, Any]]:
        return list(self.t.get(table, {}).items())


def scenario() -> list[dict[str, Any]]:
    evs: list[dict[str, Any]] = [{
        "event_id": "pub-1", "type": "procedure.published", "occurred_at": at(1, 8),
        "unit_id": UNIT, "procedure_id": "P1", "announced_on_time": True,
        "publicized_on_time": True, "complete": True}]
    for i in range(12):
        d = f"D-{i:02d}"
        base = {"unit_id": UNIT, "dossier_id": d}
        evs += [
            {**base, "event_id": f"{d}-r", "type": "dossier.received", "occurred_at": at(1, 9, i),
             "procedure_id": "P1", "channel": "online",
             "due_at": at(5) if i < 5 else (at(12, 15) if i < 10 else at(20)),
             "online_eligible": True, "full_online": True, "fee_required": True,
             "reused_data": True, "pds_linked": True, "population_db": True},
            {**base, "event_id": f"{d}-dg", "type": "dossier.digitized", "occurred_at": at(2)},
            {**base, "event_id": f"{d}-s", "type": "dossier.synced", "occurred_at": at(2)},
            {**base, "event_id": f"{d}-p", "type": "dossier.paid", "occurred_at": at(2, 1),
             "online": True, "amount_vnd": 50000},
        ]
        if i < 5:
            evs.append({**base, "event_id": f"{d}-c", "type": "dossier.completed",
                        "occurred_at": at(3), "e_result": True})
    return evs


def feed(core: ScorerCore, events: list[dict[str, Any]], start: int) -> int:
    msgs = [Message(0, start + i, UNIT.encode(), orjson.dumps(e)) for i, e in enumerate(events)]
    out = core.process(msgs)
    assert not out.rejected, out.rejected
    return start + len(msgs)


def tick(when: str, n: int) -> dict[str, Any]:
    return {"event_id": f"tick-{n}", "type": "clock.tick", "occurred_at": when}


def test_a_unit_at_risk_is_warned_once_with_its_dossiers_then_cleared() -> None:
    catalog = Catalog([Unit(UNIT, "Quận 7", "district")])
    core = ScorerCore(catalog, load_model(), Store())
    offset = feed(core, scenario() + [tick(at(12, 9), 1)], 0)
    core.flush()
    warnings = core.at_risk(24 * 3600)
    assert len(warnings) == 1
    w = warnings[0]
    assert (w["unit_id"], w["window"], w["at_risk"]) == (UNIT, "month:2024-04", True)
    assert (w["band"], w["projected_band"]) == ("excellent", "good")
    assert w["dossier_ids"] == [f"D-{i:02d}" for i in range(5, 10)]
    assert w["as_of"].startswith("2024-04-12T09:00")
    assert core.at_risk(24 * 3600) == []  # nothing new: no repeat

    # the five are completed on time at 10:00: the risk is gone, and that is said once
    done = [{"event_id": f"D-{i:02d}-c", "type": "dossier.completed", "occurred_at": at(12, 10),
             "unit_id": UNIT, "dossier_id": f"D-{i:02d}", "e_result": True} for i in range(5, 10)]
    feed(core, done, offset)
    core.flush()
    cleared = core.at_risk(24 * 3600)
    assert [(c["at_risk"], c["dossier_ids"]) for c in cleared] == [(False, [])]
    assert core.at_risk(24 * 3600) == []


def test_a_unit_never_at_risk_sends_nothing() -> None:
    catalog = Catalog([Unit(UNIT, "Quận 7", "district")])
    core = ScorerCore(catalog, load_model(), Store())
    feed(core, scenario() + [tick(at(3, 9), 1)], 0)  # nothing falls due within 1 hour
    core.flush()
    assert core.at_risk(3600) == []


def _late_arrivals(offset: int) -> tuple[list[dict[str, Any]], int]:
    """Two more open dossiers of the unit, due that afternoon, received after the last flush."""
    evs = [{"event_id": f"N-{i}-r", "type": "dossier.received", "occurred_at": at(12, 9, 30 + i),
            "unit_id": UNIT, "dossier_id": f"N-{i}", "procedure_id": "P1", "channel": "online",
            "due_at": at(12, 15), "online_eligible": True, "full_online": True,
            "fee_required": True, "reused_data": True, "pds_linked": True,
            "population_db": True} for i in range(2)]
    return evs, offset


def test_events_after_the_last_flush_neither_crash_nor_skew_the_early_warning() -> None:
    """The warning reads the running counts of the last flush and the live dossiers: events
    folded in between made them disagree, and the worker crashed (AtRiskInputError, seen in a
    fault test). ``flush_and_warn`` assesses right after a flush; ``at_risk`` alone leaves a
    unit with unflushed events for the next round."""
    catalog = Catalog([Unit(UNIT, "Quận 7", "district")])
    core = ScorerCore(catalog, load_model(), Store())
    offset = feed(core, scenario() + [tick(at(12, 9), 1)], 0)
    core.flush()
    late, _ = _late_arrivals(offset)
    offset = feed(core, late, offset)
    assert core.at_risk(24 * 3600) == []  # counts are stale for this unit: not assessed yet
    scores, warnings = core.flush_and_warn(24 * 3600)
    assert scores  # the two new dossiers changed the unit's counts
    assert [w["dossier_ids"] for w in warnings] == [
        [f"D-{i:02d}" for i in range(5, 10)] + ["N-0", "N-1"]]
