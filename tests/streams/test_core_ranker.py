"""RankerCore: ranks per (peer group, window), rank-changes, band-changes, stale input, restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from streams.ranker import RankerCore

T1 = "2024-05-01T10:00:00+07:00"
T2 = "2024-05-01T11:00:00+07:00"
T3 = "2024-05-01T12:00:00+07:00"

Msg = Callable[..., dict[str, Any]]


def ranks(out: Any) -> dict[str, tuple[int | None, int | None]]:
    return {m["unit_id"]: (m["rank"], m["peer_count"]) for m in out.scores}


def moves(out: Any) -> dict[str, tuple[int, int]]:
    return {c["unit_id"]: (c["old_rank"], c["new_rank"]) for c in out.rank_changes}


@pytest.fixture
def ranker(mem_store: Any) -> RankerCore:
    return RankerCore(mem_store)


def test_first_scores_are_ranked_without_changes(ranker: RankerCore, score_msg: Msg) -> None:
    out = ranker.process([score_msg("u1", 80.0), score_msg("u2", 70.0), score_msg("u3", 60.0)])
    assert ranks(out) == {"u1": (1, 3), "u2": (2, 3), "u3": (3, 3)}
    assert out.rank_changes == [] and out.band_changes == []
    for msg in out.scores:  # CONTRACTS.md unit-scores fields; the latency stamp stays inside
        assert {"unit_id", "name", "peer_group", "window", "as_of", "model", "total", "band",
                "rank", "peer_count", "groups", "indicators", "input"} <= set(msg)
        assert "arrived_ms" not in msg


def test_a_rise_reports_every_unit_it_moves(ranker: RankerCore, score_msg: Msg) -> None:
    ranker.process([score_msg("u1", 80.0, T1), score_msg("u2", 70.0, T1),
                    score_msg("u3", 60.0, T1)])
    out = ranker.process([score_msg("u3", 95.0, T2)])
    assert moves(out) == {"u3": (3, 1), "u1": (1, 2), "u2": (2, 3)}
    by_unit = {c["unit_id"]: c for c in out.rank_changes}
    assert by_unit["u3"] == {"peer_group": "g", "window": "year:2024", "unit_id": "u3",
                             "old_rank": 3, "new_rank": 1, "total": 95.0, "as_of": T2}
    assert by_unit["u1"]["total"] == 80.0 and by_unit["u1"]["as_of"] == T1
    # the units pushed down are republished with their new rank
    assert ranks(out) == {"u1": (2, 3), "u2": (3, 3), "u3": (1, 3)}


def test_a_move_that_changes_nobody_else(ranker: RankerCore, score_msg: Msg) -> None:
    ranker.process([score_msg("u1", 80.0, T1), score_msg("u2", 70.0, T1)])
    out = ranker.process([score_msg("u2", 75.0, T2)])
    assert out.rank_changes == []
    assert ranks(out) == {"u2": (2, 2)}  # only the unit that changed is republished


def test_ties_share_a_rank(ranker: RankerCore, score_msg: Msg) -> None:
    out = ranker.process([score_msg("u1", 80.0), score_msg("u2", 80.0), score_msg("u3", 70.0),
                          score_msg("u4", None)])
    assert ranks(out) == {"u1": (1, 3), "u2": (1, 3), "u3": (3, 3), "u4": (None, None)}
    out = ranker.process([score_msg("u3", 80.0, T2)])
    assert moves(out) == {"u3": (3, 1)}
    assert ranks(out) == {"u3": (1, 3)}


def test_peer_groups_and_windows_rank_separately(ranker: RankerCore, score_msg: Msg) -> None:
    out = ranker.process([
        score_msg("u1", 60.0), score_msg("u2", 70.0),
        score_msg("x1", 10.0, group="h"),
        score_msg("u1", 90.0, window="month:2024-05"),
    ])
    got = {(m["window"], m["unit_id"]): (m["rank"], m["peer_count"]) for m in out.scores}
    assert got == {("year:2024", "u1"): (2, 2), ("year:2024", "u2"): (1, 2),
                   ("year:2024", "x1"): (1, 1), ("month:2024-05", "u1"): (1, 1)}
    out = ranker.process([score_msg("u2", 50.0, T2, window="month:2024-05")])
    assert moves(out) == {}  # u2 was not ranked in May before: no move to report
    got = {(m["window"], m["unit_id"]): (m["rank"], m["peer_count"]) for m in out.scores}
    assert got == {("month:2024-05", "u2"): (2, 2), ("month:2024-05", "u1"): (1, 2)}


def test_losing_the_score_moves_the_others_up(ranker: RankerCore, score_msg: Msg) -> None:
    ranker.process([score_msg("u1", 80.0, T1), score_msg("u2", 70.0, T1)])
    out = ranker.process([score_msg("u1", None, T2)])  # e.g. every dossier withdrawn
    assert moves(out) == {"u2": (2, 1)}
    assert ranks(out) == {"u1": (None, None), "u2": (1, 1)}
    assert out.band_changes == []


# --- band changes -------------------------------------------------------------------------------


def test_band_changes_direction_and_losses(ranker: RankerCore, score_msg: Msg) -> None:
    losses = [{"indicator": "on_time", "points_lost": 12.5},
              {"indicator": "paid_online", "points_lost": 3.0}]
    ranker.process([score_msg("u1", 85.0, T1), score_msg("u2", 75.0, T1)])
    out = ranker.process([score_msg("u1", 49.99, T2, top_losses=losses),
                          score_msg("u2", 90.0, T2)])
    changes = {c["unit_id"]: c for c in out.band_changes}
    assert changes["u1"] == {"unit_id": "u1", "window": "year:2024", "old_band": "good",
                             "new_band": "weak", "direction": "down", "total": 49.99,
                             "as_of": T2, "top_losses": losses}
    assert (changes["u2"]["old_band"], changes["u2"]["new_band"]) == ("fair", "excellent")
    assert changes["u2"]["direction"] == "up"


def test_band_names_are_the_models(ranker: RankerCore, score_msg: Msg) -> None:
    """A city's own bands (SPEC 3: the model is data): the direction needs no list of names."""
    ranker.process([score_msg("u1", 90.0, T1, band="gold")])
    out = ranker.process([score_msg("u1", 70.0, T2, band="silver")])
    assert [(c["old_band"], c["new_band"], c["direction"]) for c in out.band_changes] == [
        ("gold", "silver", "down")]
    out = ranker.process([score_msg("u1", 88.0, "2024-05-03T00:00:00+07:00", band="gold")])
    assert [c["direction"] for c in out.band_changes] == ["up"]


