"""The pure board rules: versions, idempotency, movement, and what a screen is sent."""

from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from display import board
from display.exceptions import BadMessage

W = "month:2024-04"


def score(
    unit="district-01",
    rank=3,
    total=81.5,
    band="good",
    as_of="2024-04-14T17:00:00+07:00",
    offset=10,
    window=W,
    name="Quận 1",
    group="district",
):
    return {
        "unit_id": unit,
        "name": name,
        "peer_group": group,
        "window": window,
        "as_of": as_of,
        "model": "vn766@1",
        "total": total,
        "band": band,
        "rank": rank,
        "peer_count": 22,
        "groups": {},
        "indicators": {},
        "input": {"topic": "procedure-events", "partition": 1, "offset": offset},
    }


def rank_change(unit="district-01", old=3, new=2, as_of="2024-04-14T17:00:00+07:00"):
    return {
        "peer_group": "district",
        "window": W,
        "unit_id": unit,
        "old_rank": old,
        "new_rank": new,
        "total": 85.0,
        "as_of": as_of,
    }


def band_change(
    unit="district-01",
    old="good",
    new="excellent",
    direction="up",
    as_of="2024-04-14T17:00:00+07:00",
):
    return {
        "unit_id": unit,
        "window": W,
        "old_band": old,
        "new_band": new,
        "direction": direction,
        "total": 90.1,
        "as_of": as_of,
        "top_losses": [{"indicator": "on_time", "points_lost": 2.0}],
    }


def test_check_accepts_contract_messages():
    assert board.check(board.SCORE, score())
    assert board.check(board.RANK, rank_change())
    assert board.check(board.BAND, band_change())
    assert board.check(board.SCORE, score(total=None, band=None, rank=None))


@pytest.mark.parametrize(
    "kind,patch",
    [
        (board.SCORE, {"unit_id": ""}),
        (board.SCORE, {"unit_id": 5}),
        (board.SCORE, {"window": "month"}),
        (board.SCORE, {"window": "month:2024-04<script>"}),
        (board.SCORE, {"as_of": "yesterday"}),
        (board.SCORE, {"as_of": None}),
        (board.SCORE, {"peer_group": None}),
        (board.SCORE, {"total": "83"}),
        (board.SCORE, {"rank": True}),
        (board.SCORE, {"rank": 2.5}),
        (board.SCORE, {"band": 3}),
        (board.RANK, {"new_rank": "2"}),
        (board.BAND, {"new_band": ["good"]}),
    ],
)
def test_check_rejects_what_the_board_cannot_use(kind, patch):
    msg = {board.SCORE: score, board.RANK: rank_change, board.BAND: band_change}[kind]()
    msg.update(patch)
    with pytest.raises(BadMessage):
        board.check(kind, msg)


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("extra", [_nested(253), 10**30])
def test_check_rejects_what_the_store_could_not_write_back(extra):
    """Decoded fine, but orjson cannot encode it again (deeper than its encoder's limit, or
    an integer past 64 bits): taken, the writer would fail on it at every restart."""
    msg = {**score(), "extra": {"deep": extra}}
    with pytest.raises(BadMessage, match="cannot be stored"):
        board.check(board.SCORE, msg)
    board.check(board.SCORE, {**score(), "extra": {"deep": _nested(200)}})


def test_check_rejects_non_objects_and_unknown_kinds():
    with pytest.raises(BadMessage):
        board.check(board.SCORE, [score()])
    with pytest.raises(BadMessage):
        board.check("alert", score())


def test_first_score_makes_a_row_and_a_replay_changes_nothing():
    rec = board.apply(None, board.SCORE, score(), 1000)
    assert rec is not None
    assert (rec["rank"], rec["band"], rec["peer_group"]) == (3, "good", "district")
    assert board.apply(rec, board.SCORE, score(), 1000) is None  # same message again


def test_an_older_score_never_moves_the_row_backwards():
    rec = board.apply(None, board.SCORE, score(as_of="2024-04-14T18:00:00+07:00", rank=1), 2000)
    assert (
        board.apply(rec, board.SCORE, score(as_of="2024-04-14T17:00:00+07:00", rank=7), 3000)
        is None
    )
    # same as_of, produced earlier (a late delivery of an older result): refused too
    assert (
        board.apply(
            rec, board.SCORE, score(as_of="2024-04-14T18:00:00+07:00", offset=9, rank=7), 1999
        )
        is None
    )
    # equal as_of and timestamp: the input offset decides
    assert (
        board.apply(
            rec, board.SCORE, score(as_of="2024-04-14T18:00:00+07:00", offset=9, rank=7), 2000
        )
        is None
    )


def test_a_re_ranked_score_with_the_same_as_of_is_taken_by_its_later_timestamp():
    # the ranker re-publishes a pushed-down unit with its old as_of and input, new rank
    rec = board.apply(None, board.SCORE, score(rank=2), 1000)
    new = board.apply(rec, board.SCORE, score(rank=3), 1500)
    assert new is not None and new["rank"] == 3
    assert new["move"] == {"from": 2, "to": 3, "as_of": "2024-04-14T17:00:00+07:00"}
    assert board.apply(new, board.SCORE, score(rank=2), 1000) is None  # the replayed original


