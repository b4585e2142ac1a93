"""Fault tests 1 and 2: scorer workers SIGKILLed during heavy input, alone and in a pair.

The processing guarantee under test (README, docs/RELIABILITY.md): at-least-once delivery
with idempotent state. A killed worker's uncommitted batch is read again by whoever owns the
partition next and absorbed (de-duplication by event id, facts that are min/max/sets), so the
final scores equal ``bando score`` over the same messages: nothing lost, nothing twice.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_support import (
    ProducerThread,
    Service,
    TopicTail,
    check_dlq,
    group_assignment,
    group_lag,
    merged,
    produce,
    read_topic,
    scenario,
    services,
    simulated_messages,
    wait_scores_equal,
    wait_until,
    worker,
)

from bando.settings import Settings

pytestmark = pytest.mark.integration

RATE = 200.0  # messages per second: far above a busy city hour, sustained, on 2 cores
PRIMER = 300  # messages processed and committed by a first worker before a second joins


def _wait_new_scores(tail: TopicTail, since: int, timeout: float, what: str,
                     on_fail: Callable[[], str]) -> float:
    return wait_until(lambda: [] if tail.count() > since else ["no new score"], timeout, what,
                      on_fail, interval=0.2)


def _members(s: Settings, n: int) -> list[str]:
    """Problems unless the group has ``n`` members sharing every partition of the input."""
    members = group_assignment(s.kafka_bootstrap, s.app_id, s.events_topic)
    owned = sorted(p for m in members for p in m)
    if len(members) != n or owned != list(range(s.partitions)):
        return [f"members {members}"]
    return []


def _partitions_seen(w: Service) -> set[int]:
    """Partitions a worker processed, from its log of rejected messages ("p2@118")."""
    return {int(p) for p in re.findall(r"rejected \w+ p(\d+)@", w.log_tail(200_000))}


def _lag_zero(s: Settings) -> list[str]:
    lag = group_lag(s.kafka_bootstrap, s.app_id, s.events_topic)
    return [] if lag == 0 else [f"lag {lag}"]


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_worker_killed_repeatedly_during_heavy_input(
    fault_settings: Settings, score_tail: TopicTail, tmp_path: Path, store: str
) -> None:
    """Three SIGKILLs while ~200 messages/s arrive: one mid-stream, one during the restart's
    own changelog recovery, one mid-stream again. Final scores equal the truth exactly.

    With the disk store (``BANDO_STORE=rocksdb``) each restart starts from the local database
    the killed process left, plus the changelog tail."""
    s = fault_settings.with_(store=store)
    msgs = simulated_messages("2024-03-04", "2024-03-14", s.partitions, seed=11)
    as_of, final, events, expected = scenario(msgs, s.partitions, tmp_path)
    w = worker(s, tmp_path / "worker.log")
    rng = random.Random(7)
    recoveries: list[float] = []
    with services(w):
        w.start()
        producer = ProducerThread(s.kafka_bootstrap, s.events_topic, msgs, RATE)
        producer.start()
        for kill_during_recovery in (False, True, False):
            seen = score_tail.count()
            _wait_new_scores(score_tail, seen, 90, "worker publishes before the kill",
                             w.log_tail)
            time.sleep(rng.uniform(0.5, 2.0))
            assert producer.stats.acked < len(msgs), "input must still be arriving"
            w.kill()
            time.sleep(0.5)
            restarted, seen = time.monotonic(), score_tail.count()
            w.start()
            if kill_during_recovery:
                time.sleep(2.0)  # faust is still starting or reading its changelogs
                w.kill()
                restarted, seen = time.monotonic(), score_tail.count()
                w.start()
            _wait_new_scores(score_tail, seen, 90, "worker publishes after restart", w.log_tail)
            recoveries.append(time.monotonic() - restarted)
        stats = producer.wait(240)
        assert stats.acked == len(msgs)
        final_stats = produce(s.kafka_bootstrap, s.events_topic, final)
        caught_up = wait_scores_equal(score_tail, expected, 120,
                                      "live != bando score after 3 SIGKILLs", w.log_tail, s,
                                      msgs + final, merged((0, stats), (len(msgs), final_stats)))
        wait_until(lambda: _lag_zero(s), 60, "consumer lag back to zero", w.log_tail)
        assert w.running and w.starts == 5
    dlq = read_topic(s.kafka_bootstrap, s.dlq_topic)
    problems = check_dlq(dlq, msgs, stats, expected[0], s.events_topic)
    assert not problems, problems[:10]
    print(f"\n[worker kills] {len(msgs)} messages, recoveries (restart -> first score) "
          f"{[round(r, 1) for r in recoveries]} s, caught up {caught_up:.1f} s after the "
          f"last message, DLQ {len(dlq)} records for {len(expected[0]['rejected'])} bad")


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_two_workers_one_killed_the_other_takes_over_then_it_returns(
    fault_settings: Settings, score_tail: TopicTail, tmp_path: Path, store: str
) -> None:
    """Two workers in one group; one that owns partitions is SIGKILLed mid-stream: the survivor
    takes every partition (the group's committed offsets reach the end with one member), then
    the killed one comes back and the group is two again. Final scores equal the truth.

    faust's assignor usually splits the partitions but may give them all to the first member
    (the other one then holds standby replicas); the victim is a worker seen processing.

    With the disk store each worker has its own data directory (one machine, two workers):
    partitions move with their changelogs, and the returning worker's local store is behind
    what the survivor wrote meanwhile."""
    s = fault_settings.with_(store=store)
    msgs = simulated_messages("2024-03-04", "2024-03-11", s.partitions, seed=12)
    as_of, final, events, expected = scenario(msgs, s.partitions, tmp_path)
    first_half = len(msgs) // 2
    w1 = worker(s.with_(data_dir=str(tmp_path / "data-w1")), tmp_path / "w1.log")
    w2 = worker(s.with_(data_dir=str(tmp_path / "data-w2")), tmp_path / "w2.log")

    def logs() -> str:
        return f"--- w1\n{w1.log_tail()}\n--- w2\n{w2.log_tail()}"

    with services(w1, w2):
        w1.start()
        w2.start()
        wait_until(lambda: _members(s, 2), 90, "two workers in the group", logs)
        before = group_assignment(s.kafka_bootstrap, s.app_id, s.events_topic)
        # Every partition gets a committed offset before the test proper: this test is about
        # the takeover after a crash (a group forming under load is the test below).
        time.sleep(3.0)
        primer = produce(s.kafka_bootstrap, s.events_topic, msgs[:PRIMER])
        wait_until(lambda: _lag_zero(s), 90, "every partition committed", logs)
        producer = ProducerThread(s.kafka_bootstrap, s.events_topic, msgs[PRIMER:first_half],
                                  RATE)
        producer.start()
        seen = score_tail.count()
        _wait_new_scores(score_tail, seen, 90, "scores flow with two workers", logs)
        time.sleep(2.0)
        owners = {w: _partitions_seen(w) for w in (w1, w2)}
        victim = w1 if owners[w1] or not owners[w2] else w2
        survivor = w2 if victim is w1 else w1
        victim.kill()
        killed = time.monotonic()
        takeover = wait_until(lambda: _members(s, 1), 60, "survivor owns every partition", logs,
                              interval=0.3)
        assert producer.stats.acked < first_half, "input still arriving during the takeover"
        producer.wait(180)
        # The survivor alone brings every partition to the end: it took w1's partitions.
        wait_until(lambda: _lag_zero(s), 90, "survivor catches up", logs)
        caught_up = time.monotonic() - killed
        assert survivor.running and survivor.starts == 1
        victim.start()
        wait_until(lambda: _members(s, 2), 90, "killed worker rejoins", logs)
        first = producer.stats
        rest = produce(s.kafka_bootstrap, s.events_topic, msgs[first_half:] + final, RATE)
        wait_scores_equal(score_tail, expected, 120, "live != bando score", logs, s,
                          msgs + final,
                          merged((0, primer), (PRIMER, first), (first_half, rest)))
        wait_until(lambda: _lag_zero(s), 60, "lag back to zero", logs)
        assert w1.running and w2.running
    print(f"\n[two workers] partitions {before}, killed the owner of "
          f"{sorted(owners[victim])}; the survivor owned all {takeover:.1f} s "
          f"after the kill and had no lag {caught_up:.1f} s after it; {rest.acked} more "
          "messages after the rejoin")


def test_events_arriving_while_a_new_group_forms_are_not_skipped(
    fault_settings: Settings, score_tail: TopicTail, tmp_path: Path
) -> None:
    """Three workers of a brand-new group start one second apart while events already flow:
    the group rebalances three times before its offsets are committed. Nothing may be lost."""
    s = fault_settings
    msgs = simulated_messages("2024-03-04", "2024-03-06", s.partitions, seed=17)
    as_of, final, _, expected = scenario(msgs, s.partitions, tmp_path)
    ws = [worker(s, tmp_path / f"w{i}.log") for i in (1, 2, 3)]

    def logs() -> str:
        return "\n".join(f"--- w{i}\n{w.log_tail(1500)}" for i, w in enumerate(ws, 1))

    with services(*ws):
        producer = ProducerThread(s.kafka_bootstrap, s.events_topic, msgs, 150.0)
        producer.start()
        for w in ws:
            w.start()
            time.sleep(1.0)
        stats = producer.wait(180)
        final_stats = produce(s.kafka_bootstrap, s.events_topic, final)
        wait_scores_equal(score_tail, expected, 90, "live != bando score (new group)", logs,
                          s, msgs + final, merged((0, stats), (len(msgs), final_stats)))
