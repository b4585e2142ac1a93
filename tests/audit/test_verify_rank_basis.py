"""(b) of ``audit.verify`` when a message's ``rank_basis`` cannot be re-run, or the ranker's
topic is missing.

A span the internal topic cannot hold whole (past its end, before its start) is a fault of
that one message: re-running it would feed the ranker records out of turn and so "break"
every genuine batch after it. So is a span that overlaps genuine batches (the ranker's never
overlap): of overlapping spans, only the one more messages name is re-run. A missing ranker
topic is not a fault of any message: the audit
cannot run (exit 2), as when the events topic is missing.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from audit_pipeline_sim import DLQ, EVENTS, INTERNAL, SCORES, SimulatedPipeline

from audit.exceptions import AuditError
from audit.sources import MemorySource, Record
from audit.verify import VerifyReport, verify
from scoring.catalog import Catalog
from scoring.model import Model
from scoring.timeutil import parse_ts


@pytest.fixture(scope="module")
def sim(example_catalog: Catalog, model: Model, example_lines: list[bytes]) -> SimulatedPipeline:
    pipe = SimulatedPipeline(example_catalog, model, seed=1,
                             now_us=parse_ts("2024-06-01T00:00:00+07:00"))
    pipe.produce(example_lines)
    pipe.run()
    return pipe


def check(source: MemorySource, catalog: Catalog, model: Model, **kw: Any) -> VerifyReport:
    return verify(source, catalog, model, events_topic=EVENTS, dlq_topic=DLQ,
                  scores_topic=SCORES, **kw)


def with_forged_copy(sim: SimulatedPipeline, offsets: list[int]) -> tuple[MemorySource, str]:
    """The history plus one more copy of the first published message, naming ``offsets``."""
    topics = {t: list(recs) for t, recs in sim.topics.items() if recs}
    victim = topics[SCORES][0]
    msg = orjson.loads(victim.value or b"")
    msg["rank_basis"] = {**msg["rank_basis"], "offsets": offsets}
    offset = 1 + max(r.offset for r in topics[SCORES] if r.partition == victim.partition)
    topics[SCORES].append(Record(SCORES, victim.partition, offset, victim.timestamp_ms,
                                 victim.key, orjson.dumps(msg)))
    return MemorySource(topics), f"{SCORES}[{victim.partition}]@{offset}"


def test_the_history_verifies(sim, example_catalog, model):  # type: ignore[no-untyped-def]
    report = check(sim.source(), example_catalog, model)
    assert report.ok and report.checked == len(sim.published()) > 100


@pytest.mark.timeout(60)  # offset by offset, 10**12 would take hours
@pytest.mark.parametrize("past", [112, 10**12])
def test_a_span_past_the_end_is_that_message_only(sim, example_catalog, model, past):  # type: ignore[no-untyped-def]
    """The reviewer's case: [0, 1000] over a topic of 888 records turned 1 forged message
    into 430 mismatches; and [0, 10**12] was walked offset by offset (hours)."""
    end = len(sim.topics[INTERNAL]) - 1
    source, forged = with_forged_copy(sim, [0, end + past])
    report = check(source, example_catalog, model)
    assert [(m.where, m.kind) for m in report.mismatches] == [(forged, "ranking")]
    assert f"past the topic's end ({end})" in report.mismatches[0].detail
    assert report.checked == len(sim.published()) + 1


def test_a_span_before_the_start_is_that_message_only(sim, example_catalog, model):  # type: ignore[no-untyped-def]
    source, forged = with_forged_copy(sim, [-5, 40])
    report = check(source, example_catalog, model)
    assert [(m.where, m.kind) for m in report.mismatches] == [(forged, "ranking")]
    assert "not all in history" in report.mismatches[0].detail


def test_a_missing_ranker_topic_is_an_error_not_a_mismatch(sim, example_catalog, model):  # type: ignore[no-untyped-def]
    with pytest.raises(AuditError, match="no ranker topic 'nope'"):
        check(sim.source(), example_catalog, model, internal_topic="nope")
    without = MemorySource({t: list(r) for t, r in sim.topics.items() if t != INTERNAL})
    with pytest.raises(AuditError, match=f"no ranker topic '{INTERNAL}'"):
        check(without, example_catalog, model)


def _genuine_spans(sim: SimulatedPipeline) -> list[tuple[int, int]]:
    spans = {tuple(orjson.loads(r.value or b"")["rank_basis"]["offsets"])
             for r in sim.published()}
    return sorted(spans)  # type: ignore[arg-type]


@pytest.mark.parametrize("where", ["straddles two batches", "inside one batch",
                                   "starts with a batch"])
def test_a_forged_span_inside_the_topic_is_that_message_only(  # type: ignore[no-untyped-def]
        sim, example_catalog, model, where):
    """A span the topic holds whole but that is no batch of the ranker's (it overlaps genuine
    ones): re-running it too fed records to the ranker twice, so every later batch differed.
    Overlapping spans are not all re-run: the one more published messages name is."""
    spans = [s for s in _genuine_spans(sim) if s[1] - s[0] >= 3]
    a, b = spans[len(spans) // 2], spans[len(spans) // 2 + 1]
    forged_span = {"straddles two batches": [a[1] - 1, b[0] + 1],
                   "inside one batch": [a[0] + 1, a[1] - 1],
                   "starts with a batch": [a[0], a[0] + 1]}[where]
    source, forged = with_forged_copy(sim, forged_span)
    report = check(source, example_catalog, model)
    assert [(m.where, m.kind) for m in report.mismatches] == [(forged, "ranking")]
    assert "overlaps" in report.mismatches[0].detail
