"""The page in real headless Chromium, fed by a real gateway and Redis (no scorer needed).

What the full-stack test does not look at closely: movement arrows, highlights, languages,
windows, the map layout, markup in names on every view, and the state shown when Redis is away.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from aiohttp.test_utils import TestServer
from wall_browser import Browser, chromium_available, text_of
from wall_support import REPO, XSS_NAME, catalog_units, sample_board, score_message

from bando.infra import RedisServer
from display import board, catchup, store
from display.gateway import STATIC_DIR, GatewayConfig, build_app

pytestmark = [pytest.mark.integration, pytest.mark.browser]

W, Y = "month:2024-04", "year:2024"
AS_OF = "2024-04-14T17:00:00+07:00"
ARTIFACTS = REPO / "artifacts"


def items(msgs, kind=board.SCORE, ts=1000):
    return [store.Item(kind, board.check(kind, m), ts) for m in msgs]


def test_map_layout_covers_the_22_districts_of_the_catalog():
    text = (STATIC_DIR / "districts.js").read_text(encoding="utf-8")
    grid = re.search(r"GRID = \{ cols: (\d+), rows: (\d+) \}", text)
    assert grid
    cols, rows = int(grid.group(1)), int(grid.group(2))
    tiles = re.findall(
        r"\{ id: \"([^\"]+)\", col: (\d+), row: (\d+)(?:, colSpan: (\d+))?"
        r"(?:, rowSpan: (\d+))?",
        text,
    )
    ids = {t[0] for t in tiles}
    districts = {u["unit_id"] for u in catalog_units() if u["peer_group"] == "district"}
    assert ids == districts and len(tiles) == 22
    cells: dict[tuple[int, int], str] = {}
    for uid, c, r, cs, rs in tiles:
        for dc in range(int(cs or 1)):
            for dr in range(int(rs or 1)):
                cell = (int(c) + dc, int(r) + dr)
                assert cell not in cells, f"{uid} overlaps {cells.get(cell)}"
                assert cell[0] < cols and cell[1] < rows, uid
                cells[cell] = uid
    assert len(cells) == cols * rows  # no hole: it reads as one city


@pytest.fixture
async def page(tmp_path, unique):
    if not chromium_available():
        pytest.fail("Chromium is not installed (apt-get install chromium chromium-driver)")
    server = RedisServer(data_dir=tmp_path / "redis")
    server.start()
    keys = store.Keys(f"test:{unique}:board")
    redis = store.connect(server.url)
    await store.ensure_epoch(redis, keys, "t")
    units = catalog_units()
    for u in units:
        if u["unit_id"] == "district-05":
            u["name"] = XSS_NAME
    await store.apply_batch(redis, keys, items(sample_board(W, AS_OF, units=units)), {})
    await store.apply_batch(redis, keys, items(sample_board(Y, AS_OF, seed=5, units=units)), {})
    app = build_app(GatewayConfig(redis_url=server.url, prefix=keys.prefix, ping_seconds=1))
    gw = TestServer(app, host="127.0.0.1")
    await gw.start_server()
    browser = await Browser(tmp_path / "chromium").start()
    try:
        yield browser, str(gw.make_url("/")), redis, keys, server
        assert browser.dialogs == [], f"a script from data ran: {browser.dialogs}"
        assert browser.errors == [], browser.errors
    finally:
        await browser.close()
        await gw.close()
        await redis.aclose()
        server.stop()


async def test_markup_in_names_is_text_on_every_view(page):
    browser, base, *_ = page
    await browser.goto(base + "?group=district")
    sel = '#view .row[data-unit="district-05"] .name'
    await browser.wait_for(f"{text_of(sel)} !== null")
    assert await browser.evaluate(text_of(sel)) == XSS_NAME
    await browser.goto(base + "?view=map")
    await browser.wait_for("document.querySelectorAll('#view .tile').length === 22")
    tooltip = await browser.evaluate(
        "document.querySelector('#view .tile[data-unit=\"district-05\"]').title"
    )
    assert tooltip.startswith(XSS_NAME)
    assert await browser.evaluate("document.querySelectorAll('img, script:not([src])').length") == 0


async def test_a_change_moves_the_row_flashes_it_and_shows_the_movement(page):
    browser, base, redis, keys, _ = page
    await browser.goto(base + "?group=district&lang=en")
    sel = '#view .row[data-unit="district-10"]'
    await browser.wait_for(f"{text_of(sel + ' .rank')} !== null")
    old_rank = int(await browser.evaluate(text_of(sel + " .rank")))
    unit = {"unit_id": "district-10", "name": "Quận 10", "peer_group": "district"}
    newer = "2024-04-14T18:00:00+07:00"
    msg = score_message(unit, W, newer, 99.99, 1, 22, offset=900)
    rc = {
        "peer_group": "district",
        "window": W,
        "unit_id": "district-10",
        "old_rank": old_rank,
        "new_rank": 1,
        "total": 99.99,
        "as_of": newer,
    }
    await store.apply_batch(redis, keys, items([msg], ts=5000) + items([rc], board.RANK, 5000), {})
    await browser.wait_for(f"{text_of(sel + ' .score')} === '99.99'", 10)
    assert await browser.evaluate(f"document.querySelector('{sel}').classList.contains('flash')")
    assert await browser.evaluate(text_of(sel + " .rank")) == "1"
    order = await browser.evaluate(
        "[...document.querySelectorAll('#view .row[data-unit]')].map(r => r.dataset.unit)"
    )
    assert "district-10" in order[:2]  # moved to the top (it shares rank 1 with the old leader)
    if old_rank > 1:
        assert await browser.evaluate(text_of(sel + " .move")) == f"▲ {old_rank - 1}"
    assert await browser.evaluate(text_of(sel + " .band .chip")) == "Excellent"
    await browser.screenshot(ARTIFACTS / "wall-page-change.png")


async def test_labels_follow_language_and_window(page):
    browser, base, *_ = page
    await browser.goto(base + "?group=department&window=year&lang=vi")
    await browser.wait_for(f"{text_of('#window-label')} === 'Năm nay · 2024'")
    assert await browser.evaluate(text_of("#view-title")) == "Sở, ban, ngành"
    assert await browser.evaluate(text_of("#conn-text")) == "Trực tiếp"
    await browser.goto(base + "?group=department&window=month&lang=en")
    await browser.wait_for(f"{text_of('#window-label')} === 'This month · April 2024'")
    assert await browser.evaluate(text_of("#view-title")) == "Departments and agencies"
    assert await browser.evaluate(text_of("#conn-text")) == "Live"
    assert await browser.evaluate("document.documentElement.lang") == "en"
    # the scorer publishes no quarter: asking for one falls back like any bad kiosk parameter,
    # not "no figures yet" for ever
    await browser.goto(base + "?group=department&window=quarter&lang=en")
    await browser.wait_for(f"{text_of('#window-label')} === 'This month · April 2024'")
    assert await browser.evaluate("document.querySelectorAll('#view .row[data-unit]').length") > 0
    await browser.goto(base + "?group=department&window=quarter,year&lang=en")
    await browser.wait_for(f"{text_of('#window-label')} === 'This year · 2024'")


async def test_three_digit_ranks_and_moves_stay_in_their_cells(page):
    """A ward board has more than 99 units: "118" and "▲ 123" ran into the name."""
    browser, base, redis, keys, _ = page
    msgs, changes = [], []
    for i in range(130):
        unit = {"unit_id": f"ward-x{i:03d}", "name": f"Phường Tân Định {i}", "peer_group": "wx"}
        msgs.append(score_message(unit, W, AS_OF, round(90 - i * 0.3, 2), i + 1, 130))
        changes.append({"peer_group": "wx", "window": W, "unit_id": unit["unit_id"],
                        "old_rank": i + 124, "new_rank": i + 1, "total": 1.0, "as_of": AS_OF})
    await store.apply_batch(redis, keys, items(msgs) + items(changes, board.RANK, 2000), {})
    # the densest layout, on its second page (ranks 61-120)
    await browser.goto(base + "?group=wx&rows=20&columns=3&view=board&lang=en")
    await browser.wait_for(f"{text_of('#view .row[data-unit] .rank')} === '1'")
    await browser.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', {key: ' '}))")
    last = '#view .row[data-unit="ward-x119"]'
    await browser.wait_for(f"{text_of(last + ' .rank')} === '120'")
    assert await browser.evaluate(text_of(last + " .move")) == "▲ 123"
    # the text of each cell inside the cell, and the move's left of the name
    boxes = await browser.evaluate(
        "[...document.querySelectorAll('#view .row[data-unit]')].map(r => {"
        " const [rank, move, name] = r.children;"
        " const text = (c) => { const g = document.createRange(); g.selectNodeContents(c);"
        "  return g.getBoundingClientRect(); };"
        " const inside = (c) => text(c).left >= c.getBoundingClientRect().left - 0.5"
        "  && text(c).right <= c.getBoundingClientRect().right + 0.5;"
        " return [rank.textContent, inside(rank), inside(move),"
        "  text(move).right <= name.getBoundingClientRect().left]; })"
    )
    assert len(boxes) == 60 and any(rank == "100" for rank, *_ in boxes)
    assert [b for b in boxes if b[1:] != [True, True, True]] == [], json.dumps(boxes)
    await browser.screenshot(ARTIFACTS / "wall-page-three-digit-ranks.png")


async def test_redis_away_is_shown_then_the_board_comes_back(page):
    browser, base, redis, keys, server = page
    await browser.goto(base + "?group=district&lang=en")
    await browser.wait_for("document.querySelectorAll('#view .row[data-unit]').length === 22")
    server.kill()
    await browser.wait_for("document.getElementById('conn').classList.contains('conn-nodata')", 15)
    assert await browser.evaluate(text_of("#stale")) == (
        "Data source interrupted: waiting for it to come back"
    )
    # the last board stays on screen (dimmed), better than a blank wall
    assert await browser.evaluate("document.querySelectorAll('#view .row[data-unit]').length") == 22
    server.start()  # back empty, as a writer would find it; it rebuilds
    await store.ensure_epoch(redis, keys, "t2")
    await store.apply_batch(redis, keys, items(sample_board(W, AS_OF)), {})
    await browser.wait_for("document.getElementById('conn').classList.contains('conn-live')", 15)
    await browser.wait_for("document.querySelectorAll('#view .row[data-unit]').length === 22", 15)
    # waited for: the status frame ("live") goes out before the snapshot is read, and the old
    # board is still on screen, so both conditions above can hold before it arrives
    await browser.wait_for("window.__bando.snapshots >= 2", 15)


async def test_a_quiet_board_keeps_its_connection(page):
    """Heartbeats reach the page: no change for a while is not mistaken for a dead link."""
    browser, base, *_ = page
    await browser.goto(base + "?group=district")
    await browser.wait_for("window.__bando.snapshots === 1 && window.__bando.conn === 'live'")
    await asyncio.sleep(8)  # the page's watchdog gives up after 3 heartbeats (1 s here)
    assert await browser.evaluate("window.__bando.snapshots") == 1
    assert await browser.evaluate("window.__bando.conn") == "live"


LIVE = "document.getElementById('conn').classList.contains('conn-live')"
CATCHING_UP = "document.getElementById('conn').classList.contains('conn-catchup')"


async def test_a_board_catching_up_is_not_shown_as_live(page):
    """A rebuild walks through months-old boards: the page said "Live", "This month" and a
    fresh "updated at" over each of them (found in review)."""
    browser, base, redis, keys, _ = page
    await browser.goto(base + "?group=district&lang=en")
    await browser.wait_for(f"{LIVE} && {text_of('#window-label')} === 'This month · April 2024'")
    await catchup.mark_catchup(redis, keys, {("unit-scores", 0): 50})
    await browser.wait_for(f"{CATCHING_UP} && {text_of('#window-label')} === 'Month · April 2024'")
    assert await browser.evaluate(text_of("#conn-text")) == "Catching up"
    assert await browser.evaluate(text_of("#updated")) == "Updated at —"
    assert not await browser.evaluate("document.getElementById('stale').hidden")
    assert await browser.evaluate(text_of("#stale")) == (
        "Catching up with the data source: the figures on screen are not the latest yet"
    )
    assert await browser.evaluate("document.body.classList.contains('is-stale')")
    await browser.screenshot(ARTIFACTS / "wall-page-catching-up.png")
    await browser.goto(base + "?group=district&lang=vi")
    await browser.wait_for(f"{text_of('#window-label')} === 'Tháng · 04/2024'")
    assert await browser.evaluate(text_of("#conn-text")) == "Đang cập nhật lại"
    await store.apply_batch(redis, keys, [], {("unit-scores", 0): 50})  # caught up
    await browser.wait_for(f"{LIVE} && {text_of('#window-label')} === 'Tháng này · 04/2024'")
    assert await browser.evaluate(text_of("#conn-text")) == "Trực tiếp"
    assert await browser.evaluate("document.getElementById('stale').hidden")
    assert await browser.evaluate(text_of("#updated")) != "Cập nhật lúc —"


async def test_updated_at_is_the_writers_time_for_changes_too(page, monkeypatch):
    """A change set "updated at" from the screen's clock, a snapshot from the writer's: a
    screen whose clock is off showed the time jumping between the two."""
    browser, base, redis, keys, _ = page
    await browser.goto(base + "?group=district&lang=en")
    sel = '#view .row[data-unit="district-10"] .score'
    await browser.wait_for(f"{text_of(sel)} !== null && {LIVE}")
    writer_time = "2031-05-06T07:08:09+00:00"  # far from this browser's clock
    monkeypatch.setattr(store, "stamp_now", lambda: writer_time)
    unit = {"unit_id": "district-10", "name": "Quận 10", "peer_group": "district"}
    msg = score_message(unit, W, "2024-04-14T18:00:00+07:00", 99.99, 1, 22, offset=900)
    await store.apply_batch(redis, keys, items([msg], ts=5000), {})
    await browser.wait_for(f"{text_of(sel)} === '99.99'", 10)
    await browser.wait_for(f"{text_of('#updated')} === 'Updated at 06/05/2031, 14:08:09'", 5)
    assert await browser.evaluate("window.__bando.snapshots") == 1  # it came as a change
    await browser.goto(base + "?group=district&lang=en")  # a snapshot: the same time
    await browser.wait_for(f"{text_of('#updated')} === 'Updated at 06/05/2031, 14:08:09'", 10)
