"""What a compiled core would buy the offline load: the fused functions of ``bando.fastload``
(and the load's line loop) compiled by Cython, against the interpreted code, same run.

Not part of Bando (see docs/PERFORMANCE.md, "Session 9"): the generated source is written to a
temporary directory, with its globals declared as module names, compiled by ``cythonize`` and
bound to the objects the interpreted factory uses. Every variant's table count and number of
events handed back to the slow path must equal the interpreted one's, or it stops.

    pip install cython
    python bench/compiled_fused.py --events /tmp/bando-bench/sim-1000000.jsonl --repeat 5

Stages (CPU seconds, best of the rounds, interleaved): ``decode`` (the decode-only ceiling of
bench/offline_throughput.py), ``interpreted`` (what ``bando.batch.load`` runs), ``fused`` (the
fused functions compiled), ``fused+loop`` (the line loop compiled too). The loop is
``bando.batch.load``'s fast part; lines it hands back are only counted, in every variant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from offline_throughput import best_of, decode_only  # noqa: E402
from report import emit  # noqa: E402

import bando.fastload as fastload  # noqa: E402
from bando.batch import READ_BUFFER, TYPICAL_LINE, _cyclic_gc_paused, body_at  # noqa: E402
from scoring.catalog import load_catalog  # noqa: E402
from scoring.dedup import FirstSeen  # noqa: E402
from scoring.facts import UnitState  # noqa: E402

LOOP = '''\
def run_loop(fh, functions, limit, loads, not_json, slow):
    offset = 0
    number = 0
    for line in fh:
        number += 1
        start = offset
        size = len(line)
        offset += size
        if size <= limit:
            try:
                event = functions[(body := loads(line))["type"]](body, start)
            except (not_json, KeyError, TypeError):
                event = None
            else:
                if event is True:
                    continue
        else:
            event = None
        slow(number, line, start, event)
'''


def compile_variants(workdir: Path) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(compiled factory, compiled loop), built in ``workdir``."""
    source = fastload.FUSED_SOURCE
    interpreted = fastload._FACTORY_FN
    names = sorted(set(re.findall(r"\b[A-Za-z_]\w*\b", source)) & set(interpreted.__globals__)
                   - {"factory"})
    header = "".join(f"{name} = None\n" for name in names)  # Cython wants globals declared
    (workdir / "bench_fused.py").write_text(header + "\n" + source, encoding="utf-8")
    (workdir / "bench_loop.py").write_text(LOOP, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-3", "-q",
                    "bench_fused.py", "bench_loop.py"], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL)
    sys.path.insert(0, str(workdir))
    fused = importlib.import_module("bench_fused")
    for name in names:
        setattr(fused, name, interpreted.__globals__[name])
    return fused.factory, importlib.import_module("bench_loop").run_loop


def interpreted_loop(fh: Any, functions: Any, limit: int, loads: Any, not_json: Any,
                     slow: Callable[..., None]) -> None:
    exec_namespace: dict[str, Any] = {}
    exec(LOOP, exec_namespace)  # noqa: S102 - the very text the compiled variant is built from
    exec_namespace["run_loop"](fh, functions, limit, loads, not_json, slow)


def run(path: Path, factory: Callable[..., Any], loop: Callable[..., None]) -> tuple[int, int]:
    """(ids in the table, lines handed back), the fast part of one load."""
    catalog = load_catalog(None)
    states = {unit.unit_id: UnitState() for unit in catalog.units}
    saved, fastload._FACTORY_FN = fastload._FACTORY_FN, factory
    try:
        with open(path, "rb", buffering=READ_BUFFER) as fh, open(path, "rb") as again, \
                _cyclic_gc_paused():
            table = FirstSeen(partial(body_at, again), os.fstat(fh.fileno()).st_size
                              // TYPICAL_LINE)
            fused = fastload.FusedLoad({u: s.dossiers for u, s in states.items()}, table)
            handed_back = []
            loop(fh, fused.functions, 1 << 20, orjson.loads, orjson.JSONDecodeError,
                 lambda number, *_: handed_back.append(number))
            return fused.count(), len(handed_back)
    finally:
        fastload._FACTORY_FN = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=Path, required=True, help="a JSON-lines event file")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the summary here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bando-cython-") as tmp:
        factory, loop = compile_variants(Path(tmp))
        plain = fastload._FACTORY_FN
        stages = {"decode": lambda: decode_only(args.events),
                  "interpreted": lambda: run(args.events, plain, interpreted_loop),
                  "fused": lambda: run(args.events, factory, interpreted_loop),
                  "fused+loop": lambda: run(args.events, factory, loop)}
        reference = run(args.events, plain, interpreted_loop)
        for name in ("fused", "fused+loop"):
            if (got := stages[name]()) != reference:
                raise SystemExit(f"{name}: {got} != interpreted {reference}")
        best = best_of(stages, args.repeat)
    n = decode_only(args.events)
    decode_cpu = best["decode"][0]
    emit({"file": str(args.events), "events": n, "table_ids": reference[0],
          "handed_back": reference[1],
          **{name: {"cpu_s": round(cpu, 3), "events_per_s": round(n / cpu),
                    "of_decode": round(decode_cpu / cpu, 3)}
             for name, (cpu, _wall) in best.items()}}, args.json)


if __name__ == "__main__":
    main()
