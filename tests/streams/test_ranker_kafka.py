"""The ranker on its own consumer (``streams.rank_service``) against the real broker.

A ``bando ranker`` process (workers with ``BANDO_RANKER=off``) is SIGKILLed mid-stream and
restarted: its state comes back from its changelog and the final ranks equal ``bando score``.
And the inline ranker is not held back by the scorer: with a large backlog in the events topic
it ranks messages of the internal topic while most of the backlog is still unread.
"""

from __future__ import annotations

import asyncio
import re
import sys

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from pipeline_support import (
    Worker,
    group_lag,
    produce_lines,
    produce_ticks,
    read_all,
    run,
    wait_until,
)
from prometheus_client import REGISTRY
from test_pipeline_kafka import SHARED, check_equal, example_lines, final_time, truth

from bando import metrics
from bando.infra import ensure_project_topics
from streams.rank_service import (
    RankerService,
    create_ranker_topics,
    internal_topic,
    ranker_group,
)

pytestmark = pytest.mark.integration


class Ranker(Worker):
    """``bando ranker`` as a real process (start, kill, stop, log_tail as a worker's)."""

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "bando.cli", "ranker"]

    def loads(self) -> list[int]:
        """Changelog records each start loaded (from its log)."""
        text = self.log_path.read_text(errors="replace")
        return [int(n) for n in re.findall(r"ranker: loaded (\d+) changelog records", text)]


def test_ranker_process_killed_mid_stream_restarts_from_its_changelog(live_settings, tmp_path):
    s = live_settings.with_(catalog_path=str(SHARED / "catalog.json"), partitions=4,
                            coalesce_seconds=0.5, ranker="off")
    ensure_project_topics(s.kafka_bootstrap, s)
    lines = example_lines()
    as_of = final_time(lines)
    half = len(lines) // 2
    worker = Worker(s, tmp_path / "worker.log")
    ranker = Ranker(s, tmp_path / "ranker.log")

    def logs() -> str:
        return f"--- worker\n{worker.log_tail()}\n--- ranker\n{ranker.log_tail()}"

    try:
        worker.start()
        ranker.start()
        run(produce_lines(s.kafka_bootstrap, s.events_topic, lines[:half]))
        wait_until(lambda: [] if run(read_all(s.kafka_bootstrap, s.scores_topic, 500))
                   else ["no scores yet"], 60, "first scores", logs)
        # killed once it has committed what it ranked (so its state is in the changelog)
        wait_until(lambda: [f"lag {n}"] if (n := run(group_lag(
            s.kafka_bootstrap, ranker_group(s), internal_topic(s)))) else [], 60,
            "ranker committed", logs)
        ranker.kill()
        # The rest arrives and is scored while no ranker runs; the restarted ranker reads its
        # state back and ranks the internal messages its predecessor did not commit.
        run(produce_lines(s.kafka_bootstrap, s.events_topic, lines[half:] + lines[:200]))
        run(produce_ticks(s.kafka_bootstrap, s.events_topic, s.partitions, as_of, "final"))
        wait_until(lambda: [f"lag {n}"] if (n := run(group_lag(
            s.kafka_bootstrap, s.app_id, s.events_topic))) else [], 90, "scorer caught up", logs)
        ranker.start()
        truths = [truth(SHARED / "events.jsonl", as_of, w) for w in ("month", "year")]
        wait_until(check_equal(s, truths), 120, "live ranks != offline after SIGKILL", logs)
    finally:
        ranker.stop()
        worker.stop()
    loads = ranker.loads()
    assert len(loads) == 2 and loads[0] == 0 and loads[1] > 0, loads
    # the worker ranked nothing itself
    assert "ranker: loaded" not in worker.log_path.read_text(errors="replace")


def test_a_ranker_reads_its_whole_changelog_back(live_settings):
    """What one ranker wrote, the next one (or the same after a rebalance) reads in full."""
    s = live_settings
    create_ranker_topics(s)

    async def go() -> tuple[int, int]:
        first = RankerService(s)
        await first.start()
        try:
            for i in range(50):
                first.store.put("ranked", 0, f"month:2024-04\x1fu{i}", {
                    "unit_id": f"u{i}", "peer_group": "g", "window": "month:2024-04",
                    "total": 50.0 + i / 10, "band": "average"})
            await asyncio.gather(*await first.store.publish(first.producer))
            first.store.data.clear()
            await first.load()
            again = len(first.store.data)
        finally:
            await first.stop()
        metrics.forget_unit_scores()  # as when the ranker's partition moves away
        second = RankerService(s)
        await second.start()
        try:
            await second.load()
            return again, len(second.store.data)
        finally:
            await second.stop()

    assert run(go()) == (50, 50)
    # the new owner publishes every unit's gauges, not only those it ranks again
    score = REGISTRY.get_sample_value("bando_unit_score",
                                      {"unit_id": "u7", "window_kind": "month"})
    assert score == 50.7


