"""``bando replay --jobs N``: a JSON-lines file replayed on N processes, its units split between
them (issue 7: the year's replay on both cores of the machine).

Each worker, forked before anything is read, reads and decodes every line. The lines of its
own units (worker 0 also takes every line of no catalog unit, and every line that is not
JSON) go through ``audit.fastingest``'s checks and fused fold as in one process. A line of
another worker's unit only puts its id into this worker's de-duplication table, unchecked
(``FirstSeen.foreign``): it is validated if, and only if, its id comes again. So a worker's
verdict on each of its own lines is the one-process verdict, and its statistics are those of
its own lines (summed by the parent). Then each worker runs the timeline's steps for its
units (``audit.replay.steps``) and streams them to the parent, which ranks the merged
snapshots (``audit.replay.rows``): the rows are the one-process rows, byte for byte
(``tests/audit/test_split.py``).

Which worker owns a line depends on the line alone (``load_part``), so every worker agrees.
Units are dealt out by their share of the file's first lines (``assign``). Memory: a worker
holds its units' facts and an entry for every id of the file (16-32 bytes each).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Iterator
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

import orjson

from audit.exceptions import AuditError
from audit.fastingest import _Tables
from audit.ingest import Acceptor, History, IngestStats, paused_gc
from audit.replay import Snapshot, TimelineSpec, plan, rows, steps
from audit.sources import FileSource
from bando.batch import READ_BUFFER, TYPICAL_LINE, body_at
from schemas import EventRejected
from scoring.catalog import Catalog
from scoring.dedup import FirstSeen
from scoring.model import Model

log = logging.getLogger(__name__)

SAMPLE = 200_000  # lines read to weigh the units
CHUNK = 64  # timeline steps per message to the parent
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


def load_part(source: FileSource, acceptor: Acceptor, assignment: dict[str, int], k: int
              ) -> History:
    """``audit.fastingest.load_file`` (no DLQ) for worker ``k``: its own lines checked and
    folded, the others' ids put into the table unchecked. A line's owner: the worker of its
    ``unit_id`` if that is a catalog unit's, else worker 0 (no unit, not an object, not JSON
    even stripped), decided from the line alone so that every worker agrees (a line too
    large, or JSON only once stripped, is decoded stripped to find it)."""
    if acceptor.dlq:
        raise AuditError("a split replay reads a file, which has no dead-letter topic")
    limit = acceptor.validator.max_bytes
    validate = acceptor.validator.validate
    loads, not_json = orjson.loads, orjson.JSONDecodeError

    def checked_at(fh: Any, token: int) -> dict[str, Any] | None:
        fh.seek(token)
        raw = fh.readline().strip()
        try:
            return validate(raw).body
        except EventRejected:
            return None

    with (open(source.path, "rb", buffering=READ_BUFFER) as fh, open(source.path, "rb") as again,
          paused_gc()):
        table = FirstSeen(partial(body_at, again), os.fstat(fh.fileno()).st_size // TYPICAL_LINE,
                          checked_at=partial(checked_at, again))
        tables = _Tables(acceptor, table)
        functions, slow, foreign = tables.fused.functions, tables.slow, tables.fused.foreign
        get = assignment.get

        def mine(raw: bytes, start: int) -> bool:
            """Whether a line the fast test left undecided (not JSON until stripped, not an
            object, too large) is this worker's; if not, its id goes into the table."""
            try:
                body = loads(raw)
            except not_json:
                return k == 0
            u = body.get("unit_id") if type(body) is dict else None
            if (get(u, 0) if type(u) is str else 0) == k:
                return True
            if type(body) is dict and type(eid := body.get("event_id")) is str:
                foreign(eid, start)
            return False

        pos = folded = 0
        for offset, line in enumerate(fh):
            start = pos
            pos += (size := len(line))
            event = None
            decided = False  # owned by this worker, known from the line as it is
            if size <= limit:
                try:
                    body = loads(line)
                    u = body.get("unit_id")
                except (not_json, AttributeError):
                    pass
                else:  # ``mine``, inline for the common line
                    if (get(u, 0) if type(u) is str else 0) != k:
                        eid = body.get("event_id")
                        if type(eid) is str:  # else not valid: nothing to remember
                            foreign(eid, start)
                        continue
                    decided = True
                    try:
                        event = functions[body["type"]](body, start)
                    except (KeyError, TypeError):  # unsure: the reference decides
                        event = None
                    else:
                        if event is True:  # new, accepted and folded
                            folded += 1
                            continue
            raw = line.strip()
            if raw and (decided or mine(raw, start)):
                slow(event, raw, f"{source.topic}[0]@{offset}", start)  # type: ignore[arg-type]
        return tables.history(accepted=folded + tables.new)


def _worker(k: int, path: str, catalog: Catalog, model: Model, spec: TimelineSpec,
            max_bytes: int, assignment: dict[str, int], conn: Connection,
            inherited: list[Connection], parent_pid: int) -> None:
    """One worker's life, in the forked child: ingest, bounds, steps; then exit at once."""
    # The parent's ends of the pipes made so far came with the fork: while this process holds
    # its own pipe's other end, it never sees the parent close it (it would wait forever)
    for other in inherited:
        other.close()
    _die_with(parent_pid)
    code = 0
    try:
        acceptor = Acceptor(catalog, max_bytes)
        history = load_part(FileSource(path), acceptor, assignment, k)
        conn.send(("ingest", history.first_ts, history.last_ts, acceptor.stats))
        first_ts, last_ts = conn.recv()
        p = plan(first_ts, last_ts, catalog, model, spec)  # the parent checked it already
        if p is not None:
            own = {u for u, w in assignment.items() if w == k}
            chunk: list[tuple[int, Snapshot]] = []
            with paused_gc():
                for step in steps(p, history, model, own):
                    chunk.append(step)
                    if len(chunk) >= CHUNK:
                        conn.send(chunk)
                        chunk = []
            if chunk:
                conn.send(chunk)
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
        ctx = mp.get_context("fork")
        self.conns: list[Connection] = []
        self.procs = []
        for k in range(jobs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, daemon=True, args=(
                k, str(source.path), catalog, model, spec, max_bytes, self.assignment, child,
                [*self.conns, parent], os.getpid()))
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self._forked = time.perf_counter() - started
        self.stats = IngestStats()
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    def _recv(self, conn: Connection) -> Any:
        try:
            got = conn.recv()
        except EOFError:
            self.close()
            raise AuditError("a replay worker died (out of memory?)") from None
        if type(got) is tuple and got and got[0] == "error":
            self.close()
            raise AuditError(got[1])
        return got

    def ingest(self) -> IngestStats:
        """Wait for every worker's ingest; the summed statistics."""
        stats = self.stats
        started = time.perf_counter()
        firsts, lasts = [], []
        for conn in self.conns:
            _, first, last, part = self._recv(conn)
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
                conn.send((self.first_ts, self.last_ts))
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
