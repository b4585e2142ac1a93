"""ScorerCore on small hand-made inputs: de-duplication, coalescing, the next-change path,
held facts, future timestamps, event-time watermark, reassignment."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

import streams.scorer as scorer_module
from bando.batch import load
from bando.settings import Settings
from scoring.catalog import Catalog
from scoring.model import Model
from scoring.timeutil import format_ts, parse_ts
from streams.scorer import ScorerCore

BASE = parse_ts("2024-05-10T08:00:00+07:00")
assert BASE is not None
MINUTE = 60_000_000
DAY = 24 * 60 * MINUTE


def at(minutes: float) -> str:
    """An RFC 3339 time ``minutes`` after 2024-05-10 08:00 +07:00."""
    return format_ts(BASE + int(minutes * MINUTE))


def codes(outcome: Any) -> list[str]:
    return [exc.code for _, exc in outcome.rejected]


def by_window(messages: list[dict[str, Any]], unit: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m in messages:
        if m["unit_id"] == unit:
            assert m["window"] not in out, f"two messages for {unit} {m['window']} in one flush"
            out[m["window"]] = m
    return out


@pytest.fixture
def scorer(small_catalog: Catalog, model: Model, mem_store: Any) -> ScorerCore:
    return ScorerCore(small_catalog, model, mem_store)


# --- de-duplication -------------------------------------------------------------------------


def test_exact_repeat_is_a_noop_and_conflicting_repeat_is_rejected(
    scorer: ScorerCore, feed: Any, ev: Any
) -> None:
    rec = ev.received("u1", "d1", at(0), at(600))
    out = scorer.process(feed.batch([rec]))
    assert len(out.accepted) == 1 and not out.rejected
    first = by_window(scorer.flush(), "u1")
    assert first["year:2024"]["indicators"]["on_time"]["den"] == 1

    # the same body again, with other key order and whitespace: a no-op
    same = orjson.loads(orjson.dumps(dict(reversed(list(rec.items())))))
    again = feed.msg(b"  " + orjson.dumps(same) + b"\n")
    out = scorer.process([again, feed.msg(rec)])
    assert out.accepted == [] and out.rejected == [] and out.duplicates == 2
    assert scorer.flush() == []

    # same event_id, another body: refused, and the first body stands
    conflicting = dict(rec, channel="in_person", full_online=False)
    out = scorer.process(feed.batch([conflicting]))
    assert codes(out) == ["conflicting_duplicate"]
    assert out.accepted == [] and out.duplicates == 0
    assert scorer.flush() == []
    assert scorer.states["u1"].dossiers["d1"].online is True


def test_conflicting_duplicate_within_one_batch(scorer: ScorerCore, feed: Any, ev: Any) -> None:
    rec = ev.received("u1", "d1", at(0), at(600))
    out = scorer.process(feed.batch([rec, dict(rec, procedure_id="proc-2"), rec]))
    assert len(out.accepted) == 1
    assert codes(out) == ["conflicting_duplicate"]
    assert out.duplicates == 1
    msg = by_window(scorer.flush(), "u1")["year:2024"]
    assert msg["indicators"]["on_time"] == {"num": 1, "den": 1, "points": 20, "max": 20,
                                            "applicable": True}


# --- coalescing and the next-change path -----------------------------------------------------


def test_many_events_between_flushes_give_one_message_per_window(
    scorer: ScorerCore, feed: Any, ev: Any
) -> None:
    bodies = []
    for i in range(500):  # 500 dossiers, each received then digitized: 1000 events
        bodies.append(ev.received("u1", f"d{i}", at(i / 10), at(10 * DAY // MINUTE)))
        bodies.append(ev.dossier("digitized", "u1", f"d{i}", at(i / 10 + 1)))
    msgs = feed.batch(bodies)
    for i in range(0, len(msgs), 170):  # several process() calls, no flush in between
        scorer.process(msgs[i:i + 170])
    flushed = scorer.flush()
    assert sorted((m["unit_id"], m["window"]) for m in flushed) == [
        ("u1", "month:2024-05"), ("u1", "year:2024")]
    for m in flushed:
        assert m["indicators"]["digitized"] == {"num": 500, "den": 500, "points": 4, "max": 4,
                                                "applicable": True}
        assert m["input"] == {"topic": "procedure-events", "partition": 0, "offset": 999}
        assert m["as_of"] == at(499 / 10 + 1)
    assert scorer.flush() == []


def test_passing_a_due_time_republishes_without_new_events(
    scorer: ScorerCore, feed: Any, ev: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer.process(feed.batch([
        ev.received("u1", "d1", at(0), at(60)),     # due in an hour
        ev.received("u1", "d2", at(1), at(6000)),   # due in 100 hours
        ev.received("u2", "d3", at(2), at(120)),
    ]))
    first = scorer.flush()
    assert by_window(first, "u1")["year:2024"]["indicators"]["on_time"]["num"] == 2
    calls: list[str] = []
    real = scorer_module.score_state

    def counting(model: Model, unit: Any, *args: Any) -> Any:
        calls.append(unit.unit_id)
        return real(model, unit, *args)

    monkeypatch.setattr(scorer_module, "score_state", counting)

    # nothing new, watermark unchanged: nothing scored, nothing sent
    assert scorer.flush() == []
    assert calls == []

    # event time moves, but before any due time: no unit needs re-scoring
    scorer.process(feed.batch([ev.tick(at(30))]))
    assert scorer.flush() == []
    assert calls == []

    # at the due time itself a dossier is still on time (late means T > due)
    scorer.process(feed.batch([ev.tick(at(60))]))
    assert scorer.flush() == []

    # past d1's due (and not d3's): u1 is republished with one on-time dossier fewer
    scorer.process(feed.batch([ev.tick(at(61))]))
    calls.clear()
    second = scorer.flush()
    assert set(calls) == {"u1"}
    assert {m["unit_id"] for m in second} == {"u1"}
    for window, msg in by_window(second, "u1").items():
        assert msg["indicators"]["on_time"]["num"] == 1, window
        assert msg["total"] < by_window(first, "u1")[window]["total"]
        assert msg["as_of"] == at(61)

    # past d3's due as well
    scorer.process(feed.batch([ev.tick(at(121))]))
    third = scorer.flush()
    assert {m["unit_id"] for m in third} == {"u2"}
    assert by_window(third, "u2")["year:2024"]["indicators"]["on_time"]["num"] == 0


def test_watermark_is_the_largest_event_time_per_partition(
    scorer: ScorerCore, feed: Any, ev: Any
) -> None:
    scorer.process([feed.msg(ev.received("u1", "d1", at(100), at(600)), partition=1)])
    scorer.process([feed.msg(ev.received("u2", "d2", at(0), at(600)), partition=2)])
    # a late event (older than the watermark) is applied but does not move event time back
    scorer.process([feed.msg(ev.received("u1", "d0", at(10), at(600)), partition=1)])
    out = scorer.flush()
    assert by_window(out, "u1")["year:2024"]["as_of"] == at(100)
    assert by_window(out, "u1")["year:2024"]["indicators"]["on_time"]["den"] == 2
    assert by_window(out, "u2")["year:2024"]["as_of"] == at(0)  # partitions are independent
    assert by_window(out, "u2")["year:2024"]["input"]["partition"] == 2


def test_new_month_starts_a_new_window(scorer: ScorerCore, feed: Any, ev: Any) -> None:
    scorer.process(feed.batch([ev.received("u1", "d1", "2024-05-31T10:00:00+07:00",
                                           "2024-06-20T10:00:00+07:00")]))
    assert {m["window"] for m in scorer.flush()} == {"month:2024-05", "year:2024"}
    scorer.process(feed.batch([ev.tick("2024-06-01T00:00:00+07:00")]))
    # June has nothing for u1 yet: no month message (no score), and the year is unchanged
    assert scorer.flush() == []
    scorer.process(feed.batch([ev.received("u1", "d2", "2024-06-01T09:00:00+07:00",
                                           "2024-06-20T10:00:00+07:00")]))
    out = by_window(scorer.flush(), "u1")
    assert set(out) == {"month:2024-06", "year:2024"}
    assert out["month:2024-06"]["indicators"]["on_time"]["den"] == 1
    assert out["year:2024"]["indicators"]["on_time"]["den"] == 2


# --- held facts --------------------------------------------------------------------------------


def test_completed_before_received_takes_effect_when_received_arrives(
    scorer: ScorerCore, feed: Any, ev: Any
) -> None:
    # completion is late (after the due time the received event will carry)
    out = scorer.process(feed.batch([
        ev.dossier("completed", "u1", "d1", at(200), e_result=True),
        ev.dossier("completed", "u1", "d2", at(50), e_result=False),
    ]))
    assert len(out.accepted) == 2 and not out.rejected
    assert scorer.flush() == []  # nothing received yet: no score
    scorer.process(feed.batch([ev.received("u1", "d1", at(0), at(100))]))
    msg = by_window(scorer.flush(), "u1")["year:2024"]
    assert msg["indicators"]["e_result"]["num"] == 1
    assert msg["indicators"]["e_result"]["den"] == 1
    assert msg["indicators"]["on_time"]["num"] == 0  # completed at 200 > due at 100
    assert msg["indicators"]["on_time"]["den"] == 1
    scorer.process(feed.batch([ev.received("u1", "d2", at(10), at(100))]))
    msg = by_window(scorer.flush(), "u1")["year:2024"]
    assert msg["indicators"]["e_result"] == {"num": 1, "den": 2, "points": 3, "max": 6,
                                             "applicable": True}
    assert msg["indicators"]["on_time"]["num"] == 1


def test_held_facts_survive_a_rebuild(
    small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any
) -> None:
    a = ScorerCore(small_catalog, model, mem_store)
    a.process(feed.batch([
        ev.dossier("completed", "u1", "d1", at(30), e_result=True),
        {"event_id": "pr1", "type": "petition.resolved", "occurred_at": at(40),
         "unit_id": "u1", "petition_id": "p1"},
    ]))
    assert a.flush() == []
    b = ScorerCore(small_catalog, model, mem_store.recovered())
    b.rebuild({0})
    assert b.flush() == []  # nothing withdrawn: it never had a score to take back
    b.process(feed.batch([
        ev.received("u1", "d1", at(0), at(100)),
        {"event_id": "pv1", "type": "petition.received", "occurred_at": at(5),
         "unit_id": "u1", "petition_id": "p1", "due_at": at(20)},
    ]))
    ind = by_window(b.flush(), "u1")["year:2024"]["indicators"]
    assert (ind["e_result"]["num"], ind["e_result"]["den"]) == (1, 1)
    assert (ind["on_time"]["num"], ind["on_time"]["den"]) == (1, 1)
    assert (ind["petitions_on_time"]["num"], ind["petitions_on_time"]["den"]) == (0, 1)


# --- future timestamps -------------------------------------------------------------------------


@pytest.mark.parametrize(("ahead_us", "accepted"), [
    (0, True),
    (300_000_000, True),          # exactly the allowed skew
    (300_000_001, False),         # one microsecond more
    (3_600_000_000, False),
])
def test_future_timestamps(
    small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any,
    ahead_us: int, accepted: bool,
) -> None:
    now = BASE
    live = ScorerCore(small_catalog, model, mem_store, now_us=lambda: now)
    event = ev.received("u1", "d1", format_ts(now + ahead_us), at(6000))
    out = live.process(feed.batch([event]))
    if accepted:
        assert len(out.accepted) == 1 and not out.rejected
        assert live.watermark[0] == now + ahead_us
    else:
        assert out.accepted == []
        assert codes(out) == ["future_timestamp"]
        assert 0 not in live.watermark  # a refused event does not move event time
        assert mem_store.get("seen", event["event_id"]) is None  # nor is it remembered
        assert live.flush() == []


def test_future_event_accepted_once_wall_time_catches_up(
    small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any
) -> None:
    clock = [BASE]
    live = ScorerCore(small_catalog, model, mem_store, now_us=lambda: clock[0])
    event = ev.received("u1", "d1", at(10), at(6000))
    assert codes(live.process(feed.batch([event]))) == ["future_timestamp"]
    clock[0] = BASE + 5 * MINUTE
    out = live.process(feed.batch([event]))  # re-sent later: not a duplicate of the refusal
    assert len(out.accepted) == 1


# --- reassignment ------------------------------------------------------------------------------


def test_rebuild_only_scores_owned_partitions(
    small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any
) -> None:
    a = ScorerCore(small_catalog, model, mem_store)
    for p, unit in enumerate(("u1", "u2", "u3")):
        a.process([feed.msg(ev.received(unit, f"d-{unit}", at(p), at(600)), partition=p)])
    assert {m["unit_id"] for m in a.flush()} == {"u1", "u2", "u3"}
    a.rebuild({0, 2})
    assert {m["unit_id"] for m in a.flush()} <= {"u1", "u3"}
    assert set(a.unit_partition) == {"u1", "u3"}
    assert set(a.watermark) == {0, 2}
    b = ScorerCore(small_catalog, model, mem_store.recovered(partitions={1}))
    b.rebuild({1})
    out = b.flush()
    assert {m["unit_id"] for m in out} == {"u2"}
    assert by_window(out, "u2")["year:2024"]["input"] == {
        "topic": "procedure-events", "partition": 1, "offset": 0}


def test_partition_coming_back_republishes_what_changed_meanwhile(
    small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any
) -> None:
    a = ScorerCore(small_catalog, model, mem_store)
    a.process([feed.msg(ev.received("u1", "d1", at(0), at(6000)), partition=1)])
    board = {(m["window"], m["unit_id"]): m for m in a.flush()}
    assert board[("year:2024", "u1")]["indicators"]["on_time"]["den"] == 1

    a.rebuild({0})  # rebalance: partition 1 goes to worker b (same changelog)
    b = ScorerCore(small_catalog, model, mem_store)
    b.rebuild({1})
    board.update({(m["window"], m["unit_id"]): m for m in b.flush()})
    b.process([feed.msg(ev.received("u1", "d2", at(1), at(6000)), partition=1)])
    board.update({(m["window"], m["unit_id"]): m for m in b.flush()})
    assert board[("year:2024", "u1")]["indicators"]["on_time"]["den"] == 2
    # d2 is withdrawn; b dies before its next flush
    b.process([feed.msg(ev.dossier("withdrawn", "u1", "d2", at(2)), partition=1)])

    a.rebuild({0, 1})  # partition 1 comes back to a
    board.update({(m["window"], m["unit_id"]): m for m in a.flush()})
    assert board[("year:2024", "u1")]["indicators"]["on_time"]["den"] == 1


# --- live and offline agree ----------------------------------------------------------------------


def test_live_and_offline_give_a_large_event_the_same_verdict(
    small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any, tmp_path: Any
) -> None:
    body = ev.received("u1", "d1", at(0), at(600), note="x" * 100_000)
    raw = orjson.dumps(body)
    settings = Settings.from_env(env={})
    live = ScorerCore(small_catalog, model, mem_store, max_bytes=settings.max_message_bytes)
    live_accepted = len(live.process(feed.batch([raw])).accepted)
    path = tmp_path / "events.jsonl"
    path.write_bytes(raw + b"\n")
    offline_accepted = load(path, small_catalog, model).accepted
    assert live_accepted == offline_accepted


def test_a_unit_on_a_second_partition_behind_never_goes_back_in_time(
    scorer: ScorerCore, feed: Any, ev: Any, caplog: Any
) -> None:
    """Events not keyed by unit_id (or a topic whose partitions changed): a unit's event on a
    partition whose watermark is behind. Scoring at that older time would move settled counts
    back (they cannot) and stop every later unit's flush; the unit is scored at its latest."""
    out = scorer.process(feed.batch([ev.received("u1", "d1", at(0), at(600)),
                                     ev.dossier("completed", "u1", "d1", at(60), e_result=True),
                                     ev.received("u2", "d9", at(0), at(600)),
                                     ev.tick(at(2 * 24 * 60))]))
    assert len(out.accepted) == 4
    first = by_window(scorer.flush(), "u1")
    assert scorer.running["u1"].settled  # d1 settled: u1's counts cannot go back
    late = ev.received("u1", "d2", at(30), at(900))
    scorer.process(feed.batch([late, ev.received("u2", "d10", at(30), at(900))], partition=1))
    second = scorer.flush()  # raised ValueError before, losing u2's update with it
    u1, u2 = by_window(second, "u1"), by_window(second, "u2")
    assert u1["year:2024"]["as_of"] == first["year:2024"]["as_of"]  # not back in time
    assert u1["year:2024"]["indicators"]["on_time"]["den"] == 2
    assert u2["year:2024"]["indicators"]["on_time"]["den"] == 2
    assert "keyed by unit_id" in caplog.text


