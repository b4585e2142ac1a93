"""Deterministic event generator: realistic HCMC one-stop-shop activity in event-time order.

Why this shape: demos, load tests and acceptance checks all need the same thing, a stream that
looks like the city (office hours, Tet, units with different habits, dossiers that go late)
and that every run with the same seed reproduces byte for byte. Time runs hour by hour; each
hour the new dossiers, petitions and publications are drawn, and each new dossier's *whole*
lifecycle is scheduled at once into hour buckets. A bucket is sorted and emitted once its hour
is over, so output is in event-time order without a global priority queue, and a run with a
later ``end`` is a strict extension of one with an earlier ``end`` (same ids, same bodies).

Identifiers carry a short tag derived from the run's parameters (seed, start, scale, catalog),
so two different runs never produce the same ``event_id`` with different bodies (which the
scorer would reject as ``conflicting_duplicate``), while an identical re-run is a harmless
duplicate of the first. It must be fast: the hot path works on integer seconds, formats
timestamps from lookup tables and binds everything it touches to locals.
"""

from __future__ import annotations

import hashlib
import logging
import random
from bisect import bisect
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from itertools import accumulate
from math import log as ln
from operator import itemgetter
from typing import Any

from bando.simulator.profiles import (
    DAY,
    OFFSET,
    WORK,
    UnitProfile,
    WorkCalendar,
    day_of,
    is_working_day,
    make_profiles,
)

log = logging.getLogger(__name__)

TZ = timezone(timedelta(hours=7))
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# Relative arrival intensity per local hour. Counters: 07:30-11:30 and 13:00-17:00 on working
# days (hour: (first second, last second, weight)). Online: round the clock, evenings busy.
_COUNTER = {7: (1800, 3600, 0.5), 8: (0, 3600, 1.0), 9: (0, 3600, 1.2), 10: (0, 3600, 1.1),
            11: (0, 1800, 0.6), 13: (0, 3600, 0.9), 14: (0, 3600, 1.0), 15: (0, 3600, 1.0),
            16: (0, 3600, 0.8)}
_ONLINE = (0.15, 0.08, 0.05, 0.05, 0.06, 0.15, 0.4, 0.8, 1.2, 1.4, 1.4, 1.1, 0.7, 1.0, 1.3, 1.3,
           1.2, 0.9, 0.6, 0.7, 0.8, 0.7, 0.5, 0.3)
_OFF_DAY_ONLINE = 0.35  # weekends and holidays, relative to a working day
_POSTAL = 0.03  # share of counter-stream dossiers that come by post
_SECOND_SUPPLEMENT = 0.15
_PETITION_DAYS = 10  # working days to resolve a petition (feedback and recommendations)
_PUBLISH_HOURS = range(8, 17)
_WORKING_DAYS_PER_MONTH = 21.7
_HOURS_PER_MONTH = 30.44 * 24


@lru_cache(maxsize=1)
def _second_of_day_table() -> tuple[str, ...]:
    return tuple(f"{h:02d}:{m:02d}:{s:02d}+07:00"
                 for h in range(24) for m in range(60) for s in range(60))


def parse_time(value: str | datetime | int | float) -> int:
    """Epoch seconds from a datetime, an epoch number, an RFC 3339 string or a date
    (``2024-01-01``: local midnight). Naive values are HCMC local time."""
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=TZ)
    return int(value.timestamp())


def format_time(t: int) -> str:
    """RFC 3339 with the +07:00 offset, second precision."""
    d, s = divmod(t + OFFSET, DAY)
    return date.fromordinal(d + _EPOCH_ORDINAL).isoformat() + "T" + _second_of_day_table()[s]


def run_tag(profiles: Iterable[UnitProfile], seed: int | str, start: int, rate_scale: float,
            tick_every: int) -> str:
    h = hashlib.blake2b(digest_size=4)
    h.update(f"{seed}|{start}|{rate_scale!r}|{tick_every}".encode())
    for p in profiles:
        h.update(p.unit_id.encode() + b"\0")
    return "s" + h.hexdigest()


class _DayPrefixes(dict[int, str]):
    """Local day number -> "YYYY-MM-DDT", computed on first use."""

    def __missing__(self, day: int) -> str:
        text = self[day] = date.fromordinal(day + _EPOCH_ORDINAL).isoformat() + "T"
        return text


class _Unit:
    """A profile plus what the hot loop needs precomputed."""

    __slots__ = ("p", "uid", "procs", "cum_counter", "cum_online", "officers", "n_dossiers",
                 "n_petitions")

    def __init__(self, p: UnitProfile):
        self.p = p
        self.uid = p.unit_id
        self.procs = p.procedures
        # Online submissions favour procedures that can be done online.
        self.cum_counter = list(accumulate(x.weight for x in p.procedures))
        self.cum_online = list(accumulate(x.weight * (1.0 if x.online_eligible else 0.25)
                                          for x in p.procedures))
        self.officers = p.officers
        self.n_dossiers = 0
        self.n_petitions = 0