def test_a_new_ranker_group_resumes_where_the_worker_group_stopped(live_settings):
    """Upgrading: the internal topic was read by the workers' faust group; the ranker's own
    group starts at that group's offset, not at the beginning of the topic's history."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    s = live_settings
    ensure_project_topics(s.kafka_bootstrap, s)
    create_ranker_topics(s)
    tp = TopicPartition(internal_topic(s), 0)

    async def go() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
        await producer.start()
        for i in range(8):
            await producer.send_and_wait(tp.topic, _probe(f"old-{i}", 1.0, i), partition=0)
        await producer.stop()
        old = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=s.app_id,
                               enable_auto_commit=False)
        await old.start()
        old.assign([tp])
        await old.commit({tp: OffsetAndMetadata(5, "")})
        await old.stop()
        ranker = RankerService(s)
        await ranker.start()
        try:
            for _ in range(30):
                await ranker.step(timeout_ms=500)
                if await ranker.consumer.committed(tp) is not None:
                    break
            return await ranker.consumer.committed(tp)
        finally:
            await ranker.stop()

    # offsets 5..7 ranked (and committed), 0..4 left to the old group's history
    assert run(go()) == 8
    ranked = {m["unit_id"] for m in run(read_all(s.kafka_bootstrap, s.scores_topic))}
    assert ranked == {"old-5", "old-6", "old-7"}


def _probe(unit: str, total: float, n: int) -> bytes:
    """An internal message (the scorer's flush output) for a unit of a peer group of its own."""
    return orjson.dumps({
        "unit_id": unit, "name": unit, "peer_group": "probe", "window": "2099-01",
        "as_of": "2099-01-15T00:00:00+07:00", "model": "vn766@1", "total": total,
        "band": "good", "groups": {}, "indicators": {}, "top_losses": [],
        "input": {"topic": "probe", "partition": 0, "offset": n},
    })


async def _produce_probes(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(topic, _probe(f"probe-{i}", 50.0 + i, i),
                                         key=b"probe", partition=0)
    finally:
        await producer.stop()


async def _lag_once_probes_ranked(s, n: int, timeout: float) -> int:
    """Produce ``n`` probes to the internal topic and return the worker group's input lag the
    moment all of them are in ``unit-scores``. The scores topic is tailed from its end (set
    before the probes go out), so each poll reads only new messages: re-reading the whole
    topic each time let a fast worker drain the backlog while the test looked (flaky)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - as group_lag does
        parts = [TopicPartition(s.scores_topic, p)
                 for p in sorted(consumer.partitions_for_topic(s.scores_topic) or ())]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for part in parts:
            await consumer.position(part)
        await _produce_probes(s.kafka_bootstrap, internal_topic(s), n)
        got: set[str] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(got) < n:
            assert loop.time() < deadline, f"only {len(got)} of {n} probes ranked"
            for msgs in (await consumer.getmany(timeout_ms=100)).values():
                got.update(m["unit_id"] for m in map(orjson.loads, (r.value for r in msgs))
                           if m.get("peer_group") == "probe")
        return await group_lag(s.kafka_bootstrap, s.app_id, s.events_topic)
    finally:
        await consumer.stop()


def test_inline_ranker_is_not_held_behind_an_events_backlog(live_settings, tmp_path):
    """Internal messages produced while a worker works through a large backlog of events are
    ranked before the backlog is read: ranking does not queue behind the scorer's input.

    (Not a discriminating test of the old wiring, whose ranker went first within each fetch
    too; the latency tail it had is measured by bench/live_pipeline.py.)"""
    from bando.simulator import Generator, messages, read_catalog

    s = live_settings.with_(partitions=4, coalesce_seconds=0.25)
    ensure_project_topics(s.kafka_bootstrap, s)
    gen = Generator(read_catalog(), start="2024-03-01", end="2024-03-15", seed=3)
    backlog = [value for _, key, value in messages(gen.events(), None, 3) if key is not None]
    assert len(backlog) > 100_000
    run(produce_lines(s.kafka_bootstrap, s.events_topic, backlog))
    worker = Worker(s, tmp_path / "worker.log", log_level="info")
    try:
        worker.start()
        # the scorer has started on the backlog (its first commit) and the ranker is up
        wait_until(lambda: [] if run(group_lag(s.kafka_bootstrap, s.app_id, s.events_topic))
                   < len(backlog) else ["nothing committed"], 90, "worker up", worker.log_tail)
        # polled often: the backlog drains at 30-45k events/s while the test looks
        wait_until(lambda: [] if "ranker: loaded" in worker.log_tail() else ["not yet"], 60,
                   "ranker up", worker.log_tail, interval=0.1)
        lag = run(_lag_once_probes_ranked(s, 3, 60))
    finally:
        worker.stop()
    print(f"\n[ranker backlog] {lag} of {len(backlog)} events unread when the probes were ranked")
    assert lag > len(backlog) // 10, (
        f"the probes were ranked only once the backlog was read ({lag} of {len(backlog)} "
        "events left)")
    probes = {m["unit_id"]: m for m in run(read_all(s.kafka_bootstrap, s.scores_topic))
              if m["peer_group"] == "probe"}
    assert {u: m["rank"] for u, m in probes.items()} == {"probe-0": 3, "probe-1": 2,
                                                         "probe-2": 1}
