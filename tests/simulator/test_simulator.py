"""The simulator: HCMC catalog, determinism, SPEC section 1 validity, unit habits, chaos, CLI.

The event checker below is written from SPEC section 1 on purpose, independently of
``schemas.validate``: two readings of the spec that agree are worth more than one. When the
project validator is importable, its verdicts are compared too.
"""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from bando.simulator import (
    BAD_KINDS,
    Chaos,
    Generator,
    generate,
    generate_timed,
    make_profiles,
    messages,
    read_catalog,
    write_jsonl,
)
from bando.simulator.profiles import WORK, WorkCalendar, day_of

try:
    from schemas import EventRejected, Validator
except ImportError:  # the project validator is optional for these tests
    Validator = None  # type: ignore[assignment,misc]

CATALOG = read_catalog()
UNITS = {u["unit_id"] for u in CATALOG}

# -- an independent checker of SPEC section 1 -------------------------------------------------

_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_RATINGS = {"satisfied", "neutral", "dissatisfied"}
_B, _S, _T, _I = "bool", "str", "ts", "int>=0"
_FIELDS: dict[str, dict[str, Any]] = {
    "dossier.received": {"dossier_id": _S, "procedure_id": _S, "due_at": _T,
                         "channel": {"in_person", "online", "postal"}, "online_eligible": _B,
                         "full_online": _B, "fee_required": _B, "reused_data": _B,
                         "pds_linked": _B, "population_db": _B},
    "dossier.digitized": {"dossier_id": _S},
    "dossier.synced": {"dossier_id": _S},
    "dossier.paid": {"dossier_id": _S, "online": _B, "amount_vnd": _I},
    "dossier.supplement_requested": {"dossier_id": _S},
    "dossier.completed": {"dossier_id": _S, "e_result": _B},
    "dossier.withdrawn": {"dossier_id": _S},
    "dossier.rated": {"dossier_id": _S, "rating": _RATINGS},
    "petition.received": {"petition_id": _S, "due_at": _T},
    "petition.resolved": {"petition_id": _S},
    "petition.rated": {"petition_id": _S, "rating": _RATINGS},
    "procedure.published": {"procedure_id": _S, "announced_on_time": _B,
                            "publicized_on_time": _B, "complete": _B},
    "clock.tick": {},
}


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str) or not _TS.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _ok(kind: Any, value: Any) -> bool:
    if kind == _B:
        return isinstance(value, bool)
    if kind == _S:
        return isinstance(value, str) and value != ""
    if kind == _T:
        return _ts(value) is not None
    if kind == _I:
        return type(value) is int and value >= 0
    return isinstance(value, str) and value in kind


def check(raw: bytes) -> str | None:
    """None for a valid event, else the DLQ error code SPEC section 1 assigns."""
    try:
        ev = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "invalid_json"
    if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
        return "schema_violation"
    fields = _FIELDS.get(ev["type"])
    if fields is None:
        return "unknown_type"
    eid = ev.get("event_id")
    if not (isinstance(eid, str) and 1 <= len(eid) <= 128):
        return "schema_violation"
    occurred = _ts(ev.get("occurred_at"))
    if occurred is None or ev.get("schema_version", 1) != 1:
        return "schema_violation"
    for name, kind in fields.items():
        if name not in ev or not _ok(kind, ev[name]):
            return "schema_violation"
    for name in ("due_at", "new_due_at"):
        if name in ev and (_ts(ev[name]) is None):
            return "schema_violation"
    if "due_at" in ev and _ts(ev["due_at"]) <= occurred:  # type: ignore[operator]
        return "schema_violation"
    if ev.get("full_online") is True and ev.get("channel") != "online":
        return "schema_violation"
    if "officer_id" in ev and not (ev["type"].startswith("dossier.")
                                   and isinstance(ev["officer_id"], str)):
        return "schema_violation"
    if ev["type"] == "clock.tick":
        return "schema_violation" if "unit_id" in ev else None
    if not isinstance(ev.get("unit_id"), str):
        return "schema_violation"
    return None if ev["unit_id"] in UNITS else "unknown_unit"


def _project_code(raw: bytes) -> str | None:
    assert Validator is not None
    try:
        Validator(UNITS).validate(raw)
    except EventRejected as exc:
        return exc.code
    return None


def _events(days: int = 10, scale: float = 0.3, seed: int = 3, start: str = "2024-03-04"
            ) -> list[dict[str, Any]]:
    end = datetime.fromisoformat(start + "T00:00:00+07:00").timestamp() + days * 86400
    return list(generate(CATALOG, start, int(end), seed=seed, rate_scale=scale))


