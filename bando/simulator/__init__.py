"""Activity simulator: realistic, reproducible HCMC administrative-procedure events.

It exists so that demos, load tests and the scorer's own tests can run on a city that behaves
like the real one (office hours, Tet, fast digital units next to slow paper-bound ones)
without any real data. Everything is deterministic given a seed.

    from bando.simulator import generate, read_catalog
    for event in generate(read_catalog(), "2024-01-01", "2024-02-01", seed=7):
        ...

Modules: ``profiles`` (catalog, unit habits, working-day calendar), ``generate`` (the event
generator), ``stream`` (encoding, chaos, JSON-lines writer), ``live`` (Kafka producer),
``cli`` (``bando simulate``).

The default catalog, ``scoring/catalogs/hcmc-2024.json``, lists HCMC as the 2024 map showed
it: 22 city departments and boards (``dept-*``), the 22 district-level units (``district-01``
... ``district-12``, ``district-<name>`` for named districts and ``district-thu-duc`` for Thu
Duc City) and a subset of 60 wards, communes and townships (``ward-<name>``; numbered wards
are ``ward-dNN-MM`` in numbered districts and ``ward-<district>-MM`` in named ones, and their
display name names the district, e.g. "Phường 9, Quận 3"). The subset covers every district:
all ten wards of District 1, several wards of Thu Duc City and Districts 7 and 12, and one to
three wards or communes elsewhere, with names as of early 2024 (before the November 2024 ward
mergers). unit_ids are stable: never rename one, add a new unit instead.
"""

from __future__ import annotations

from bando.simulator.generate import Generator, format_time, generate, generate_timed, parse_time
from bando.simulator.profiles import (
    Procedure,
    UnitProfile,
    default_catalog_path,
    make_profiles,
    read_catalog,
)
from bando.simulator.stream import BAD_KINDS, Chaos, messages, write_jsonl

__all__ = [
    "BAD_KINDS",
    "Chaos",
    "Generator",
    "Procedure",
    "UnitProfile",
    "default_catalog_path",
    "format_time",
    "generate",
    "generate_timed",
    "make_profiles",
    "messages",
    "parse_time",
    "read_catalog",
    "write_jsonl",
]
