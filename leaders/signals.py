"""Harassment and inconvenience signals: pure computation over the scoring facts at a time T.

Why these signals: Decision 766 asks the map to help leaders "detect and prevent acts of
harassment and inconvenience to people". The typical forms leave traces in the dossier facts:
asking for papers again and again, moving the deadline, sitting on a dossier past its due
time, and a procedure that is much slower, or much more demanding, than the same procedure in
the peer units. Each signal counts such dossiers from *event time* (never arrival time), so a
replay at T says what the live service said at T, and lists the dossiers behind it.

Kinds (thresholds in ``SignalConfig``, see docs/LEADERS.md):

* ``repeated_supplements`` (unit): dossiers received in the look-back with at least
  ``min_requests`` supplement requests by T (the 766 rule counts two or more as late).
* ``due_pushed_back`` (unit): dossiers whose due time was moved later at least ``min_pushes``
  times (a supplement request whose ``new_due_at`` is later than the due time in force).
* ``overdue_open`` (unit): dossiers received within ``horizon_days``, neither completed nor
  withdrawn by T, whose due time (the core's ``dossier_due``) passed more than ``grace_hours``
  before T.
* ``slow_procedure`` (unit, procedure): the median processing time (received -> completed) of
  the procedure's dossiers completed by T, divided by the median of the same procedure's
  medians in the peer units (floored at one hour).
* ``supplement_rate`` (unit, procedure): the share of the procedure's dossiers with a
  supplement request, divided by the median share in the peer units (floored at 1 %), raised
  only when the share also exceeds the peers' median by ``min_gap``.

Unit-scope values are dossier counts; procedure-scope values are ratios to the peers. A signal
is raised when its value reaches ``threshold`` and, once raised, cleared only when the value
falls below ``clear_below`` (default: the threshold), so a count hovering at the threshold does
not raise it at every evaluation.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scoring.catalog import Catalog
from scoring.facts import Dossier, UnitState
from scoring.indicators import dossier_due
from scoring.timeutil import format_ts

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
UNIT_KINDS = ("repeated_supplements", "due_pushed_back", "overdue_open")
PROCEDURE_KINDS = ("slow_procedure", "supplement_rate")
KINDS = UNIT_KINDS + PROCEDURE_KINDS
_FLOOR = {"slow_procedure": 1.0, "supplement_rate": 0.01}  # baseline floors (hours, share)

DEFAULTS: dict[str, Any] = {
    "lookback_days": 30,
    "max_listed": 50,
    "signals": {
        "repeated_supplements": {"enabled": True, "threshold": 3, "min_requests": 2},
        "due_pushed_back": {"enabled": True, "threshold": 3, "min_pushes": 2},
        "overdue_open": {"enabled": True, "threshold": 5, "grace_hours": 0, "horizon_days": 365},
        "slow_procedure": {"enabled": True, "threshold": 2.0, "min_dossiers": 5,
                           "min_peer_units": 2},
        "supplement_rate": {"enabled": True, "threshold": 2.0, "min_gap": 0.1, "min_dossiers": 5,
                            "min_peer_units": 2},
    },
    "by_peer_group": {},
}
_KNOWN_KEYS = {kind: set(rules) | {"clear_below"} for kind, rules in DEFAULTS["signals"].items()}


class SignalConfigError(ValueError):
    """A thresholds file that cannot be used (unknown key, wrong type, bad value)."""


def _rules(kind: str, base: Mapping[str, Any], override: Mapping[str, Any],
           where: str) -> dict[str, Any]:
    if not isinstance(override, Mapping):
        raise SignalConfigError(f"{where}: must be an object")
    unknown = set(override) - _KNOWN_KEYS[kind]
    if unknown:
        raise SignalConfigError(f"{where}: unknown setting(s) {sorted(unknown)}; known: "
                                f"{sorted(_KNOWN_KEYS[kind])}")
    out = {**base, **override}
    for key, value in out.items():
        if key == "enabled":
            if not isinstance(value, bool):
                raise SignalConfigError(f"{where}.enabled must be true or false")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise SignalConfigError(f"{where}.{key} must be a number >= 0, got {value!r}")
    out.setdefault("clear_below", out["threshold"])
    if "clear_below" not in override and "threshold" in override:
        out["clear_below"] = out["threshold"]
    if out["clear_below"] > out["threshold"]:
        raise SignalConfigError(f"{where}: clear_below must not exceed threshold")
    return out


def _default_rules() -> dict[str, dict[str, Any]]:
    return {k: _rules(k, DEFAULTS["signals"][k], {}, f"signals.{k}") for k in KINDS}


_EPS = 1e-9  # float noise in ratios of counts; far below any meaningful difference


@dataclass(frozen=True)
class SignalConfig:
    """Thresholds: defaults, overridden by a JSON file, optionally per peer group."""

    lookback_days: float = DEFAULTS["lookback_days"]
    max_listed: int = DEFAULTS["max_listed"]
    rules: dict[str, dict[str, Any]] = field(default_factory=_default_rules)
    by_group: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def history_days(self) -> float:
        """How far back a dossier can still count in some signal: the look-back, or the
        longest ``overdue_open`` horizon (a year by default)."""
        return max([self.lookback_days] + [
            float(rules["overdue_open"]["horizon_days"])
            for rules in [self.rules, *self.by_group.values()]])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None = None) -> SignalConfig:
        data = dict(data or {})
        unknown = set(data) - set(DEFAULTS)
        if unknown:
            raise SignalConfigError(f"unknown top-level setting(s) {sorted(unknown)}")
        signals = data.get("signals", {})
        if not isinstance(signals, Mapping) or set(signals) - set(KINDS):
            raise SignalConfigError(f"'signals' must be an object with keys among {KINDS}")
        rules = {k: _rules(k, DEFAULTS["signals"][k], signals.get(k, {}), f"signals.{k}")
                 for k in KINDS}
        by_group: dict[str, dict[str, dict[str, Any]]] = {}
        groups = data.get("by_peer_group", {})
        if not isinstance(groups, Mapping):
            raise SignalConfigError("'by_peer_group' must be an object")
        for group, over in groups.items():
            if not isinstance(over, Mapping) or set(over) - set(KINDS):
                raise SignalConfigError(f"by_peer_group.{group}: keys must be among {KINDS}")
            by_group[group] = {k: _rules(k, rules[k], over.get(k, {}), f"by_peer_group.{group}.{k}")
                               for k in KINDS}
        lookback, listed = data.get("lookback_days", DEFAULTS["lookback_days"]), data.get(
            "max_listed", DEFAULTS["max_listed"])
        if isinstance(lookback, bool) or not isinstance(lookback, int | float) or lookback <= 0:
            raise SignalConfigError("lookback_days must be a number > 0")
        if isinstance(listed, bool) or not isinstance(listed, int) or listed < 1:
            raise SignalConfigError("max_listed must be an integer >= 1")
        return cls(float(lookback), listed, rules, by_group, data)

    @classmethod
    def load(cls, path: str | None) -> SignalConfig:
        if not path:
            return cls.from_dict()
        try:
            with open(path, encoding="utf-8") as fh:
                return cls.from_dict(json.load(fh))
        except (OSError, ValueError) as exc:
            if isinstance(exc, SignalConfigError):
                raise
            raise SignalConfigError(f"cannot read thresholds {path}: {exc}") from exc

    def for_group(self, group: str) -> dict[str, dict[str, Any]]:
        return self.by_group.get(group, self.rules)

    @property
    def digest(self) -> str:
        """Names the thresholds in every published signal (which rules raised it)."""
        text = json.dumps({"lookback_days": self.lookback_days, "rules": self.rules,
                           "by_group": self.by_group}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Signal:
    kind: str
    unit_id: str
    procedure_id: str | None
    value: float
    threshold: float
    clear_below: float
    eligible: bool  # extra conditions (min_gap, enough peers) hold
    dossiers: tuple[str, ...]  # every dossier behind the signal, most telling first
    detail: dict[str, Any]
    as_of: int

    @property
    def key(self) -> str:
        """Stable identity of a signal across evaluations: kind, unit and procedure."""
        return signal_key(self.kind, self.unit_id, self.procedure_id)

    def is_active(self, was_active: bool = False) -> bool:
        if not self.eligible:
            return False
        # values are ratios of counts and durations, in floats: one that is the threshold
        # exactly (3/20 over 1/20 is 2.9999999999999996) reaches it; 1.99999 does not reach 2
        return self.value >= (self.clear_below if was_active else self.threshold) - _EPS

    def to_dict(self, tz: str, max_listed: int) -> dict[str, Any]:
        return {"signal": self.key, "kind": self.kind, "unit_id": self.unit_id,
                "procedure_id": self.procedure_id, "value": round(self.value, 4),
                "threshold": self.threshold, "clear_below": self.clear_below,
                "as_of": format_ts(self.as_of, tz), "dossier_count": len(self.dossiers),
                "dossiers": list(self.dossiers[:max_listed]), "detail": self.detail}


def signal_key(kind: str, unit_id: str, procedure_id: str | None) -> str:
    return "\x1f".join((kind, unit_id, procedure_id or ""))


# --- one unit -----------------------------------------------------------------------------


@dataclass
class ProcedureStats:
    dossiers: int = 0
    with_supplement: list[str] = field(default_factory=list)
    hours: list[tuple[float, str]] = field(default_factory=list)  # (processing hours, dossier)

    @property
    def median_hours(self) -> float | None:
        return statistics.median(h for h, _ in self.hours) if self.hours else None

    @property
    def supplement_share(self) -> float | None:
        return len(self.with_supplement) / self.dossiers if self.dossiers else None


@dataclass
class UnitFindings:
    """What one unit's facts say at T (before any peer comparison)."""

    unit_id: str
    as_of: int
    lists: dict[str, list[tuple[str, str, float]]]  # kind -> (dossier, procedure, measure)
    procedures: dict[str, ProcedureStats]


