"""Settled dossiers leave a worker's memory and come back from its store (``scoring.running``):
on the worked example over 4 partitions, a scorer that settles says exactly what one that keeps
every dossier says (every flush, every early warning, after a rebuild from its tables too),
while holding a fraction of the dossiers in memory."""

from __future__ import annotations

from typing import Any

import pytest
from test_core_example import ALL, Example

from scoring.model import Model
from streams.scorer import ScorerCore

HORIZON = 3 * 86400.0


@pytest.fixture(scope="module")
def example(example_dir: Any, model: Model) -> Example:
    return Example(example_dir, model)


def steps(core: ScorerCore, example: Example, start: int, stop: int, chunk: int
          ) -> list[Any]:
    """Process ``messages[start:stop]`` in chunks; what each flush and warning said."""
    said = []
    for i in range(start, stop, chunk):
        core.process(example.messages[i:min(i + chunk, stop)])
        scores, warnings = core.flush_and_warn(HORIZON)
        said.append(([{k: v for k, v in m.items() if k != "arrived_ms"} for m in scores],
                     warnings))
    return said


@pytest.mark.parametrize("chunk", [37, 400])
def test_settling_says_what_keeping_says(example: Example, mem_store: Any, chunk: int) -> None:
    keep_store, settle_store = mem_store, type(mem_store)()
    keep = ScorerCore(example.catalog, example.model, keep_store, keep_settled=True)
    settle = ScorerCore(example.catalog, example.model, settle_store)
    n = len(example.messages)
    half = n // 2
    assert steps(keep, example, 0, half, chunk) == steps(settle, example, 0, half, chunk)
    assert keep_store.tables["facts"] == settle_store.tables["facts"]
    held, total = settle.dossiers_in_memory(), keep.dossiers_in_memory()
    assert total > 100 and held < total // 2, (held, total)

    # a restart halfway: each rebuilds from its recovered tables and goes on
    keep = ScorerCore(example.catalog, example.model, keep_store.recovered(), keep_settled=True)
    settle = ScorerCore(example.catalog, example.model, settle_store.recovered())
    keep.rebuild(ALL)
    settle.rebuild(ALL)
    assert settle.dossiers_in_memory() < keep.dossiers_in_memory() // 2
    assert steps(keep, example, half, n, chunk) == steps(settle, example, half, n, chunk)
    assert keep.store.tables["facts"] == settle.store.tables["facts"]  # type: ignore[attr-defined]
    assert settle.dossiers_in_memory() < keep.dossiers_in_memory() // 2


def test_an_event_for_a_settled_dossier_reads_it_back(
    example: Example, mem_store: Any, feed: Any
) -> None:
    store = mem_store
    core = ScorerCore(example.catalog, example.model, store)
    steps(core, example, 0, len(example.messages), 500)
    gets: list[str] = []
    real_get = store.get

    def counting_get(table: str, key: str) -> Any:
        if table == "facts":
            gets.append(key)
        return real_get(table, key)

    store.get = counting_get  # type: ignore[method-assign]
    assert core.dossiers_in_memory() == 0  # the final tick: every dossier is closed or overdue
    unit, _, ident = next(k.split("\x1f") for k in store.tables["facts"] if "\x1fd\x1f" in k)
    state = core.states[unit]
    body = {"event_id": "late-rating", "type": "dossier.rated", "unit_id": unit,
            "dossier_id": ident, "occurred_at": "2024-06-30T23:59:59+07:00",
            "rating": "dissatisfied"}
    out = core.process([feed.msg(body, partition=example.unit_partition[unit])])
    assert len(out.accepted) == 1
    assert gets == [f"{unit}\x1fd\x1f{ident}"]
    assert ident in state.dossiers  # back, until the flush settles it again
    assert "late-rating" in (state.dossiers[ident].ratings or {})
    core.flush()
    assert ident not in state.dossiers
    assert "late-rating" in store.tables["facts"][f"{unit}\x1fd\x1f{ident}"]["ratings"]