def test_no_band_change_without_two_different_bands(ranker: RankerCore, score_msg: Msg) -> None:
    out = ranker.process([score_msg("u1", 85.0, T1), score_msg("u2", None, T1)])
    assert out.band_changes == []  # first scores: no old band
    out = ranker.process([score_msg("u1", 81.0, T2), score_msg("u2", 60.0, T2)])
    assert out.band_changes == []  # same band; and null -> average
    out = ranker.process([score_msg("u1", None, T3)])
    assert out.band_changes == []  # good -> null
    out = ranker.process([score_msg("u1", 40.0, "2024-05-01T13:00:00+07:00")])
    assert out.band_changes == []  # null -> weak


def test_band_boundaries_are_on_the_rounded_total(ranker: RankerCore, score_msg: Msg) -> None:
    ranker.process([score_msg("u1", 89.99, T1)])
    out = ranker.process([score_msg("u1", 90.0, T2)])
    assert [(c["old_band"], c["new_band"], c["direction"]) for c in out.band_changes] == [
        ("good", "excellent", "up")]


# --- stale input and restart -------------------------------------------------------------------


def test_older_redelivered_score_is_ignored(ranker: RankerCore, score_msg: Msg) -> None:
    old_a, old_b = score_msg("u1", 60.0, T1), score_msg("u2", 70.0, T1)
    ranker.process([old_a, old_b])
    ranker.process([score_msg("u1", 90.0, T2)])
    out = ranker.process([old_a])  # at-least-once: the earlier batch again
    assert out.scores == [] and out.rank_changes == [] and out.band_changes == []
    assert ranker.latest[("year:2024", "u1")]["total"] == 90.0
    # older and newer in one batch, in either order: the newer wins
    out = ranker.process([score_msg("u2", 95.0, T3), old_b])
    assert ranks(out)["u2"] == (1, 2)
    assert moves(out) == {"u2": (2, 1), "u1": (1, 2)}


def test_same_score_again_moves_nothing(ranker: RankerCore, score_msg: Msg) -> None:
    batch = [score_msg("u1", 80.0, T1), score_msg("u2", 70.0, T1)]
    ranker.process(batch)
    out = ranker.process(batch)
    assert out.rank_changes == [] and out.band_changes == []
    assert ranks(out) == {"u1": (1, 2), "u2": (2, 2)}