class Generator:
    """One run. Iterate ``events()`` for ``(t, event)`` pairs in event-time order."""

    def __init__(self, catalog: Iterable[Mapping[str, str]] | None = None, *,
                 start: str | datetime | int, end: str | datetime | int | None = None,
                 seed: int | str = 0, rate_scale: float = 1.0, tick_every: int = 900,
                 profiles: list[UnitProfile] | None = None):
        if profiles is None:
            if catalog is None:
                raise ValueError("give a catalog or profiles")
            profiles = make_profiles(catalog, seed)
        if not profiles:
            raise ValueError("the catalog has no units")
        if rate_scale < 0:
            raise ValueError("rate_scale must be >= 0")
        self.profiles = profiles
        self.start = parse_time(start)
        self.end = None if end is None else parse_time(end)
        self._end = self.end if self.end is not None else 1 << 62
        self.scale = rate_scale
        self.tick_every = max(0, int(tick_every))
        self.tag = run_tag(profiles, seed, self.start, rate_scale, self.tick_every)
        self.rng = random.Random(f"bando-events:{seed}:{self.tag}")
        self.cal = WorkCalendar(day_of(self.start) - 1)
        self.units = [_Unit(p) for p in profiles]
        self.buckets: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        self.seq = 0
        self._started = False
        s = rate_scale
        self._cum_counter = list(accumulate(u.volume * (1 - u.online_share) * s for u in profiles))
        self._cum_online = list(accumulate(u.volume * u.online_share * s for u in profiles))
        self._cum_petition = list(accumulate(u.petitions * s for u in profiles))
        # Publications follow the legal calendar, not the crowd: they do not scale.
        self._cum_publish = list(accumulate(u.publications for u in profiles))
        self._counter_w = sum(w for _, _, w in _COUNTER.values())
        self._online_w = sum(_ONLINE)
        self._days = _DayPrefixes()
        self._due_strings: dict[int, str] = {}  # working-day index -> its 17:00 timestamp
        self._sod = _second_of_day_table()

    # -- helpers ---------------------------------------------------------------------------

    def _ts(self, t: int) -> str:
        local = t + OFFSET
        return self._days[local // DAY] + self._sod[local % DAY]

    def _due_string(self, index: int) -> str:
        text = self._due_strings[index] = self._ts(self.cal.close_of(index))
        return text

    def _eid(self) -> str:
        self.seq += 1
        return f"{self.tag}-{self.seq}"

    def _put(self, t: int, ev: dict[str, Any]) -> None:
        if t >= self._end:
            return
        bucket = self.buckets.get(t // 3600)
        if bucket is None:
            bucket = self.buckets[t // 3600] = []
        bucket.append((t, ev))

    # -- the run ---------------------------------------------------------------------------

    def events(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if self._started:
            raise RuntimeError("a Generator runs once; make a new one (same arguments, same run)")
        self._started = True
        end = self.end
        hour = self.start // 3600
        first_item = itemgetter(0)
        while end is None or hour * 3600 < end:
            lo, hi = max(self.start, hour * 3600), hour * 3600 + 3600
            self._hour(hour, lo, hi)
            bucket = self.buckets.pop(hour, None)
            if bucket:
                bucket.sort(key=first_item)  # stable: a dossier's received stays first
                yield from bucket
            hour += 1

    def _hour(self, hour: int, lo: int, hi: int) -> None:
        local_hour = (hour + 7) % 24
        day = (hour * 3600 + OFFSET) // DAY
        working = is_working_day(day)
        window = _COUNTER.get(local_hour) if working else None
        if window is not None:
            base = hour * 3600
            c_lo, c_hi = max(lo, base + window[0]), base + window[1]
            per_day = self._cum_counter[-1]
            if per_day > 0 and c_hi > c_lo:
                rate = per_day * window[2] / self._counter_w / (window[1] - window[0])
                self._arrivals(c_lo, c_hi, rate, self._cum_counter, self._dossier, False)
            if local_hour in _PUBLISH_HOURS and self._cum_publish[-1] > 0:
                rate = self._cum_publish[-1] / _WORKING_DAYS_PER_MONTH / len(_PUBLISH_HOURS) / 3600
                self._arrivals(lo, hi, rate, self._cum_publish, self._publication)
        per_day = self._cum_online[-1]
        if per_day > 0:
            rate = per_day * _ONLINE[local_hour] / self._online_w / 3600
            if not working:
                rate *= _OFF_DAY_ONLINE
            self._arrivals(lo, hi, rate, self._cum_online, self._dossier, True)
        if self._cum_petition[-1] > 0:
            rate = self._cum_petition[-1] / _HOURS_PER_MONTH / 3600
            self._arrivals(lo, hi, rate, self._cum_petition, self._petition)
        if self.tick_every:
            every = self.tick_every
            t = -(-lo // every) * every
            while t < hi:
                self._put(t, {"event_id": self._eid(), "type": "clock.tick",
                              "occurred_at": self._ts(t)})
                t += every

    def _arrivals(self, lo: int, hi: int, rate: float, cum: list[float], make: Any,
                  flag: bool = False) -> None:
        """A Poisson process of ``rate`` per second on [lo, hi), each arrival given to a unit
        drawn in proportion to its weight in ``cum``."""
        r, units, total = self.rng.random, self.units, cum[-1]
        t = lo - ln(1.0 - r()) / rate  # exponential gaps, inlined: this runs per dossier
        while t < hi:
            make(int(t), units[bisect(cum, r() * total)], flag)
            t -= ln(1.0 - r()) / rate

    def _dossier(self, t0: int, u: _Unit, online: bool) -> None:
        # The hottest code of the simulator: ids and bucket puts are inlined on purpose.
        r = self.rng.random
        p, cal, ts = u.p, self.cal, self._ts
        uid, tag, seq = u.uid, self.tag, self.seq
        out: list[tuple[int, dict[str, Any]]] = []
        add = out.append
        cum = u.cum_online if online else u.cum_counter
        proc = u.procs[bisect(cum, r() * cum[-1])]
        u.n_dossiers += 1
        did = f"{uid}-{tag}-d{u.n_dossiers}"
        officer = u.officers[int(r() * len(u.officers))]
        channel = "online" if online else ("postal" if r() < _POSTAL else "in_person")
        eligible = proc.online_eligible
        full = online and eligible and r() < p.full_online
        w0 = cal.work_pos(t0)
        due_index = w0 // WORK + proc.days
        due_at = self._due_strings.get(due_index) or self._due_string(due_index)
        wdue = (due_index + 1) * WORK
        seq += 1
        add((t0, {"event_id": f"{tag}-{seq}", "type": "dossier.received", "occurred_at": ts(t0),
                  "unit_id": uid, "dossier_id": did, "procedure_id": proc.procedure_id,
                  "channel": channel, "due_at": due_at, "online_eligible": eligible,
                  "full_online": full, "fee_required": proc.fee_required,
                  "reused_data": r() < p.reuse,
                  "pds_linked": r() < (p.pds if online else p.pds / 2),
                  "population_db": r() < p.population_db, "officer_id": officer}))
        lag = p.lag_s
        if full or r() < p.digitize:
            t = t0 + 30 + int(r() * lag)
            seq += 1
            add((t, {"event_id": f"{tag}-{seq}", "type": "dossier.digitized",
                     "occurred_at": ts(t), "unit_id": uid, "dossier_id": did,
                     "officer_id": officer}))
        if r() < p.sync:
            t = t0 + 60 + int(r() * lag)
            seq += 1
            add((t, {"event_id": f"{tag}-{seq}", "type": "dossier.synced", "occurred_at": ts(t),
                     "unit_id": uid, "dossier_id": did}))
        if proc.fee_required:
            paid_online = r() < (p.pay_online if online else p.pay_online * 0.3)
            # Online: pay by card or QR soon after submitting; at the counter: pay on the spot.
            t = t0 + 60 + int(r() * (14400 if online or paid_online else 900))
            seq += 1
            add((t, {"event_id": f"{tag}-{seq}", "type": "dossier.paid", "occurred_at": ts(t),
                     "unit_id": uid, "dossier_id": did, "online": paid_online,
                     "amount_vnd": proc.fee_vnd}))
        w_from = w0
        late_p = p.late
        if r() < p.supplement:
            for _ in range(2 if r() < _SECOND_SUPPLEMENT else 1):
                ws = w_from + 1 + int(r() * (wdue - w_from) * 0.5)
                t = cal.at(ws)
                seq += 1
                ev = {"event_id": f"{tag}-{seq}", "type": "dossier.supplement_requested",
                      "occurred_at": ts(t), "unit_id": uid, "dossier_id": did,
                      "officer_id": officer}
                if r() < p.supplement_new_due:  # the clock restarts once the papers are in
                    due_index = ws // WORK + proc.days
                    ev["new_due_at"] = (self._due_strings.get(due_index)
                                        or self._due_string(due_index))
                    wdue = (due_index + 1) * WORK
                else:
                    late_p += 0.2  # the same deadline with less time left
                add((t, ev))
                w_from = ws
        if r() < p.withdraw:
            t = cal.at(w_from + 1 + int(r() * (wdue - w_from)))
            t = max(t, max(item[0] for item in out) + 60)  # nothing happens after withdrawal
            seq += 1
            add((t, {"event_id": f"{tag}-{seq}", "type": "dossier.withdrawn",
                     "occurred_at": ts(t), "unit_id": uid, "dossier_id": did}))
        else:
            late = r() < late_p
            if late:
                wc = wdue + 1 + int(r() * r() * WORK * p.late_days)
            else:
                wc = w_from + 1 + int((wdue - w_from - 1) * r() ** p.speed)
            tc = cal.at(wc)
            seq += 1
            add((tc, {"event_id": f"{tag}-{seq}", "type": "dossier.completed",
                      "occurred_at": ts(tc), "unit_id": uid, "dossier_id": did,
                      "e_result": r() < (p.e_result + 0.1 if online else p.e_result),
                      "officer_id": officer}))
            if r() < p.rate:
                t = tc + 60 + int(r() * r() * 3 * DAY)
                x = r()
                bad = p.dissatisfied + (0.35 if late else 0.0)
                rating = ("dissatisfied" if x < bad else "neutral" if x < bad + p.neutral
                          else "satisfied")
                seq += 1
                add((t, {"event_id": f"{tag}-{seq}", "type": "dossier.rated",
                         "occurred_at": ts(t), "unit_id": uid, "dossier_id": did,
                         "rating": rating}))
        self.seq = seq
        buckets, end = self.buckets, self._end
        for item in out:
            t = item[0]
            if t < end:  # beyond the range: ids were still consumed, so prefixes stay stable
                bucket = buckets.get(t // 3600)
                if bucket is None:
                    buckets[t // 3600] = [item]
                else:
                    bucket.append(item)

    def _petition(self, t0: int, u: _Unit, _: bool = False) -> None:
        r = self.rng.random
        p, cal, ts, put, eid = u.p, self.cal, self._ts, self._put, self._eid
        u.n_petitions += 1
        pid = f"{u.uid}-{self.tag}-p{u.n_petitions}"
        w0 = cal.work_pos(t0)
        due_index = w0 // WORK + _PETITION_DAYS
        wdue = (due_index + 1) * WORK
        put(t0, {"event_id": eid(), "type": "petition.received", "occurred_at": ts(t0),
                 "unit_id": u.uid, "petition_id": pid, "due_at": ts(cal.close_of(due_index))})
        if r() < 0.05:
            return  # still open: on time until its due time passes
        on_time = r() < p.petition_on_time
        if on_time:
            wr = w0 + 1 + int((wdue - w0 - 1) * r() ** p.speed)
        else:
            wr = wdue + 1 + int(r() * WORK * 10)
        tr = cal.at(wr)
        put(tr, {"event_id": eid(), "type": "petition.resolved", "occurred_at": ts(tr),
                 "unit_id": u.uid, "petition_id": pid})
        if r() < 0.45:
            t = tr + 300 + int(r() * 2 * DAY)
            x, bad = r(), p.dissatisfied * 1.5 + (0.0 if on_time else 0.4)
            rating = ("dissatisfied" if x < bad else "neutral" if x < bad + p.neutral
                      else "satisfied")
            put(t, {"event_id": eid(), "type": "petition.rated", "occurred_at": ts(t),
                    "unit_id": u.uid, "petition_id": pid, "rating": rating})

    def _publication(self, t: int, u: _Unit, _: bool = False) -> None:
        r = self.rng.random
        p = u.p
        proc = u.procs[int(r() * len(u.procs))]
        self._put(t, {"event_id": self._eid(), "type": "procedure.published",
                      "occurred_at": self._ts(t), "unit_id": u.uid,
                      "procedure_id": proc.procedure_id,
                      "announced_on_time": r() < p.publish_on_time,
                      "publicized_on_time": r() < p.publish_on_time,
                      "complete": r() < p.publish_complete})


def generate_timed(catalog: Iterable[Mapping[str, str]], start: str | datetime | int,
                   end: str | datetime | int | None = None, *, seed: int | str = 0,
                   rate_scale: float = 1.0, tick_every: int = 900,
                   ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Like ``generate`` but yields ``(epoch_seconds, event)`` pairs."""
    return Generator(catalog, start=start, end=end, seed=seed, rate_scale=rate_scale,
                     tick_every=tick_every).events()


def generate(catalog: Iterable[Mapping[str, str]], start: str | datetime | int,
             end: str | datetime | int | None = None, *, seed: int | str = 0,
             rate_scale: float = 1.0, tick_every: int = 900) -> Iterator[dict[str, Any]]:
    """Event dicts with ``start <= occurred_at < end`` in event-time order (endless when
    ``end`` is None). Same arguments, same events. ``rate_scale`` multiplies citizen activity
    (dossiers, petitions); procedure publications keep their few-per-month rhythm."""
    for _, ev in generate_timed(catalog, start, end, seed=seed, rate_scale=rate_scale,
                                tick_every=tick_every):
        yield ev
