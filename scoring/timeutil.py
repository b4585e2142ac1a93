"""Event time: RFC 3339 parsing to integer microseconds, and calendar windows.

Times are kept as integer microseconds since the Unix epoch (UTC) so comparisons are exact and
cheap; windows are calendar months, quarters and years in the model's time zone
(Asia/Ho_Chi_Minh, UTC+7 without daylight saving since 1975, but read from tzdata anyway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from scoring.exceptions import WindowError

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# instants shown the same in every zone (offsets < 24 h) inside datetime's years 1..9999
_MIN_US = (datetime(1, 1, 2, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_MAX_US = (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
DEFAULT_TZ = "Asia/Ho_Chi_Minh"


def parse_ts(text: object) -> int | None:
    """RFC 3339 with an offset -> microseconds since the epoch, or None if not one."""
    if not isinstance(text, str) or len(text) > 40 or not _RFC3339.match(text):
        return None
    frac = ""
    dot = text.find(".")
    if dot != -1:
        # fromisoformat keeps at most 6 digits; trim the rest ourselves so 9-digit input is ok
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        frac = text[dot:end][:7]
        text = text[:dot] + frac + text[end:]
    try:
        dt = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return None
    delta = dt - _EPOCH
    us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    # e.g. 0001-01-01T00:00:00+01:00 is valid RFC 3339 but an instant no zone can show (from_us
    # and window_of would overflow): refuse it here rather than crash a consumer later
    return us if _MIN_US <= us < _MAX_US else None


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def from_us(us: int, tz: str = DEFAULT_TZ) -> datetime:
    return (_EPOCH + timedelta(microseconds=us)).astimezone(_zone(tz))


def format_ts(us: int, tz: str = DEFAULT_TZ) -> str:
    """Microseconds -> RFC 3339 in the model's zone (e.g. ``2024-04-14T17:00:00+07:00``)."""
    dt = from_us(us, tz)
    return dt.isoformat(timespec="microseconds" if dt.microsecond else "seconds")


def to_us(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class Window:
    """A calendar window: ``[start_us, end_us)`` in event time."""

    name: str  # e.g. "month:2024-04"
    kind: str  # "month" | "quarter" | "year"
    start_us: int
    end_us: int

    def contains(self, us: int) -> bool:
        return self.start_us <= us < self.end_us


_WINDOW_RE = re.compile(r"^(month):(\d{4})-(\d{2})$|^(quarter):(\d{4})-Q([1-4])$|^(year):(\d{4})$")


def _bounds(kind: str, year: int, first_month: int, tz: str) -> tuple[int, int]:
    months = {"month": 1, "quarter": 3, "year": 12}[kind]
    end_month = first_month + months
    try:
        start = datetime(year, first_month, 1, tzinfo=_zone(tz))
        end = datetime(year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1,
                       tzinfo=_zone(tz))
        return to_us(start), to_us(end)
    except (ValueError, OverflowError) as exc:  # year 0, or a window ending in year 10000
        raise WindowError(f"window out of range: {kind} of {year:04d}: {exc}") from None


@lru_cache(maxsize=4096)
def parse_window(name: str, tz: str = DEFAULT_TZ) -> Window:
    """``month:2024-04`` / ``quarter:2024-Q2`` / ``year:2024`` -> Window."""
    m = _WINDOW_RE.match(name)
    if not m:
        raise WindowError(f"not a window: {name!r} (month:YYYY-MM, quarter:YYYY-Qn, year:YYYY)")
    if m.group(1):
        year, month = int(m.group(2)), int(m.group(3))
        if not 1 <= month <= 12:
            raise WindowError(f"no such month in {name!r}")
        start, end = _bounds("month", year, month, tz)
        return Window(name, "month", start, end)
    if m.group(4):
        year, q = int(m.group(5)), int(m.group(6))
        start, end = _bounds("quarter", year, 3 * (q - 1) + 1, tz)
        return Window(name, "quarter", start, end)
    year = int(m.group(8))
    start, end = _bounds("year", year, 1, tz)
    return Window(name, "year", start, end)


def window_of(kind: str, us: int, tz: str = DEFAULT_TZ) -> Window:
    """The window of ``kind`` that holds the instant ``us``."""
    local = from_us(us, tz)
    if kind == "month":
        return parse_window(f"month:{local.year:04d}-{local.month:02d}", tz)
    if kind == "quarter":
        return parse_window(f"quarter:{local.year:04d}-Q{(local.month - 1) // 3 + 1}", tz)
    if kind == "year":
        return parse_window(f"year:{local.year:04d}", tz)
    raise WindowError(f"unknown window kind {kind!r} (month, quarter, year)")


def resolve_window(spec: str, as_of_us: int, tz: str = DEFAULT_TZ) -> Window:
    """A CLI window argument: a kind (the one holding as_of) or an explicit window name."""
    if spec in ("month", "quarter", "year"):
        return window_of(spec, as_of_us, tz)
    return parse_window(spec, tz)