def test_restart_remembers_old_ranks_and_bands(mem_store: Any, score_msg: Msg) -> None:
    first = RankerCore(mem_store)
    first.process([score_msg("u1", 80.0, T1), score_msg("u2", 70.0, T1),
                   score_msg("u3", 60.0, T1)])
    first.process([score_msg("u2", 72.0, T2)])

    restarted = RankerCore(mem_store.recovered())  # as the changelog gives it back
    restarted.rebuild()
    assert restarted.latest == first.latest
    out = restarted.process([score_msg("u3", 85.0, T3)])
    assert moves(out) == {"u3": (3, 1), "u1": (1, 2), "u2": (2, 3)}
    assert [(c["unit_id"], c["old_band"], c["new_band"]) for c in out.band_changes] == [
        ("u3", "average", "good")]
    # an older score re-delivered after the restart is still ignored
    assert restarted.process([score_msg("u3", 60.0, T1)]).scores == []


def test_ranked_table_holds_the_published_message(mem_store: Any, score_msg: Msg) -> None:
    ranker = RankerCore(mem_store, partition=0)
    out = ranker.process([score_msg("u1", 80.0, T1)])
    puts = mem_store.puts("ranked")
    assert [(p, k) for _, p, k, _ in puts] == [(0, "year:2024\x1fu1")]
    assert puts[0][3]["rank"] == 1 and puts[0][3]["peer_count"] == 1
    assert out.scores[0]["rank"] == 1


def test_ranking_is_replayable_from_the_same_batches(mem_store: Any, score_msg: Msg) -> None:
    """audit re-runs RankerCore over the same slices of the internal topic (``rank_basis``)."""
    batches = [
        [score_msg("u1", 80.0, T1), score_msg("u2", 70.0, T1), score_msg("x1", 50.0, group="h")],
        [score_msg("u3", 90.0, T2), score_msg("u1", 60.0, T2)],
        [score_msg("u2", 95.0, T3), score_msg("u1", 80.0, T1)],  # with a stale re-delivery
    ]
    runs = []
    for store in (mem_store, type(mem_store)()):
        ranker = RankerCore(store)
        outs = []
        for i, batch in enumerate(batches):
            basis = {"topic": "bando-unit-scored", "offsets": [10 * i, 10 * i + len(batch) - 1]}
            out = ranker.process([dict(m) for m in batch], basis)
            assert all(m["rank_basis"] == basis for m in out.scores)
            outs.append((out.scores, out.rank_changes, out.band_changes))
        runs.append(outs)
    assert runs[0] == runs[1]
    assert runs[0][1][1]  # the replay did report moves


def test_a_score_at_the_same_time_from_less_input_is_stale(ranker: RankerCore,
                                                           score_msg: Msg) -> None:
    """A worker that lost part of a batch's changelogs in a crash can score again at the same
    ``as_of`` from fewer events (a lower input offset of the same partition): the board keeps
    the later reading until the input read again catches up. From another partition (a unit
    whose events moved), offsets do not compare, and the later message wins as before."""
    def at(offset: int, total: float, partition: int = 0) -> dict[str, Any]:
        return score_msg("u1", total, T2, input={"topic": "procedure-events",
                                                 "partition": partition, "offset": offset})

    ranker.process([score_msg("u2", 70.0, T2), at(10, 80.0)])
    out = ranker.process([at(7, 60.0)])
    assert out.scores == [] and out.rank_changes == [] and out.band_changes == []
    assert ranker.latest[("year:2024", "u1")]["total"] == 80.0
    out = ranker.process([at(10, 80.0)])  # the same reading again: said again, as before
    assert [m["total"] for m in out.scores] == [80.0]
    out = ranker.process([at(12, 60.0)])  # more input at the same time: taken
    assert moves(out) == {"u1": (1, 2), "u2": (2, 1)}
    out = ranker.process([at(3, 85.0, partition=1)])
    assert ranks(out)["u1"] == (1, 2)


def test_the_same_reading_with_other_counts_is_stale(ranker: RankerCore, score_msg: Msg) -> None:
    """Same ``as_of``, same input offset, other counts: a rebuild whose facts changelog kept
    events its clock did not scores them at the clock's offset, which the input up to it does
    not hold. The first reading is the one ``--verify`` reproduces; a new model is taken."""
    def reading(total: float, **kw: Any) -> dict[str, Any]:
        return score_msg("u1", total, T2, input={"topic": "procedure-events", "partition": 0,
                                                 "offset": 10}, **kw)

    ranker.process([reading(80.0)])
    assert ranker.process([reading(90.0)]).scores == []
    assert ranker.latest[("year:2024", "u1")]["total"] == 80.0
    assert [m["total"] for m in ranker.process([reading(80.0)]).scores] == [80.0]
    assert [m["total"] for m in ranker.process([reading(70.0, model="vn766@2")]).scores] == [70.0]