# -- catalog -----------------------------------------------------------------------------------


def test_default_catalog_is_hcmc_2024() -> None:
    groups = Counter(u["peer_group"] for u in CATALOG)
    assert groups["district"] == 22
    assert groups["department"] >= 20
    assert groups["ward"] >= 50
    assert set(groups) == {"department", "district", "ward"}
    assert len(UNITS) == len(CATALOG)
    names = {u["unit_id"]: u["name"] for u in CATALOG}
    assert names["district-05"] == "Quận 5"
    assert names["district-thu-duc"] == "Thành phố Thủ Đức"
    assert names["district-can-gio"] == "Huyện Cần Giờ"
    assert names["ward-ben-nghe"] == "Phường Bến Nghé"
    assert names["dept-justice"] == "Sở Tư pháp"
    for u in CATALOG:
        assert set(u) == {"unit_id", "name", "peer_group"}
        assert re.fullmatch(r"(dept|district|ward)-[a-z0-9]+(-[a-z0-9]+)*", u["unit_id"])
        assert u["unit_id"].startswith({"department": "dept-", "district": "district-",
                                        "ward": "ward-"}[u["peer_group"]])
        assert unicodedata.normalize("NFC", u["name"]) == u["name"]
    districts = {u["unit_id"] for u in CATALOG if u["peer_group"] == "district"}
    assert {f"district-{n:02d}" for n in (1, 3, 4, 5, 6, 7, 8, 10, 11, 12)} <= districts


def test_project_catalog_loader_reads_it() -> None:
    catalog_mod = pytest.importorskip("scoring.catalog")
    loaded = catalog_mod.load_catalog(None)
    assert len(loaded) == len(CATALOG)


# -- determinism -------------------------------------------------------------------------------


def test_same_seed_same_events_other_seed_other_events() -> None:
    a = _events(days=3, seed=11)
    assert a == _events(days=3, seed=11)
    b = _events(days=3, seed=12)
    assert a != b
    assert not {e["event_id"] for e in a} & {e["event_id"] for e in b}


def test_a_later_end_extends_the_same_run() -> None:
    short = _events(days=2)
    longer = _events(days=4)
    assert longer[: len(short)] == short
    assert len(longer) > len(short)


def test_profiles_depend_on_seed_and_unit_only() -> None:
    full = {p.unit_id: p for p in make_profiles(CATALOG, 5)}
    part = make_profiles(CATALOG[10:20], 5)
    assert all(full[p.unit_id] == p for p in part)


# -- validity ----------------------------------------------------------------------------------


def test_every_event_satisfies_spec_section_1() -> None:
    events = _events(days=14, scale=0.3)
    types = Counter(e["type"] for e in events)
    assert set(types) == set(_FIELDS), f"missing types: {set(_FIELDS) - set(types)}"
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    previous = ""
    for ev in events:
        raw = orjson.dumps(ev)
        assert check(raw) is None, ev
        if Validator is not None:
            assert _project_code(raw) is None, ev
        assert ev["occurred_at"].endswith("+07:00")
        for name in ("due_at", "new_due_at"):
            if name in ev:
                assert ev[name].endswith("T17:00:00+07:00")  # close of a working day
        assert ev["occurred_at"] >= previous  # same offset everywhere: text order is time order
        previous = ev["occurred_at"]


def test_dossier_lifecycles_are_coherent() -> None:
    events = _events(days=21, scale=0.2)
    received: dict[str, dict[str, Any]] = {}
    later: dict[str, Counter[str]] = defaultdict(Counter)
    for ev in events:
        if ev["type"] == "dossier.received":
            assert ev["dossier_id"] not in received
            received[ev["dossier_id"]] = ev
        elif ev["type"].startswith("dossier."):
            first = received.get(ev["dossier_id"])
            assert first is not None, "a dossier event before its dossier.received"
            assert ev["unit_id"] == first["unit_id"]
            assert not later[ev["dossier_id"]]["dossier.withdrawn"], "event after withdrawal"
            if ev["type"] == "dossier.paid":
                assert first["fee_required"]
            if ev["type"] == "dossier.rated":
                assert later[ev["dossier_id"]]["dossier.completed"] == 1
            later[ev["dossier_id"]][ev["type"]] += 1
    assert all(c["dossier.completed"] <= 1 and c["dossier.paid"] <= 1 for c in later.values())
    channels = Counter(e["channel"] for e in received.values())
    assert channels["online"] and channels["in_person"] and channels["postal"]


