"""Crash fuzzing of the live pipeline's faust-free stages (``ScorerCore``, ``RankerCore``).

Modelled as ``streams.app`` drives them: batches of 1-25 messages from one partition of
``procedure-events`` (sometimes from all three, interleaved); after each ``process`` the
closing scores (``take_closing``) are sent at once, then the batch's changelog records go out;
``flush`` at random; the ranker reads the internal topic in random slices stamped with
``rank_basis``. A commit stores the input offsets read, once every changelog record written
before it is durable. A crash keeps, of what each changelog (table, partition) received since
the last commit, a prefix chosen by the crash mode; the restarted worker rebuilds from it and
reads the input again from the commit. What was sent stays sent. Crash modes:

* ``prefix``: each (table, partition) keeps a random prefix of its own (none, all or some);
* ``atomic``: every changelog stops at the same batch boundary (one transaction a batch);
* ``behind``: per partition the clock survives up to some batch, the facts never past it:
  facts may fall behind their clock, never run ahead (``seen``, ``units``: random prefixes);
* ``mixed``: each crash is ``prefix`` or ``clean`` (everything survives, the input since the
  commit is still read again).

Not modelled: faust itself (agents, tables, rebalances between workers), real Kafka (producer
retries, reordering, transactions), a crash between a batch's closing scores and its
changelogs (the closing is always sent), ranker crashes, rejected events and the DLQ (every
event is valid), wall-clock checks (``now_us`` is far in the future).

Judged by ``audit.verify`` (every published message reproduced from the events up to its
input offset) and by ``expected_board``, an oracle that folds the events itself.
(No ``__init__``: pytest puts this folder on ``sys.path``.)
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from audit.sources import MemorySource, Record
from audit.verify import _Rater, expected_content, verify
from audit.verify_report import VerifyReport
from schemas import Validator
from scoring.catalog import Catalog
from scoring.facts import UnitState, apply_event
from scoring.model import Model
from scoring.timeutil import format_ts, parse_ts, window_of
from streams.ranker import RankerCore
from streams.scorer import Message, ScorerCore

EVENTS, DLQ, SCORES, INTERNAL = "procedure-events", "procedure-events-dlq", "unit-scores", \
    "bando-scorer-unit-scored"
PARTITIONS = 3
HOUR = 3_600_000_000  # event times are in microseconds
FAR_FUTURE = 2**62  # the scorer's wall clock: no event is refused as future_timestamp
MODES = ("prefix", "atomic", "behind", "mixed", "clean")
# near a month's end, and a year's: a run crosses one within hours
STARTS = ("2024-03-29T00:00:00+07:00", "2023-12-29T00:00:00+07:00")

Board = dict[tuple[str, str], tuple[float | None, str]]  # (window, unit) -> (total, as_of)
Tails = dict[tuple[str, int], list[int]]  # (table, partition) -> changelog indexes


def partition_of(unit_id: str) -> int:
    return zlib.crc32(unit_id.encode()) % PARTITIONS


class ChangelogStore:
    """The scorer's ``Store`` with a changelog of every put, like the ``MemStore`` of this
    folder's conftest (not imported: which ``conftest`` module a plain import finds depends on
    what pytest loaded last)."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = defaultdict(dict)
        self.changelog: list[tuple[str, int, str, bytes]] = []  # table, partition, key, JSON

    def get(self, table: str, key: str) -> Any:
        return self.tables[table].get(key)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        self.tables[table][key] = value
        raw = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        self.changelog.append((table, partition, key, raw))

    def items(self, table: str) -> Iterable[tuple[str, Any]]:
        return list(self.tables[table].items())

    def recovered(self, keep: Callable[[int], bool]) -> ChangelogStore:
        """What changelog recovery gives a new worker: the latest value per (table, key) of
        the records whose index ``keep`` accepts, decoded from JSON."""
        fresh = ChangelogStore()
        for i, (table, partition, key, raw) in enumerate(self.changelog):
            if keep(i):
                fresh.tables[table][key] = orjson.loads(raw)
                fresh.changelog.append((table, partition, key, raw))
        return fresh


