"""``audit.explain`` adds up, names the items behind lost points, and ``audit.charts`` draws
well-formed, escaped SVG; the CLI commands run on files."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import orjson
import pytest

from audit.charts import peer_chart, unit_chart
from audit.explain import explain, render_text
from audit.replay import Acceptor, TimelineSpec, load_history, timeline
from audit.sources import FileSource
from bando.batch import load, score_report
from bando.cli import main
from scoring.timeutil import parse_ts, resolve_window

T = "2024-04-14T17:00:00+07:00"


@pytest.fixture(scope="module")
def history(example_dir, example_catalog):  # type: ignore[no-untyped-def]
    return load_history(FileSource(example_dir / "events.jsonl"), "procedure-events",
                        Acceptor(example_catalog, 64 * 1024))


@pytest.fixture(scope="module")
def truth(example_dir, example_catalog, model):  # type: ignore[no-untyped-def]
    loaded = load(example_dir / "events.jsonl", example_catalog, model)
    t = parse_ts(T)
    return {w: score_report(loaded, resolve_window(w, t), t, T) for w in ("month", "year")}


@pytest.mark.parametrize("window", ["month", "year"])
def test_explanations_add_up_to_the_score(history, truth, example_catalog, model, window):
    t = parse_ts(T)
    for unit in truth[window]["units"]:
        doc = explain(history, example_catalog, model, unit["unit_id"], t,
                      resolve_window(window, t), limit=1000)
        assert (doc["total"], doc["band"], doc["rank"], doc["peer_count"]) == (
            unit["total"], unit["band"], unit["rank"], unit["peer_count"])
        assert doc["groups"] == unit["groups"]
        if unit["total"] is None:
            continue
        assert abs(doc["check"]["total_from_points"] - unit["total"]) <= 0.01
        by_id = {i["indicator"]: i for i in doc["indicators"]}
        for iid, ind in unit["indicators"].items():
            row = by_id[iid]
            assert (row["num"], row["den"], row["points"]) == (ind["num"], ind["den"],
                                                              ind["points"])
            assert row["failing"] == ind["den"] - ind["num"]
            if row["points_lost"] > 0 and row["den"] > 0:
                assert len(row["items"]) == row["failing"] > 0
            assert abs(row["points"] + row["points_lost"] - row["max"]) < 1e-3
        # gains: bringing an indicator to target adds exactly its lost points to the total
        exact = sum(Fraction(str(i["points_lost"])) for i in doc["indicators"])
        assert abs(float(exact) - (100 - doc["check"]["sum_points"])) < 1e-3
        gains = [g["gain_total"] for g in doc["gains"]]
        assert gains == sorted(gains, reverse=True)


def test_late_dossiers_are_listed_with_due_and_completion(history, example_catalog, model):
    t = parse_ts(T)
    doc = explain(history, example_catalog, model, "quan-01", t, resolve_window("year", t))
    on_time = next(i for i in doc["indicators"] if i["indicator"] == "on_time")
    assert on_time["failing"] == on_time["den"] - on_time["num"] > 0
    for item in on_time["items"]:
        assert item["reason"] in ("completed after due", "open past due") or \
            item["reason"].endswith("supplement requests")
        assert item["due"] and item["received"]
        if item["reason"] == "completed after due":
            assert parse_ts(item["completed"]) > parse_ts(item["due"])
    assert doc["peers"]["median_total"] is not None
    text = render_text(doc)
    assert "Largest gains" in text and "on_time" in text


def test_charts_are_wellformed_and_escape_names(history, example_catalog, model, tmp_path):
    rows = list(timeline(history, example_catalog, model,
                         TimelineSpec(window="month", units=("quan-01",))))
    name = example_catalog.by_id["quan-01"].name
    assert "<" in name  # the example's markup-in-names case
    svg = unit_chart(rows, model, title=name)
    root = ET.fromstring(svg.encode())
    assert root.tag.endswith("svg") and name in "".join(root.itertext())
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    assert svg.count("<polyline") >= 2
    peers = [{"unit_id": u.unit_id, "name": u.name, "total": t, "band": b, "rank": r}
             for u, t, b, r in [(example_catalog.by_id["quan-01"], 80.0, "good", 1)]]
    peers.append({"unit_id": "x", "name": "<x>", "total": None, "band": None, "rank": None})
    ET.fromstring(peer_chart(peers, model, title="t & <g>", highlight="quan-01").encode())
    ET.fromstring(unit_chart([], model, title="empty").encode())
    # a control character (the catalog takes it) must not make the SVG unreadable
    ET.fromstring(peer_chart(peers, model, title="bell \x07 & tab\t").encode())


def test_cli_replay_explain_and_charts(example_dir, example_catalog, tmp_path: Path,
                                      capsysbinary):  # type: ignore[no-untyped-def]
    events, units = str(example_dir / "events.jsonl"), str(example_dir / "catalog.json")
    out = tmp_path / "timeline.json"
    assert main(["replay", "--events", events, "--units", units, "--window", "year",
                 "--unit", "quan-01", "--output", str(out), "--chart", str(tmp_path / "u.svg"),
                 "--peer-chart", str(tmp_path / "p.svg"), "--day", "2024-03-31"]) == 0
    doc = orjson.loads(out.read_bytes())
    assert doc["rows"] and {r["unit_id"] for r in doc["rows"]} == {"quan-01"}
    assert doc["ingest"]["records"] == 4458 and doc["events_per_s"] > 0
    for svg in ("u.svg", "p.svg"):
        ET.parse(tmp_path / svg)
    assert main(["replay", "--events", events, "--units", units, "--every", "day",
                 "--format", "csv", "--start", "2024-03-01", "--end", "2024-03-02"]) == 0
    csv = capsysbinary.readouterr().out.decode().splitlines()
    assert csv[0].startswith("at,unit_id") and len(csv) == 1 + 2 * len(example_catalog)
    assert main(["explain", "quan-01", "--at", T, "--window", "year", "--events", events,
                 "--units", units, "--format", "json", "--chart", str(tmp_path / "e.svg")]) == 0
    doc = orjson.loads(capsysbinary.readouterr().out)
    assert doc["unit_id"] == "quan-01" and doc["window"] == "year:2024"
    ET.parse(tmp_path / "e.svg")
    assert main(["explain", "nobody", "--at", T, "--events", events, "--units", units]) == 2


def test_cli_refuses_what_it_cannot_do_before_the_work(example_dir, tmp_path: Path,
                                                      capsys):  # type: ignore[no-untyped-def]
    """Exit 2 with a message, never 0 with a wrong answer, never a traceback (exit 1 is a
    verification mismatch): found in review."""
    events, units = str(example_dir / "events.jsonl"), str(example_dir / "catalog.json")
    src = ["--events", events, "--units", units]
    out = tmp_path / "rows.csv"
    cases = [
        # a file has no arrival times: --known-at would silently keep everything
        (["replay", *src, "--known-at", "2000-01-01"], "needs arrival times"),
        # a typo would check 0 messages and say OK
        (["replay", "--verify", *src, "--unit", "nosuch"], "not in the catalog"),
        (["replay", *src, "--unit", "nosuch", "--format", "csv"], "not in the catalog"),
        # checked before a replay that may run for minutes, and before -o is written
        (["replay", *src, "--unit", "quan-01", "--unit", "quan-02", "--chart",
          str(tmp_path / "c.svg"), "-o", str(out)], "--chart needs exactly one --unit"),
        (["replay", *src, "--unit", "quan-01", "--peer-chart", str(tmp_path / "p.svg"),
          "-o", str(out)], "--peer-chart needs --day"),
        (["replay", *src, "--window", "month:2031-01"], "starts after the last event"),
        (["explain", "quan-01", "--at", T, *src, "-o", str(tmp_path / "no" / "x.txt")],
         "No such file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
        assert not out.exists(), argv
    with pytest.raises(SystemExit) as stop:
        main(["explain", "quan-01", "--at", T, *src, "--limit", "-1"])
    assert stop.value.code == 2


def test_a_long_timeline_logs_its_progress(example_dir, tmp_path: Path, caplog,
                                           monkeypatch):  # type: ignore[no-untyped-def]
    import audit.replay_cli

    monkeypatch.setattr(audit.replay_cli, "PROGRESS_SECONDS", 0.0)
    events, units = str(example_dir / "events.jsonl"), str(example_dir / "catalog.json")
    with caplog.at_level(logging.INFO, logger="audit.replay_cli"):
        assert main(["replay", "--events", events, "--units", units, "--every", "day",
                     "--format", "csv", "--output", str(tmp_path / "t.csv")]) == 0
    rows = len((tmp_path / "t.csv").read_text().splitlines()) - 1
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("timeline:")]
    assert len(progress) == rows // 256
    assert progress[0].startswith("timeline: 256 rows, up to 2024-")


def test_replay_as_a_subprocess_writes_everything_before_its_quick_exit(
        example_dir, example_catalog, tmp_path: Path, capsysbinary):  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    import bando.cli

    events, units = str(example_dir / "events.jsonl"), str(example_dir / "catalog.json")
    args = ["replay", "--events", events, "--units", units, "--every", "day", "--format", "csv"]
    assert main(args) == 0
    in_process = capsysbinary.readouterr().out
    assert bando.cli._parked == []  # main() called from Python keeps nothing
    # the console entry parks the history and leaves with os._exit: stdout is a pipe here
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered
    proc = subprocess.run([sys.executable, "-m", "bando.cli", *args], capture_output=True,
                          timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout == in_process and len(in_process.splitlines()) > 1000
    assert b"replay:" in proc.stderr  # the log's last line, flushed too


def test_a_gain_names_what_its_indicator_counts(history, example_catalog, model):
    """so-00 has no publication yet early in March: its transparency gains need publications,
    e_result completed dossiers (the text said "dossiers/petitions" for all)."""
    t = parse_ts("2024-03-05T17:00:00+07:00")
    window = resolve_window("month", t, model.timezone)
    text = render_text(explain(history, example_catalog, model, "so-00", t, window))
    assert "announced_on_time (needs publications first)" in text
    assert "e_result (needs completed dossiers first)" in text
    assert "dossiers/petitions" not in text
