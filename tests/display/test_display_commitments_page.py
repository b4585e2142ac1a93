"""Commitment badges on the leaderboard, in real headless Chromium (gateway + Redis in-process)."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestServer
from wall_browser import Browser, chromium_available, text_of
from wall_support import REPO, XSS_NAME, sample_board

from display import board, store
from display.commitments import WallCommitments
from display.gateway import GatewayConfig, build_app
from leaders import commitments as cm
from scoring.model import load_model

pytestmark = [pytest.mark.integration, pytest.mark.browser]

W = "month:2024-04"
AS_OF = "2024-04-14T17:00:00+07:00"  # every sample row: on_time 1/2


def wall_commitments() -> WallCommitments:
    model = load_model("vn766@1")
    items = cm.parse(
        {
            "commitments": [
                {
                    "unit_id": "district-01",
                    "indicator": "on_time",
                    "target": 0.9,
                    "deadline": "2024-04-10",
                },  # passed at the as_of, not reached: missed
                {
                    "unit_id": "district-01",
                    "indicator": "total",
                    "target": 10,
                    "deadline": "2024-06-30",
                },
                {
                    "unit_id": "district-03",
                    "indicator": "on_time",
                    "target": 0.9,
                    "deadline": "2024-06-30",
                },  # open, 0.5 of 0.9: 55 %
                {
                    "unit_id": "district-04",
                    "indicator": "on_time",
                    "target": 0.5,
                    "deadline": "2024-06-30",
                },  # met
            ]
        },
        model,
    )
    # an indicator name with markup (a hand-edited file a check let through): text only
    items.append(
        cm.Commitment(
            "district-06",
            XSS_NAME,
            0.5,
            cm.parse_deadline("2024-06-30", model.timezone),
            "2024-06-30",
        )
    )
    return WallCommitments(items, model.timezone)


def row(uid: str) -> str:
    return f'#view .row[data-unit="{uid}"]'


@pytest.fixture
async def page(tmp_path, unique, redis_server):
    if not chromium_available():
        pytest.fail("Chromium is not installed (apt-get install chromium chromium-driver)")
    keys = store.Keys(f"test:{unique}:board")
    redis = store.connect(redis_server.url)
    await store.ensure_epoch(redis, keys, "t")
    msgs = sample_board(W, AS_OF)
    await store.apply_batch(
        redis, keys, [store.Item(board.SCORE, board.check(board.SCORE, m), 1000) for m in msgs], {}
    )
    app = build_app(
        GatewayConfig(redis_url=redis_server.url, prefix=keys.prefix, ping_seconds=1),
        commitments=wall_commitments(),
    )
    gw = TestServer(app, host="127.0.0.1")
    await gw.start_server()
    browser = await Browser(tmp_path / "chromium").start()
    try:
        yield browser, str(gw.make_url("/"))
        assert browser.dialogs == [], f"a script from data ran: {browser.dialogs}"
        assert browser.errors == [], browser.errors
    finally:
        await browser.close()
        await gw.close()
        await redis.aclose()


async def test_badges_show_met_open_and_missed_and_markup_stays_text(page):
    browser, base = page
    await browser.goto(base + "?group=district&lang=en")
    await browser.wait_for(f"{text_of(row('district-01') + ' .commit')} !== null")
    # missed wins over the met one of the same unit, in red
    missed = row("district-01") + " .commit"
    assert await browser.evaluate(text_of(missed)) == "✗"
    assert await browser.evaluate(f"document.querySelector('{missed}').dataset.status") == "missed"
    background = await browser.evaluate(
        f"getComputedStyle(document.querySelector('{missed}')).backgroundColor"
    )
    assert background == "rgb(230, 57, 70)"
    title = await browser.evaluate(f"document.querySelector('{missed}').title")
    assert "Dossiers processed on time: 50% / target 90% · by 10/04/2024 · Missed" in title
    assert "Total score" in title and "Met" in title
    assert await browser.evaluate(text_of(row("district-03") + " .commit")) == "◔ 55%"
    assert await browser.evaluate(text_of(row("district-04") + " .commit")) == "✓"
    # markup in an indicator name is shown as those characters
    odd = await browser.evaluate(f"document.querySelector('{row('district-06')} .commit').title")
    assert XSS_NAME in odd
    assert await browser.evaluate("document.querySelectorAll('#view img').length") == 0
    # rows without commitments are as before: five cells, no badge
    plain = await browser.evaluate(
        "[...document.querySelectorAll('#view .row[data-unit]')]"
        ".filter(r => !r.querySelector('.commit')).map(r => r.children.length)"
    )
    assert len(plain) == 22 - 4 and set(plain) == {5}
    # the name keeps its room and the badge is inside the row
    box = await browser.evaluate(
        f"(() => {{ const r = document.querySelector('{row('district-01')}')"
        ".getBoundingClientRect();"
        f" const b = document.querySelector('{missed}').getBoundingClientRect();"
        " return [b.left >= r.left, b.right <= r.right, b.height > 12]; })()"
    )
    assert box == [True, True, True], json.dumps(box)
    await browser.screenshot(REPO / "artifacts" / "wall-commitments.png")

    await browser.goto(base + "?group=district&lang=vi")
    await browser.wait_for(f"{text_of(row('district-01') + ' .commit')} !== null")
    title = await browser.evaluate(f"document.querySelector('{missed}').title")
    assert title.startswith("Cam kết") and "Hồ sơ giải quyết đúng hạn" in title
    assert "Không đạt" in title