class StreamGen:
    """Random valid events of ``units``: receipts (some moving a record to an earlier time),
    progress, withdrawals, ratings, supplements, petitions, publications, exact duplicates and
    ticks. Time runs forward ~2.5 h an event, but most events happened up to 2 h before it
    (some up to 5 days): out of order, and often behind their partition's watermark."""

    KINDS = ((0.25, "received"), (0.45, "progress"), (0.62, "rated"), (0.70, "supplement"),
             (0.80, "petition"), (0.84, "published"), (0.90, "earlier"), (0.94, "duplicate"),
             (1.00, "tick"))

    def __init__(self, rng: random.Random, units: list[str], start: str):
        self.rng, self.units, self.now = rng, units, parse_ts(start)
        self.ids = itertools.count(1)
        self.dossiers: dict[str, list[str]] = defaultdict(list)
        self.petitions: dict[str, list[str]] = defaultdict(list)
        self.hot: dict[str, str] = {}  # unit -> the dossier ratings pile onto (repeats)
        self.sent: list[dict[str, Any]] = []  # unit events so far, to duplicate

    def generate(self, n: int) -> dict[int, list[dict[str, Any]]]:
        """``n`` events, per partition; a unit's events all on its partition (SPEC 4)."""
        out: dict[int, list[dict[str, Any]]] = {p: [] for p in range(PARTITIONS)}
        for _ in range(n):
            self.now += int(self.rng.expovariate(1 / (2.5 * HOUR)))
            body = self.one(self.rng.choice(self.units))
            unit = body.get("unit_id")
            out[self.rng.randrange(PARTITIONS) if unit is None else partition_of(unit)].append(body)
        return out

    def one(self, unit: str) -> dict[str, Any]:
        r = self.rng.random()
        kind = next(k for bound, k in self.KINDS if r < bound)
        if kind == "tick" or (kind == "duplicate" and not self.sent):
            return self._body("clock.tick", self.now, None)
        if kind == "duplicate":
            return self.rng.choice(self.sent)
        if not self.dossiers[unit]:
            kind = "received"  # every other dossier event needs a dossier
        back = 2 * HOUR if self.rng.random() < 0.85 else 5 * 24 * HOUR
        body = getattr(self, "_" + kind)(unit, self.now - int(self.rng.uniform(0, back)))
        self.sent.append(body)
        return body

    def _hours(self, low: float, high: float) -> int:
        return int(self.rng.uniform(low, high) * HOUR)

    def _body(self, kind: str, t: int, unit: str | None, **fields: Any) -> dict[str, Any]:
        body = {"event_id": f"e{next(self.ids)}", "type": kind, "occurred_at": format_ts(t)}
        return body if unit is None else {**body, "unit_id": unit, **fields}

    def _receipt(self, unit: str, dossier: str, t: int) -> dict[str, Any]:
        coin = self.rng.random
        online = coin() < 0.5
        return self._body(
            "dossier.received", t, unit, dossier_id=dossier,
            procedure_id=f"proc-{self.rng.randint(1, 3)}",
            channel="online" if online else "in_person", due_at=format_ts(t + self._hours(1, 240)),
            online_eligible=coin() < 0.7, full_online=online and coin() < 0.5,
            fee_required=coin() < 0.5, reused_data=coin() < 0.5, pds_linked=coin() < 0.5,
            population_db=coin() < 0.5)

    def _received(self, unit: str, t: int) -> dict[str, Any]:
        self.dossiers[unit].append(f"{unit}-d{len(self.dossiers[unit])}")
        return self._receipt(unit, self.dossiers[unit][-1], t)

    def _progress(self, unit: str, t: int) -> dict[str, Any]:
        withdrawals = ["completed", "withdrawn"] if self.rng.random() < 0.15 else []
        kind = self.rng.choice(["digitized", "synced", "paid", "completed", *withdrawals])
        fields: dict[str, Any] = {"dossier_id": self.rng.choice(self.dossiers[unit])}
        if kind == "paid":
            fields.update(online=self.rng.random() < 0.6, amount_vnd=1000)
        if kind == "completed":
            fields["e_result"] = self.rng.random() < 0.6
        return self._body(f"dossier.{kind}", t, unit, **fields)

    def _rated(self, unit: str, t: int) -> dict[str, Any]:
        if unit not in self.hot or self.rng.random() < 0.1:
            self.hot[unit] = self.rng.choice(self.dossiers[unit])
        return self._body("dossier.rated", t, unit, dossier_id=self.hot[unit],
                          rating=self.rng.choice(["satisfied", "neutral", "dissatisfied"]))

    def _supplement(self, unit: str, t: int) -> dict[str, Any]:
        fields = {"dossier_id": self.hot.get(unit, self.dossiers[unit][0])}
        if self.rng.random() < 0.5:  # a new due time, sometimes one already past
            fields["new_due_at"] = format_ts(t + self._hours(-24, 240))
        return self._body("dossier.supplement_requested", t, unit, **fields)

    def _petition(self, unit: str, t: int) -> dict[str, Any]:
        k, known = self.rng.random(), self.petitions[unit]
        if k < 0.4 or not known:
            known.append(f"{unit}-p{len(known)}")
            return self._body("petition.received", t, unit, petition_id=known[-1],
                              due_at=format_ts(t + self._hours(1, 200)))
        if k < 0.6:
            return self._body("petition.resolved", t, unit, petition_id=self.rng.choice(known))
        return self._body("petition.rated", t, unit, petition_id=self.rng.choice(known),
                          rating=self.rng.choice(["satisfied", "dissatisfied"]))

    def _published(self, unit: str, t: int) -> dict[str, Any]:
        coin = self.rng.random
        return self._body("procedure.published", t, unit, procedure_id="proc-1",
                          announced_on_time=coin() < 0.5, publicized_on_time=coin() < 0.5,
                          complete=coin() < 0.5)

    def _earlier(self, unit: str, t: int) -> dict[str, Any]:
        """A known record received again up to 10 days earlier: it moves, maybe to a month
        whose scores were closed already."""
        t -= self._hours(0, 10 * 24)
        if self.rng.random() < 0.5 or not self.petitions[unit]:
            return self._receipt(unit, self.rng.choice(self.dossiers[unit]), t)
        return self._body("petition.received", t, unit,
                          petition_id=self.rng.choice(self.petitions[unit]),
                          due_at=format_ts(t + self._hours(1, 100)))


