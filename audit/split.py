"""``bando replay --jobs N``: a JSON-lines file replayed on N processes, its units split between
them (issue 7: the year's replay on both cores of the machine).

Each worker, forked before anything is read, reads every line but decodes and folds only its
own: the lines of its units, found from the line's bytes where they are plain, and worker 0
also takes every line of no catalog unit and every line that is not JSON
(``audit.splitingest``: the rules, and what happens when bytes and JSON disagree). Each
worker de-duplicates its own lines; an id accepted by two workers (a conflicting repeat in
one process) is found afterwards by comparing their tables, dumped to scratch files, and the
later worker ingests again with the first copy known. So a worker's verdict on each of its
lines is the one-process verdict, and its statistics are those of its own lines (summed by
the parent). Then each worker runs the timeline's steps for its units
(``audit.replay.steps``) and streams them to the parent, which ranks the merged snapshots
(``audit.replay.rows``): the rows are the one-process rows, byte for byte
(``tests/audit/test_split.py``).

Units are dealt out by their share of the file's first lines (``assign``). Memory: a worker
holds its units' facts and a table of their ids (16-32 bytes each); while the tables are
compared, a copy of each is in a memory file (``_scratch``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import multiprocessing as mp
import os
import signal
import tempfile
import time
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import orjson

from audit.exceptions import AuditError
from audit.ingest import Acceptor, History, IngestStats, paused_gc
from audit.replay import Snapshot, TimelineSpec, plan, rows, steps
from audit.sources import FileSource
from audit.splitingest import Misrouted, load_part, refusals, second_pass, shared
from bando.batch import TYPICAL_LINE
from scoring.catalog import Catalog
from scoring.model import Model

log = logging.getLogger(__name__)

SAMPLE = 200_000  # lines read to weigh the units
CHUNK = 64  # timeline steps per message to the parent
SLACK = 1.3  # room in each worker's table over an even share of the file's lines
PR_SET_PDEATHSIG = 1  # prctl(2)


def assign(path: str, catalog: Catalog, jobs: int, sample: int = SAMPLE) -> dict[str, int]:
    """Unit -> worker: the units by their share of the file's first ``sample`` lines, each,
    the largest first, to the worker with the fewest lines so far."""
    counts = dict.fromkeys(catalog.by_id, 0)
    with open(path, "rb") as fh:
        for _, line in zip(range(sample), fh, strict=False):
            try:
                u = orjson.loads(line).get("unit_id")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if type(u) is str and u in counts:
                counts[u] += 1
    load = [0] * jobs
    out: dict[str, int] = {}
    for u in sorted(counts, key=lambda u: (-counts[u], u)):
        k = load.index(min(load))
        out[u] = k
        load[k] += counts[u] + 1  # + 1: units absent from the sample are dealt out too
    return out


def _worker(k: int, path: str, catalog: Catalog, model: Model, spec: TimelineSpec,
            max_bytes: int, assignment: dict[str, int], expected: int, dumps: list[int],
            conn: Connection, inherited: list[Connection], parent_pid: int) -> None:
    """One worker's life, in the forked child: ingest, bounds, steps; then exit at once."""
    # The parent's ends of the pipes made so far came with the fork: while this process holds
    # its own pipe's other end, it never sees the parent close it (it would wait forever)
    for other in inherited:
        other.close()
    _die_with(parent_pid)
    code = 0
    try:
        history = _ingest(k, FileSource(path), catalog, max_bytes, assignment, expected, dumps,
                          conn)
        first_ts, last_ts = conn.recv()
        p = plan(first_ts, last_ts, catalog, model, spec)  # the parent checked it already
        if p is not None:
            own = {u for u, w in assignment.items() if w == k}
            chunk: list[tuple[int, Snapshot]] = []
            stepped = time.perf_counter()
            with paused_gc():
                for step in steps(p, history, model, own):
                    chunk.append(step)
                    if len(chunk) >= CHUNK:
                        conn.send(chunk)
                        chunk = []
            if chunk:
                conn.send(chunk)
            log.debug("worker %d: its timeline in %.1f s", k, time.perf_counter() - stepped)
        conn.send([])  # the end of the steps
    except BaseException as exc:  # noqa: BLE001 - whatever it is, the parent must hear it
        code = 1
        # an AuditError (a --check-core mismatch) reads as it would from one process
        text = str(exc) if isinstance(exc, AuditError) else \
            f"a replay worker failed: {traceback.format_exc()}"
        with contextlib.suppress(OSError):
            conn.send(("error", text))
    finally:
        conn.close()
        os._exit(code)  # freeing millions of objects takes seconds; nothing else to do here


