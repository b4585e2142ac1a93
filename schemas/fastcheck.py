"""Source generation of the validator's *fast checks*: straight-line Python per event type,
from the compiled schema (``schemas.validate``), that accepts only what ``Validator.check``
accepts and answers "not sure" (None) for anything else.

Shared by ``schemas.validate`` (``fast(body, units) -> Event | None``) and the offline load's
fused per-type code (``bando.fastload``), which runs the same checks and then, instead of
building an ``Event``, de-duplicates and folds the event itself: ``finish`` and
``unit_test`` are its hooks. One generator, so the two cannot check different things.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol

# SPEC 1 sets "due_at after occurred_at" for dossier.received only: a petition may arrive
# already due (it is then simply late)
DUE_AFTER_OCCURRED = frozenset({"dossier.received"})

Kind = tuple[Any, ...]  # see schemas.validate._kind

SCALARS = (str, int, float, bool, type(None))


class TypeRules(Protocol):
    required: list[str]
    kinds: dict[str, Kind]
    timestamps: list[str]


def extras_check(known: Collection[str], schema_names: Collection[str]) -> Callable[..., bool]:
    """``extras_ok(body)`` for a type whose own fields are ``known``: an extra field may not
    share a name with any field of the schema (rare: the reference decides, whatever the
    rules of the field's own type) and must be a plain value (nested values go to the reference,
    which refuses what orjson cannot write back for the digest)."""
    def extras_ok(body: dict[str, Any]) -> bool:
        for name, value in body.items():
            if name not in known and (name in schema_names or type(value) not in SCALARS):
                return False
        return True

    return extras_ok


def value_test(kind: Kind, var: str) -> str:
    """Python source that is true when ``var`` is a fine value of ``kind`` (timestamps are
    parsed separately)."""
    if kind[0] == "str":
        return f"type({var}) is str and {kind[1]} <= len({var}) <= {kind[2]}"
    if kind[0] == "bool":
        return f"({var} is True or {var} is False)"
    if kind[0] == "int":
        low = "" if kind[1] is None else f" and {var} >= {kind[1]!r}"
        return f"type({var}) is int{low}"  # 5.0 and the like: the reference decides
    if kind[0] == "enum":
        allowed = ", ".join(repr(v) for v in sorted(kind[1]))
        return f"type({var}) is str and {var} in {{{allowed}}}"
    if kind[0] == "const":
        return f"type({var}) is {type(kind[1]).__name__} and {var} == {kind[1]!r}"
    if kind[0] == "timestamp":
        return f"type({var}) is str"
    raise ValueError(kind)


def _required_names(event_type: str, rules: TypeRules) -> list[str]:
    """The fields a fast check reads at once, in the order of its variables v0, v1, ..."""
    required = ["event_id", "occurred_at"] + [n for n in rules.required if n != "unit_id"]
    if event_type != "clock.tick":
        required.insert(2, "unit_id")  # common field, required by every other type
    return required


def _parse_source(var: str, target: str, indent: str, cached: bool = False) -> list[str]:
    """Source that sets ``target`` to ``parse_ts(var)`` or returns None: the two table lookups
    of ``parse_ts``'s fast path inline (``scoring.timeutil.FAST_TABLES``), the call otherwise.
    ``cached``: look the whole text up in ``stamps`` first, and remember it there (for fields
    with few distinct values, such as deadlines)."""
    lines = [f"{target} = hours.get({var}[:13])",
             f"if {target} is not None:",
             f"    rest = tails.get({var}[13:])",
             f"    {target} = {target} + rest if rest is not None else parse_ts({var})",
             "else:",
             f"    {target} = parse_ts({var})",
             f"if {target} is None:",
             "    return None"]
    if cached:
        lines = [f"{target} = stamps.get({var})",
                 f"if {target} is None:",
                 *("    " + line for line in lines),
                 f"    if len(stamps) < {_STAMPS_KEPT}:",
                 f"        stamps[{var}] = {target}"]
    return [indent + line for line in lines]


_STAMPS_KEPT = 100_000


def fast_source(
    event_type: str,
    rules: TypeRules,
    common: dict[str, Kind],
    test_of: Callable[[str, Kind, str], str | None] | None = None,
    cached_stamps: Collection[str] = (),
    finish: Callable[[dict[str, str], str], list[str]] | None = None,
    signature: str = "fast(body, units)",
    extras: str = "extras_ok",
) -> str:
    """Source of ``fast(body, units) -> Event | None``: the checks
    of ``Validator.check`` for one event type, on a body that breaks none of them; None means
    "ask the reference" (never "rejected").

    Hooks for the fused code (``bando.fastload``): ``test_of(name, kind, var)`` may replace the
    test of a field of the type (an expression true when the value is fine, "" for no test
    here: then ``finish`` must make it), or return None for the usual one (``unit_id``'s is
    ``var in units``); ``cached_stamps``: timestamp fields looked up whole in a dict ``stamps``
    before being parsed; ``finish(names, unit)``: the lines that run once every check passed,
    with ``ts`` and ``times`` set (``names``: field name -> variable; ``unit``: the unit's
    variable, or "None" for a tick); the default builds the ``Event``. ``signature``: the
    function's name and parameters (``units`` may come from an enclosing scope instead);
    ``extras``: the name of the type's ``extras_check`` function."""
    tick = event_type == "clock.tick"
    required = _required_names(event_type, rules)
    optional = [n for n in rules.kinds if n not in required]
    kinds = {**rules.kinds, **{n: common[n] for n in ("event_id", "occurred_at", "unit_id")}}
    var = {name: f"v{i}" for i, name in enumerate(required + optional)}

    def test(n: str) -> str:
        custom = None if test_of is None else test_of(n, kinds[n], var[n])
        if custom is not None:
            return custom
        if n == "unit_id":
            return f"{value_test(kinds[n], var[n])} and {var[n]} in units"
        return value_test(kinds[n], var[n])

    out = [f"def {signature}:", "    try:"]
    out += [f"        {var[n]} = body[{n!r}]" for n in required]
    out += ["    except KeyError:", "        return None"]
    # required fields ("type" was read already to pick this function)
    for n in required:
        if condition := test(n):
            out += [f"    if not ({condition}):", "        return None"]
    # the usual bodies first: every field of the type there (optional ones not null), or only
    # the required ones, and no other, which the size tells once the names are found; then the
    # general case
    full = len(required) + 1 + len(optional)
    general = [f"n = {len(required) + 1}"]
    # optional fields of the type: absent is fine, present must be valid (null is not: the
    # schema says "string" or "timestamp", and the SPEC types them the same)
    for n in optional:
        general += [f"{var[n]} = body.get({n!r})", f"if {var[n]} is not None:", "    n += 1"]
        if condition := test(n):
            general += [f"    if not ({condition}):", "        return None"]
        general += [f"elif {n!r} in body:", "    return None"]
    # optional common fields: checked when present (a tick's unit_id too, though it names
    # no catalog unit)
    version_ok = value_test(common["schema_version"], "sv")
    general += ["if 'schema_version' in body:", "    n += 1", "    sv = body['schema_version']",
                f"    if not ({version_ok}):", "        return None"]
    if tick:
        general += ["if 'unit_id' in body:", "    n += 1", "    unit = body['unit_id']",
                    f"    if not ({value_test(common['unit_id'], 'unit')}):", "        return None"]
    general += [f"if n != len(body) and not {extras}(body):", "    return None"]
    if optional:
        present = " and ".join(f"({var[n]} := body.get({n!r})) is not None" for n in optional)
        out += ["    nkeys = len(body)", f"    if nkeys == {full} and {present}:"]
        for n in optional:
            if condition := test(n):
                out += [f"        if not ({condition}):", "            return None"]
        # or just the required ones
        out += [f"    elif nkeys == {len(required) + 1}:",
                f"        {' = '.join(var[n] for n in optional)} = None", "    else:"]
    else:
        out.append(f"    if len(body) != {full}:")
    out += ["        " + line for line in general]
    out += _parse_source("v1", "ts", "    ")
    stamps = []
    for n in rules.timestamps:
        t = f"t_{var[n]}"
        stamps.append(f"{n!r}: {t}")
        cached = n in cached_stamps
        if n in required:
            out += _parse_source(var[n], t, "    ", cached)
        else:  # optional: no entry in ``times`` when absent
            out += [f"    if {var[n]} is None:", "        times = NO_TIMES",
                    "    else:", *_parse_source(var[n], t, "        ", cached),
                    f"        times = {{{n!r}: {t}}}"]
    if len(stamps) > 1:
        raise ValueError(f"{event_type}: the fast check handles one timestamp besides occurred_at")
    if not rules.timestamps:
        out.append("    times = NO_TIMES")
    elif rules.timestamps[0] in required:
        out.append(f"    times = {{{stamps[0]}}}")
    # the rules JSON Schema cannot say (as in ``Validator.check``)
    if event_type in DUE_AFTER_OCCURRED:
        out += [f"    if t_{var['due_at']} <= ts:", "        return None"]
    if "full_online" in rules.kinds:
        channel = var["channel"] if "channel" in required else "body.get('channel')"
        out += [f"    if {var['full_online']} is True and {channel} != 'online':",
                "        return None"]
    unit = "None" if tick else var["unit_id"]
    if finish is None:
        out.append(f"    return make(v0, {event_type!r}, ts, {unit}, body, None, times)")
    else:
        out += finish(var, unit)
    return "\n".join(out) + "\n"