class Live:
    """A worker's loop over a fixed input, crashing in ``mode`` (see the module docstring),
    and the ranker's (which does not crash)."""

    def __init__(self, rng: random.Random, catalog: Catalog, model: Model,
                 bodies: dict[int, list[dict[str, Any]]], mode: str):
        assert mode in MODES, mode
        self.rng, self.catalog, self.model, self.mode = rng, catalog, model, mode
        self.events = {p: [Record(EVENTS, p, o, 0, b.get("unit_id", "-").encode(),
                                  orjson.dumps(b)) for o, b in enumerate(bodies[p])]
                       for p in range(PARTITIONS)}
        self.store = ChangelogStore()
        self.scorer = self._scorer()
        self.read = dict.fromkeys(range(PARTITIONS), 0)  # next offset to read, per partition
        self.committed = dict(self.read)
        self.durable = 0  # the changelog up to this index outlives any crash
        self.batch_ends: list[int] = []  # changelog length after each batch
        self.internal: list[dict[str, Any]] = []  # the internal topic, scorer -> ranker
        self.ranker = RankerCore(ChangelogStore())
        self.ranked = 0  # the ranker has read the internal topic up to here
        self.scores: list[dict[str, Any]] = []  # the unit-scores topic
        self.crashes = 0

    def _scorer(self) -> ScorerCore:
        return ScorerCore(self.catalog, self.model, self.store, topic=EVENTS,
                          now_us=lambda: FAR_FUTURE)

    def run(self, crash_p: float, commit_p: float) -> None:
        """Read everything, with random flushes, ranker reads, commits and crashes."""
        rng = self.rng
        while self.process():
            if rng.random() < 0.3:
                self.internal += self.scorer.flush()
            if rng.random() < 0.4:
                self.rank()
            if rng.random() < commit_p:
                self.commit()
            if rng.random() < crash_p:
                self.crash()
        self.internal += self.scorer.flush()
        while self.ranked < len(self.internal):
            self.rank()

    def process(self) -> bool:
        left = [p for p in range(PARTITIONS) if self.read[p] < len(self.events[p])]
        if not left:
            return False
        if self.rng.random() < 0.2:  # faust's batches mix partitions, each one in order
            batch = self._interleave([self._take(p) for p in left])
        else:
            batch = self._take(self.rng.choice(left))
        out = self.scorer.process(batch)
        # every generated event is valid: a rejection means the generator went wrong
        assert not out.rejected, [(m.offset, e.code, e.detail) for m, e in out.rejected]
        self.batch_ends.append(len(self.store.changelog))
        # the app sends the closing scores before the batch's changelog records
        self.internal += self.scorer.take_closing()
        return True

    def _take(self, p: int) -> list[Message]:
        first = self.read[p]
        records = self.events[p][first:first + self.rng.randint(1, 25)]
        self.read[p] += len(records)
        return [Message(r.partition, r.offset, r.key, r.value) for r in records]

    def _interleave(self, runs: list[list[Message]]) -> list[Message]:
        turns = [i for i, run in enumerate(runs) for _ in run]
        self.rng.shuffle(turns)
        return [runs[i].pop(0) for i in turns]

    def rank(self) -> None:
        first = self.ranked
        last = min(len(self.internal), first + self.rng.randint(1, 30)) - 1
        if last < first:
            return
        basis = {"topic": INTERNAL, "offsets": [first, last]}
        batch = [dict(m) for m in self.internal[first:last + 1]]
        self.scores += self.ranker.process(batch, basis).scores
        self.ranked = last + 1

    def commit(self) -> None:
        self.committed = dict(self.read)
        self.durable = len(self.store.changelog)

    def crash(self) -> None:
        """Lose what the mode says; restart from the tables left and the committed input."""
        self.crashes += 1
        kept = set(self.survivors())
        self.store = self.store.recovered(lambda i: i < self.durable or i in kept)
        self.durable = len(self.store.changelog)  # what survived is in Kafka for good
        self.batch_ends = []
        self.scorer = self._scorer()
        self.scorer.rebuild(set(range(PARTITIONS)))
        self.read = dict(self.committed)

    def survivors(self) -> Iterable[int]:
        """The changelog indexes written since the commit that outlive this crash."""
        mode = self.rng.choice(["prefix", "clean"]) if self.mode == "mixed" else self.mode
        tails: Tails = defaultdict(list)
        for i in range(self.durable, len(self.store.changelog)):
            table, p = self.store.changelog[i][:2]
            tails[(table, p)].append(i)
        if mode == "clean":
            return range(self.durable, len(self.store.changelog))
        ends = [self.durable, *(e for e in self.batch_ends if e > self.durable)]
        if mode == "atomic":
            return range(self.durable, self.rng.choice(ends))
        return self._prefixes(tails) if mode == "prefix" else self._behind(tails, ends)

    def _prefixes(self, tails: Tails) -> Iterable[int]:
        for idx in tails.values():
            yield from idx[:self.rng.choice([0, len(idx), self.rng.randint(0, len(idx))])]

    def _behind(self, tails: Tails, ends: list[int]) -> Iterable[int]:
        for table in ("seen", "units"):
            for p in range(PARTITIONS):
                idx = tails.get((table, p), [])
                yield from idx[:self.rng.randint(0, len(idx))]
        for p in range(PARTITIONS):
            limit = self.rng.choice(ends)  # the clock survives up to a batch's end
            yield from (i for i in tails.get(("clock", p), []) if i < limit)
            facts = [i for i in tails.get(("facts", p), []) if i < limit]
            yield from facts[:self.rng.choice([len(facts), self.rng.randint(0, len(facts))])]

    def verify(self) -> VerifyReport:
        topics = {EVENTS: [r for p in range(PARTITIONS) for r in self.events[p]],
                  DLQ: [],  # there, and empty: verify skips no event (all are valid)
                  INTERNAL: _records(INTERNAL, self.internal),
                  SCORES: _records(SCORES, self.scores)}
        return verify(MemorySource(topics), self.catalog, self.model, events_topic=EVENTS,
                      dlq_topic=DLQ, scores_topic=SCORES, internal_topic=INTERNAL)


