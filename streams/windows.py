"""Where a partition's event time left its live windows, between two flushes of the scorer.

A flush scores each unit in the live windows of its partition's watermark, and the running
counts then stop keeping the others (``UnitCounts.keep_windows``). A coalescing interval (or a
catch-up batch) can hold both the last events of a month and a time past its end: without a
last score in the month it closes, its final board would miss those events for good. So
``process`` notes, per partition, each point where the watermark crossed a window's end: the
time just before it and the input read by then. ``flush`` scores the closing windows there
first (``ScorerCore.flush``), which is what the events up to that input say at that time.
"""

from __future__ import annotations

from dataclasses import dataclass

from scoring.timeutil import Window, WindowError, window_of


@dataclass(frozen=True, slots=True)
class Rollover:
    t: int  # the partition's watermark just before it crossed
    offset: int | None  # the last input offset read at that watermark
    windows: tuple[Window, ...]  # the live windows at ``t``


class Rollovers:
    def __init__(self, kinds: tuple[str, ...], tz: str):
        self.kinds = kinds
        self.tz = tz
        # per partition: the span in which its watermark stays in the same live windows; the
        # calendar costs ~10 us a call, too much for each event that moves the watermark
        self._span: dict[int, tuple[int, int]] = {}
        self._marks: dict[int, list[Rollover]] = {}

    def windows_at(self, t: int) -> tuple[Window, ...]:
        return tuple(window_of(kind, t, self.tz) for kind in self.kinds)

    def advance(self, p: int, old: int | None, new: int, offset: int | None) -> None:
        """Partition ``p``'s watermark moves from ``old`` to ``new`` (later)."""
        if old is None:
            return
        span = self._span.get(p)
        if span is not None and span[0] <= old and new < span[1]:
            return
        try:
            before = self.windows_at(old)
            after = self.windows_at(new)
        except WindowError:
            return  # outside the calendar: no live window to close there
        self._span[p] = (max(w.start_us for w in after), min(w.end_us for w in after))
        if any(b.name != a.name for b, a in zip(before, after, strict=True)):
            self._marks.setdefault(p, []).append(Rollover(old, offset, before))

    def take_all(self, held: dict[int, int]) -> dict[int, list[Rollover]]:
        """Per partition not in ``held``, its crossings since the last call, earliest first;
        a held partition's wait for its flush (``streams.rebuild``)."""
        taken = {p: marks for p, marks in self._marks.items() if p not in held}
        for p in taken:
            del self._marks[p]
        return taken

    def clear(self) -> None:
        self._span.clear()
        self._marks.clear()