def _ingest(k: int, source: FileSource, catalog: Catalog, max_bytes: int,
            assignment: dict[str, int], expected: int, dumps: list[int], conn: Connection
            ) -> History:
    """The worker's side of the ingest (``SplitReplay.ingest`` the parent's): its lines, its
    table dumped for the others; the ids it shares with them compared; its lines again if it
    must refuse some; its statistics."""
    route = True
    started = time.perf_counter()
    history: History | None = None
    while True:
        acceptor = Acceptor(catalog, max_bytes)
        try:
            history, slots = load_part(source, acceptor, assignment, k, route=route,
                                       expected=expected)
        except Misrouted:
            conn.send(("ingested", True))
        else:
            with open(dumps[k], "wb", closefd=False) as fh:
                fh.seek(0)
                slots.tofile(fh)
            del slots  # the table's memory back before the timeline's
            conn.send(("ingested", False))
        if conn.recv() != "again":
            break
        history = None  # before the next pass holds another
        os.ftruncate(dumps[k], 0)
        route = False  # a line's bytes misled the routing: decode every line
    if history is None:  # the parent compares only once no worker was misrouted
        raise AuditError("a replay worker was told to compare without a history")
    loaded = time.perf_counter()
    conn.send(("shared", _compare(source.path, k, dumps)))
    log.debug("worker %d: its lines in %.1f s, the tables compared in %.1f s", k,
              loaded - started, time.perf_counter() - loaded)
    for m, fd in enumerate(dumps):  # the others keep their own descriptors while they compare
        if m != k:
            os.close(fd)
    refuse = conn.recv()
    again: History | None = None
    if refuse:
        with mmap.mmap(dumps[k], 0, access=mmap.ACCESS_READ) as mapped:
            again = second_pass(source, acceptor, assignment, route=route, first=history,
                                slots=mapped, refuse=refuse)  # type: ignore[arg-type]
        if again is None:
            history = None  # before the second pass holds another
            acceptor = Acceptor(catalog, max_bytes)
            history, _ = load_part(source, acceptor, assignment, k, route=route,
                                   refuse=[(event_id, first) for event_id, first, _ in refuse],
                                   expected=expected)
    os.close(dumps[k])
    how = "" if not refuse else "all its units" if again is None else "units with shared ids"
    conn.send(("ingest", history.first_ts, history.last_ts, acceptor.stats, how))
    return history


def _compare(path: Any, k: int, dumps: list[int]) -> list[tuple[str, int, int]]:
    """``shared`` on the workers' dumped tables, mapped read-only."""
    with contextlib.ExitStack() as stack:
        tables: dict[int, memoryview] = {}
        for m, fd in enumerate(dumps):
            mapped = stack.enter_context(mmap.mmap(fd, 0, access=mmap.ACCESS_READ))
            tables[m] = memoryview(mapped).cast("q")
            stack.callback(tables[m].release)  # before the map closes (LIFO)
        return shared(path, k, tables)


def _scratch(k: int) -> int:
    """A file for worker ``k``'s dumped table that no name points to: in memory
    (``memfd_create``) where the system has it, else an unnamed temporary file. Made before
    the fork, it is freed when the last process holding it closes it or dies."""
    if hasattr(os, "memfd_create"):
        with contextlib.suppress(OSError):  # e.g. refused by a sandbox
            return os.memfd_create(f"bando-split-{k}", os.MFD_CLOEXEC)
    with tempfile.TemporaryFile() as fh:
        return os.dup(fh.fileno())