def test_due_times_count_working_days_and_skip_tet() -> None:
    def at(text: str) -> int:
        return int(datetime.fromisoformat(text).timestamp())

    cal = WorkCalendar(day_of(at("2024-01-01T00:00:00+07:00")))
    t = at("2024-02-07T10:00:00+07:00")  # Wednesday before Tet; 8-14 February are off
    assert cal.close_of(cal.work_pos(t) // WORK + 1) == at("2024-02-15T17:00:00+07:00")
    friday_evening = at("2024-03-08T18:30:00+07:00")  # counts from Monday
    assert cal.close_of(cal.work_pos(friday_evening) // WORK + 1) == at(
        "2024-03-12T17:00:00+07:00")
    for k in (1, 100, 34200, 34201, 500_000):
        assert cal.at(cal.work_pos(t) + k) > t


# -- habits ------------------------------------------------------------------------------------


def test_units_differ_in_habits() -> None:
    profiles = {p.unit_id: p for p in make_profiles(CATALOG, 0)}
    districts = [p for p in profiles.values() if p.peer_group == "district"]
    fast = min(districts, key=lambda p: p.late)
    slow = max(districts, key=lambda p: p.late)
    digital = max(districts, key=lambda p: p.online_share)
    paper = min(districts, key=lambda p: p.online_share)
    events = list(generate(CATALOG, "2024-03-01", "2024-05-01", seed=0, rate_scale=0.3))
    due: dict[str, str] = {}
    supplements: Counter[str] = Counter()
    on_time: dict[str, list[bool]] = defaultdict(list)
    online: dict[str, list[bool]] = defaultdict(list)
    for ev in events:
        kind = ev["type"]
        if kind == "dossier.received":
            due[ev["dossier_id"]] = ev["due_at"]
            online[ev["unit_id"]].append(ev["channel"] == "online")
        elif kind == "dossier.supplement_requested":
            supplements[ev["dossier_id"]] += 1
            if "new_due_at" in ev:
                due[ev["dossier_id"]] = ev["new_due_at"]
        elif kind == "dossier.completed":
            ok = ev["occurred_at"] <= due[ev["dossier_id"]] and supplements[ev["dossier_id"]] < 2
            on_time[ev["unit_id"]].append(ok)

    def share(xs: list[bool]) -> float:
        assert len(xs) > 50
        return sum(xs) / len(xs)

    assert share(on_time[fast.unit_id]) > share(on_time[slow.unit_id]) + 0.1
    assert share(online[digital.unit_id]) > share(online[paper.unit_id]) + 0.3
    tiers = Counter(p.tier for p in profiles.values())
    assert tiers["leader"] and tiers["steady"] and tiers["laggard"]


# -- chaos -------------------------------------------------------------------------------------


def _timed(days: int = 5) -> list[tuple[int, dict[str, Any]]]:
    return list(generate_timed(CATALOG, "2024-03-04", "2024-03-0" + str(4 + days),
                               seed=1, rate_scale=0.2))


def test_bad_rate_produces_every_requested_class() -> None:
    timed = _timed()
    good = {orjson.dumps(ev) for _, ev in timed}
    out = [value for _, _, value in messages(timed, Chaos(bad_rate=0.2), seed=1)]
    codes = Counter(check(v) for v in out if v not in good)
    assert set(codes) == set(BAD_KINDS), codes
    bad = sum(codes.values())
    assert abs(bad / len(out) - 0.2) < 0.02
    assert good <= set(out)  # nothing good is lost
    if Validator is not None:
        mismatched = [(v, check(v), _project_code(v)) for v in out
                      if v not in good and check(v) != _project_code(v)]
        assert not mismatched, mismatched[:3]
    only = [v for _, _, v in messages(timed, Chaos(bad_rate=0.1, bad_kinds=("unknown_unit",)))]
    assert {check(v) for v in only if v not in good} == {"unknown_unit"}


def test_duplicates_are_exact_and_shuffle_is_bounded() -> None:
    timed = _timed(2)
    lines = [orjson.dumps(ev) for _, ev in timed]
    dup = [v for _, _, v in messages(timed, Chaos(dup_rate=0.1), seed=2)]
    extra = Counter(dup) - Counter(lines)
    assert set(Counter(dup) - extra) == set(lines)
    assert abs(sum(extra.values()) / len(lines) - 0.1) < 0.02
    window = 30
    shuffled = [v for _, _, v in messages(timed, Chaos(shuffle_window=window), seed=2)]
    assert sorted(shuffled) == sorted(lines) and shuffled != lines
    position = {v: i for i, v in enumerate(lines)}
    assert max(abs(position[v] - i) for i, v in enumerate(shuffled)) <= window


def test_ticks_have_no_key_and_units_are_keys() -> None:
    for _, key, value in messages(_timed(1)):
        ev = orjson.loads(value)
        assert key == (ev["unit_id"].encode() if "unit_id" in ev else None)


def test_write_jsonl_counts_lines(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    with path.open("wb") as out:
        n = write_jsonl(out, _timed(1), Chaos(bad_rate=0.05, dup_rate=0.05, shuffle_window=5))
    assert n == len(path.read_bytes().splitlines()) > 1000


# -- command line ------------------------------------------------------------------------------


def test_cli_file_and_profiles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bando.cli import main

    out = tmp_path / "events.jsonl"
    rc = main(["simulate", "file", "--out", str(out), "--start", "2024-04-01",
               "--end", "2024-04-03", "--seed", "9", "--scale", "0.2", "--bad-rate", "0.01"])
    assert rc == 0
    lines = out.read_bytes().splitlines()
    codes = Counter(check(line) for line in lines)
    assert codes[None] > 1000 and 0 < sum(codes.values()) - codes[None] < 0.03 * len(lines)
    assert main(["simulate", "profiles"]) == 0
    profiles = orjson.loads(capsys.readouterr().out)
    assert [p["unit_id"] for p in profiles] == [u["unit_id"] for u in CATALOG]


def test_generator_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Generator([], start="2024-01-01")
    with pytest.raises(ValueError):
        Chaos(bad_rate=1.5)
    with pytest.raises(ValueError):
        Chaos(bad_kinds=("cosmic_ray",))


# -- live --------------------------------------------------------------------------------------


def test_live_producer_creates_its_topic_with_the_clusters_security(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A TLS listener without SASL: no username, yet topic creation needs the TLS options."""
    import bando.infra
    from bando.settings import Settings
    from bando.simulator.live import produce

    seen: list[Any] = []

    class Created(Exception):
        pass

    async def create(*args: Any, **kwargs: Any) -> list[str]:
        seen.append(kwargs.get("security"))
        raise Created

    monkeypatch.setattr(bando.infra, "create_topics_async", create)
    settings = Settings.from_env(env={}).with_(kafka_security_protocol="SSL")
    with pytest.raises(Created):
        asyncio.run(produce(CATALOG, bootstrap="127.0.0.1:9", topic="t", duration=1.0,
                            settings=settings))
    assert seen and seen[0]["security_protocol"] == "SSL" and "ssl_context" in seen[0]


@pytest.mark.integration
def test_live_producer_against_the_broker(kafka: Any, unique: str) -> None:
    from aiokafka import AIOKafkaConsumer

    from bando.simulator.live import LiveStats, produce

    topic = f"procedure-events-{unique}"
    start = int(time.time()) - 20 * 86400
    stats = LiveStats()

    async def scenario() -> list[Any]:
        produced = await produce(CATALOG, bootstrap=kafka.bootstrap, topic=topic, speed=86400,
                                 rate=400, start=start, duration=4.0, seed=4, tick_every=3600,
                                 partitions=4, stats=stats)
        assert produced == stats.sent > 100 and stats.failed == 0
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    group_id=None)
        await consumer.start()
        got: list[Any] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < produced and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    got.extend(records)
        finally:
            await consumer.stop()
        return got

    records = asyncio.run(scenario())
    assert len(records) == stats.acked
    tick_partitions: dict[str, set[int]] = defaultdict(set)
    wall = time.time()
    for rec in records:
        assert check(rec.value) is None
        ev = orjson.loads(rec.value)
        assert datetime.fromisoformat(ev["occurred_at"]).timestamp() <= wall
        if ev["type"] == "clock.tick":
            assert rec.key is None
            base, _, part = ev["event_id"].rpartition("-p")
            assert int(part) == rec.partition
            tick_partitions[base].add(rec.partition)
        else:
            assert rec.key == ev["unit_id"].encode()
    assert tick_partitions and all(parts == {0, 1, 2, 3} for parts in tick_partitions.values())
    assert len({orjson.loads(r.value)["event_id"] for r in records}) == len(records)
