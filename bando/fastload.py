"""The offline load's fused code: validate, de-duplicate and fold an event in one generated
function per event type, without building an ``Event`` for the common case.

Per event, ``bando.batch.load`` used to call the validator's generated fast check (which built
an ``Event``), then ``FirstSeen.check``, then ``scoring.facts.apply_event``: about 460
interpreted steps, a good part of them handing the event from one to the next. A fused
function does the same work in one frame (278 steps on average, against 461):

* the checks are the fast check's own source (``schemas.fastcheck.fast_source``: one
  generator, so both accept exactly the same bodies), with a few tests swapped for cheaper
  ones that decide the same (``_test_of``): the unit test also fetches the unit's dossier
  table, strings with few distinct values are remembered once found fine, a timestamp's or an
  enum's type is left to the parse or the set test (which raise TypeError: "not sure");
* the id goes into the ``FirstSeen`` table by ``check``'s own probe, inline (``_ADD``); when
  its hash tag is already there (a repeat, or rarely another id with the same hash) the
  ``Event`` goes back to the caller, which runs ``check`` and the reference fold as before;
* a dossier event is folded by its rule in ``scoring.facts.DOSSIER_FOLDS`` (the rules' one
  statement), inlined from the rule's own source (``_inline_fold``: parameters renamed,
  required fields read from the checked variables), or called if it cannot be.

Answers: True = a new id, accepted and folded; an ``Event`` = valid, the caller de-duplicates
and folds it (repeats; petitions and publications, which are rare, always); None = not sure,
the caller asks ``Validator.validate``. A fused function may also raise KeyError or TypeError
before its verdict, which means "not sure" too; nothing is changed before the verdict, and after
it (the table insertion, the fold: rules that read only required, checked fields) nothing
raises. ``tests/scoring/test_fused_load.py`` checks the whole load against the reference path.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import scoring.dedup
from schemas.fastcheck import Kind, extras_check, fast_source, value_test
from schemas.validate import _COMMON_KINDS, _RULES
from scoring.dedup import FirstSeen
from scoring.events import NO_TIMES, Event
from scoring.facts import DOSSIER_FOLDS, Dossier
from scoring.timeutil import FAST_TABLES, parse_ts

Fused = Callable[[dict[str, Any], int], "Event | bool | None"]
MIN_TS = -(1 << 63)
MAX_TS = (1 << 63) - 1

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
            if event_type in DOSSIER_FOLDS:  # the unit's dossier table
                return f"(dossiers := units.get({var})) is not None"
            return f"{var} in units"
        if name == "dossier_id" and event_type in DOSSIER_FOLDS:
            return ""  # a dossier already in the table has a fine id: tested in _finish
        # a value that is not a str raises TypeError in the parse or the set test (unsure,
        # before anything changed): the type test is left out
        if kind[0] == "timestamp":
            return ""
        if kind[0] == "enum":
            return f"{var} in {{{', '.join(repr(v) for v in sorted(kind[1]))}}}"
        if name in _FEW_VALUES:
            known = f"known_{name}"
            return f"{var} in {known} or ({value_test(kind, var)} and remember({known}, {var}))"
        return None

    return test_of


# ``FirstSeen.check``'s probe and insertion, inline on the factory's copies of the table's
# state (``dd_*``, see ``_FACTORY``): a tag already there is a repeat, or rarely another id
# with the same hash, for the caller's ``check`` to decide
_ADD = """\
    tag = hash_({event_id}) | 1
    j = tag % dd_end
    while (other := dd_slots[j]) != 0:
        if other == tag:
            return make(v0, {event_type!r}, ts, {unit}, body, None, times)
        j += 2
        if j > dd_end:
            j = 1
    dd_slots[j] = tag
    dd_slots[j - 1] = token
    dd_room -= 1
    if not dd_room:
        grow()