def _die_with(parent_pid: int) -> None:
    """Be killed when the parent dies (a worker may hold 10 GB): ``PR_SET_PDEATHSIG``."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's close() still ends it
        return
    if os.getppid() != parent_pid:  # it died before the call
        os._exit(1)


class SplitReplay:
    """The parent's side: ``stats`` and ``first_ts``/``last_ts`` once ``ingest`` returned,
    then ``rows()`` (the timeline's rows, as ``audit.replay.timeline`` makes them)."""

    def __init__(self, source: FileSource, catalog: Catalog, model: Model, spec: TimelineSpec,
                 max_bytes: int, jobs: int):
        self.catalog, self.model, self.spec = catalog, model, spec
        started = time.perf_counter()
        jobs = max(1, min(jobs, len(catalog.by_id)))  # a worker without units: a wasted read
        self.assignment = assign(str(source.path), catalog, jobs)
        # a worker's share of the ids, with room for a mix of units that changes over the file
        expected = int(source.path.stat().st_size // TYPICAL_LINE * SLACK / jobs) + 1
        ctx = mp.get_context("fork")
        self.conns: list[Connection] = []
        self.procs = []
        dumps = [_scratch(k) for k in range(jobs)]  # each worker's table, for the others
        try:
            for k in range(jobs):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, daemon=True, args=(
                    k, str(source.path), catalog, model, spec, max_bytes, self.assignment,
                    expected, dumps, child, [*self.conns, parent], os.getpid()))
                proc.start()
                child.close()
                self.conns.append(parent)
                self.procs.append(proc)
        finally:
            for fd in dumps:  # the workers have theirs: freed once they close them too
                os.close(fd)
        self._forked = time.perf_counter() - started
        self.stats = IngestStats()
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    def _recv(self, conn: Connection) -> Any:
        try:
            got = conn.recv()
        except (EOFError, OSError):  # closed, or reset with our last message unread
            self.close()
            raise AuditError("a replay worker died (out of memory?)") from None
        if type(got) is tuple and got and got[0] == "error":
            self.close()
            raise AuditError(got[1])
        return got

    def _send(self, conn: Connection, message: Any) -> None:
        try:
            conn.send(message)
        except OSError:  # its end closed: it died
            self.close()
            raise AuditError("a replay worker died (out of memory?)") from None

    def ingest(self) -> IngestStats:
        """Wait for every worker's ingest; the summed statistics."""
        stats = self.stats
        started = time.perf_counter()
        while True:
            again = any([self._recv(conn)[1] for conn in self.conns])  # ("ingested", misrouted)
            for conn in self.conns:
                self._send(conn, "again" if again else "compare")
            if not again:
                break
            log.warning("a line's bytes name another unit than its JSON: ingesting again, "
                        "every line decoded")
        found = [f for conn in self.conns for f in self._recv(conn)[1]]  # ("shared", ...)
        refuse = refusals(found)
        if refuse:
            log.info("%d ids accepted by two workers: %s ingesting again",
                     len({event_id for event_id, _, _ in found}),
                     ", ".join(f"worker {k}" for k in sorted(refuse)))
        for k, conn in enumerate(self.conns):
            self._send(conn, refuse.get(k, []))
        firsts, lasts = [], []
        for k, conn in enumerate(self.conns):
            _, first, last, part, how = self._recv(conn)
            if how:
                log.info("worker %d read %s again", k, how)
            stats.records += part.records
            stats.accepted += part.accepted
            stats.duplicates += part.duplicates
            stats.rejected.update(part.rejected)
            firsts += [first] if first is not None else []
            lasts += [last] if last is not None else []
        stats.seconds = time.perf_counter() - started + self._forked
        self.first_ts = min(firsts, default=None)
        self.last_ts = max(lasts, default=None)
        return stats

    def rows(self) -> Iterator[dict[str, Any]]:
        """The timeline's rows; checks the request first (an ``AuditError`` stops the
        workers)."""
        try:
            p = plan(self.first_ts, self.last_ts, self.catalog, self.model, self.spec)
            for conn in self.conns:
                self._send(conn, (self.first_ts, self.last_ts))
            if p is not None:
                yield from rows(p, self.model.timezone, self._merged())
            else:
                for conn in self.conns:
                    self._recv(conn)  # the end of no steps
        finally:  # also when the caller stops reading early
            self.close()

    def _merged(self) -> Iterator[tuple[int, Snapshot]]:
        """The workers' steps in time order, those of one instant as one snapshot."""
        heads: list[list[tuple[int, Snapshot]]] = [[] for _ in self.conns]
        done = [False] * len(self.conns)
        while True:
            for i, conn in enumerate(self.conns):
                if not heads[i] and not done[i]:
                    chunk = self._recv(conn)
                    heads[i] = list(reversed(chunk))
                    done[i] = not chunk
            live = [h for h in heads if h]
            if not live:
                return
            t = min(h[-1][0] for h in live)
            changed: Snapshot = {}
            for h in live:
                if h[-1][0] == t:
                    changed.update(h.pop()[1])
            yield t, changed

    def close(self) -> None:
        """End the workers: each sees its pipe closed and exits (killed if it does not)."""
        for conn in self.conns:
            conn.close()
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