def _records(topic: str, msgs: list[dict[str, Any]]) -> list[Record]:
    return [Record(topic, 0, i, 0, None, orjson.dumps(m)) for i, m in enumerate(msgs)]


def expected_board(catalog: Catalog, model: Model, events: dict[int, list[Record]]) -> Board:
    """The board once every event is read. Per partition: each month its time left, the
    scores at its last time in that month (and the year's, at a year's end); then the live
    windows' scores at its final time. Exact duplicates are skipped, not folded again."""
    validator = Validator(catalog, 64 * 1024, 300_000_000, lambda: FAR_FUTURE)
    rater, tz = _Rater(model), model.timezone
    board: Board = {}

    def snapshot(states: dict[str, UnitState], t: int, kinds: Iterable[str]) -> None:
        for unit, state in states.items():
            for kind in kinds:
                c = expected_content(model, catalog, rater, unit, state,
                                     window_of(kind, t, tz).name, t)
                board[(c["window"], unit)] = (c["total"], c["as_of"])

    for records in events.values():
        states: dict[str, UnitState] = {}
        seen: set[str] = set()
        t: int | None = None  # the partition's watermark
        for record in records:
            event = validator.validate(record.value or b"")
            if t is not None and event.ts >= window_of("month", t, tz).end_us:
                year_over = event.ts >= window_of("year", t, tz).end_us
                snapshot(states, t, ("month", "year") if year_over else ("month",))
            t = event.ts if t is None else max(t, event.ts)
            if event.unit_id is not None and event.event_id not in seen:
                seen.add(event.event_id)
                apply_event(states.setdefault(event.unit_id, UnitState()), event)
        if t is not None:
            snapshot(states, t, ("month", "year"))
    return board

