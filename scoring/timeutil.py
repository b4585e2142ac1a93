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
    """RFC 3339 with an offset -> microseconds since the epoch, or None if not one.

    Fast path for the shapes real feeds send: ``YYYY-MM-DDTHH`` + ``:MM:SS`` + optional
    fraction + offset are looked up in three small tables instead of running the regex and
    ``datetime``. Every table entry is derived from ``parse_ts_reference`` itself (the minute
    and second table is built at import, hours and offsets are learned from timestamps the
    reference accepted), so anything not already known takes the reference path and the two
    always agree; ``tests/scoring/test_perf_equivalence.py`` checks that on generated strings.
    """
    if type(text) is str:
        hour = _HOURS.get(text[:13])
        if hour is not None:
            rest = _REST.get(text[13:])
            if rest is not None:
                return hour + rest
            rest = _rest_of(text)
            if rest is not None:
                return hour + rest
    us = parse_ts_reference(text)
    if us is not None:
        _learn(text)  # type: ignore[arg-type]  # only a str can parse
    return us


def parse_ts_reference(text: object) -> int | None:
    """The definition of a valid timestamp (regex + ``datetime.fromisoformat`` + range)."""
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


# Fast-path tables. ``_HOURS``: "YYYY-MM-DDTHH" (any separator the reference accepts) -> that
# hour read as UTC, learned for years 1000..8999 only, where every offset below 24 h stays
# inside the reference's range. ``_MIN_SEC``: ":MM:SS" -> microseconds. ``_OFFSETS``: "Z",
# "+07:00", ... -> the offset, learned. Any valid hour, ":MM:SS", fraction and offset make a
# timestamp the reference accepts, with the value the tables add up to. ``_REST`` caches the
# sum for a whole tail (":MM:SS+07:00"; at most 3600 per offset seen, fractions not kept).
_HOURS: dict[str, int] = {}
_MIN_SEC = {f":{m:02d}:{s:02d}": (m * 60 + s) * 1_000_000 for m in range(60) for s in range(60)}
_OFFSETS: dict[str, int] = {}
_REST: dict[str, int] = {}
# For generated code that inlines the fast path (``schemas.validate``): when both
# ``FAST_TABLES[0].get(text[:13])`` and ``FAST_TABLES[1].get(text[13:])`` are found, their sum
# is ``parse_ts(text)``; otherwise call ``parse_ts``. The tables are cleared, never replaced.
FAST_TABLES = (_HOURS, _REST)
_MAX_ENTRIES = 500_000  # hours: about 57 years per separator; then a table starts over
_OFFSET_PROBE = "2000-01-01T00:00:00"


def _rest_of(text: str) -> int | None:
    """The tail after the hour (``:MM:SS[.f]±HH:MM``) in microseconds from the tables, or None
    when the reference must decide."""
    min_sec = _MIN_SEC.get(text[13:19])
    if min_sec is None:
        return None
    if text[19:20] != ".":
        offset = _OFFSETS.get(text[19:])
        if offset is None:
            return None
        if len(_REST) >= _MAX_ENTRIES:
            _REST.clear()
        rest = _REST[text[13:]] = min_sec - offset
        return rest
    tail = 1 if text[-1] in "Zz" else 6
    digits = text[20:-tail]
    if not (0 < len(digits) <= 9 and digits.isascii() and digits.isdigit()):
        return None
    offset = _OFFSETS.get(text[-tail:])
    if offset is None:
        return None
    return min_sec - offset + int(digits[:6].ljust(6, "0"))  # the reference keeps 6 digits


def _learn(text: str) -> None:
    """Remember the hour and the offset of a timestamp the reference accepted."""
    hour = text[:13]
    if hour not in _HOURS and hour[:4].isascii() and "1000" <= hour[:4] <= "8999":
        if len(_HOURS) >= _MAX_ENTRIES:
            _HOURS.clear()
        base = parse_ts_reference(hour + ":00:00Z")
        if base is not None:
            _HOURS[hour] = base
    offset = text[19:]  # "Z", "+07:00", ... or, after a fraction, the last 1 or 6 characters
    if offset[0] == ".":
        offset = text[-1:] if text[-1] in "Zz" else text[-6:]
    if offset not in _OFFSETS:
        utc = parse_ts_reference(_OFFSET_PROBE + "Z")
        local = parse_ts_reference(_OFFSET_PROBE + offset)
        if utc is not None and local is not None:
            _OFFSETS[offset] = utc - local


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
