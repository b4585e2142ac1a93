"""Fault test 5 (and the input limits of the security brief): hostile delivery and input.

One worker, one flood: the SPEC's worked example (already shuffled, duplicated, orphaned,
with bad lines) interleaved with hypothesis-fuzzed event bodies, random bytes, JSON nested
past the parser's depth limit or past the encoder's, huge numbers, oversized messages; a
whole batch sent a second time (a producer retrying), everything out of order, and a tail of
late events delivered after the final clock ticks. The worker must never crash; every bad
message must land in the DLQ at its position with the code ``bando score`` gives it; every
good one must be scored exactly once.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from fault_support import (
    EXAMPLE,
    Msg,
    TopicTail,
    check_dlq,
    example_messages,
    final_time,
    key_of,
    produce,
    read_topic,
    scores_equal,
    services,
    ticks,
    truths,
    wait_until,
    worker,
    write_events,
)
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bando.settings import Settings

pytestmark = pytest.mark.integration

_WHITESPACE = {9, 10, 11, 12, 13, 32}
_KNOWN_FIELDS = ["event_id", "type", "occurred_at", "unit_id", "schema_version", "dossier_id",
                 "procedure_id", "channel", "due_at", "online_eligible", "full_online",
                 "fee_required", "amount_vnd", "online", "rating", "e_result", "new_due_at",
                 "petition_id", "announced_on_time", "complete", "officer_id"]

json_leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
             | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_value = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
garbage_time = st.sampled_from(["2024-03-01T08:00:00", "yesterday", "2024-13-45T99:00:00+07:00",
                                "", "2024-03-01 08:00:00+07:00", "\x00"])


def fuzzed_bodies(bases: list[dict[str, Any]], n: int) -> list[bytes]:
    """``n`` mutants of real events, collected with hypothesis (deterministic): fields
    dropped, retyped, replaced by arbitrary JSON, garbage types and timestamps. Encoded with
    the standard library (integers beyond 64 bits; lone surrogates make invalid UTF-8)."""
    out: list[bytes] = []
    mutation = st.one_of(
        st.tuples(st.just("set"), st.sampled_from(_KNOWN_FIELDS + ["extra"]), json_value),
        st.tuples(st.just("drop"), st.sampled_from(_KNOWN_FIELDS), st.none()),
        st.tuples(st.just("set"), st.just("type"), st.text(max_size=25)),
        st.tuples(st.just("set"), st.sampled_from(["occurred_at", "due_at", "new_due_at"]),
                  garbage_time),
    )

    @hsettings(max_examples=n, database=None, derandomize=True, phases=[Phase.generate],
               suppress_health_check=list(HealthCheck), deadline=None)
    @given(st.sampled_from(bases), st.lists(mutation, min_size=1, max_size=3))
    def collect(base: dict[str, Any], mutations: list[tuple[str, str, Any]]) -> None:
        body = dict(base)
        body["event_id"] = f"fuzz-{len(out)}"
        for op, name, value in mutations:
            if op == "drop":
                body.pop(name, None)
            else:
                body[name] = value
        text = json.dumps(body, ensure_ascii=False, allow_nan=False)
        out.append(text.encode("utf-8", "surrogatepass"))

    collect()
    return out


def random_bytes(rng: random.Random, n: int) -> list[bytes]:
    """Random byte strings (no whitespace, so each stays one line of the truth file)."""
    alphabet = bytes(b for b in range(256) if b not in _WHITESPACE)
    return [bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 1500))) for _ in range(n)]


def crafted(base: dict[str, Any], max_bytes: int) -> list[bytes]:
    """Inputs aimed at the limits: size, nesting depth, numbers."""

    def nested(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = {"a": value}
        return value

    def event(i: int, **extra: Any) -> bytes:
        return json.dumps({**base, "event_id": f"crafted-{i}", **extra}).encode()

    return [
        b"[" * 2000 + b"]" * 2000,  # past the parser's depth limit
        b'{"a":' * 1100 + b"1" + b"}" * 1100,
        event(1, extra=nested(300)),  # parses (< 1024), but past the encoder's 254 levels
        event(2, extra=nested(100)),  # fine: an unknown extra field is ignored
        event(3, padding="x" * (max_bytes + 1)),  # too large
        event(4, padding="y" * (max_bytes * 12)),  # much too large (still under 1 MB)
        event(5, extra="z" * (max_bytes - 2000)),  # just under the limit: accepted
        event(6, extra=list(range(5000))),
        event(7, amount_vnd=10**30),  # read as a float: not an integer
        b'{"event_id":"crafted-8","type":"dossier.paid","amount_vnd":1e400}',  # infinity
        event(9, occurred_at=10**20),
        b"null", b"[]", b"\"event\"", b"123", b"{}",
        b'{"event_id":"crafted-10","event_id":"crafted-11","type":"clock.tick",'
        b'"occurred_at":"2024-03-01T08:00:00+07:00"}',  # duplicate key
    ]


@pytest.fixture(scope="module")
def corpus() -> tuple[list[Msg], list[dict[str, Any]], list[bytes]]:
    """(the worked example, its good dossier events, fuzzed bodies), built before any Kafka
    client thread runs (hypothesis watches the global random state while it generates)."""
    example = example_messages()
    good: list[dict[str, Any]] = []
    for m in example:
        try:
            body = orjson.loads(m.value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(body, dict) and str(body.get("type", "")).startswith("dossier."):
            good.append(body)
    return example, good, fuzzed_bodies(good, 400)


def test_flood_of_hostile_input_never_crashes_and_every_event_counts_once(
    corpus: tuple[list[Msg], list[dict[str, Any]], list[bytes]],
    fault_settings: Settings, score_tail: TopicTail, tmp_path: Path
) -> None:
    catalog = str(EXAMPLE / "catalog.json")
    s = fault_settings.with_(catalog_path=catalog)
    rng = random.Random(2024)
    example, good, fuzzed = corpus
    hostile = fuzzed + random_bytes(rng, 120) + crafted(good[0], s.max_message_bytes)
    main = example + [Msg(v, key_of(v)) for v in hostile]
    rng.shuffle(main)
    late_count = len(main) // 10
    late, main = main[:late_count], main[late_count:]
    resent = main[500:1100]  # a whole batch delivered twice, much later
    stream = main[:3000] + resent + main[3000:]
    as_of = final_time(stream + late)
    final = ticks(as_of, s.partitions, "final")
    everything = stream + final + late  # late: after the watermark reached as_of
    expected = truths(write_events(tmp_path / "events.jsonl", everything), as_of, catalog)
    assert len(expected[0]["rejected"]) > 400
    w = worker(s, tmp_path / "worker.log")
    with services(w):
        w.start()
        stats = produce(s.kafka_bootstrap, s.events_topic, everything)  # as fast as acked
        took = wait_until(scores_equal(score_tail, expected), 150,
                          "live != bando score after the flood", w.log_tail)
        time.sleep(1.0)
        assert w.running and w.starts == 1, "the worker never crashed"
    log = w.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log and "crashed" not in log.lower(), log[-3000:]
    dlq = read_topic(s.kafka_bootstrap, s.dlq_topic)
    problems = check_dlq(dlq, everything, stats, expected[0], s.events_topic)
    assert not problems, problems[:10]
    codes: dict[str, int] = {}
    for r in expected[0]["rejected"]:
        codes[r["error"]] = codes.get(r["error"], 0) + 1
    for code in ("invalid_json", "schema_violation", "unknown_type", "unknown_unit",
                 "too_large", "conflicting_duplicate"):
        assert codes.get(code), f"the flood exercised {code}: {codes}"
    by_line = {r["line"]: r["error"] for r in expected[0]["rejected"]}
    index = {m.value: i for i, m in enumerate(everything)}
    limits = crafted(good[0], s.max_message_bytes)
    assert [by_line.get(index[v] + 1) for v in limits[:7]] == [
        "invalid_json", "invalid_json", "invalid_json", None, "too_large", "too_large", None]
    print(f"\n[hostile input] {len(everything)} messages ({len(hostile)} hostile, "
          f"{len(resent)} re-sent, {len(late)} late), DLQ codes {codes}; scores equal the "
          f"truth {took:.1f} s after the last message")