def test_a_unit_that_lost_its_score_before_a_restart_is_said_so_after(
    small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any
) -> None:
    """A withdrawal empties u1's windows and the worker restarts before its next flush: the
    ranker (and the board) still hold u1's old score. What was sent before is unknown after a
    rebuild, so a unit with no score but a withdrawn dossier in the window says so once
    (SPEC 3: no score, no rank)."""
    scorer = ScorerCore(small_catalog, model, mem_store)
    scorer.process(feed.batch([ev.received("u1", "d1", at(0), at(600)),
                               ev.received("u2", "d2", at(5), at(600))]))
    assert by_window(scorer.flush(), "u1")["year:2024"]["total"] is not None
    scorer.process(feed.batch([ev.dossier("withdrawn", "u1", "d1", at(60))]))
    again = ScorerCore(small_catalog, model, mem_store.recovered())
    again.rebuild({0})
    out = again.flush()
    u1 = by_window(out, "u1")
    assert set(u1) == {"year:2024", "month:2024-05"}
    assert all(m["total"] is None and m["band"] is None for m in u1.values())
    assert by_window(out, "u2")["year:2024"]["total"] is not None
    assert again.flush() == []  # once: not at every flush
    fresh = ScorerCore(small_catalog, model, mem_store.recovered())
    fresh.process(feed.batch([ev.received("u3", "d3", at(70), at(80))]))
    assert "u3" in {m["unit_id"] for m in fresh.flush()}  # nothing held back otherwise


