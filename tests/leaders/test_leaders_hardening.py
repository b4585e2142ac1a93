"""Edge inputs the leaders' tools must turn away cleanly: dotted group ids in digest file
names, a non-UTF-8 bearer token, out-of-range times and windows, an out-of-range deadline."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer
from leaders_support import UNITS, accepted_events, scenario, write_catalog, write_jsonl

from leaders import commitments as cm
from leaders.digest_cli import main as digest_main
from leaders.history import LeaderHistory
from leaders.officer_view import OfficerData, make_app
from leaders.tokens import TokenStore, hash_line
from scoring.catalog import Catalog
from scoring.model import load_model

MODEL = load_model()
TOKEN = "tok-harsh"
DOTTED = [{**u, "peer_group": u["peer_group"].replace("district", "district.hcm")}
          for u in UNITS]


def test_digests_of_dotted_groups_and_different_weeks_do_not_overwrite(tmp_path):
    """``with_suffix`` cut ``digest-district.hcm-2024-W14`` to ``digest-district.json``."""
    events = write_jsonl(tmp_path / "e.jsonl", scenario().events)
    units = DOTTED + [{**u, "unit_id": f"{u['unit_id']}-hn", "peer_group": "district.hn"}
                      for u in UNITS if u["peer_group"] == "district"]
    catalog = write_catalog(tmp_path / "c.json", units)
    out = tmp_path / "dg"
    base = ["--events", str(events), "--units", str(catalog), "--out", str(out),
            "--overview-only", "--format", "html,json"]
    for group in ("district.hcm", "district.hn"):
        for week in ("2024-W13", "2024-W14"):
            assert digest_main(["--peer-group", group, "--week", week, *base]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"digest-{g}-{w}.{ext}" for g in ("district.hcm", "district.hn")
        for w in ("2024-W13", "2024-W14") for ext in ("html", "json"))
    doc = json.loads((out / "digest-district.hn-2024-W13.json").read_text())
    assert doc["week"] == "2024-W13"


@pytest.mark.browser  # the PNG is printed from a PDF by headless Chromium
def test_a_dotted_group_gets_its_pdf_and_png_under_the_full_name(tmp_path):
    events = write_jsonl(tmp_path / "e.jsonl", scenario().events)
    catalog = write_catalog(tmp_path / "c.json", DOTTED)
    assert digest_main(["--peer-group", "district.hcm", "--events", str(events), "--units",
                        str(catalog), "--out", str(tmp_path / "dg"), "--overview-only",
                        "--format", "png"]) == 0
    names = sorted(p.name for p in (tmp_path / "dg").iterdir())
    assert names == ["digest-district.hcm-2024-W14.pdf", "digest-district.hcm-2024-W14.png"]


def test_an_unrepresentable_deadline_is_a_commitment_error(tmp_path, capsys):
    with pytest.raises(cm.CommitmentError, match="out of range"):
        cm.parse_deadline("9999-12-31", MODEL.timezone)
    assert cm.parse_deadline("9999-12-30", MODEL.timezone) > 0
    events = write_jsonl(tmp_path / "e.jsonl", scenario().events)
    catalog = write_catalog(tmp_path / "c.json")
    bad = tmp_path / "cm.json"
    bad.write_text(json.dumps([{"unit_id": "d-harsh", "indicator": "on_time", "target": 0.9,
                                "deadline": "9999-12-31"}]))
    assert digest_main(["--unit", "d-harsh", "--commitments", str(bad), "--events",
                        str(events), "--units", str(catalog), "--out", str(tmp_path),
                        "--format", "json"]) == 2
    assert "out of range" in capsys.readouterr().err


@pytest.fixture(scope="module")
def officer_data() -> OfficerData:
    data = LeaderHistory().extend(accepted_events(scenario().events))
    return OfficerData(data, Catalog.from_list(UNITS), MODEL)


@pytest.fixture
async def client(officer_data):  # type: ignore[no-untyped-def]
    store = TokenStore.parse(hash_line("officer-harsh", TOKEN) + "\n")
    async with TestClient(TestServer(make_app(officer_data, lambda: store))) as c:
        yield c


async def test_a_token_that_is_not_utf8_is_refused_not_a_server_error(client, caplog):
    """aiohttp hands such bytes on as lone surrogates; hashing them raised a 500."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET /officer/officer-harsh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"Authorization: Bearer ab\xffcd\r\n\r\n")
    await writer.drain()
    with caplog.at_level(logging.ERROR, logger="leaders.officer_view"):
        head = (await reader.read()).split(b"\r\n", 1)[0]
    writer.close()
    assert head == b"HTTP/1.1 401 Unauthorized"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(("query", "message"), [
    ("at=9999-12-31", "out of range"),
    ("at=9999-12-31T23:00:00Z", "not a time"),  # parse_ts bounds RFC 3339 itself
    ("at=2024-04-14&window=year:0001", "does not hold"),
    ("at=2024-04-14&window=month:2024-05", "does not hold"),
])
async def test_times_and_windows_out_of_range_or_apart_are_bad_requests(client, query,
                                                                         message):
    resp = await client.get(f"/officer/officer-harsh?{query}",
                            headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 400
    assert message in await resp.text()


async def test_a_window_holding_the_time_still_opens(client):
    resp = await client.get("/officer/officer-harsh?at=2024-04-14&window=month:2024-04"
                            "&format=json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    assert (await resp.json())["window"] == "month:2024-04"