"""


def _finish(event_type: str, i: int, history: bool
            ) -> Callable[[dict[str, str], str], list[str]]:
    """The lines after the checks: de-duplicate, fold, answer. ``history`` (audit replay's
    ingest, ``audit.ingest.History``): also the earliest instant."""

    def finish(var: dict[str, str], unit: str) -> list[str]:
        out = []
        dossier = var.get("dossier_id")
        if event_type in DOSSIER_FOLDS:
            dossier_ok = value_test(_RULES[event_type].kinds["dossier_id"], str(dossier))
            out += [f"    d = dossiers.get({dossier})",  # the table: from the unit test
                    "    if d is None:",
                    f"        if not ({dossier_ok}):",
                    "            return None"]
        out += ["    nonlocal max_ts, dd_room" + (", min_ts" if history else ""),
                *_ADD.format(event_id=var["event_id"], event_type=event_type,
                             unit=unit).splitlines(),
                "    if ts > max_ts:",
                "        max_ts = ts"]
        if history:
            out += ["    if ts < min_ts:", "        min_ts = ts"]
        if event_type in DOSSIER_FOLDS:
            out += ["    if d is None:",
                    f"        d = dossiers[{dossier}] = Dossier()"]
            inline = _inline_fold(DOSSIER_FOLDS[event_type], _fields(event_type, var))
            out += [f"    fold_{i}(d, ts, v0, body, times)"] if inline is None else inline
        return out + ["    return True"]

    return finish


def _fields(event_type: str, var: dict[str, str]) -> dict[str, str]:
    """Where the fused function holds each required field, and each required timestamp's
    parsed value (as ``times`` keys: ``"times:due_at"``)."""
    rules = _RULES[event_type]
    required = {"event_id", "occurred_at", "unit_id", *rules.required}
    out = {name: v for name, v in var.items() if name in required}
    out |= {f"times:{name}": f"t_{var[name]}" for name in rules.timestamps if name in required}
    return out


_PARAMS = ("d", "ts", "v0", "body", "times")  # what the fused function passes a fold


def _inline_fold(fold: Callable[..., None], fields: dict[str, str]) -> list[str] | None:
    """The statements of a dossier fold of ``scoring.facts`` (the rules' one statement), to run
    in the fused function without a call: its parameters renamed to the fused function's
    variables (``(d, ts, v0, body, times)``, as the call would pass), ``body["x"]`` and
    ``times["x"]`` of a required field read from the variable that holds it already, its
    own locals prefixed with ``l_``. None when the fold is not plain enough to inline that way
    (a ``return``, a nested scope, a parameter assigned to): then it is called."""
    func = ast.parse(textwrap.dedent(inspect.getsource(fold))).body[0]
    if not isinstance(func, ast.FunctionDef) or len(func.args.args) != len(_PARAMS):
        return None
    params = dict(zip((a.arg for a in func.args.args), _PARAMS, strict=True))
    local = set(fold.__code__.co_varnames) - set(params)
    for node in ast.walk(func):
        if node is not func and isinstance(node, (  # control flow, scopes, hidden bindings
                ast.Return, ast.Yield, ast.YieldFrom, ast.Await, ast.Global, ast.Nonlocal,
                ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
                ast.comprehension, ast.NamedExpr, ast.Try, ast.With, ast.Match, ast.Import,
                ast.ImportFrom)):
            return None
        if isinstance(node, ast.Name) and node.id in params and not isinstance(node.ctx, ast.Load):
            return None

    # the fold's own names for the body and the times, as read by ``body["x"]``, ``times["x"]``
    read_from = {func.args.args[3].arg: "", func.args.args[4].arg: "times:"}

    class Rename(ast.NodeTransformer):
        def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
            base, key = node.value, node.slice
            if (isinstance(node.ctx, ast.Load) and isinstance(base, ast.Name)
                    and base.id in read_from and isinstance(key, ast.Constant)
                    and isinstance(key.value, str)):
                name = fields.get(read_from[base.id] + key.value)
                if name is not None:
                    return ast.copy_location(ast.Name(name, ast.Load()), node)
            self.generic_visit(node)
            return node

        def visit_Name(self, node: ast.Name) -> ast.AST:
            if node.id in params:
                node.id = params[node.id]
            elif node.id in local:
                node.id = f"l_{node.id}"
            return node

    statements = func.body
    if statements and isinstance(statements[0], ast.Expr) and isinstance(
            statements[0].value, ast.Constant):  # its docstring
        statements = statements[1:]
    source = "\n".join(ast.unparse(Rename().visit(s)) for s in statements)
    return textwrap.indent(source, "    ").splitlines()


# One factory for all types, so that they share the table's state and ``max_ts``. During a
# load the table's ``_room`` is the factory's ``dd_room``: ``check`` and ``count`` hand it over.
_FACTORY = """\
def factory(units, table, hash_):
    max_ts, min_ts = MIN_TS, MAX_TS
    dd_slots, dd_room = table._slots, table._room
    dd_end = len(dd_slots)
{known}

    def resume():
        nonlocal dd_slots, dd_end, dd_room
        dd_slots, dd_room = table._slots, table._room
        dd_end = len(dd_slots)

    def grow():
        table._room = dd_room
        table._grow()
        resume()

    def check(event, token):
        table._room = dd_room
        status = table.check(event, token)
        resume()
        return status

    def count():
        table._room = dd_room
        return table.count

{functions}
    return {{{names}}}, check, count, lambda: max_ts, lambda: min_ts
"""


def _factory_source(history: bool) -> str:
    """``factory(units, table, hash_) -> (functions, check, count, last_ts, first_ts)``:
    ``units`` maps each catalog unit id to its dossier table, ``table`` is the load's
    ``FirstSeen``; ``history``: also ``first_ts`` (see ``_finish``)."""
    functions, names, known = [], [], set()
    for i, (event_type, rules) in enumerate(_RULES.items()):
        # the rare petitions and publications: the Event, for the caller's reference path
        fuse = event_type in DOSSIER_FOLDS or event_type == "clock.tick"
        source = fast_source(event_type, rules, _COMMON_KINDS,
                             test_of=_test_of(event_type),
                             cached_stamps=_CACHED_STAMPS,
                             finish=_finish(event_type, i, history) if fuse else None,
                             signature=f"fused_{i}(body, token)", extras=f"extras_ok_{i}")
        functions.append(textwrap.indent(source, "    "))
        names.append(f"{event_type!r}: fused_{i}")
        known |= {name for name in _FEW_VALUES if name in rules.kinds}
    return _FACTORY.format(known="\n".join(f"    known_{n} = set()" for n in sorted(known)),
                           functions="\n".join(functions), names=", ".join(names))


def _remember(known: set[str], value: str) -> bool:
    if len(known) < _KNOWN_KEPT:
        known.add(value)
    return True


def _compile(history: bool) -> tuple[Callable[..., Any], str]:
    schema_names = {*_COMMON_KINDS, "type", *(n for r in _RULES.values() for n in r.kinds)}
    for name in _FEW_VALUES:  # one set per field name: the field must mean one thing
        if len({repr(r.kinds[name]) for r in _RULES.values() if name in r.kinds}) > 1:
            raise ValueError(f"{name}: not the same kind in every event type")
    hours, tails = FAST_TABLES
    namespace: dict[str, Any] = {
        "Dossier": Dossier, "make": Event, "parse_ts": parse_ts, "hours": hours, "tails": tails,
        "stamps": _STAMPS, "NO_TIMES": NO_TIMES, "MIN_TS": MIN_TS, "MAX_TS": MAX_TS,
        "remember": _remember}
    for fold in DOSSIER_FOLDS.values():  # the globals an inlined fold reads (facts' own)
        for name in fold.__code__.co_names:
            if name in fold.__globals__:
                value = namespace.setdefault(name, fold.__globals__[name])
                if value is not fold.__globals__[name]:
                    raise ValueError(f"{name}: an inlined fold would read another object")
    for i, (event_type, rules) in enumerate(_RULES.items()):
        namespace[f"extras_ok_{i}"] = extras_check({*_COMMON_KINDS, "type", *rules.kinds},
                                                   schema_names)
        namespace[f"fold_{i}"] = DOSSIER_FOLDS.get(event_type)
    source = _factory_source(history)
    exec(compile(source, "<fused checks>", "exec"), namespace)  # noqa: S102
    factory = namespace["factory"]
    # the checks' own variables must not hide the factory's (a hidden ``dd_end`` would
    # silently probe the wrong slots) nor the globals an inlined fold reads
    shared = set(factory.__code__.co_cellvars) | {
        name for fold in DOSSIER_FOLDS.values() for name in fold.__code__.co_names
        if name in fold.__globals__}
    for code in factory.__code__.co_consts:
        clash = shared & set(getattr(code, "co_varnames", ()))
        if clash and code.co_name.startswith("fused_"):
            raise ValueError(f"generated {code.co_name} hides {sorted(clash)}")
    return factory, source


_FACTORY_FN, FUSED_SOURCE = _compile(history=False)
_HISTORY_FN, HISTORY_SOURCE = _compile(history=True)


class FusedLoad:
    """One load's fused functions (``functions[event_type](body, token)``, answers as in the
    module's doc) and the ``FirstSeen`` table they fill. While they run the table's room is
    theirs: use ``check`` (``table.check``) and ``count`` (``table.count``) of this object.
    ``last_ts()``: the latest ``occurred_at`` the fused functions accepted (``MIN_TS`` if none).
    ``dossier_tables``: unit id -> its ``UnitState.dossiers``, for every catalog unit (an id
    the schema refuses is left out, so finding a unit there is the whole test of ``unit_id``).
    """

    def __init__(self, dossier_tables: Mapping[str, dict[str, Dossier]], table: FirstSeen):
        unit_ok = eval(f"lambda v: {value_test(_COMMON_KINDS['unit_id'], 'v')}")  # noqa: S307
        units = {u: dossiers for u, dossiers in dossier_tables.items() if unit_ok(u)}
        # the hash of ``scoring.dedup`` at the time of the load (tests force collisions there)
        self.functions: dict[str, Fused]
        self.functions, self.check, self.count, self.last_ts, _ = _FACTORY_FN(
            units, table, scoring.dedup._hash)


class FusedHistory:
    """The fused functions of audit replay's ingest (``audit.fastingest``): as ``FusedLoad``,
    and ``first_ts()``, the earliest ``occurred_at`` they accepted (``MAX_TS`` if none)."""

    def __init__(self, dossier_tables: Mapping[str, dict[str, Dossier]], table: FirstSeen):
        unit_ok = eval(f"lambda v: {value_test(_COMMON_KINDS['unit_id'], 'v')}")  # noqa: S307
        units = {u: dossiers for u, dossiers in dossier_tables.items() if unit_ok(u)}
        self.functions: dict[str, Fused]
        self.functions, self.check, self.count, self.last_ts, self.first_ts = _HISTORY_FN(
            units, table, scoring.dedup._hash)