def _supplements(d: Dossier, t: int) -> list[tuple[int, str, int | None]]:
    return sorted((ts, eid, new_due) for eid, (ts, new_due) in (d.supplements or {}).items()
                  if ts <= t)


def pushes(d: Dossier, t: int) -> int:
    """How many supplement requests moved the due time later than the one in force."""
    due, n = d.due, 0
    for _, _, new_due in _supplements(d, t):
        if new_due is not None:
            if new_due > due:
                n += 1
            due = new_due
    return n


def unit_findings(unit_id: str, state: UnitState | None, t: int,
                  rules: Mapping[str, Mapping[str, Any]], lookback_days: float) -> UnitFindings:
    lists: dict[str, list[tuple[str, str, float]]] = {k: [] for k in UNIT_KINDS}
    procs: dict[str, ProcedureStats] = {}
    since = t - int(lookback_days * DAY_US)
    horizon = t - int(rules["overdue_open"]["horizon_days"] * DAY_US)
    grace = int(rules["overdue_open"]["grace_hours"] * HOUR_US)
    min_requests = rules["repeated_supplements"]["min_requests"]
    min_pushes = rules["due_pushed_back"]["min_pushes"]
    for did, d in (state.dossiers.items() if state is not None else ()):
        r = d.received
        if r is None or r[0] > t or r[0] < min(since, horizon):
            continue
        if d.withdrawn is not None and d.withdrawn <= t:
            continue
        due, n_sup = dossier_due(d, t)
        done = d.completed is not None and d.completed[0] <= t
        if not done and r[0] >= horizon and t > due + grace:
            lists["overdue_open"].append((did, d.procedure_id, (t - due) / HOUR_US))
        if r[0] < since:
            continue
        if n_sup >= min_requests:
            lists["repeated_supplements"].append((did, d.procedure_id, float(n_sup)))
        n_push = pushes(d, t) if n_sup >= 1 else 0
        if n_push >= min_pushes:
            lists["due_pushed_back"].append((did, d.procedure_id, float(n_push)))
        ps = procs.get(d.procedure_id)
        if ps is None:
            ps = procs[d.procedure_id] = ProcedureStats()
        ps.dossiers += 1
        if n_sup:
            ps.with_supplement.append(did)
        if done:
            ps.hours.append(((d.completed[0] - r[0]) / HOUR_US, did))  # type: ignore[index]
    return UnitFindings(unit_id, t, lists, procs)


