"""The weekly digest: the same numbers as ``bando score`` at the week's end, reproducible for a
past week, escaped, and a PDF whose pages render with the figures in their text layer."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest
from leaders_support import UNITS, scenario, write_catalog, write_jsonl

from bando.cli import main as bando_main
from leaders import commitments as cm
from leaders.digest_cli import main as digest_main
from leaders.digest_data import last_complete_week, parse_week
from scoring.catalog import load_catalog
from scoring.model import load_model
from scoring.timeutil import format_ts, parse_ts

pytestmark = pytest.mark.browser  # the PDF is printed by headless Chromium

REPO = Path(__file__).resolve().parents[2]
WEEK = "2024-W15"
WEEK_END = "2024-04-14T23:59:59.999999+07:00"
PREV_END = "2024-04-07T23:59:59.999999+07:00"
MARKUP = "Quận <script>alert('x')</script> & Co"
MODEL = load_model()


def _score(capsys, events: Path, catalog: Path, as_of: str) -> dict:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    assert bando_main(["score", "--events", str(events), "--units", str(catalog), "--as-of",
                       as_of, "--window", "month"]) == 0
    return {u["unit_id"]: u for u in json.loads(capsys.readouterr().out)["units"]}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Five weeks of simulated activity in the 22 districts (one with markup in its name),
    plus a bad line and a repeated event, as the live map would have received them."""
    from bando.simulator.generate import generate

    tmp = tmp_path_factory.mktemp("digest")
    units = [u for u in json.loads((REPO / "scoring/catalogs/hcmc-2024.json").read_text())
             if u["peer_group"] == "district"]
    units[3] = {**units[3], "name": MARKUP}
    catalog = tmp / "districts.json"
    catalog.write_text(json.dumps(units, ensure_ascii=False), encoding="utf-8")
    events = list(generate(units, "2024-03-11T00:00:00+07:00", "2024-04-19T00:00:00+07:00",
                           seed=5, rate_scale=0.12))
    lines = [orjson.dumps(e) for e in events]
    lines.insert(100, b'{"type": "dossier.received", "broken": ')
    lines.insert(200, lines[150])
    path = tmp / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    cut = tmp / "until-week-end.jsonl"  # the same history, as it stood at the week's end
    end = parse_ts(WEEK_END)
    cut.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events
                             if parse_ts(e["occurred_at"]) <= end))
    return {"dir": tmp, "units": units, "catalog": catalog, "events": path, "cut": cut}