def test_rank_change_moves_the_rank_and_records_the_movement():
    rec = board.apply(None, board.SCORE, score(rank=3), 1000)
    moved = board.apply(rec, board.RANK, rank_change(old=3, new=1), 1001)
    assert moved is not None
    assert moved["rank"] == 1
    assert board.view(moved)["move"] == {"from": 3, "to": 1}
    assert board.apply(moved, board.RANK, rank_change(old=3, new=1), 1001) is None
    # an older rank change (earlier watermark) is ignored
    assert (
        board.apply(
            moved, board.RANK, rank_change(old=1, new=9, as_of="2024-04-13T00:00:00+07:00"), 5000
        )
        is None
    )


def test_rank_change_before_the_score_keeps_the_newer_rank():
    rec = board.apply(None, board.RANK, rank_change(old=4, new=2), 2000)
    assert rec is not None and rec["rank"] == 2 and rec["score"] is None
    # the score computed before that rank change arrives late: its total is taken, rank kept
    full = board.apply(rec, board.SCORE, score(rank=4), 1000)
    assert full is not None
    assert full["rank"] == 2 and full["score"]["total"] == 81.5


def test_band_change_sets_band_and_direction():
    rec = board.apply(None, board.SCORE, score(band="good"), 1000)
    up = board.apply(rec, board.BAND, band_change(), 1001)
    assert up is not None
    v = board.view(up)
    assert v["band"] == "excellent"
    assert v["band_change"] == {"from": "good", "to": "excellent", "direction": "up"}
    assert board.apply(up, board.BAND, band_change(), 1001) is None


def test_apply_never_mutates_its_input():
    rec = board.apply(None, board.SCORE, score(), 1000)
    frozen = copy.deepcopy(rec)
    board.apply(rec, board.SCORE, score(rank=1, as_of="2024-04-15T00:00:00+07:00"), 1000)
    board.apply(rec, board.RANK, rank_change(), 2000)
    assert rec == frozen


def test_view_is_small_and_carries_what_the_page_shows():
    rec = board.apply(None, board.SCORE, score(name="<img src=x onerror=alert(1)>"), 1000)
    rec["rev"] = 42
    v = board.view(rec)
    assert "indicators" not in v and "groups" not in v
    assert v["name"] == "<img src=x onerror=alert(1)>"  # escaping is the page's job, not ours
    assert v["rev"] == 42 and v["scored"] is True and v["total"] == 81.5


def test_order_views_ranks_first_then_names_unranked_last():
    rows = [
        {"unit_id": "c", "name": "C", "rank": None},
        {"unit_id": "b", "name": "B", "rank": 1},
        {"unit_id": "a", "name": "A", "rank": 1},
        {"unit_id": "d", "name": "D", "rank": 3},
    ]
    assert [r["unit_id"] for r in board.order_views(rows)] == ["a", "b", "d", "c"]
    assert board.sort_key({"rank": None}) > board.sort_key({"rank": 500})


def test_windows_compare_within_a_kind():
    assert board.window_parts("quarter:2024-Q2") == ("quarter", "2024-Q2")
    assert board.is_newer_window("month:2024-05", "month:2024-04")
    assert not board.is_newer_window("month:2024-03", "month:2024-04")
    assert not board.is_newer_window("month:2024-04", "month:2024-04")
    assert board.is_newer_window("year:2025", None)
    assert board.is_newer_window("month:2025-01", "month:2024-12")


# -- whatever order the three topics arrive in, the row ends the same --------------------

_times = st.integers(min_value=0, max_value=5)


@st.composite
def message_sets(draw):
    msgs = []
    for i in range(draw(st.integers(min_value=1, max_value=7))):
        kind = draw(st.sampled_from(board.KINDS))
        as_of = f"2024-04-14T1{draw(_times)}:00:00+07:00"
        ts = 1000 + i  # distinct producer timestamps, as the scorer produces them one by one
        r = draw(st.none() | st.integers(min_value=1, max_value=22))
        if kind == board.SCORE:
            msg = score(
                rank=r,
                as_of=as_of,
                offset=draw(_times),
                total=float(i),
                band=draw(st.sampled_from(["good", "fair", None])),
            )
        elif kind == board.RANK:
            msg = rank_change(old=draw(st.integers(1, 22)), new=r, as_of=as_of)
        else:
            msg = band_change(new=draw(st.sampled_from(["good", "weak"])), as_of=as_of)
        msgs.append((kind, msg, ts))
    return msgs


def _final(order):
    rec = None
    for kind, msg, ts in order:
        rec = board.apply(rec, kind, msg, ts) or rec
    return rec


@settings(max_examples=300, deadline=None)
@given(message_sets())
def test_final_row_does_not_depend_on_arrival_order_nor_on_repeats(msgs):
    expected = _final(msgs)
    keys = ("score", "score_v", "rank", "rank_v", "band", "band_v", "peer_group", "as_of")
    for perm in itertools.islice(itertools.permutations(msgs), 24):
        got = _final(list(perm) + list(perm))  # every message delivered twice
        assert {k: got[k] for k in keys} == {k: expected[k] for k in keys}


def test_a_row_that_loses_its_rank_loses_its_arrow():
    rec = board.apply(None, board.SCORE, score(rank=5), 1000)
    rec = board.apply(rec, board.SCORE, score(rank=2, as_of="2024-04-14T18:00:00+07:00"), 1001)
    assert rec is not None and rec["move"]["to"] == 2
    gone = board.apply(rec, board.SCORE, score(total=None, band=None, rank=None,
                                               as_of="2024-04-14T19:00:00+07:00"), 1002)
    assert gone is not None and gone["rank"] is None and board.view(gone)["move"] is None
