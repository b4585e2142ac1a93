"""Checks of the audit commands' options and outputs found in review: each bad option is
refused (exit 2, one line, before any history is read), explain's check line agrees with the
total, and the charts stay well-formed XML whatever a unit's name holds."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
import xml.parsers.expat
from fractions import Fraction
from pathlib import Path

import orjson
import pytest
from audit_pipeline_sim import SimulatedPipeline

from audit.archive import export
from audit.charts import escape, peer_chart, unit_chart
from audit.exceptions import AuditError
from audit.explain import _decimal, explain, render_text
from audit.replay import Acceptor, TimelineSpec, load_history, timeline
from audit.replay_cli import LOOKBACK_HOURS, Context
from audit.sources import FileSource
from bando.cli import build_parser, main
from scoring.timeutil import parse_ts, resolve_window


@pytest.fixture(scope="module")
def src(example_dir: Path) -> list[str]:
    return ["--events", str(example_dir / "events.jsonl"),
            "--units", str(example_dir / "catalog.json")]


@pytest.fixture(scope="module")
def history(example_dir, example_catalog):  # type: ignore[no-untyped-def]
    return load_history(FileSource(example_dir / "events.jsonl"), "procedure-events",
                        Acceptor(example_catalog, 64 * 1024))


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Exit 2 with a one-line message and no traceback; the message."""
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("bando ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- 1. --lookback is a finite number of hours >= 0 -----------------------------------------


@pytest.mark.parametrize("command", [["replay"], ["explain", "quan-01", "--at", "2024-04-14"]])
@pytest.mark.parametrize("value", ["-1", "-0.5", "nan", "inf", "-inf", "soon"])
def test_a_bad_lookback_is_a_usage_error(src, capsys, command, value):  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as stop:
        main([*command, *src, f"--lookback={value}"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--lookback" in err and "Traceback" not in err


def test_lookback_zero_and_the_default_still_read_from_the_window(src):  # type: ignore[no-untyped-def]
    parser = build_parser(only="replay")
    skew = Context(parser.parse_args(["replay", *src])).settings.max_clock_skew_seconds
    for given, hours in (([], LOOKBACK_HOURS), (["--lookback", "0"], 0.0),
                         (["--lookback", "1.5"], 1.5)):
        ctx = Context(parser.parse_args(["replay", *src, *given]))
        assert ctx.lookback_us == int((hours * 3600 + skew) * 1_000_000), given


# --- 2. explain's check line adds up to the published total ---------------------------------


@pytest.mark.parametrize(("unit", "at", "window"), [
    ("phuong-01", "2024-05-26T12:00:00+07:00", "quarter"),  # rounded points: 41.9249 -> 41.92
    ("quan-04", "2024-04-14T12:00:00+07:00", "month"),  # 78.37 under a total of 78.38
])
def test_the_check_agrees_with_the_total(history, example_catalog, model, unit, at, window):  # type: ignore[no-untyped-def]
    t = parse_ts(at)
    doc = explain(history, example_catalog, model, unit, t, resolve_window(window, t))
    check = doc["check"]
    assert check["total_from_points"] == doc["total"]
    exact = Fraction(check["sum_points_exact"])
    assert float(exact) == check["sum_points"]
    text = render_text(doc)
    line = next(x for x in text.splitlines() if x.startswith("sum of points"))
    assert line == f"sum of points {_decimal(exact)} / 100 -> total {doc['total']}"
    assert f"total {doc['total']} " in text


def test_the_check_agrees_with_the_total_at_every_instant(history, example_catalog, model):  # type: ignore[no-untyped-def]
    """The old check (rounded points added up in floats) missed the total 61 times here."""
    t0, t1 = history.first_ts, history.last_ts
    for k in range(61):
        t = t0 + (t1 - t0) * k // 60
        for kind in ("month", "quarter", "year"):
            window = resolve_window(kind, t)
            for unit in example_catalog.by_id:
                doc = explain(history, example_catalog, model, unit, t, window)
                if doc["total"] is not None:
                    assert doc["check"]["total_from_points"] == doc["total"], (unit, t, kind)


def test_decimals_are_exact_or_cut_never_rounded_across_a_boundary():
    assert _decimal(Fraction(651, 8)) == "81.375"  # exact: rounds half away to 81.38
    assert _decimal(Fraction(24014, 297)) == "80.855218..."
    assert _decimal(Fraction(80_854_999_999, 10**9)) == "80.854999..."  # not "80.855"
    assert _decimal(Fraction(100)) == "100" and _decimal(Fraction(-1, 3)) == "-0.333333..."


# --- 3. --day and --peer-group are checked before the replay and before -o -----------------


@pytest.mark.parametrize(("extra", "message"), [
    (["--day", "2024-13-45"], "not a time: '2024-13-45'"),
    (["--day", "2024-03-31", "--peer-group", "nope"], "no peer group 'nope'"),
])
def test_peer_chart_options_are_checked_before_the_replay(src, tmp_path, capsys, caplog, extra,
                                                          message):  # type: ignore[no-untyped-def]
    out = tmp_path / "rows.json"
    with caplog.at_level(logging.INFO, logger="audit.replay_cli"):
        assert message in refused(["replay", *src, "--unit", "quan-01", "-o", str(out),
                                   "--peer-chart", str(tmp_path / "p.svg"), *extra], capsys)
    assert not out.exists() and not (tmp_path / "p.svg").exists()
    assert not [r for r in caplog.records if "records from" in r.getMessage()]  # nothing read


def test_peer_chart_options_without_a_peer_chart_are_refused(src, tmp_path, capsys):  # type: ignore[no-untyped-def]
    assert "--day only with --peer-chart" in refused(
        ["replay", *src, "--day", "2024-03-31"], capsys)


# --- 4. --verify refuses the options of a timeline it does not write ------------------------


@pytest.fixture(scope="module")
def archive(example_catalog, model, example_lines, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    pipe = SimulatedPipeline(example_catalog, model, partitions=2, seed=3,
                             now_us=parse_ts("2024-06-01T00:00:00+07:00"))
    pipe.produce(example_lines)
    pipe.run()
    source = pipe.source()
    out = tmp_path_factory.mktemp("arch")
    export(source, list(source.topics), out)
    return out


def test_verify_refuses_timeline_options(archive, example_dir, tmp_path, capsys):  # type: ignore[no-untyped-def]
    src = ["--archive", str(archive), "--units", str(example_dir / "catalog.json")]
    report = tmp_path / "report.json"
    assert main(["replay", "--verify", *src, "--report", str(report)]) == 0  # a good archive
    assert orjson.loads(report.read_bytes())["ok"] is True
    capsys.readouterr()
    out = tmp_path / "rows.json"
    for extra in (["-o", str(out)], ["--chart", str(tmp_path / "u.svg"), "--unit", "quan-01"],
                  ["--known-at", "2024-05-01"], ["--window", "year"], ["--every", "day"],
                  ["--start", "2024-03-01"], ["--format", "csv"], ["--lookback", "1"],
                  ["--from-beginning"], ["--check-core"],
                  ["--peer-chart", str(tmp_path / "p.svg"), "--day", "2024-03-31"]):
        message = refused(["replay", "--verify", *src, *extra], capsys)
        assert "cannot be used with it" in message and extra[0] in message, extra
    assert not list(tmp_path.glob("*.svg")) and not out.exists()
    assert "only with --verify" in refused(["replay", *src, "--report", str(report)], capsys)


# --- 5. a day timeline too long for a stray timestamp names the bound to give ---------------


def test_a_stray_far_event_asks_for_the_missing_bound(example_dir, tmp_path, capsys):  # type: ignore[no-untyped-def]
    events = tmp_path / "events.jsonl"
    events.write_bytes((example_dir / "events.jsonl").read_bytes().rstrip(b"\n") + b"\n" + (
        b'{"event_id":"stray-1","type":"clock.tick","occurred_at":"2099-01-01T00:00:00+07:00"}\n'))
    src = ["--events", str(events), "--units", str(example_dir / "catalog.json"),
           "--every", "day", "--unit", "quan-01"]
    message = refused(["replay", *src, "--start", "2024-03-01"], capsys)
    assert message.endswith("give --end") and "2099-01-01" in message
    assert refused(["replay", *src], capsys).endswith("give --start and --end")
    assert refused(["replay", *src, "--start", "1990-01-01", "--end", "2024-03-01"],
                   capsys).endswith("give a shorter range")
    # --end given, --start from the history: a stray event dated 1990
    events.write_bytes(events.read_bytes().replace(b"2099-01-01", b"1990-01-01"))
    assert refused(["replay", *src, "--end", "2024-03-01"], capsys).endswith("give --start")


def test_the_timeline_names_the_missing_bound(example_dir, example_catalog, model):  # type: ignore[no-untyped-def]
    h = load_history(FileSource(example_dir / "events.jsonl"), "procedure-events",
                     Acceptor(example_catalog, 64 * 1024))
    spec = TimelineSpec(units=("quan-01",), every="day", end=parse_ts("2024-03-01T00:00:00+07:00"))
    h.first_ts = parse_ts("1990-01-01T00:00:00+07:00")  # as a stray event would
    with pytest.raises(AuditError, match="give --start$"):
        list(timeline(h, example_catalog, model, spec))


# --- 6. charts drop every character XML 1.0 cannot hold -------------------------------------


BAD = "\x00\x07\x1f\ufffe\uffff\ud800\udfff"


def parses(svg: str) -> ET.Element:
    data = svg.encode("utf-8")  # a lone surrogate cannot even be encoded
    parser = xml.parsers.expat.ParserCreate()
    parser.Parse(data, True)  # expat itself, not only through ElementTree
    return ET.fromstring(data)


def test_escape_drops_exactly_what_xml_forbids():
    assert escape(f"a{BAD}b") == "ab"
    kept = "\t\n\r \x7f\u0085\ud7ff\ue000\ufffd\U00010000\U0010ffff"
    assert escape(kept) == kept
    assert escape("<&>") == "&lt;&amp;&gt;"


def test_charts_with_xml_non_characters_in_names_parse(model):  # type: ignore[no-untyped-def]
    for bad in BAD:
        name = f"Ph\u01b0\u1eddng {bad}1 <b>"
        peers = [{"unit_id": f"u{bad}", "name": name, "total": 81.5, "band": "good", "rank": 1},
                 {"unit_id": "v", "name": name, "total": None, "band": None, "rank": None}]
        root = parses(peer_chart(peers, model, title=name, highlight="v"))
        assert "Ph\u01b0\u1eddng 1 <b>" in "".join(root.itertext())
        rows = [{"at": "2024-03-01T00:00:00+07:00", "total": 50.0, "band": "average",
                 "rank": 1, "peer_count": 2}]
        parses(unit_chart(rows, model, title=name))


def test_replay_chart_of_a_unit_named_with_a_non_character(example_dir, tmp_path, capsys):  # type: ignore[no-untyped-def]
    catalog = json.loads((example_dir / "catalog.json").read_text(encoding="utf-8"))
    for unit in catalog:
        if unit["unit_id"] == "quan-01":
            unit["name"] = "Qu\u1eadn 1 \ufffe\uffff"
    units = tmp_path / "catalog.json"
    units.write_text(json.dumps(catalog), encoding="utf-8")
    chart, peers = tmp_path / "u.svg", tmp_path / "p.svg"
    assert main(["replay", "--events", str(example_dir / "events.jsonl"), "--units", str(units),
                 "--unit", "quan-01", "-o", str(tmp_path / "rows.json"), "--chart", str(chart),
                 "--peer-chart", str(peers), "--day", "2024-03-31"]) == 0
    for svg in (chart, peers):
        assert "Qu\u1eadn 1 " in "".join(parses(svg.read_text(encoding="utf-8")).itertext())
