"""The worker with its tables on disk (``BANDO_STORE=rocksdb``, ``streams.diskstore``) against
the real broker: a restarted worker reuses its local store and reads only the changelog tail;
with its store directory deleted it rebuilds everything from the changelogs; the final scores
equal ``bando score`` either way (SIGKILLs included).
"""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pipeline_support import (
    Worker,
    produce_lines,
    produce_ticks,
    run,
    wait_caught_up,
    wait_until,
)
from test_pipeline_kafka import (
    SHARED,
    check_equal,
    example_lines,
    final_time,
    truth,
    worker_metrics,
)

from bando.infra import ensure_project_topics
from bando.infra.ports import free_port
from bando.settings import Settings

pytestmark = pytest.mark.integration


def dossier_of(line: bytes | str) -> str | None:
    try:
        body = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    value = body.get("dossier_id") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def loaded(worker: Worker) -> dict[str, int]:
    """Changelog records each table read at start-up: bulk loads and faust's own replay."""
    counts: Counter[str] = Counter()
    text = worker.log_path.read_text(errors="replace")
    for table, n in re.findall(r"(\w+): loaded (\d+) changelog records of partitions", text):
        counts[table] += int(n)
    return dict(counts)


async def changelog_records(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(parts)
        starts = await consumer.beginning_offsets(parts)
        return sum(ends[p] - starts[p] for p in parts)
    finally:
        await consumer.stop()


def test_disk_store_restarts_from_local_state_and_rebuilds_when_deleted(
    live_settings: Settings, tmp_path: Path
) -> None:
    s = live_settings.with_(catalog_path=str(SHARED / "catalog.json"), partitions=4,
                            coalesce_seconds=0.5, store="rocksdb", metrics_port=free_port())
    ensure_project_topics(s.kafka_bootstrap, s)
    store_dir = Path(s.data_dir) / f"faust-{s.app_id}"
    lines = example_lines()
    as_of = final_time(lines)
    parts = [lines[i * len(lines) // 3:(i + 1) * len(lines) // 3] for i in range(3)]
    seen_topic = f"{s.app_id}-seen-changelog"

    def caught_up(worker: Worker) -> None:
        wait_caught_up(s, worker)

    w1 = Worker(s, tmp_path / "w1.log", log_level="info")
    w2 = Worker(s, tmp_path / "w2.log", log_level="info")
    w3 = Worker(s, tmp_path / "w3.log", log_level="info")
    try:
        run(produce_lines(s.kafka_bootstrap, s.events_topic, parts[0]))
        w1.start()
        caught_up(w1)
        w1.kill()
        assert any(store_dir.rglob("*.sst")) or any(store_dir.rglob("*.log")), \
            "no RocksDB files under the worker's data directory"
        seen_at_kill = run(changelog_records(s.kafka_bootstrap, seen_topic, s.partitions))
        assert seen_at_kill > 1000
        # the second half arrives while no worker runs, plus a replay of the first lines
        run(produce_lines(s.kafka_bootstrap, s.events_topic, parts[1] + lines[:200]))
        w2.start()
        caught_up(w2)
        w2.kill()
        tables = [d for d in store_dir.rglob("tables") if any(d.glob("seen-*.db"))]
        assert tables, "no local store of the seen table"
        for d in tables:
            shutil.rmtree(d)  # a lost disk: everything from the changelogs
        seen_before_w3 = run(changelog_records(s.kafka_bootstrap, seen_topic, s.partitions))
        run(produce_lines(s.kafka_bootstrap, s.events_topic, parts[2] + lines[:100]))
        run(produce_ticks(s.kafka_bootstrap, s.events_topic, s.partitions, as_of, "final"))
        w3.start()
        truths = [truth(SHARED / "events.jsonl", as_of, w) for w in ("month", "year")]
        wait_until(check_equal(s, truths), 120, "live != offline (rocksdb store)",
                   w3.log_tail)
        time.sleep(6)  # one round of the 5 s table-size timer
        m = worker_metrics(s.metrics_port)
    finally:
        for w in (w1, w2, w3):
            w.stop()
    assert not any(loaded(w1).values()), "the first worker started on empty changelogs"
    # w2 found its local store: at most the records whose acknowledgement the kill overtook
    assert loaded(w2).get("seen", 0) < seen_at_kill // 10, loaded(w2)
    # w3 had no local store: every seen record was read again
    assert loaded(w3).get("seen", 0) >= seen_before_w3 * 9 // 10, (loaded(w3), seen_before_w3)
    # /metrics: RocksDB's memory by part, and only the dossiers still in play held in memory
    # (766 of the example's 890 dossiers are completed or withdrawn: they settle)
    memory = {dict(k[1])["part"]: v for k, v in m.items() if k[0] == "bando_store_memory_bytes"}
    assert set(memory) == {"block_cache", "memtables", "table_readers"}, m
    assert memory["memtables"] > 0
    dossiers = {d for line in lines if (d := dossier_of(line))}
    assert len(dossiers) > 800
    assert m[("bando_dossiers_in_memory", ())] < len(dossiers) // 2