@pytest.mark.parametrize("kind", ["dossier", "petition"])
def test_a_receipt_moved_out_of_a_window_after_a_restart_clears_its_score(
    small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any, kind: str
) -> None:
    """An earlier ``received`` moves u1's only record from May to April, and the worker
    restarts before its next flush: the rebuilt facts still have it in May, the input read
    again moves it. The board holds u1's May score from before; what was sent is unknown
    after a rebuild, so the May window that the record left says "no score" once."""
    first = ev.received("u1", "r1", at(0), at(600))
    if kind == "petition":
        first = {"event_id": "p-first", "type": "petition.received", "occurred_at": at(0),
                 "unit_id": "u1", "petition_id": "r1", "due_at": at(600)}
    scorer = ScorerCore(small_catalog, model, mem_store)
    scorer.process(feed.batch([first, ev.received("u2", "d2", at(5), at(600))]))
    assert by_window(scorer.flush(), "u1")["month:2024-05"]["total"] is not None
    committed = len(mem_store.changelog)
    april = "2024-04-20T08:00:00+07:00"
    earlier = {**first, "event_id": "earlier", "occurred_at": april}
    again_batch = [feed.msg(earlier)]
    scorer.process(again_batch)
    # a crash loses what was written after the commit: the rebuild has r1 in May
    again = ScorerCore(small_catalog, model,
                       mem_store.recovered(keep=lambda i, table: i < committed))
    again.rebuild({0})
    again.process(again_batch)
    u1 = by_window(again.flush(), "u1")
    assert u1["month:2024-05"]["total"] is None and u1["month:2024-05"]["band"] is None
    assert u1["year:2024"]["total"] is not None  # April is in the year still
    assert "month:2024-05" not in by_window(again.flush(), "u1")  # said once