@pytest.fixture(scope="module")
def commitments(sim):  # type: ignore[no-untyped-def]
    unit = sim["units"][0]["unit_id"]
    path = sim["dir"] / "commitments.json"
    path.write_text(json.dumps({"commitments": [
        {"unit_id": unit, "indicator": "on_time", "target": 0.0, "deadline": "2024-04-07"},
        {"unit_id": unit, "indicator": "on_time", "target": 1.0, "deadline": "2024-04-07"},
        {"unit_id": unit, "indicator": "total", "target": 100, "deadline": "2024-06-30"},
        {"unit_id": unit, "indicator": "digitized", "target": 0.01, "deadline": "2024-06-30",
         "window": "quarter", "signed_by": "Chủ tịch <i>UBND</i>"},
    ]}, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def district_digest(sim, commitments):  # type: ignore[no-untyped-def]
    out = sim["dir"] / "out"
    assert digest_main(["--peer-group", "district", "--week", WEEK, "--events",
                        str(sim["events"]), "--units", str(sim["catalog"]), "--commitments",
                        str(commitments), "--out", str(out), "--format", "html,pdf,json"]) == 0
    stem = out / f"digest-district-{WEEK}"
    return {"json": json.loads(stem.with_suffix(".json").read_text()),
            "html": stem.with_suffix(".html").read_text(encoding="utf-8"),
            "pdf": stem.with_suffix(".pdf")}


def test_weeks_are_iso_weeks_in_hcmc_time():
    w = parse_week(WEEK, MODEL.timezone)
    assert format_ts(w.start_us) == "2024-04-08T00:00:00+07:00"
    assert format_ts(w.end_us) == WEEK_END
    assert last_complete_week(parse_ts("2024-04-14T23:00:00+07:00"), MODEL.timezone).name \
        == "2024-W14"
    assert last_complete_week(w.end_us, MODEL.timezone).name == WEEK


def test_the_digest_of_a_past_week_matches_bando_score_at_its_end(sim, district_digest, capsys):
    now = _score(capsys, sim["events"], sim["catalog"], WEEK_END)
    before = _score(capsys, sim["events"], sim["catalog"], PREV_END)
    pages = district_digest["json"]["pages"]
    assert pages[0]["kind"] == "group" and len(pages) == 1 + len(sim["units"])
    for page in pages[1:]:
        ref, old = now[page["unit_id"]], before[page["unit_id"]]
        assert page["now"] == {k: ref[k] for k in ("total", "band", "rank", "peer_count")}
        assert page["week_before"]["total"] == old["total"]
        assert (page["week_before"]["rank"], page["week_before"]["band"]) == (old["rank"],
                                                                              old["band"])
        assert page["window"] == "month:2024-04" and page["as_of"] == WEEK_END
        assert page["groups"] == ref["groups"]
        for row in page["indicators"]:
            want = ref["indicators"][row["indicator"]]
            assert (row["num"], row["den"], row["points"]) == (want["num"], want["den"],
                                                              want["points"])
        assert page["series"][-1]["total"] == ref["total"]
        assert page["series"][-2]["total"] == old["total"]
    overview = {r["unit_id"]: r for r in pages[0]["units"]}
    assert all(overview[u]["total"] == now[u]["total"] and overview[u]["rank"] == now[u]["rank"]
               and overview[u]["rank_before"] == before[u]["rank"] for u in now)


def test_the_digest_of_a_past_week_does_not_change_with_later_events(sim, district_digest):
    out = sim["dir"] / "cut-out"
    assert digest_main(["--peer-group", "district", "--week", WEEK, "--events",
                        str(sim["cut"]), "--units", str(sim["catalog"]), "--commitments",
                        str(sim["dir"] / "commitments.json"), "--out", str(out),
                        "--format", "json"]) == 0
    cut = json.loads((out / f"digest-district-{WEEK}.json").read_text())
    assert cut["pages"] == district_digest["json"]["pages"]


def test_commitments_are_judged_at_their_deadline(sim, district_digest, capsys):
    unit = sim["units"][0]["unit_id"]
    page = next(p for p in district_digest["json"]["pages"] if p.get("unit_id") == unit)
    at_deadline = _score(capsys, sim["events"], sim["catalog"], PREV_END)[unit]
    on_time = at_deadline["indicators"]["on_time"]
    ratio = on_time["num"] / on_time["den"]
    kept, strict, total, digitized = page["commitments"]
    assert (kept["status"], kept["judged_at"], kept["missed"]) == ("kept", PREV_END, False)
    assert strict["status"] == ("kept" if ratio >= 1 else "missed")
    assert strict["missed"] is (ratio < 1)
    assert strict["successes_needed"] == on_time["den"] - on_time["num"]
    assert total["status"] == "open" and total["days_left"] == 77
    assert digitized["status"] == "met" and digitized["window"] == "quarter"
    row = next(r for r in district_digest["json"]["pages"][0]["units"] if r["unit_id"] == unit)
    assert row["commitments"].get("missed", 0) == int(ratio < 1)
    if ratio < 1:
        assert "MISSED" in district_digest["html"]


def test_the_digest_escapes_every_name(district_digest):
    html = district_digest["html"]
    assert "<script" not in html.lower()
    assert "Quận &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Co" in html
    assert "://" not in html.replace("http://www.w3.org/2000/svg", "")  # nothing external


def _pages(pdfinfo: str) -> int:
    return int(re.search(r"^Pages:\s+(\d+)$", pdfinfo, re.M).group(1))  # type: ignore[union-attr]


def _pdftotext(pdf: Path, page: int) -> str:
    return subprocess.run(["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(pdf),
                           "-"], capture_output=True, text=True, check=True, timeout=60).stdout


def test_the_pdf_opens_renders_and_carries_the_figures(sim, district_digest, tmp_path):
    if not shutil.which("pdftoppm"):
        pytest.fail("poppler-utils is not installed (apt-get install poppler-utils)")
    pdf = district_digest["pdf"]
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True,
                          timeout=60).stdout
    pages = district_digest["json"]["pages"]
    assert _pages(info) == len(pages)  # one page per unit, plus the overview
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "p")], check=True,
                   timeout=240, capture_output=True)
    pngs = sorted(tmp_path.glob("p-*.png"))
    assert len(pngs) == len(pages) and all(p.stat().st_size > 2000 for p in pngs)
    text = _pdftotext(pdf, 1)
    assert "Peer group: district" in text
    for n, page in enumerate(pages[1:], start=2):
        text = _pdftotext(pdf, n)
        assert page["unit_id"] in text
        assert f"{page['now']['total']:.2f}" in text  # the score, as text, on its page
        assert f"{page['now']['rank']} of {page['now']['peer_count']}" in text
        for loss in page["top_losses"][:2]:
            assert f"{loss['points_lost']:.2f}" in text
    assert "<script>alert('x')</script>" in _pdftotext(pdf, 1)  # shown as text, not run


