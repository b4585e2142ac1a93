"""The wall in a real headless Chromium against the real stack.

Kafka and Redis (the session's), ``bando worker`` (the scorer), ``bando board`` and
``bando display`` as real processes; events go into ``procedure-events`` and the test reads
what the *page* shows. Screenshots are kept in ``artifacts/``.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import pytest
from wall_browser import Browser, chromium_available, text_of
from wall_support import (
    REPO,
    XSS_NAME,
    Child,
    catalog_units,
    free_port,
    gateway,
    produce_events,
    settings_env,
    wait_http,
)

from bando.infra import ensure_project_topics

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ARTIFACTS = REPO / "artifacts"
START, END = "2024-04-01T00:00:00+07:00", "2024-04-06T00:00:00+07:00"
XSS_UNIT = "ward-ben-nghe"
TARGET = "district-01"


def quiet_for(port: int, seconds: float) -> bool:
    """Whether the gateway has seen no change for ``seconds`` (the scorer caught up)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        since = json.loads(resp.read())["seconds_since_change"]
    return since is not None and since >= seconds


def board_json(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/board", timeout=5) as resp:
        return json.loads(resp.read())


def district_rows(port: int) -> dict[str, dict]:
    snap = board_json(port)
    month = snap["windows"].get("month")
    rows = snap["boards"].get(month, {}).get("district", []) if month else []
    return {r["unit_id"]: r for r in rows}


async def poll(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {what}")
        await asyncio.sleep(interval)


def publication(unit_id: str, when: str, flag: bool, n: int) -> dict:
    return {
        "event_id": f"wall-e2e-{unit_id}-{n}",
        "type": "procedure.published",
        "occurred_at": when,
        "unit_id": unit_id,
        "procedure_id": f"wall-proc-{n}",
        "announced_on_time": flag,
        "publicized_on_time": flag,
        "complete": flag,
    }


async def stored_score(redis_url: str, prefix: str) -> dict:
    """TARGET's latest score message, as the board writer stored it."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        raw = await redis.hget(f"{prefix}:w:month:2024-04:units", TARGET)
        assert raw is not None, f"{TARGET} is not on the board"
        return json.loads(raw)["score"]
    finally:
        await redis.aclose()


async def moving_event(redis_url: str, prefix: str, n: int, when: str) -> dict:
    """A publication that must change TARGET's total, whatever its publications so far."""
    ind = (await stored_score(redis_url, prefix))["indicators"]["announced_on_time"]
    # all-true raises a ratio below 1; all-false lowers a ratio above 0
    flag = ind["den"] == 0 or ind["num"] < ind["den"]
    return publication(TARGET, when, flag, n)


@pytest.fixture
def stack(live_settings, unique, tmp_path):
    pytest.importorskip("streams.worker", reason="the scorer (streams.worker) is not there yet")
    if not chromium_available():
        pytest.fail("Chromium is not installed (apt-get install chromium chromium-driver)")
    units = catalog_units()
    for u in units:
        if u["unit_id"] == XSS_UNIT:
            u["name"] = XSS_NAME
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(units, ensure_ascii=False), encoding="utf-8")
    settings = live_settings.with_(catalog_path=str(catalog), coalesce_seconds=0.5, partitions=4)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    ensure_project_topics(settings.kafka_bootstrap, settings)
    prefix = f"test:{unique}:board"
    env = settings_env(settings)
    worker = Child(["worker", "--log-level", "warning"], tmp_path / "worker.log", env).start()
    writer = Child(["board", "--prefix", prefix], tmp_path / "board.log", env).start()
    port = free_port()
    gw = gateway(settings.redis_url, prefix, port, tmp_path / "gateway.log", ping=2)
    gw.env = env | {"BANDO_DISPLAY_PORT": str(port)}
    gw.start()
    children = {"worker": worker, "board": writer, "gateway": gw}
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", child=gw)
        yield settings, prefix, port, children, units
    finally:
        for c in children.values():
            c.stop()
        for name, c in children.items():
            print(f"--- {name} log ---\n{c.log_tail(15)}")


async def test_the_wall_shows_the_live_board(stack, tmp_path):
    from bando.simulator.generate import generate

    settings, prefix, port, children, units = stack
    events = list(generate(units, START, END, seed=3, rate_scale=0.2))
    await produce_events(
        settings.kafka_bootstrap, settings.events_topic, events, settings.partitions
    )
    await poll(
        lambda: len([r for r in district_rows(port).values() if r["scored"]]) == 22,
        120,
        f"all 22 districts on the board (worker: {children['worker'].log_tail(5)!r})",
    )
    await poll(lambda: quiet_for(port, 3), 120, "the scorer to catch up with the history")
    ARTIFACTS.mkdir(exist_ok=True)
    browser = await Browser(tmp_path / "chromium").start()
    try:
        base = f"http://127.0.0.1:{port}/"
        # -- the page shows the board ------------------------------------------------------
        await browser.goto(base + "?group=district&window=month")
        await browser.wait_for("document.querySelectorAll('#view .row[data-unit]').length === 22")
        await browser.wait_for("document.getElementById('conn').classList.contains('conn-live')")
        rows = district_rows(port)
        shown = await browser.evaluate(
            "[...document.querySelectorAll('#view .row[data-unit]')].map(r => "
            "[r.dataset.unit, r.querySelector('.rank').textContent])"
        )
        ranks = [int(rank) for _, rank in shown if rank.isdigit()]
        assert ranks == sorted(ranks) and ranks[0] == 1
        assert {u for u, _ in shown} == set(rows)
        await browser.screenshot(ARTIFACTS / "wall-board.png")

        # -- an event in procedure-events changes the shown score within seconds ----------
        score_sel = f'#view .row[data-unit="{TARGET}"] .score'
        before = await browser.evaluate(text_of(score_sel))
        event = await moving_event(settings.redis_url, prefix, 1, "2024-04-05T23:59:30+07:00")
        t0 = time.monotonic()
        (meta,) = await produce_events(
            settings.kafka_bootstrap, settings.events_topic, [event], settings.partitions
        )
        await browser.wait_for(f"({text_of(score_sel)}) !== {json.dumps(before)}", timeout=15)
        elapsed = time.monotonic() - t0
        after = await browser.evaluate(text_of(score_sel))
        stored = await stored_score(settings.redis_url, prefix)
        # the score shown is the one computed with our event
        assert stored["input"]["partition"] == meta.partition
        assert stored["input"]["offset"] >= meta.offset
        assert after.replace(",", ".") == f"{stored['total']:.2f}"
        assert elapsed < 10, f"the page took {elapsed:.1f}s to show the new score"
        print(f"event -> page: {elapsed:.2f}s ({before} -> {after})")

        # -- the page recovers after the gateway is restarted ------------------------------
        children["gateway"].kill()
        await browser.wait_for(
            "document.getElementById('conn').classList.contains('conn-reconnecting')", 15
        )
        assert not await browser.evaluate("document.getElementById('stale').hidden")
        await browser.screenshot(ARTIFACTS / "wall-reconnecting.png")
        event = await moving_event(settings.redis_url, prefix, 2, "2024-04-05T23:59:40+07:00")
        await produce_events(
            settings.kafka_bootstrap, settings.events_topic, [event], settings.partitions
        )
        await poll(
            lambda: district_rows_or_none(settings, prefix, after),
            30,
            "the score moved in Redis while the gateway was down",
        )
        children["gateway"].start()
        await browser.wait_for(
            "document.getElementById('conn').classList.contains('conn-live')", 30
        )
        expected = district_rows(port)[TARGET]["total"]
        await browser.wait_for(
            f"({text_of(score_sel)}) === {json.dumps(f'{expected:.2f}'.replace('.', ','))}", 15
        )
        assert await browser.evaluate("window.__bando.snapshots") >= 2

        # -- names are text: the markup in a unit's name is shown, never run --------------
        await browser.goto(base + "?group=ward&rows=20&columns=3&lang=en")
        sel = f'#view .row[data-unit="{XSS_UNIT}"] .name'
        await browser.wait_for(f"{text_of(sel)} !== null", 15)
        assert await browser.evaluate(text_of(sel)) == XSS_NAME
        assert await browser.evaluate("document.querySelectorAll('img').length") == 0
        assert await browser.evaluate(
            "document.documentElement.outerHTML.includes('&lt;img src=x')"
        )
        await browser.screenshot(ARTIFACTS / "wall-escaping.png")
        # the longest header (English, wards, paged): the state and times stay on screen
        for element in ("conn", "updated", "as-of"):
            right = await browser.evaluate(
                f"document.getElementById('{element}').getBoundingClientRect().right")
            assert right <= await browser.evaluate("window.innerWidth"), element

        # -- map view, English, and kiosk rotation -----------------------------------------
        await browser.goto(base + "?view=map&lang=en")
        await browser.wait_for("document.querySelectorAll('#view .tile').length === 22")
        await browser.wait_for(
            "document.querySelectorAll('#view .tile.band-none').length === 0", 10
        )
        assert await browser.evaluate(text_of("#window-label")) == "This month · April 2024"
        await browser.screenshot(ARTIFACTS / "wall-map.png")
        await browser.goto(base + "?group=district&view=board,map&rotate=2")
        await browser.wait_for("document.getElementById('view').dataset.view === 'board'")
        await browser.wait_for("document.getElementById('view').dataset.view === 'map'", 8)
        # a mistyped kiosk parameter falls back to its default (NaN pages: no board at all)
        count = "document.querySelectorAll('#view .row').length"
        await browser.goto(base + "?group=district")
        await browser.wait_for(f"{count} >= 22", 15)
        rows = await browser.evaluate(count)
        await browser.goto(base + "?group=district&rows=abc&columns=two")
        await browser.wait_for(f"{count} === {rows}", 15)

        assert browser.dialogs == [], f"a script from data ran: {browser.dialogs}"
        assert browser.errors == [], browser.errors
    finally:
        await browser.close()


def district_rows_or_none(settings, prefix: str, old_text: str) -> bool:
    """Whether Redis already holds a TARGET total other than ``old_text`` (gateway is down)."""
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    try:
        raw = client.hget(f"{prefix}:w:month:2024-04:view", TARGET)
    finally:
        client.close()
    total = json.loads(raw)["total"] if raw else None
    return total is not None and f"{total:.2f}" != old_text.replace(",", ".")