def move_u1_to_april(scorer: ScorerCore, feed: Any, ev: Any, kind: str = "dossier") -> None:
    """u1's only record, received in May and scored there, received again in April: the
    earlier receipt moves it out of May (the batch written to the tables, not flushed)."""
    first = ev.received("u1", "r1", at(0), at(600))
    if kind == "petition":
        first = {"event_id": "p-first", "type": "petition.received", "occurred_at": at(0),
                 "unit_id": "u1", "petition_id": "r1", "due_at": at(600)}
    scorer.process(feed.batch([first, ev.received("u2", "d2", at(5), at(600))]))
    assert by_window(scorer.flush(), "u1")["month:2024-05"]["total"] is not None
    earlier = {**first, "event_id": "earlier", "occurred_at": "2024-04-20T08:00:00+07:00"}
    scorer.process([feed.msg(earlier)])


@pytest.mark.parametrize("kind", ["dossier", "petition"])
def test_a_receipt_moved_after_the_commit_clears_its_score_after_a_restart(
    small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any, kind: str
) -> None:
    """As above, but the batch that moved u1's only record to April was committed before the
    restart (a rebalance does this routinely): nothing is read again, the rebuilt facts hold
    the April receipt only. The facts table keeps the times that receipts moved records away
    from, so the emptied May window still says "no score" once."""
    move_u1_to_april(ScorerCore(small_catalog, model, mem_store), feed, ev, kind)
    again = ScorerCore(small_catalog, model, mem_store.recovered())
    again.rebuild({0})
    u1 = by_window(again.flush(), "u1")
    assert u1["month:2024-05"]["total"] is None and u1["month:2024-05"]["band"] is None
    assert u1["year:2024"]["total"] is not None
    assert "month:2024-05" not in by_window(again.flush(), "u1")  # said once
    # and once per restart, not for good: a later restart says it again (what was sent is
    # unknown then too), which the board takes as the same "no score"
    third = ScorerCore(small_catalog, model, mem_store.recovered())
    third.rebuild({0})
    assert by_window(third.flush(), "u1")["month:2024-05"]["total"] is None


