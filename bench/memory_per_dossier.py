"""Memory per tracked dossier (issue 7): the unit facts ``bando score`` / replay / a worker hold,
and the de-duplication table of an offline load, measured with tracemalloc on ~1M dossiers,
and extrapolated to a year of HCMC (~18M dossiers, ~90M events).

    python bench/memory_per_dossier.py                   # ~1M dossiers (a simulated year)
    python bench/memory_per_dossier.py --dossiers 200000 # quicker

The events come from the simulator (a year of HCMC at the scale that yields the dossiers),
written once to ``--data-dir`` and read back and validated like ``bando score`` does, so every
string is what a real load keeps. Passes over the same file, in one run:

  facts      ``scoring.facts`` as it is: validator + ``Engine.apply``; bytes still allocated
             after the fold, per dossier (petitions and publications included, they are ~1%)
  baseline   the same with the dossier layout before issue 7 (a copy is kept below: 18 slots,
             (ts, id) tuples, booleans one slot each, procedure ids not shared)
  breakdown  the facts' bytes by component (``sys.getsizeof``): where a smaller layout must cut
  dedup      ``scoring.dedup.FirstSeen`` (what ``bando score`` uses on a file) against the
             previous ``Deduper`` (event id -> digest), bytes per event (exact sizes, not
             traced: one array; a dict of its own id strings and digests)
tracemalloc makes a pass several times slower: ~1M dossiers take a few minutes per pass.
Prints a table and a JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import emit  # noqa: E402

from bando.simulator import generate_timed, read_catalog  # noqa: E402
from schemas import EventRejected, Validator  # noqa: E402
from scoring.catalog import load_catalog  # noqa: E402
from scoring.dedup import Deduper, FirstSeen  # noqa: E402
from scoring.engine import Engine  # noqa: E402
from scoring.events import Event  # noqa: E402
from scoring.facts import UnitState, apply_event  # noqa: E402
from scoring.model import load_model  # noqa: E402

DOSSIERS_PER_YEAR_AT_SCALE_1 = 1_000_000  # HCMC catalog, simulator defaults
HCMC_YEAR_DOSSIERS = 18_000_000
HCMC_YEAR_EVENTS = 90_000_000


# --- the dossier layout before issue 7 (baseline) ----------------------------------------------

class OldDossier:
    __slots__ = ("received", "procedure_id", "online", "due", "online_eligible", "full_online",
                 "fee_required", "reused_data", "pds_linked", "population_db", "digitized",
                 "synced", "paid_online", "supplements", "completed", "e_result", "withdrawn",
                 "ratings")

    def __init__(self) -> None:
        self.received: tuple[int, str] | None = None
        self.procedure_id = ""
        self.online = False
        self.due = 0
        self.online_eligible = self.full_online = self.fee_required = False
        self.reused_data = self.pds_linked = self.population_db = False
        self.digitized: int | None = None
        self.synced: int | None = None
        self.paid_online: int | None = None
        self.supplements: dict[str, tuple[int, int | None]] | None = None
        self.completed: tuple[int, str] | None = None
        self.e_result = False
        self.withdrawn: int | None = None
        self.ratings: dict[str, tuple[int, str]] | None = None


def _min(current: int | None, ts: int) -> int:
    return ts if current is None or ts < current else current


def old_apply(states: dict[str, UnitState], event: Event) -> None:
    if event.unit_id is None:
        return
    state = states.get(event.unit_id)
    if state is None:
        state = states[event.unit_id] = UnitState()
    t, ts, body = event.type, event.ts, event.body
    if not t.startswith("dossier."):
        apply_event(state, event)  # petitions and publications did not change
        return
    dossiers: dict[str, Any] = state.dossiers
    d = dossiers.get(body["dossier_id"])
    if d is None:
        d = dossiers[body["dossier_id"]] = OldDossier()
    if t == "dossier.received":
        stamp = (ts, event.event_id)
        if d.received is None or stamp < d.received:
            d.received = stamp
            d.procedure_id = body["procedure_id"]
            d.online = body["channel"] == "online"
            d.due = event.times["due_at"]
            d.online_eligible = body["online_eligible"]
            d.full_online = body["full_online"]
            d.fee_required = body["fee_required"]
            d.reused_data = body["reused_data"]
            d.pds_linked = body["pds_linked"]
            d.population_db = body["population_db"]
    elif t == "dossier.digitized":
        d.digitized = _min(d.digitized, ts)
    elif t == "dossier.synced":
        d.synced = _min(d.synced, ts)
    elif t == "dossier.paid":
        if body["online"]:
            d.paid_online = _min(d.paid_online, ts)
    elif t == "dossier.supplement_requested":
        if d.supplements is None:
            d.supplements = {}
        d.supplements[event.event_id] = (ts, event.times.get("new_due_at"))
    elif t == "dossier.completed":
        stamp = (ts, event.event_id)
        if d.completed is None or stamp < d.completed:
            d.completed = stamp
            d.e_result = body["e_result"]
    elif t == "dossier.withdrawn":
        d.withdrawn = _min(d.withdrawn, ts)
    elif t == "dossier.rated":
        if d.ratings is None:
            d.ratings = {}
        d.ratings[event.event_id] = (ts, body["rating"])


# --- passes -----------------------------------------------------------------------------------

def simulate(path: Path, scale: float) -> None:
    """A simulated HCMC year as JSON lines (written once, then reused)."""
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as out:
        for _, body in generate_timed(read_catalog(), "2024-01-01", "2025-01-01", seed=7,
                                      rate_scale=scale):
            out.write(orjson.dumps(body) + b"\n")
    tmp.rename(path)


def events(path: Path, validator: Validator) -> Iterator[tuple[int, Event]]:
    """(byte offset, event) of every valid line."""
    offset = 0
    with open(path, "rb") as fh:
        for line in fh:
            start, offset = offset, offset + len(line)
            with contextlib.suppress(EventRejected):
                yield start, validator.validate(line)


def traced(fold: Callable[[int, Event], None], path: Path, validator: Validator,
           keep: Callable[[], Any]) -> tuple[int, int, float]:
    """(bytes still allocated afterwards, events, seconds) of folding every event, traced."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    n = 0
    for offset, event in events(path, validator):
        fold(offset, event)
        n += 1
    del event
    keep()
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return retained, n, time.perf_counter() - started


