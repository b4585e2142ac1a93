"""``audit.verify`` against the pipeline's own stages run in-process (no broker).

A clean run verifies every published message; any single tampered message is named; the DLQ
is what lets replay skip the events the worker refused by wall clock.
"""

from __future__ import annotations

import orjson
import pytest
from audit_pipeline_sim import DLQ, EVENTS, SCORES, SimulatedPipeline

from audit.exceptions import AuditError
from audit.kafka_source import KafkaSource
from audit.sources import MemorySource
from audit.verify import verify
from scoring.timeutil import parse_ts

NOW = parse_ts("2024-06-01T00:00:00+07:00")
FUTURE = orjson.dumps({"event_id": "from-the-future", "type": "dossier.digitized",
                       "unit_id": "so-01", "occurred_at": "2030-01-01T00:00:00+07:00",
                       "dossier_id": "so-01-d1"})


def run_example(catalog, model, lines, seed=0, restart=False) -> SimulatedPipeline:  # type: ignore[no-untyped-def]
    sim = SimulatedPipeline(catalog, model, seed=seed, now_us=NOW)
    half = len(lines) // 2
    sim.produce(lines[:half] + [FUTURE])
    sim.run()
    if restart:
        sim.restart_ranker()
    done = len(sim.topics[EVENTS])
    sim.produce(lines[half:])
    sim.produce_ticks("2024-05-01T00:00:00+07:00", "final")
    sim.run(processed_from=done)
    return sim


def check(source, catalog, model, **kw):  # type: ignore[no-untyped-def]
    return verify(source, catalog, model, events_topic=EVENTS, dlq_topic=DLQ,
                  scores_topic=SCORES, **kw)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_published_message_is_reproduced(example_catalog, model, example_lines, seed):
    sim = run_example(example_catalog, model, example_lines, seed=seed)
    report = check(sim.source(), example_catalog, model)
    assert report.mismatches == []
    assert report.ok
    assert report.checked == report.messages == len(sim.published()) > 100
    assert report.ingest.dlq_skipped >= 9  # the example's bad lines and the future event
    assert report.ingest.anomaly_count == 0


def test_a_ranker_restart_with_redelivery_still_verifies(example_catalog, model, example_lines):
    sim = run_example(example_catalog, model, example_lines, seed=3, restart=True)
    report = check(sim.source(), example_catalog, model)
    assert report.ok, [m.text() for m in report.mismatches[:5]]


def test_a_tampered_total_is_named(example_catalog, model, example_lines):
    sim = run_example(example_catalog, model, example_lines)
    victim = next(r for r in sim.published() if orjson.loads(r.value)["total"] is not None)
    total = orjson.loads(victim.value)["total"]
    bad = sim.tamper(victim, total=round(total + 1.0, 2))
    report = check(sim.source(), example_catalog, model)
    assert not report.ok
    assert [m.where for m in report.mismatches] == [f"{SCORES}[{bad.partition}]@{bad.offset}"]
    (m,) = report.mismatches
    assert m.kind == "content" and set(m.fields) == {"total"}
    assert m.fields["total"] == {"published": round(total + 1.0, 2), "expected": total}
    assert "MISMATCH" in m.text() and str(bad.offset) in m.text()


def test_a_tampered_rank_is_named(example_catalog, model, example_lines):
    sim = run_example(example_catalog, model, example_lines)
    victim = next(r for r in sim.published() if orjson.loads(r.value)["rank"] is not None)
    bad = sim.tamper(victim, rank=orjson.loads(victim.value)["rank"] + 1)
    report = check(sim.source(), example_catalog, model)
    assert [(m.where, m.kind) for m in report.mismatches] == [
        (f"{SCORES}[{bad.partition}]@{bad.offset}", "ranking")]
    assert set(report.mismatches[0].fields) == {"rank"}


def test_a_moved_input_position_is_caught(example_catalog, model, example_lines):
    sim = run_example(example_catalog, model, example_lines)
    victim = next(r for r in sim.published()
                  if orjson.loads(r.value)["total"] is not None
                  and orjson.loads(r.value)["input"]["offset"] > 50)
    msg = orjson.loads(victim.value)
    bad = sim.tamper(victim, input={**msg["input"], "offset": msg["input"]["offset"] - 40})
    report = check(sim.source(), example_catalog, model)
    wheres = {m.where for m in report.mismatches}
    assert f"{SCORES}[{bad.partition}]@{bad.offset}" in wheres
    assert all(w == f"{SCORES}[{bad.partition}]@{bad.offset}" for w in wheres)


def test_without_the_dlq_the_future_event_breaks_verification(example_catalog, model,
                                                              example_lines):
    sim = run_example(example_catalog, model, example_lines)
    topics = {t: list(r) for t, r in sim.topics.items()}
    topics[DLQ] = [r for r in topics[DLQ] if b"future_timestamp" not in (r.value or b"")]
    report = check(MemorySource(topics), example_catalog, model)
    assert not report.ok
    assert all(m.kind == "content" for m in report.mismatches)
    assert any("as_of" in m.fields for m in report.mismatches)


def test_unit_filter_and_unreadable_messages(example_catalog, model, example_lines):
    sim = run_example(example_catalog, model, example_lines)
    quan = [r for r in sim.published() if orjson.loads(r.value)["unit_id"] == "quan-01"]
    sim._append(SCORES, 0, b"x", b"{not json")
    report = check(sim.source(), example_catalog, model, units=["quan-01"])
    assert [m.kind for m in report.mismatches] == ["unreadable"]
    assert report.checked == len(quan) > 0


def test_an_unreachable_broker_is_an_error_and_its_consumers_are_stopped(
        example_catalog, model, monkeypatch):  # type: ignore[no-untyped-def]
    """No broker needed: nothing listens on port 1. A consumer whose start() failed must be
    stopped too, or aiokafka reports it as unclosed after the real error."""
    made = []
    consumer = KafkaSource._consumer

    def spy(self):  # type: ignore[no-untyped-def]
        made.append(consumer(self))
        return made[-1]

    monkeypatch.setattr(KafkaSource, "_consumer", spy)
    source = KafkaSource("127.0.0.1:1")
    with pytest.raises(AuditError, match="bootstrap"):
        check(source, example_catalog, model)  # read()
    with pytest.raises(AuditError, match="bootstrap"):
        source.has_topic(EVENTS)
    assert len(made) == 2
    assert all(c._closed for c in made)