def _unit_signals(f: UnitFindings, rules: Mapping[str, Mapping[str, Any]]) -> list[Signal]:
    out = []
    for kind in UNIT_KINDS:
        rule, rows = rules[kind], f.lists[kind]
        if not rule["enabled"] or not rows:
            continue
        rows = sorted(rows, key=lambda r: (-r[2], r[0]))  # most supplements/pushes/hours first
        by_proc: dict[str, int] = {}
        for _, proc, _ in rows:
            by_proc[proc] = by_proc.get(proc, 0) + 1
        detail: dict[str, Any] = {"by_procedure": dict(sorted(by_proc.items(),
                                                               key=lambda kv: (-kv[1], kv[0])))}
        if kind == "overdue_open":
            detail["max_hours_overdue"] = round(rows[0][2], 1)
        out.append(Signal(kind, f.unit_id, None, float(len(rows)), float(rule["threshold"]),
                          float(rule["clear_below"]), True, tuple(r[0] for r in rows), detail,
                          f.as_of))
    return out


# --- procedures against the same procedure in the peer units ---------------------------------


def _procedure_signals(f: UnitFindings, peers: list[UnitFindings],
                       rules: Mapping[str, Mapping[str, Any]]) -> list[Signal]:
    out = []
    for proc, ps in sorted(f.procedures.items()):
        slow, sup = rules["slow_procedure"], rules["supplement_rate"]
        if slow["enabled"] and len(ps.hours) >= slow["min_dossiers"]:
            base = [p.procedures[proc].median_hours for p in peers if proc in p.procedures
                    and len(p.procedures[proc].hours) >= slow["min_dossiers"]]
            mine = ps.median_hours
            medians = [v for v in base if v is not None]  # min_dossiers 0: peers with none
            if medians and mine is not None:
                baseline = statistics.median(medians)
                floored = max(baseline, _FLOOR["slow_procedure"])
                # compared unrounded (to_dict rounds): 1.99999 is not 2, and the list of
                # dossiers slower than threshold x median is then never empty when raised
                value = mine / floored
                slower = sorted((h, d) for h, d in ps.hours if h > floored * slow["threshold"])
                out.append(Signal(
                    "slow_procedure", f.unit_id, proc, value, float(slow["threshold"]),
                    float(slow["clear_below"]), len(base) >= slow["min_peer_units"],
                    tuple(d for _, d in reversed(slower)),
                    {"median_hours": round(mine, 1), "peer_median_hours": round(baseline, 1),
                     "peer_units": len(base), "completed": len(ps.hours)}, f.as_of))
        if sup["enabled"] and ps.dossiers >= sup["min_dossiers"] and ps.with_supplement:
            base_s = [p.procedures[proc].supplement_share for p in peers if proc in p.procedures
                      and p.procedures[proc].dossiers >= sup["min_dossiers"]]
            share = ps.supplement_share or 0.0
            shares = [v for v in base_s if v is not None]
            if shares:
                baseline = statistics.median(shares)
                value = share / max(baseline, _FLOOR["supplement_rate"])
                # shares are ratios of counts: a gap of exactly min_gap must count, and in
                # floats 3/20 - 1/20 is 0.09999999999999999
                gap_ok = share - baseline >= sup["min_gap"] - _EPS
                out.append(Signal(
                    "supplement_rate", f.unit_id, proc, value, float(sup["threshold"]),
                    float(sup["clear_below"]),
                    len(base_s) >= sup["min_peer_units"] and gap_ok,
                    tuple(sorted(ps.with_supplement)),
                    {"share": round(share, 4), "peer_median_share": round(baseline, 4),
                     "peer_units": len(base_s), "dossiers": ps.dossiers}, f.as_of))
    return out


