"""Signals at their edges: a gap of exactly ``min_gap``, a ratio just under the threshold,
peers with nothing completed, and how far back a digest must read (found in review)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from leaders.history import load_file
from leaders.signals import SignalConfig, evaluate
from scoring.catalog import load_catalog

TZ = timezone(timedelta(hours=7))
T0 = datetime(2024, 4, 1, 8, tzinfo=TZ)
UNITS = [{"unit_id": u, "name": u, "peer_group": "district"} for u in ("A", "B", "C")]


class _Events:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def add(self, kind: str, at: datetime, unit: str, **fields: Any) -> None:
        self.lines.append({"event_id": f"e{len(self.lines)}", "type": kind,
                           "occurred_at": at.isoformat(), "unit_id": unit, **fields})

    def received(self, unit: str, did: str, at: datetime) -> None:
        self.add("dossier.received", at, unit, dossier_id=did, procedure_id="p1",
                 channel="online", due_at=(at + timedelta(days=10)).isoformat(),
                 online_eligible=True, full_online=True, fee_required=False, reused_data=True,
                 pds_linked=True, population_db=True)

    def signals(self, tmp_path: Path, t: datetime, config: SignalConfig | None = None
                ) -> dict[str, Any]:
        (tmp_path / "units.json").write_text(json.dumps(UNITS))
        path = tmp_path / "events.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in self.lines))
        catalog = load_catalog(str(tmp_path / "units.json"))
        data = load_file(str(path), catalog, max_bytes=65536)
        found = evaluate(data.history.states, catalog, int(t.timestamp() * 1e6),
                         config or SignalConfig(), units=["A"])
        return {s.kind: s for s in found}


def test_a_supplement_gap_of_exactly_min_gap_counts(tmp_path: Path) -> None:
    """3 of 20 against the peers' 1 of 20: a gap of 0.10 exactly (0.0999... in floats)."""
    ev = _Events()
    for unit, with_request in (("A", 3), ("B", 1), ("C", 1)):
        for i in range(20):
            at, did = T0 + timedelta(minutes=i), f"{unit}-{i}"
            ev.received(unit, did, at)
            if i < with_request:
                ev.add("dossier.supplement_requested", at + timedelta(hours=1), unit,
                       dossier_id=did)
            ev.add("dossier.completed", at + timedelta(hours=5), unit, dossier_id=did,
                   e_result=True)
    sig = ev.signals(tmp_path, T0 + timedelta(days=2))["supplement_rate"]
    assert round(sig.value, 4) == 3.0 and sig.eligible and sig.is_active()
    assert sig.to_dict("Asia/Ho_Chi_Minh", 10)["value"] == 3.0


def _slow(tmp_path: Path, duration: timedelta) -> Any:
    ev = _Events()
    for unit, hours in (("A", duration), ("B", timedelta(hours=24)), ("C", timedelta(hours=24))):
        for i in range(5):
            at, did = T0 + timedelta(minutes=i), f"{unit}-{i}"
            ev.received(unit, did, at)
            ev.add("dossier.completed", at + hours, unit, dossier_id=did, e_result=True)
    return ev.signals(tmp_path, T0 + timedelta(days=5))["slow_procedure"]


def test_a_procedure_just_under_twice_the_peers_median_is_not_slow(tmp_path: Path) -> None:
    under = _slow(tmp_path, timedelta(hours=48) - timedelta(seconds=1))
    assert not under.is_active() and under.to_dict("Asia/Ho_Chi_Minh", 10)["value"] == 2.0
    over = _slow(tmp_path, timedelta(hours=48) + timedelta(seconds=1))
    assert over.is_active() and len(over.dossiers) == 5  # raised, with its slow dossiers


def test_peers_with_nothing_completed_and_min_dossiers_zero(tmp_path: Path) -> None:
    config = SignalConfig.from_dict({"signals": {"slow_procedure": {"min_dossiers": 0}}})
    ev = _Events()
    for unit in "ABC":
        ev.received(unit, f"{unit}-1", T0)
    ev.add("dossier.completed", T0 + timedelta(hours=3), "A", dossier_id="A-1", e_result=True)
    found = ev.signals(tmp_path, T0 + timedelta(days=1), config)  # raised StatisticsError
    assert "slow_procedure" not in found


def test_history_days_is_the_longest_reach_of_any_signal() -> None:
    assert SignalConfig().history_days() == 365  # overdue_open's horizon
    longer = SignalConfig.from_dict(
        {"by_peer_group": {"ward": {"overdue_open": {"horizon_days": 400}}}})
    assert longer.history_days() == 400
    assert SignalConfig.from_dict({"lookback_days": 500}).history_days() == 500