def test_the_moved_record_holds_times_that_any_time_zone_places(
    small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any
) -> None:
    """The moved record keeps the receipt time, not its month's start in the model's zone:
    rebuilt under UTC (where 1 May 00:00 +07:00 is still April), the emptied May window is
    still found. Found in review."""
    move_u1_to_april(ScorerCore(small_catalog, model, mem_store), feed, ev)
    utc = dataclasses.replace(model, timezone="UTC")
    again = ScorerCore(small_catalog, utc, mem_store.recovered())
    again.rebuild({0})
    assert by_window(again.flush(), "u1")["month:2024-05"]["total"] is None


def test_a_withdrawal_read_first_after_a_restart_clears_the_score(
    small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any
) -> None:
    """A clean restart (or a rebalance), then u1's only dossier is withdrawn before the first
    flush: what was sent is unknown after a rebuild, so the emptied window says so once (it
    was noted only by the rebuild, for withdrawals already in the facts). Found in review."""
    scorer = ScorerCore(small_catalog, model, mem_store)
    scorer.process(feed.batch([ev.received("u1", "d1", at(0), at(600)),
                               ev.received("u2", "d2", at(5), at(600))]))
    assert by_window(scorer.flush(), "u1")["month:2024-05"]["total"] is not None
    again = ScorerCore(small_catalog, model, mem_store.recovered())
    again.rebuild({0})
    again.process([feed.msg(ev.dossier("withdrawn", "u1", "d1", at(10)))])
    u1 = by_window(again.flush(), "u1")
    assert u1["month:2024-05"]["total"] is None and u1["year:2024"]["total"] is None


