"""The live pipeline against the real broker: live scores equal ``bando score``.

Each test runs ``bando worker`` as a real process, produces the worked example of SPEC section
6 (shuffled, duplicated, orphaned, with bad lines) to ``procedure-events`` and waits until the
latest ``unit-scores`` per unit equal the offline result at the final watermark.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from pipeline_support import (
    Worker,
    diff_against,
    latest_by_unit,
    produce_lines,
    produce_ticks,
    read_all,
    run,
    wait_caught_up,
    wait_until,
)

from bando.batch import iter_lines, load, score_report
from bando.infra import ensure_project_topics
from scoring.catalog import load_catalog
from scoring.model import load_model
from scoring.timeutil import format_ts, parse_ts, resolve_window

pytestmark = pytest.mark.integration

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "examples" / "vn766"


def example_lines() -> list[bytes]:
    if not SHARED.is_dir():
        pytest.fail(f"the worked example is missing: {SHARED}")
    return [line for _, line in iter_lines(SHARED / "events.jsonl")]


def final_time(lines: list[bytes]) -> str:
    latest = 0
    for line in lines:
        try:
            ts = parse_ts(orjson.loads(line).get("occurred_at"))
        except (orjson.JSONDecodeError, AttributeError):
            continue
        latest = max(latest, ts or 0)
    return format_ts(latest + 1_000_000)


def truth(path: Path, as_of: str, window: str) -> dict:
    catalog = load_catalog(SHARED / "catalog.json")
    model = load_model()
    loaded = load(path, catalog, model)
    t = parse_ts(as_of)
    assert t is not None
    return score_report(loaded, resolve_window(window, t), t, as_of)


def check_equal(settings, truths):  # type: ignore[no-untyped-def]
    def check() -> list[str]:
        latest = latest_by_unit(run(read_all(settings.kafka_bootstrap, settings.scores_topic,
                                             idle_ms=800)))
        problems: list[str] = []
        for t in truths:
            problems += diff_against(t, latest)
        return problems
    return check


@pytest.fixture
def example_settings(live_settings, tmp_path):  # type: ignore[no-untyped-def]
    s = live_settings.with_(catalog_path=str(SHARED / "catalog.json"), partitions=4,
                            coalesce_seconds=0.5)
    ensure_project_topics(s.kafka_bootstrap, s)
    return s


def worker_metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_live_scores_equal_offline_and_bad_input_goes_to_dlq(example_settings, tmp_path):
    from bando.infra.ports import free_port

    s = example_settings.with_(metrics_port=free_port())
    lines = example_lines()
    as_of = final_time(lines)
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    extra = [
        orjson.dumps({"event_id": "too-big", "type": "dossier.digitized", "unit_id": "so-01",
                      "occurred_at": "2024-01-20T08:00:00+07:00", "dossier_id": "x" * 10,
                      "padding": "y" * (s.max_message_bytes + 10)}),
        orjson.dumps({"event_id": "from-the-future", "type": "dossier.digitized",
                      "unit_id": "so-01", "occurred_at": future, "dossier_id": "so-01-d1"}),
    ]
    truths = [truth(SHARED / "events.jsonl", as_of, w) for w in ("month", "year")]
    assert any(u["total"] is not None for u in truths[1]["units"])
    # Two halves, the second after the first is scored: ranks then move between flushes
    # however fast the worker is, so rank-changes must appear.
    half = len(lines) // 2
    run(produce_lines(s.kafka_bootstrap, s.events_topic, lines[:half]))
    worker = Worker(s, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: [] if run(read_all(s.kafka_bootstrap, s.scores_topic, 500))
                   else ["no scores yet"], 60, "first scores", worker.log_tail)
        run(produce_lines(s.kafka_bootstrap, s.events_topic, lines[half:] + extra))
        run(produce_ticks(s.kafka_bootstrap, s.events_topic, s.partitions, as_of, "final"))
        wait_until(check_equal(s, truths), 90, "live != offline", worker.log_tail)
        time.sleep(6)  # one round of the 5 s lag / table-size timer
        m = worker_metrics(s.metrics_port)
    finally:
        worker.stop()

    # /metrics of the worker parses and shows what it did
    assert m[("bando_events_rejected_total", (("error", "invalid_json"),))] == 2
    assert m[("bando_events_consumed_total", (("type", "dossier.received"),))] > 0
    assert m[("bando_scores_published_total", ())] > 0
    assert m[("bando_table_rows", (("table", "facts"),))] > 0
    lags = {k: v for k, v in m.items() if k[0] == "bando_consumer_lag"
            and ("topic", s.events_topic) in k[1]}
    assert len(lags) == s.partitions and set(lags.values()) == {0.0}

    dlq = run(read_all(s.kafka_bootstrap, s.dlq_topic))
    expected = Counter(r["error"] for r in truths[0]["rejected"])
    expected.update(["too_large", "future_timestamp"])
    assert Counter(r["error"] for r in dlq) == expected
    for record in dlq:
        assert record["topic"] == s.events_topic
        assert {"detail", "partition", "offset", "key", "value", "rejected_at"} <= set(record)
    big = next(r for r in dlq if r["error"] == "too_large")
    assert "padding" in big["value"]  # the original is kept

    ranks = run(read_all(s.kafka_bootstrap, s.rank_changes_topic))
    assert ranks, "the example's units change rank while events arrive"
    for r in ranks:
        assert r["old_rank"] != r["new_rank"]
    bands = run(read_all(s.kafka_bootstrap, s.band_changes_topic))
    order = ["weak", "average", "fair", "good", "excellent"]
    for b in bands:
        up = order.index(b["new_band"]) > order.index(b["old_band"])
        assert b["direction"] == ("up" if up else "down")


def test_worker_killed_mid_stream_loses_and_double_counts_nothing(example_settings, tmp_path):
    s = example_settings
    lines = example_lines()
    as_of = final_time(lines)
    half = len(lines) // 2
    run(produce_lines(s.kafka_bootstrap, s.events_topic, lines[:half]))
    worker = Worker(s, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: [] if run(read_all(s.kafka_bootstrap, s.scores_topic, 500))
                   else ["no scores yet"], 60, "first scores", worker.log_tail)
        worker.kill()
        # The second half arrives while no worker runs; a replayed first half must not count twice.
        run(produce_lines(s.kafka_bootstrap, s.events_topic, lines[half:] + lines[:200]))
        run(produce_ticks(s.kafka_bootstrap, s.events_topic, s.partitions, as_of, "final"))
        time.sleep(0.5)
        worker.start()
        truths = [truth(SHARED / "events.jsonl", as_of, w) for w in ("month", "year")]
        wait_until(check_equal(s, truths), 120, "live != offline after SIGKILL",
                   worker.log_tail)
    finally:
        worker.stop()


def bulk_loads(worker: Worker) -> dict[str, int]:
    """Changelog records each table loaded in bulk (``streams.bulkstore``), from its log."""
    loads: Counter[str] = Counter()
    text = worker.log_path.read_text(errors="replace")
    for table, n in re.findall(r"(\w+): loaded (\d+) changelog records of partitions", text):
        loads[table] += int(n)
    return dict(loads)


def test_state_moves_and_restarts_through_bulk_recovery(example_settings, tmp_path):
    """Partitions move between two workers (one joins, one is SIGKILLed, one restarts), each
    time loaded from the changelogs in bulk; the final scores still equal ``bando score``."""
    s = example_settings
    lines = example_lines()
    as_of = final_time(lines)
    parts = [lines[i * len(lines) // 4:(i + 1) * len(lines) // 4] for i in range(4)]

    def caught_up(worker: Worker) -> None:
        wait_caught_up(s, worker)

    a = Worker(s, tmp_path / "a.log", log_level="info")
    b = Worker(s, tmp_path / "b.log", log_level="info")
    a2 = Worker(s, tmp_path / "a2.log", log_level="info")
    try:
        run(produce_lines(s.kafka_bootstrap, s.events_topic, parts[0]))
        a.start()
        caught_up(a)
        b.start()  # takes some partitions from a, which loads nothing again
        run(produce_lines(s.kafka_bootstrap, s.events_topic, parts[1]))
        wait_until(lambda: [] if "facts" in bulk_loads(b) else ["b loaded nothing"], 90,
                   "b's bulk load", b.log_tail)
        caught_up(b)
        a.kill()  # b takes all, including what it kept a standby copy of
        run(produce_lines(s.kafka_bootstrap, s.events_topic, parts[2]))
        caught_up(b)
        b.kill()
        a2.start()  # a fresh process: everything from the changelogs
        run(produce_lines(s.kafka_bootstrap, s.events_topic, parts[3] + lines[:200]))
        run(produce_ticks(s.kafka_bootstrap, s.events_topic, s.partitions, as_of, "final"))
        truths = [truth(SHARED / "events.jsonl", as_of, w) for w in ("month", "year")]
        wait_until(check_equal(s, truths), 120, "live != offline after moves", a2.log_tail)
    finally:
        for w in (a, b, a2):
            w.stop()
    assert not any(bulk_loads(a).values()), "the first worker started on empty changelogs"
    # b loaded the partitions it took over, a2 all of them (its logs say how many records)
    assert bulk_loads(b)["facts"] > 0
    assert bulk_loads(a2)["facts"] > 0
