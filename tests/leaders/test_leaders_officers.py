"""The officer index, an officer's indicators, and the token-protected officer view."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from leaders_support import (
    HARSH_DOSSIERS,
    UNITS,
    accepted_events,
    scenario,
    write_catalog,
    write_jsonl,
)

from audit.ingest import window_state
from leaders.history import LeaderHistory
from leaders.officers import NOT_PER_OFFICER, officer_report, restrict
from leaders.tokens import TokenStore, hash_line
from scoring.catalog import Catalog
from scoring.facts import Petition, Publication, UnitState
from scoring.indicators import count
from scoring.model import load_model
from scoring.timeutil import parse_ts, resolve_window

REPO = Path(__file__).resolve().parents[2]
CATALOG = Catalog.from_list(UNITS)
MODEL = load_model()
T = parse_ts("2024-04-14T12:00:00+07:00")
WINDOW = resolve_window("month", T)


@pytest.fixture(scope="module")
def data() -> LeaderHistory:
    return LeaderHistory().extend(accepted_events(scenario().events))


def test_the_index_knows_who_handled_which_dossier(data):
    idx = data.officers
    assert sorted(idx.dossiers_of("officer-harsh", "d-harsh")) == HARSH_DOSSIERS
    assert len(idx.dossiers_of("officer-kind", "d-harsh")) == 4
    assert idx.units_of("officer-harsh") == ["d-harsh"]
    assert idx.officers_of("d-harsh", "d-harsh-00")["officer-harsh"] >= {
        "dossier.received", "dossier.supplement_requested", "dossier.completed"}
    assert "officer-nobody" not in idx and len(idx) == 6


def test_per_officer_indicators_are_exactly_the_dossier_ones():
    """Derived, not assumed: a state with only a rated petition and a publication has a
    denominator on exactly the indicators that are not shown per officer."""
    state = UnitState(petitions={"p": Petition()}, publications={"x": Publication(
        WINDOW.start_us, True, True, True)})
    state.petitions["p"].received = (WINDOW.start_us, "e")
    state.petitions["p"].due = WINDOW.start_us + 1
    state.petitions["p"].ratings = {"r": (WINDOW.start_us + 2, "satisfied")}
    counts = count(state, WINDOW, T).values
    assert {i for i, (_, den) in counts.items() if den} == NOT_PER_OFFICER


def test_an_officer_sees_their_own_numbers_beside_unit_and_peers(data):
    doc = officer_report(data.history, data.officers, CATALOG, MODEL, "officer-harsh", T,
                         WINDOW)
    (unit,) = doc["units"]
    rows = {i["indicator"]: i for i in unit["indicators"]}
    assert not set(rows) & NOT_PER_OFFICER
    # every dossier of officer-harsh had two supplement requests: all late (SPEC 3)
    assert (rows["on_time"]["num"], rows["on_time"]["den"]) == (0, 6)
    assert rows["on_time"]["unit_ratio"] == 0.4  # 4 of the unit's 10
    # peers' on-time ratios at T: harsh 0.4, slow 1.0, sitting 0.5 (5 open past due), fine 1.0
    assert rows["on_time"]["peer_median_ratio"] == 0.75
    assert rows["on_time"]["failing"] == 6
    assert {it["dossier_id"] for it in rows["on_time"]["items"]} == set(HARSH_DOSSIERS)
    assert unit["dossiers"] == 6 and unit["repeated_supplements"] == 6
    # the officer's counts are the core's over the unit restricted to their dossiers
    full = window_state(data.history.states["d-harsh"], WINDOW)
    mine = count(restrict(full, data.officers.dossiers_of("officer-harsh", "d-harsh")),
                 WINDOW, T).values
    assert all((rows[i]["num"], rows[i]["den"]) == mine[i] for i in rows)
    # the two officers of the unit add up to the unit (additive indicators)
    kind = {i["indicator"]: i for i in officer_report(
        data.history, data.officers, CATALOG, MODEL, "officer-kind", T, WINDOW)["units"][0][
        "indicators"]}
    unit_counts = count(full, WINDOW, T).values
    for i in ("on_time", "dossier_synced", "digitized", "dossier_satisfaction"):
        assert rows[i]["num"] + kind[i]["num"] == unit_counts[i][0]
        assert rows[i]["den"] + kind[i]["den"] == unit_counts[i][1]


def test_token_files_hold_salted_hashes_only():
    a = hash_line("officer-a", "secret-token-a")
    b = hash_line("officer-b", "secret-token-a")  # same token, different salt
    assert "secret-token-a" not in a
    assert json.loads(a)["hash"].split("$")[2] != json.loads(b)["hash"].split("$")[2]
    store = TokenStore.parse(a + "\n# comment\n\n" + hash_line("officer-c", "tok-c") + "\n")
    assert store.owner("secret-token-a") == "officer-a"
    assert store.owner("tok-c") == "officer-c"
    assert store.owner("secret-token-b") is None and store.owner("") is None


def test_the_token_helper_prints_a_token_and_appends_its_hash(tmp_path):
    tokens = tmp_path / "tokens.jsonl"
    out = subprocess.run([sys.executable, "-m", "leaders.officer_token_cli", "officer-a",
                          "--append", str(tokens)], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=60).stdout.splitlines()
    token, line = out
    assert tokens.read_text().strip() == line and token not in tokens.read_text()
    assert stat.S_IMODE(os.stat(tokens).st_mode) == 0o600
    assert TokenStore.load(tokens).owner(token) == "officer-a"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                 if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_an_officer_token_opens_only_its_own_view_and_logs_name_no_officer(tmp_path):
    events = write_jsonl(tmp_path / "events.jsonl", scenario().events)
    catalog = write_catalog(tmp_path / "catalog.json")
    tokens = tmp_path / "tokens.jsonl"
    minted = {}
    for officer in ("officer-harsh", "officer-kind"):
        out = subprocess.run([sys.executable, "-m", "leaders.officer_token_cli", officer,
                              "--append", str(tokens)], cwd=REPO, capture_output=True,
                             text=True, check=True, timeout=60).stdout.splitlines()
        minted[officer] = out[0]
    port = _free_port()
    log_path = tmp_path / "officer.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "leaders.officer_cli", "--tokens", str(tokens), "--events",
             str(events), "--units", str(catalog), "--port", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(base + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the officer view did not start"
            time.sleep(0.2)
        harsh, kind = minted["officer-harsh"], minted["officer-kind"]
        status, headers, body = _get(base + "/officer/officer-harsh?format=json", harsh)
        assert status == 200
        doc = json.loads(body)
        rows = {i["indicator"]: i for i in doc["units"][0]["indicators"]}
        assert (rows["on_time"]["num"], rows["on_time"]["den"]) == (0, 6)
        assert headers["Cache-Control"] == "no-store"
        status, headers, body = _get(base + "/officer/officer-harsh", harsh)
        assert status == 200 and b"Your indicators" in body and b"d-harsh-00" in body
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        # another officer's page: forbidden, whether that officer exists or not
        assert _get(base + "/officer/officer-kind", harsh)[0] == 403
        assert _get(base + "/officer/officer-harsh", kind)[0] == 403
        assert _get(base + "/officer/officer-nobody", kind)[0] == 403
        assert _get(base + "/officer/officer-kind?format=json", kind)[0] == 200
        # no token, a wrong token, a token for nobody: unauthorized
        status, headers, _ = _get(base + "/officer/officer-harsh")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert _get(base + "/officer/officer-harsh", harsh + "x")[0] == 401
        assert _get(base + "/officer/officer-harsh", "Bearer")[0] == 401
        assert _get(base + "/officer/officer-harsh?at=nonsense", harsh)[0] == 400
        # a new officer's token works after SIGHUP, without a restart
        out = subprocess.run([sys.executable, "-m", "leaders.officer_token_cli", "officer-sit",
                              "--append", str(tokens)], cwd=REPO, capture_output=True,
                             text=True, check=True, timeout=60).stdout.splitlines()
        assert _get(base + "/officer/officer-sit", out[0])[0] == 401
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while _get(base + "/officer/officer-sit", out[0])[0] != 200:
            assert time.monotonic() < deadline, "the token file was not re-read on SIGHUP"
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    log_text = log_path.read_text()
    assert "GET /officer/{officer_id} 403" in log_text  # requests are logged ...
    assert "officer-harsh" not in log_text and "officer-kind" not in log_text  # ... anonymously
    assert "officer-nobody" not in log_text and "officer-sit" not in log_text
    assert "reloaded: 3 token(s)" in log_text
    assert minted["officer-harsh"] not in log_text