def test_facts_kept_ahead_of_their_clock_wait_for_the_input_read_again(
    small_catalog: Catalog, model: Model, mem_store: Any, feed: Any, ev: Any
) -> None:
    """A crash kept a batch's facts (part of them) but not its clock record: the rebuilt state
    holds events past the clock's offset. Scored at the clock's time and offset, the message
    would count events the input up to that offset does not hold (``--verify`` fails, and the
    ranker may take it). The partition waits until the input read again reaches the last
    offset the batch's facts may hold. Found by this session's review fuzzer."""
    scorer = ScorerCore(small_catalog, model, mem_store)
    scorer.process(feed.batch([ev.received("u1", "d1", at(0), at(600)),
                               ev.received("u2", "d2", at(5), at(600))]))
    first = by_window(scorer.flush(), "u1")["month:2024-05"]
    committed = len(mem_store.changelog)
    later = feed.batch([ev.received("u1", "d3", at(6), at(600), channel="in_person",
                                    full_online=False),
                        ev.dossier("digitized", "u2", "d2", at(6))])
    scorer.process(later)
    lost_clock = mem_store.recovered(keep=lambda i, table: i < committed or table != "clock")
    again = ScorerCore(small_catalog, model, lost_clock)
    again.rebuild({0})
    assert again.flush() == []  # not at the old clock's offset with the newer facts
    again.process(later[:1])
    assert again.flush() == []  # not all of what the facts may hold is read again yet
    # and a second crash there: the facts from before the first are in the table still
    resumed = len(lost_clock.changelog)
    twice = lost_clock.recovered(keep=lambda i, table: i < resumed or table != "clock")
    again = ScorerCore(small_catalog, model, twice)
    again.rebuild({0})
    again.process(later[:1])
    assert again.flush() == []
    again.process(later[1:])
    u1 = by_window(again.flush(), "u1")["month:2024-05"]
    assert u1["input"]["offset"] == later[-1].offset
    assert u1["indicators"]["online_submission"]["den"] == 2
    assert first["indicators"]["online_submission"]["den"] == 1