def evaluate(states: Mapping[str, UnitState], catalog: Catalog, t: int | Callable[[str], int],
             config: SignalConfig, units: list[str] | None = None) -> list[Signal]:
    """Every signal with evidence, for ``units`` (default: all units with a state), each
    unit at its own T (``t`` may be a function of the unit: the live service uses each
    partition's watermark). Signals that are not active are returned too (with their value),
    so a caller can apply hysteresis; ``active(signals)`` keeps the raised ones."""
    at = t if callable(t) else (lambda _u, _t=t: _t)
    wanted = [u for u in (units if units is not None else list(states)) if u in catalog]
    groups = {catalog.by_id[u].peer_group for u in wanted}
    findings: dict[str, UnitFindings] = {}
    for group in sorted(groups):
        rules = config.for_group(group)
        need_peers = rules["slow_procedure"]["enabled"] or rules["supplement_rate"]["enabled"]
        members = catalog.peer_groups[group] if need_peers else [
            u for u in wanted if catalog.by_id[u].peer_group == group]
        for u in members:
            if u in states or u in wanted:
                findings[u] = unit_findings(u, states.get(u), at(u), rules, config.lookback_days)
    out: list[Signal] = []
    for u in wanted:
        group = catalog.by_id[u].peer_group
        rules = config.for_group(group)
        f = findings[u]
        out += _unit_signals(f, rules)
        peers = [findings[p] for p in catalog.peer_groups[group] if p != u and p in findings]
        out += _procedure_signals(f, peers, rules)
    return out


def active(signals: list[Signal]) -> list[Signal]:
    return [s for s in signals if s.is_active()]
