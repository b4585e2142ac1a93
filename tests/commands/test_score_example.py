"""``bando score`` (SPEC section 5) against the worked example of SPEC section 6, in process
and as a real subprocess, plus its exit statuses and window resolution."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bando.cli import main
from scoring.catalog import load_catalog

CASES = [
    ("expected-2024-03-month.json", "2024-03-31T23:59:59+07:00", "month:2024-03"),
    ("expected-2024-04-14-year.json", "2024-04-14T17:00:00+07:00", "year:2024"),
]
REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """``shared/`` sits beside the repository clone (``<clone>/../shared``)."""
    candidate = (REPO_ROOT / ".." / "shared").resolve()
    if not (candidate / "SPEC.md").is_file() or not (candidate / "examples" / "vn766").is_dir():
        pytest.fail(
            f"shared/ not found: expected {candidate} (beside the repository at {REPO_ROOT}) "
            "with SPEC.md and examples/vn766/; the worked example is needed for these tests",
            pytrace=False,
        )
    return candidate


@pytest.fixture(scope="module")
def example() -> Path:
    return shared_dir() / "examples" / "vn766"


def run_score(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    rc = main(["score", *args])
    captured = capsys.readouterr()
    out = json.loads(captured.out) if captured.out.strip() else None
    return rc, out, captured.err


def example_args(example: Path, as_of: str, window: str) -> list[str]:
    return ["--events", str(example / "events.jsonl"), "--units", str(example / "catalog.json"),
            "--as-of", as_of, "--window", window]


def compare(got: dict, expected: dict) -> None:
    assert got["model"] == expected["model"]
    assert got["window"] == expected["window"]
    assert got["as_of"] == expected["as_of"]
    got_units = {u["unit_id"]: u for u in got["units"]}
    exp_units = {u["unit_id"]: u for u in expected["units"]}
    assert len(got_units) == len(got["units"]), "a unit appears twice"
    assert set(got_units) == set(exp_units)
    for unit_id, exp in exp_units.items():
        u = got_units[unit_id]
        where = f"unit {unit_id}"
        for key in ("name", "peer_group", "band", "rank", "peer_count"):
            assert u[key] == exp[key], f"{where}: {key} {u[key]!r} != {exp[key]!r}"
        if exp["total"] is None:
            assert u["total"] is None, where
        else:
            assert u["total"] is not None and abs(u["total"] - exp["total"]) <= 0.01, where
        assert set(u["indicators"]) == set(exp["indicators"]), where
        for ind, e in exp["indicators"].items():
            g = u["indicators"][ind]
            for key in ("num", "den", "applicable", "max"):
                assert g[key] == e[key], f"{where} {ind}.{key}: {g[key]!r} != {e[key]!r}"
            if e["points"] is None:
                assert g["points"] is None, f"{where} {ind}"
            else:
                assert abs(g["points"] - e["points"]) <= 1e-3, f"{where} {ind}.points"
        assert set(u["groups"]) == set(exp["groups"]), where
        for group, e in exp["groups"].items():
            g = u["groups"][group]
            assert g["max"] == e["max"], f"{where} group {group}"
            assert abs(g["points"] - e["points"]) <= 1e-3, f"{where} group {group}"
    got_rejected = sorted((r["line"], r["error"]) for r in got["rejected"])
    exp_rejected = sorted((r["line"], r["error"]) for r in expected["rejected"])
    assert got_rejected == exp_rejected
    for r in got["rejected"]:
        assert isinstance(r["detail"], str) and r["detail"], r


@pytest.mark.parametrize(("expected_file", "as_of", "window"), CASES)
def test_score_reproduces_worked_example(example: Path, capsys: pytest.CaptureFixture[str],
                                         expected_file: str, as_of: str, window: str) -> None:
    expected = json.loads((example / expected_file).read_text(encoding="utf-8"))
    assert (expected["as_of"], expected["window"]) == (as_of, window)
    rc, got, _ = run_score(capsys, *example_args(example, as_of, window))
    assert rc == 0
    compare(got, expected)
    # every catalog unit appears, in catalog order
    catalog = json.loads((example / "catalog.json").read_text(encoding="utf-8"))
    assert [u["unit_id"] for u in got["units"]] == [u["unit_id"] for u in catalog]


@pytest.mark.parametrize(("expected_file", "as_of", "window"), CASES)
def test_score_as_a_subprocess(example: Path, tmp_path: Path, expected_file: str, as_of: str,
                               window: str) -> None:
    expected = json.loads((example / expected_file).read_text(encoding="utf-8"))
    proc = subprocess.run(
        [sys.executable, "-m", "bando.cli", "score", *example_args(example, as_of, window)],
        capture_output=True, cwd=tmp_path, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    compare(json.loads(proc.stdout), expected)


def test_pretty_output_is_the_same_document(example: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _, as_of, window = CASES[0]
    _, plain, _ = run_score(capsys, *example_args(example, as_of, window))
    rc, pretty, _ = run_score(capsys, *example_args(example, as_of, window), "--pretty")
    assert rc == 0 and pretty == plain


# ---------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("kind", "as_of", "window"),
    [
        ("month", "2024-03-31T23:59:59+07:00", "month:2024-03"),
        ("month", "2024-03-31T17:30:00Z", "month:2024-04"),  # already April in UTC+7
        ("month", "2024-04-14T17:00:00+07:00", "month:2024-04"),
        ("quarter", "2024-04-14T17:00:00+07:00", "quarter:2024-Q2"),
        ("quarter", "2024-03-31T16:59:59Z", "quarter:2024-Q1"),
        ("year", "2024-04-14T17:00:00+07:00", "year:2024"),
        ("year", "2023-12-31T17:00:00Z", "year:2024"),
    ],
)
def test_window_kind_resolves_to_the_one_holding_as_of(
    example: Path, capsys: pytest.CaptureFixture[str], kind: str, as_of: str, window: str
) -> None:
    rc, by_kind, _ = run_score(capsys, *example_args(example, as_of, kind))
    assert rc == 0
    assert by_kind["window"] == window
    assert by_kind["as_of"] == as_of
    rc, explicit, _ = run_score(capsys, *example_args(example, as_of, window))
    assert rc == 0
    assert by_kind == explicit


def test_month_kind_matches_expected_march_case(example: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    expected = json.loads((example / CASES[0][0]).read_text(encoding="utf-8"))
    rc, got, _ = run_score(capsys, *example_args(example, CASES[0][1], "month"))
    assert rc == 0
    compare(got, expected)


# ---------------------------------------------------------------- bad input and exit status


def test_bad_lines_are_listed_and_exit_is_zero(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps([{"unit_id": "u1", "name": "One", "peer_group": "g"},
                                   {"unit_id": "u2", "name": "Two", "peer_group": "g"}]))
    good = {"event_id": "e1", "type": "dossier.received", "unit_id": "u1",
            "occurred_at": "2024-04-02T09:00:00+07:00", "dossier_id": "d1",
            "procedure_id": "p", "channel": "online", "due_at": "2024-05-20T09:00:00+07:00",
            "online_eligible": True, "full_online": True, "fee_required": False,
            "reused_data": True, "pds_linked": True, "population_db": True}
    lines = [
        json.dumps(good),  # 1
        "{broken",  # 2
        "",  # 3: blank, skipped silently
        json.dumps({**good, "event_id": "e2", "unit_id": "nowhere"}),  # 4
        json.dumps({**good, "event_id": "e3", "type": "dossier.teleported"}),  # 5
        json.dumps({**good, "event_id": "e4", "channel": "fax"}),  # 6
        json.dumps(good),  # 7: exact duplicate, a no-op
        json.dumps({**good, "procedure_id": "other"}),  # 8: conflicting duplicate
        "[1, 2, 3]",  # 9
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe\n")  # 10: not UTF-8
    rc, out, _ = run_score(capsys, "--events", str(events), "--units", str(catalog),
                           "--as-of", "2024-04-30T23:59:59+07:00", "--window", "month")
    assert rc == 0
    assert [(r["line"], r["error"]) for r in out["rejected"]] == [
        (2, "invalid_json"), (4, "unknown_unit"), (5, "unknown_type"), (6, "schema_violation"),
        (8, "conflicting_duplicate"), (9, "schema_violation"), (10, "invalid_json"),
    ]
    units = {u["unit_id"]: u for u in out["units"]}
    # u1: one open on-time online dossier, nothing else: on_time 20 + online_submission 6 +
    # online_uptake 4 + full_online 2 + data_reused 2 + pds_linked 4 + population_db 6 +
    # dossier_satisfaction 6 + 12 (empty petition indicators) = 62
    assert units["u1"]["total"] == 62.0
    assert units["u1"]["indicators"]["on_time"]["den"] == 1  # the duplicate did not count
    assert units["u1"]["rank"] == 1 and units["u1"]["peer_count"] == 1
    assert units["u2"]["total"] is None and units["u2"]["rank"] is None


def test_only_garbage_still_lists_every_unit(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("nope\n{}\n")
    rc, out, _ = run_score(capsys, "--events", str(events), "--as-of",
                           "2024-04-30T23:59:59+07:00", "--window", "month:2024-04")
    assert rc == 0
    assert [(r["line"], r["error"]) for r in out["rejected"]] == [
        (1, "invalid_json"), (2, "schema_violation")]
    default = load_catalog()
    assert [u["unit_id"] for u in out["units"]] == [u.unit_id for u in default.units]
    assert all(u["total"] is None for u in out["units"])
    districts = [u for u in default.units if u.peer_group == "district"]
    assert len(districts) == 22  # SPEC section 2


def test_empty_events_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    rc, out, _ = run_score(capsys, "--events", str(events), "--as-of",
                           "2024-04-30T23:59:59+07:00", "--window", "year")
    assert rc == 0
    assert out["rejected"] == [] and out["window"] == "year:2024"


@pytest.mark.parametrize(
    "args",
    [
        ["--events", "{tmp}/absent.jsonl"],
        ["--events", "{tmp}"],  # a directory
        ["--events", "{tmp}/events.jsonl", "--units", "{tmp}/absent.json"],
        ["--events", "{tmp}/events.jsonl", "--units", "{tmp}/events.jsonl"],  # not a catalog
        ["--events", "{tmp}/events.jsonl", "--model", "nosuch@1"],
    ],
)
def test_unreadable_files_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               args: list[str]) -> None:
    (tmp_path / "events.jsonl").write_text("")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    rc, out, err = run_score(capsys, *argv, "--as-of", "2024-04-30T23:59:59+07:00",
                             "--window", "month")
    assert rc != 0
    assert out is None  # no half-written report
    assert err.strip()


@pytest.mark.parametrize(
    ("as_of", "window"),
    [
        ("2024-04-30", "month"),  # no time, no offset
        ("2024-04-30T23:59:59", "month"),  # no offset
        ("2024-04-30T23:59:59+07:00", "week"),
        ("2024-04-30T23:59:59+07:00", "month:2024-13"),
        ("2024-04-30T23:59:59+07:00", "year:9999"),  # would end in year 10000
        ("2024-04-30T23:59:59+07:00", "year:0000"),
        ("0001-01-01T00:00:00+01:00", "month"),  # before year 1 in UTC
        ("9999-12-31T23:59:59-23:59", "month"),  # in year 10000 in UTC
        ("9999-12-30T12:00:00+07:00", "year"),  # year:9999 would end in year 10000
    ],
)
def test_bad_as_of_or_window_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   as_of: str, window: str) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    rc, out, err = run_score(capsys, "--events", str(events), "--as-of", as_of,
                             "--window", window)
    assert rc != 0 and out is None and err.strip()


def test_missing_events_file_as_subprocess(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bando.cli", "score", "--events", str(tmp_path / "absent.jsonl"),
         "--as-of", "2024-04-30T23:59:59+07:00", "--window", "month"],
        capture_output=True, timeout=120, check=False,
    )
    assert proc.returncode != 0
    assert proc.stdout == b""
    assert b"absent.jsonl" in proc.stderr
