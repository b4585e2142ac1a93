"""Signals on scripted scenarios with known answers (pure: ``leaders.signals``)."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from leaders_support import (
    HARSH_DOSSIERS,
    SITTING_OPEN,
    START,
    UNITS,
    Script,
    accepted_events,
    scenario,
    write_catalog,
    write_jsonl,
)

from leaders.history import LeaderHistory
from leaders.signals import SignalConfig, SignalConfigError, active, evaluate, pushes
from scoring.catalog import Catalog
from scoring.timeutil import parse_ts

CATALOG = Catalog.from_list(UNITS)
T_END = parse_ts("2024-04-14T12:00:00+07:00")


def _raised(events, t=T_END, config=None):  # type: ignore[no-untyped-def]
    data = LeaderHistory().extend(accepted_events(events))
    return {(s.kind, s.unit_id, s.procedure_id): s
            for s in active(evaluate(data.history.states, CATALOG, t, config or SignalConfig()))}


def test_the_scripted_fortnight_raises_exactly_the_known_signals():
    raised = _raised(scenario().events)
    assert set(raised) == {
        ("repeated_supplements", "d-harsh", None),
        ("due_pushed_back", "d-harsh", None),
        ("supplement_rate", "d-harsh", "proc-birth"),
        ("slow_procedure", "d-slow", "proc-birth"),
        ("overdue_open", "d-sitting", None),
    }
    # an officer who asks for papers twice on many dossiers: the signal names those dossiers
    rep = raised[("repeated_supplements", "d-harsh", None)]
    assert sorted(rep.dossiers) == HARSH_DOSSIERS
    assert rep.value == 6 and rep.detail["by_procedure"] == {"proc-birth": 6}
    assert sorted(raised[("due_pushed_back", "d-harsh", None)].dossiers) == HARSH_DOSSIERS
    sup = raised[("supplement_rate", "d-harsh", "proc-birth")]
    assert sup.detail["share"] == 0.6 and sup.detail["peer_median_share"] == 0.0
    assert sorted(sup.dossiers) == HARSH_DOSSIERS
    slow = raised[("slow_procedure", "d-slow", "proc-birth")]
    # d-slow: 72..81 h (median 76.5); peers' medians 24.5 (harsh), 27 (sitting), 24.5 (fine)
    assert slow.detail["median_hours"] == 76.5 and slow.detail["peer_median_hours"] == 24.5
    assert slow.value == pytest.approx(76.5 / 24.5, abs=1e-4)
    assert slow.dossiers[0] == "d-slow-09"  # the slowest first
    assert sorted(raised[("overdue_open", "d-sitting", None)].dossiers) == SITTING_OPEN


def test_signals_follow_event_time_not_arrival_order():
    events = scenario().events
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    a, b = _raised(events), _raised(shuffled + shuffled[:20])  # and repeats are no-ops
    assert {k: s.dossiers for k, s in a.items()} == {k: s.dossiers for k, s in b.items()}
    # before the second supplement requests, nobody had asked twice; before the due times,
    # nothing is overdue
    early = _raised(events, parse_ts("2024-04-01T08:30:00+07:00"))
    assert not any(k[0] in ("repeated_supplements", "overdue_open") for k in early)


def test_one_request_per_dossier_is_not_harassment():
    s = Script()
    for i in range(8):
        s.dossier("d-harsh", f"x-{i}", START + timedelta(hours=i), "officer-harsh",
                  supplements=1)
    raised = _raised(s.events)
    assert ("repeated_supplements", "d-harsh", None) not in raised
    assert ("due_pushed_back", "d-harsh", None) not in raised


def test_a_due_time_moved_earlier_is_not_pushed_back():
    s = Script()
    s.dossier("d-fine", "x-1", START, "officer-fine", supplements=0)
    for k, days in enumerate((12, 9, 14)):  # later, earlier, later: two pushes
        s.add("dossier.supplement_requested", START + timedelta(hours=k + 1), "d-fine",
              dossier_id="x-1", new_due_at=(START + timedelta(days=days)).isoformat())
    data = LeaderHistory().extend(accepted_events(s.events))
    d = data.history.states["d-fine"].dossiers["x-1"]
    assert pushes(d, T_END) == 2
    assert pushes(d, parse_ts((START + timedelta(hours=2, minutes=30)).isoformat())) == 1


def test_thresholds_are_configurable_per_kind_and_peer_group():
    cfg = SignalConfig.from_dict({"signals": {"repeated_supplements": {"threshold": 7}}})
    assert ("repeated_supplements", "d-harsh", None) not in _raised(scenario().events,
                                                                     config=cfg)
    cfg = SignalConfig.from_dict({"by_peer_group": {"district": {
        "overdue_open": {"threshold": 6}, "slow_procedure": {"enabled": False}}}})
    raised = _raised(scenario().events, config=cfg)
    assert ("overdue_open", "d-sitting", None) not in raised
    assert ("slow_procedure", "d-slow", "proc-birth") not in raised
    assert ("repeated_supplements", "d-harsh", None) in raised
    # grace: the open dossiers are 268 hours overdue at most
    cfg = SignalConfig.from_dict({"signals": {"overdue_open": {"grace_hours": 300}}})
    assert ("overdue_open", "d-sitting", None) not in _raised(scenario().events, config=cfg)
    assert cfg.digest != SignalConfig().digest


@pytest.mark.parametrize("bad", [
    {"signals": {"repeated_supplements": {"treshold": 3}}},
    {"signals": {"nope": {}}},
    {"signals": {"overdue_open": {"threshold": -1}}},
    {"signals": {"overdue_open": {"threshold": 3, "clear_below": 4}}},
    {"lookback_days": 0},
    {"colour": "red"},
])
def test_a_mistyped_thresholds_file_is_refused(bad):
    with pytest.raises(SignalConfigError):
        SignalConfig.from_dict(bad)


def test_hysteresis_keeps_a_raised_signal_until_it_falls_below_clear_below():
    cfg = SignalConfig.from_dict({"signals": {"repeated_supplements": {
        "threshold": 6, "clear_below": 4}}})
    data = LeaderHistory().extend(accepted_events(scenario().events))
    (sig,) = [s for s in evaluate(data.history.states, CATALOG, T_END, cfg, units=["d-harsh"])
              if s.kind == "repeated_supplements"]
    assert sig.is_active(False) and sig.is_active(True)
    five = evaluate(data.history.states, CATALOG, parse_ts("2024-04-05T11:30:00+07:00"), cfg,
                    units=["d-harsh"])
    (sig5,) = [s for s in five if s.kind == "repeated_supplements"]
    assert sig5.value == 5
    assert not sig5.is_active(False) and sig5.is_active(True)


def test_the_offline_command_prints_the_signals(tmp_path, capsys):
    from leaders.signals_cli import main

    events = write_jsonl(tmp_path / "e.jsonl", scenario().events)
    catalog = write_catalog(tmp_path / "c.json")
    config = tmp_path / "t.json"
    config.write_text(json.dumps({"signals": {"slow_procedure": {"threshold": 5}}}))
    assert main(["--events", str(events), "--units", str(catalog), "--config", str(config),
                 "--format", "json", "--unit", "d-harsh", "--unit", "d-slow"]) == 0
    doc = json.loads(capsys.readouterr().out)
    kinds = {(s["kind"], s["unit_id"]) for s in doc["signals"]}
    assert kinds == {("repeated_supplements", "d-harsh"), ("due_pushed_back", "d-harsh"),
                     ("supplement_rate", "d-harsh")}
    assert doc["as_of"] == "2024-04-14T12:00:00+07:00"
    assert main(["--events", str(events), "--units", str(catalog), "--at", "2024-04-14"]) == 0
    text = capsys.readouterr().out
    assert "RAISED d-sitting overdue_open: 5" in text and "d-sitting-00" in text
    assert "officer" not in text  # signals name dossiers, never officers