def test_a_unit_digest_is_one_page_with_its_picture(tmp_path):
    events = write_jsonl(tmp_path / "e.jsonl", scenario().events)
    catalog = write_catalog(tmp_path / "c.json")
    assert digest_main(["--unit", "d-harsh", "--events", str(events), "--units", str(catalog),
                        "--out", str(tmp_path), "--format", "pdf,png,json"]) == 0
    stem = tmp_path / "digest-d-harsh-2024-W14"  # the file's last complete week
    assert not stem.with_suffix(".html").exists()
    assert stem.with_suffix(".png").stat().st_size > 5000
    info = subprocess.run(["pdfinfo", str(stem.with_suffix(".pdf"))], capture_output=True,
                          text=True, check=True, timeout=60).stdout
    assert _pages(info) == 1
    (page,) = json.loads(stem.with_suffix(".json").read_text())["pages"]
    kinds = {s["kind"] for s in page["signals"]}
    assert kinds == {"repeated_supplements", "due_pushed_back", "supplement_rate"}
    text = _pdftotext(stem.with_suffix(".pdf"), 1)
    assert "Repeated supplement" in text and "d-harsh-00" in text
    assert "officer" not in text.lower()  # the digest names dossiers, never officers


def test_bad_arguments_fail_cleanly(tmp_path, capsys):
    events = write_jsonl(tmp_path / "e.jsonl", scenario().events)
    catalog = write_catalog(tmp_path / "c.json")
    base = ["--events", str(events), "--units", str(catalog), "--out", str(tmp_path),
            "--format", "json"]
    assert digest_main(["--unit", "nowhere", *base]) == 2
    assert digest_main(["--peer-group", "galaxy", *base]) == 2
    assert digest_main(["--unit", "d-harsh", "--week", "2024-W99", *base]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"unit_id": "d-harsh", "indicator": "speed", "target": 1,
                                "deadline": "2024-05-01"}]))
    assert digest_main(["--unit", "d-harsh", "--commitments", str(bad), *base]) == 2
    assert "unknown indicator" in capsys.readouterr().err


def test_the_example_commitments_file_is_valid():
    catalog = load_catalog()
    items = cm.load(REPO / "examples" / "commitments.json", MODEL, catalog.by_id)
    assert items and all(c.unit_id in catalog for c in items)
    assert {c.unit_id for c in items} <= {u["unit_id"] for u in json.loads(
        (REPO / "scoring/catalogs/hcmc-2024.json").read_text())}
    assert UNITS  # the scripted catalog is separate from the city's
