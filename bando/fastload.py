"""The offline load's fused code: validate, de-duplicate and fold an event in one generated
function per event type, without building an ``Event`` for the common case.

Per event, ``bando.batch.load`` used to call the validator's generated fast check (which builds
an ``Event``), then ``FirstSeen.check``, then ``scoring.facts.apply_event``: about 460
interpreted steps, half of them handing the event from one to the next. A fused function does
the same work in one frame:

* the checks are the fast check's own source (``schemas.fastcheck.fast_source``: one
  generator, so both accept exactly the same bodies), the unit test also fetching the unit's
  dossier table;
* the id goes into the ``FirstSeen`` table with ``add``; when its hash tag is already there (a
  repeat, or rarely another id with the same hash) the ``Event`` goes back to the caller, which
  runs ``check`` and the reference fold as before;
* a dossier event is folded by its rule from ``scoring.facts.DOSSIER_FOLDS`` (the rules' one
  statement), called with the checked fields.

Answers: True = a new id, accepted and folded; an ``Event`` = valid, the caller de-duplicates
and folds it (repeats; petitions and publications, which are rare, always); None = not sure,
the caller asks ``Validator.validate``. Nothing is changed before the answer is known but by
``add`` and the fold, on the True path only. ``tests/scoring/test_perf_equivalence.py`` checks
the whole load against the reference path.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from schemas.fastcheck import Kind, extras_check, fast_source, value_test
from schemas.validate import _COMMON_KINDS, _RULES
from scoring.events import NO_TIMES, Event
from scoring.facts import DOSSIER_FOLDS, Dossier
from scoring.timeutil import FAST_TABLES, parse_ts

Fused = Callable[[dict[str, Any], int], "Event | bool | None"]
# add(event_id, token) -> bool: ``scoring.dedup.FirstSeen.add``, or "never new" for a caller
# that de-duplicates each event itself
Add = Callable[[str, int], bool]
MIN_TS = -(1 << 63)


# string fields with few distinct values: a value once found fine is remembered in a set
# (``known_<field>``), so later events pay one membership test instead of the type and length
_FEW_VALUES = ("procedure_id", "officer_id")
_KNOWN_KEPT = 65_536
_CACHED_STAMPS = ("due_at", "new_due_at")  # deadlines: few distinct instants
_STAMPS: dict[str, int] = {}  # parse_ts by whole text, shared by the loads of this process


def _test_of(event_type: str) -> Callable[[str, Kind, str], str | None]:
    """The field tests that differ from the fast check's (``schemas.fastcheck.fast_source``)."""

    def test_of(name: str, kind: Kind, var: str) -> str | None:
        if name == "unit_id":  # ``units`` holds only ids that pass the field's own test
            if event_type in DOSSIER_FOLDS:
                return f"(dossiers := units.get({var})) is not None"
            return f"{var} in units"
        if name == "dossier_id" and event_type in DOSSIER_FOLDS:
            return ""  # a dossier already in the table has a fine id: tested in _finish
        if name in _FEW_VALUES:
            known = f"known_{name}"
            return f"{var} in {known} or ({value_test(kind, var)} and remember({known}, {var}))"
        return None

    return test_of


def _finish(event_type: str) -> Callable[[dict[str, str], str], list[str]]:
    """The lines after the checks: de-duplicate, fold, answer."""

    def finish(var: dict[str, str], unit: str) -> list[str]:
        out = []
        if event_type in DOSSIER_FOLDS:
            dossier = var["dossier_id"]
            dossier_ok = value_test(_RULES[event_type].kinds["dossier_id"], dossier)
            out += [f"    d = dossiers.get({dossier})",  # dossiers: from the unit test
                    "    if d is None:",
                    f"        if not ({dossier_ok}):",
                    "            return None"]
        out += ["    nonlocal max_ts",
                f"    if not add({var['event_id']}, token):",
                f"        return make(v0, {event_type!r}, ts, {unit}, body, None, times)",
                "    if ts > max_ts:",
                "        max_ts = ts"]
        if event_type in DOSSIER_FOLDS:
            out += ["    if d is None:",
                    f"        d = dossiers[{var['dossier_id']}] = Dossier()",
                    "    fold(d, ts, v0, body, times)"]
        return out + ["    return True"]

    return finish


def _factory_source(event_type: str) -> str:
    """``factory(units, add) -> (fused, last_ts)``: ``units`` maps each catalog unit id to its
    dossier table, ``last_ts()`` is the latest ``occurred_at`` this function accepted."""
    rules = _RULES[event_type]
    finish = _finish(event_type) if event_type in DOSSIER_FOLDS or event_type == "clock.tick" \
        else None  # the rare petitions and publications: the Event, for the reference path
    source = fast_source(event_type, rules, _COMMON_KINDS, test_of=_test_of(event_type),
                         cached_stamps=_CACHED_STAMPS, finish=finish,
                         signature="fused(body, token)")
    known = [f"    known_{name} = set()" for name in _FEW_VALUES if name in rules.kinds]
    return "\n".join(["def factory(units, add):",
                      "    max_ts = MIN_TS",
                      *known,
                      textwrap.indent(source, "    ").rstrip(),
                      "    return fused, lambda: max_ts", ""])


def _remember(known: set[str], value: str) -> bool:
    if len(known) < _KNOWN_KEPT:
        known.add(value)
    return True


def _compile() -> tuple[dict[str, Callable[..., Any]], dict[str, str]]:
    schema_names = {*_COMMON_KINDS, "type", *(n for r in _RULES.values() for n in r.kinds)}
    hours, tails = FAST_TABLES
    factories: dict[str, Callable[..., Any]] = {}
    sources: dict[str, str] = {}
    for event_type, rules in _RULES.items():
        source = _factory_source(event_type)
        namespace: dict[str, Any] = {
            "extras_ok": extras_check({*_COMMON_KINDS, "type", *rules.kinds}, schema_names),
            "fold": DOSSIER_FOLDS.get(event_type), "Dossier": Dossier, "make": Event,
            "parse_ts": parse_ts, "hours": hours, "tails": tails, "stamps": _STAMPS,
            "NO_TIMES": NO_TIMES, "MIN_TS": MIN_TS, "remember": _remember}
        exec(compile(source, f"<fused {event_type}>", "exec"), namespace)  # noqa: S102
        factories[event_type] = namespace["factory"]
        sources[event_type] = source
    return factories, sources


_FACTORIES, FUSED_SOURCES = _compile()


def fused_functions(
    dossier_tables: Mapping[str, dict[str, Dossier]], add: Add
) -> tuple[dict[str, Fused], Callable[[], int]]:
    """The fused function of each event type, for one load, and ``last_ts()``: the latest
    ``occurred_at`` they accepted (``MIN_TS`` if none). ``dossier_tables``: unit id ->
    its ``UnitState.dossiers``, for every catalog unit (the unit test looks there; an id the
    schema refuses is left out, so finding a unit there is the whole test of ``unit_id``)."""
    unit_ok = eval(f"lambda v: {value_test(_COMMON_KINDS['unit_id'], 'v')}")  # noqa: S307
    units = {u: table for u, table in dossier_tables.items() if unit_ok(u)}
    fused: dict[str, Fused] = {}
    lasts: list[Callable[[], int]] = []
    for event_type, factory in _FACTORIES.items():
        fused[event_type], last = factory(units, add)
        lasts.append(last)
    return fused, lambda: max(last() for last in lasts)
