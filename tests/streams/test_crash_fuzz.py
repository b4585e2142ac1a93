"""The live pipeline under random crashes (``crash_fuzz``): whatever part of each changelog a
crash keeps, every published score is still reproduced by ``audit.verify`` from the events up
to its input offset, and the ranker's board ends as ``expected_board`` (its own fold of the
events) says.

Each case is one seeded stream (600 events over three partitions, about two months from near a
month's or a year's end) run with frequent crashes and rare commits, so that crashes often
come while the input is read again after the previous one.

More seeds, locally (about 0.3 s a seed and mode): ``BANDO_FUZZ_SEEDS=500 python -m pytest -q
tests/streams/test_crash_fuzz.py`` runs seeds 0-499, ``BANDO_FUZZ_SEEDS=1000:2000`` a range;
a failure prints the seed, the mode and the line that runs that case alone.
"""

from __future__ import annotations

import os
import random

import pytest
from crash_fuzz import STARTS, Live, StreamGen, expected_board

from audit.verify_report import VerifyReport
from scoring.catalog import Catalog
from scoring.model import Model

EVENTS = 600
CRASH_P = 0.3  # after each batch: crashes during the re-read of the last one are common
COMMIT_P = 0.1  # so the input read again after a crash is long
CRASH_MODES = ("prefix", "atomic", "behind", "mixed")


def seeds(default: str) -> range:
    """``BANDO_FUZZ_SEEDS``: ``N`` (seeds 0 to N-1) or ``FIRST:END``; else ``default``."""
    first, _, end = os.environ.get("BANDO_FUZZ_SEEDS", default).rpartition(":")
    return range(int(first or 0), int(end))


def run_case(catalog: Catalog, model: Model, mode: str | None, seed: int
             ) -> tuple[Live, VerifyReport, list[str]]:
    """The stream of ``seed`` run with crashes of ``mode`` (None: none): the driver, its
    verify report and where its board differs from the oracle's."""
    rng = random.Random(seed)
    bodies = StreamGen(rng, sorted(catalog.by_id), STARTS[seed % len(STARTS)]).generate(EVENTS)
    live = Live(rng, catalog, model, bodies, mode or "clean")
    live.run(CRASH_P if mode else 0.0, COMMIT_P)
    return live, live.verify(), board_diffs(live)


def board_diffs(live: Live) -> list[str]:
    """Where the ranker's board and ``expected_board`` differ in a total, a line each."""
    want = expected_board(live.catalog, live.model, live.events)
    have = {k: (m["total"], m["as_of"]) for k, m in live.ranker.latest.items()}
    return [f"board {key}: (total, as_of) {have.get(key)} != expected {want.get(key)}"
            for key in sorted(set(want) | set(have))
            if have.get(key, (None,))[0] != want.get(key, (None,))[0]]


def check(live: Live, report: VerifyReport, diffs: list[str], seed: int, mode: str,
          test: str) -> None:
    """Fail with what a developer needs: the case, how to run it alone, the first errors."""
    assert report.messages > 0, "nothing published: the case tests nothing"
    if not report.mismatches and not diffs:
        return
    lines = [f"seed {seed}, mode {mode}, {live.crashes} crashes: "
             f"{len(report.mismatches)} verify mismatches, {len(diffs)} board differences",
             f"alone: BANDO_FUZZ_SEEDS={seed}:{seed + 1} python -m pytest "
             f"tests/streams/test_crash_fuzz.py -k '{test}'"]
    # a mismatch's first lines: the message, the input offset, the totals
    lines += ['\n'.join(m.text().splitlines()[:2]) for m in report.mismatches[:3]]
    lines += diffs[:5]
    pytest.fail("\n".join(lines), pytrace=False)


@pytest.mark.parametrize("mode", CRASH_MODES)
@pytest.mark.parametrize("seed", seeds("12"))
def test_crashes(small_catalog: Catalog, model: Model, mode: str, seed: int) -> None:
    live, report, diffs = run_case(small_catalog, model, mode, seed)
    assert live.crashes > 0, f"seed {seed}, mode {mode}: no crash happened"
    check(live, report, diffs, seed, mode, f"test_crashes and {mode}")


@pytest.mark.parametrize("seed", seeds("5"))
def test_no_crash(small_catalog: Catalog, model: Model, seed: int) -> None:
    live, report, diffs = run_case(small_catalog, model, None, seed)
    check(live, report, diffs, seed, "none", "test_no_crash")
