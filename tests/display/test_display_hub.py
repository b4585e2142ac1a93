"""Fan-out bookkeeping of one screen (no I/O): slow screens, changes held during a snapshot."""

from __future__ import annotations

from display.hub import Screen, frame


def test_frames_are_single_sse_events():
    assert frame("change", b'{"a":"x\\ny"}') == b'event: change\ndata: {"a":"x\\ny"}\n\n'


async def test_changes_wait_behind_the_snapshot_of_a_new_screen():
    s = Screen()
    s.push(b"c1", max_buffer=10)
    assert list(s.buf) == [] and s.held == [b"c1"]  # held until its snapshot is out
    s.held = None
    s.push(b"c2", max_buffer=10)
    assert s.take() == b"c2" and s.wake.is_set()


async def test_a_screen_that_does_not_read_is_cut_off():
    s = Screen()
    s.held = None
    for i in range(3):
        s.push(b"x%d" % i, max_buffer=3)
    assert not s.closed
    s.push(b"one too many", max_buffer=3)
    assert s.closed  # its browser reconnects and gets a fresh snapshot
    s.push(b"ignored", max_buffer=3)
    assert len(s.buf) == 3


async def test_too_many_held_changes_ask_for_another_snapshot():
    s = Screen()
    for i in range(5):
        s.push(b"x%d" % i, max_buffer=3)
    assert s.overflowed and s.held == [b"x4"]