def deduper_bytes(deduper: Deduper) -> int:
    """What the dict of a ``Deduper`` holds (its ids and digests are its own objects)."""
    seen = deduper.seen
    return sys.getsizeof(seen) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in
                                     seen.items())


_TIMES = ("received_ts", "due", "digitized", "synced", "paid_online", "completed_ts", "withdrawn")


def breakdown(states: dict[str, UnitState]) -> dict[str, float]:
    """Bytes per dossier by component (``sys.getsizeof``, each object counted once): what a
    smaller layout would have to remove. Small ints (-5..256) and interned procedure ids are
    shared by CPython and cost nothing per dossier."""
    size = sys.getsizeof
    parts: Counter[str] = Counter()
    counted: set[int] = set()

    def once(obj: object) -> int:
        if id(obj) in counted:
            return 0
        counted.add(id(obj))
        return size(obj)

    n = 0
    for state in states.values():
        parts["dict slots (unit's dossiers)"] += size(state.dossiers) - size({})
        for key, d in state.dossiers.items():
            n += 1
            parts["dossier id (dict key)"] += once(key)
            parts["Dossier object (13 slots)"] += size(d)
            for name in _TIMES:
                value = getattr(d, name)
                if value is not None and not -5 <= value <= 256:
                    parts["timestamps (int objects)"] += once(value)
            for name in ("received_id", "completed_id"):
                if value := getattr(d, name):
                    parts["event ids (tie-breaks)"] += once(value)
            for name in ("supplements", "ratings"):
                facts = getattr(d, name)
                if facts:
                    parts[name] += size(facts) + sum(
                        once(k) + size(v) + sum(once(x) for x in v if isinstance(x, int)
                                                and not -5 <= x <= 256)
                        for k, v in facts.items())
    return {k: v / n for k, v in parts.most_common()} if n else {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dossiers", type=int, default=1_000_000, help="about how many dossiers")
    ap.add_argument("--data-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                       "bando-bench"))
    ap.add_argument("--json", help="also write the summary here")
    args = ap.parse_args()
    scale = round(args.dossiers / DOSSIERS_PER_YEAR_AT_SCALE_1, 3)
    catalog, model = load_catalog(None), load_model("vn766@1")
    validator = Validator(catalog, max_bytes=1 << 20)
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    path = data / f"year-scale-{scale}.jsonl"
    if not path.exists():
        print(f"simulating a year at scale {scale} into {path} ...", file=sys.stderr)
        simulate(path, scale)
    out: dict[str, Any] = {"file": str(path), "simulator_scale": scale}

    engine = Engine(catalog, model)
    retained, n, secs = traced(lambda _, e: engine.apply(e), path, validator, lambda: engine)
    dossiers = sum(len(s.dossiers) for s in engine.states.values())
    records = dossiers + sum(len(s.petitions) + len(s.publications)
                             for s in engine.states.values())
    out["events"], out["dossiers"], out["records"] = n, dossiers, records
    out["facts"] = {"bytes": retained, "per_dossier": retained / dossiers, "seconds": secs}
    out["facts_breakdown"] = breakdown(engine.states)
    engine.states.clear()

    old_states: dict[str, UnitState] = {}
    retained, _, secs = traced(lambda _, e: old_apply(old_states, e), path, validator,
                               lambda: old_states)
    out["baseline_facts"] = {"bytes": retained, "per_dossier": retained / dossiers,
                             "seconds": secs}
    old_states.clear()

    # de-duplication: sizes are exact without tracing (one array; a dict of own objects)
    first = FirstSeen(lambda _: {}, expected=path.stat().st_size // 200)  # as bando score
    deduper = Deduper()
    for offset, event in events(path, validator):
        first.check(event, offset)
        deduper.check(event.event_id, event.digest)
    first_bytes = first.capacity * 16 + sys.getsizeof(first)
    out["dedup"] = {"per_event": first_bytes / n, "baseline_per_event": deduper_bytes(deduper) / n,
                    "table_fill": first.count / first.capacity}

    facts, base = out["facts"]["per_dossier"], out["baseline_facts"]["per_dossier"]
    dedup, dedup_base = out["dedup"]["per_event"], out["dedup"]["baseline_per_event"]
    year = {
        "facts_gb": facts * HCMC_YEAR_DOSSIERS / 1e9,
        "baseline_facts_gb": base * HCMC_YEAR_DOSSIERS / 1e9,
        "dedup_gb": dedup * HCMC_YEAR_EVENTS / 1e9,
        "baseline_dedup_gb": dedup_base * HCMC_YEAR_EVENTS / 1e9,
    }
    out["hcmc_year"] = year
    print(f"{n:,} events, {dossiers:,} dossiers ({records:,} records), scale {scale:.2f}")
    print(f"  {'':28} {'now':>10} {'before':>10} {'ratio':>7}")
    print(f"  {'facts, bytes per dossier':28} {facts:>10.0f} {base:>10.0f} {facts / base:>7.2f}")
    print(f"  {'dedup table, bytes per event':28} {dedup:>10.1f} {dedup_base:>10.1f} "
          f"{dedup / dedup_base:>7.2f}")
    print(f"  HCMC year ({HCMC_YEAR_DOSSIERS / 1e6:.0f}M dossiers, {HCMC_YEAR_EVENTS / 1e6:.0f}M "
          f"events): facts {year['facts_gb']:.1f} GB (before {year['baseline_facts_gb']:.1f}), "
          f"dedup {year['dedup_gb']:.1f} GB (before {year['baseline_dedup_gb']:.1f})")
    print("  facts by component (sys.getsizeof), bytes per dossier:")
    for part, per in out["facts_breakdown"].items():
        print(f"    {part:32} {per:>7.1f}")
    emit(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
