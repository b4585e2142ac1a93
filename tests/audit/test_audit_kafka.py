"""Audit tools against the real broker, on a simulated quarter scored by the live pipeline.

One scenario, in order: the worker scores a quarter of simulated HCMC activity (bad lines,
duplicates, shuffled delivery, one event from the future); then, with the worker still
running, ``bando replay --verify`` reproduces every published message; ``bando explain``
adds up to published totals; ``bando archive`` exports the history and replay from the archive
equals replay from Kafka (verification too); the audits created no consumer group; finally a
tampered copy of one published message makes verification fail, naming that message.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from audit_kafka_support import (
    Worker,
    consumer_groups,
    diff_against,
    final_time,
    latest_by_unit,
    produce_copy,
    produce_final_ticks,
    produce_quarter,
    quarter_messages,
    read_all,
    run,
    settings_env,
    wait_until,
)

from bando.batch import load, score_report
from bando.cli import main
from bando.infra import ensure_project_topics
from scoring.catalog import load_catalog
from scoring.model import load_model
from scoring.timeutil import parse_ts, resolve_window

pytestmark = pytest.mark.integration


def note(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(text)


def verify_cli(args: list[str], report: Path, capsys: pytest.CaptureFixture[str]
               ) -> tuple[int, dict, str]:
    rc = main(["replay", "--verify", "--report", str(report), *args])
    return rc, orjson.loads(report.read_bytes()), capsys.readouterr().out


def test_audit_tools_on_a_simulated_quarter(live_settings, tmp_path, monkeypatch, capsys):
    started = time.monotonic()
    s = live_settings.with_(partitions=4, coalesce_seconds=0.5)
    ensure_project_topics(s.kafka_bootstrap, s)
    for key, value in settings_env(s).items():
        if key.startswith("BANDO_"):
            monkeypatch.setenv(key, value)

    msgs = quarter_messages("2024-04-01", "2024-07-01", seed=11, scale=0.02)
    future = orjson.dumps({"event_id": "from-the-future", "type": "dossier.digitized",
                           "unit_id": "district-01", "dossier_id": "no-such-dossier",
                           "occurred_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()})
    produced = run(produce_quarter(s.kafka_bootstrap, s.events_topic, msgs, s.partitions,
                                   [future]))
    as_of = final_time(msgs)
    run(produce_final_ticks(s.kafka_bootstrap, s.events_topic, s.partitions, as_of))
    assert produced > 20_000

    delivered = tmp_path / "delivered.jsonl"
    delivered.write_bytes(b"\n".join(v for _, _, v in msgs) + b"\n")
    catalog, model = load_catalog(), load_model()
    loaded = load(delivered, catalog, model)
    t = parse_ts(as_of)
    truths = [score_report(loaded, resolve_window(w, t), t, as_of) for w in ("month", "year")]

    worker = Worker(s, tmp_path / "worker.log").start()
    try:
        def live_equals_offline() -> list[str]:
            latest = latest_by_unit(run(read_all(s.kafka_bootstrap, s.scores_topic, 800)))
            return [p for truth in truths for p in diff_against(truth, latest)]

        wait_until(live_equals_offline, 110, "live != offline", worker.log_tail)
        groups = run(consumer_groups(s.kafka_bootstrap))
        published = run(read_all(s.kafka_bootstrap, s.scores_topic))
        note(capsys, f"pipeline done in {time.monotonic() - started:.0f}s: {produced} events, "
              f"{len(published)} unit-scores messages")

        # --verify: every published message reproduced from the events
        mark = time.monotonic()
        rc, report, out = verify_cli([], tmp_path / "verify.json", capsys)
        assert rc == 0, out[-3000:]
        assert report["ok"] and report["mismatch_count"] == 0
        assert report["checked"] == report["messages"] == len(published)
        assert report["ingest"]["dlq_skipped"] >= 2  # bad lines and the future event
        assert report["ingest"]["anomalies"] == 0
        assert "OK:" in out
        note(capsys, f"verify: {time.monotonic() - mark:.1f}s")

        # explain at the final watermark: numbers add up to the published totals (the latest
        # message of a current window reflects every event; a closed window's last message
        # can miss events that arrived after the board moved on, which explain includes)
        mark = time.monotonic()
        latest = latest_by_unit(published)
        truth_ranks = {(tr["window"], u["unit_id"]): u["rank"] for tr in truths
                       for u in tr["units"]}
        picks = sorted((m for k, m in latest.items() if k in truth_ranks and m["total"]),
                       key=lambda m: (m["window"], m["unit_id"]))[::29][:4]
        assert len(picks) == 4
        for msg in picks:
            path = tmp_path / f"explain-{msg['unit_id']}.json"
            assert main(["explain", msg["unit_id"], "--at", as_of, "--window", msg["window"],
                         "--format", "json", "-o", str(path)]) == 0
            doc = orjson.loads(path.read_bytes())
            assert (doc["total"], doc["band"], doc["rank"]) == (
                msg["total"], msg["band"], truth_ranks[(msg["window"], msg["unit_id"])])
            assert abs(doc["check"]["total_from_points"] - msg["total"]) <= 0.01
            for row in doc["indicators"]:
                pub = msg["indicators"][row["indicator"]]
                assert (row["num"], row["den"], row["points"]) == (pub["num"], pub["den"],
                                                                  pub["points"])
        note(capsys, f"explain x4: {time.monotonic() - mark:.1f}s")

        # archive, then replay from the archive equals replay from Kafka
        mark = time.monotonic()
        archive = tmp_path / "archive"
        assert main(["archive", "--out", str(archive), "--with-scores"]) == 0
        assert (archive / s.events_topic).is_dir() and (archive / "manifest.json").exists()
        capsys.readouterr()
        args = ["replay", "--window", "month", "--every", "day", "--start", "2024-05-01",
                "--end", as_of]
        assert main([*args, "-o", str(tmp_path / "kafka.json")]) == 0
        assert main([*args, "--archive", str(archive), "-o", str(tmp_path / "arch.json")]) == 0
        from_kafka = orjson.loads((tmp_path / "kafka.json").read_bytes())
        from_archive = orjson.loads((tmp_path / "arch.json").read_bytes())
        assert from_kafka["rows"] and from_kafka["rows"] == from_archive["rows"]
        assert from_kafka["ingest"]["records"] == from_archive["ingest"]["records"]
        last = {r["unit_id"]: r for r in from_kafka["rows"]}
        for unit in truths[0]["units"]:
            row = last[unit["unit_id"]]
            assert (row["total"], row["band"], row["rank"]) == (unit["total"], unit["band"],
                                                                unit["rank"])
        # time travel by arrival: what had arrived by mid-May, from either source
        known = ["replay", "--window", "month", "--every", "day", "--start", "2024-05-01",
                 "--end", "2024-05-14", "--known-at", "2024-05-15T00:00:00+07:00"]
        assert main([*known, "-o", str(tmp_path / "kk.json")]) == 0
        assert main([*known, "--archive", str(archive), "-o", str(tmp_path / "ka.json")]) == 0
        kk = orjson.loads((tmp_path / "kk.json").read_bytes())
        assert kk["rows"] == orjson.loads((tmp_path / "ka.json").read_bytes())["rows"]
        assert 0 < kk["ingest"]["records"] < from_kafka["ingest"]["records"]
        rc, report, out = verify_cli(["--archive", str(archive)], tmp_path / "va.json", capsys)
        assert rc == 0 and report["checked"] == len(published), out[-2000:]

        note(capsys, f"archive + 2 replays + verify from archive: "
                     f"{time.monotonic() - mark:.1f}s")

        # the audits joined no consumer group
        assert run(consumer_groups(s.kafka_bootstrap)) == groups

        # a tampered copy of one published message fails verification, by name
        victim = next(m for m in reversed(published) if m["total"] is not None)
        forged = {**victim, "total": round(victim["total"] - 1.5, 2)}
        p, o = run(produce_copy(s.kafka_bootstrap, s.scores_topic, victim["unit_id"].encode(),
                                forged))
        rc, report, out = verify_cli([], tmp_path / "tampered.json", capsys)
        where = f"{s.scores_topic}[{p}]@{o}"
        assert rc == 1
        assert [m["message"] for m in report["mismatches"]] == [where]
        assert f"MISMATCH {where}" in out and "FAILED" in out
    finally:
        worker.stop()
    note(capsys, f"audit scenario took {time.monotonic() - started:.0f}s")
