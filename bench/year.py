"""A year of HCMC, end to end: ``bando score`` and ``bando replay`` over a simulated year of
history (issue 7: ~90M events, ~18M dossiers; "a year replays in under 8 minutes"), each as
the user runs it, in its own process, against a decode-only pass over the same file.

    python bench/year.py                          # 90M events (simulated once, ~24 GB)
    python bench/year.py --events 10000000        # a smaller file
    python bench/year.py --file FILE.jsonl        # an existing file
    python bench/year.py --skip decode,change     # fewer stages

Stages (wall and CPU seconds, peak RSS of the process, events/s of CPU):
  decode   the ceiling, in this process: read each line and ``orjson.loads`` it
  score    ``bando score --window month`` at the last event's day (load + score + JSON out)
  day      ``bando replay --every day --window month``: every unit at each day's end (CSV)
  day2     ``day`` with ``--jobs 2``: the units split between two processes (peak RSS: the
           largest process; ``tree MB``: all of them together, their shared memory files
           counted once, sampled each half second)
  change   ``bando replay --every change --window month --unit UNIT`` (its peer group scored
           at every instant of any peer)
The file is written by ``bando simulate file`` (``offline_throughput.simulate``) into
``--data-dir`` and reused. Needs ~20 GB of RAM for 90M events (``score``: ~17 GB).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from offline_throughput import decode_only, simulate  # noqa: E402 - this folder
from report import emit  # noqa: E402

STAGES = ("decode", "score", "day", "day2", "change")


def tree_rss_kb(pid: int) -> int:
    """The resident memory of a process and its descendants, shared memory files left out
    (0 once it is gone): ``--jobs 2`` maps both workers' dumped tables into each worker."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            total += sum(int(line.split()[1]) for line in fh
                         if line.startswith(("RssAnon:", "RssFile:")))
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            total += sum(tree_rss_kb(int(c)) for c in fh.read().split())
    except (OSError, ValueError):
        pass
    return total


def shmem_kb() -> int:
    """The system's shared memory in use (memory files count once here)."""
    with open("/proc/meminfo") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Shmem:"))


def run(cmd: list[str]) -> dict[str, Any]:
    """One command to completion: its own wall, CPU and peak RSS (``wait4``'s usage: the
    largest of its processes), and the peak of all its processes together (sampled)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    peak = [0]
    shared = shmem_kb()

    def sample() -> None:
        while proc.returncode is None:
            peak[0] = max(peak[0], tree_rss_kb(proc.pid) + shmem_kb() - shared)
            time.sleep(0.5)

    threading.Thread(target=sample, daemon=True).start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}")
    return {"wall_s": time.perf_counter() - started, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024, "peak_tree_mb": peak[0] / 1024,
            "command": " ".join(["bando", *cmd[3:]])}


def last_day(path: Path) -> str:
    """The date of the file's last line (the simulator writes in time order)."""
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - 4096))
        tail = fh.read().splitlines()[-1]
    stamp = tail.split(b'"occurred_at":"', 1)[1][:10].decode()
    return f"{stamp}T23:59:59+07:00"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=90_000_000, help="lines to simulate")
    ap.add_argument("--file", type=Path, help="use this file instead")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp"))
                    / "bando-bench")
    ap.add_argument("--unit", default="district-tan-binh", help="the change timeline's unit")
    ap.add_argument("--skip", default="", help=f"comma-separated stages of {','.join(STAGES)}")
    ap.add_argument("--json", help="also write the summary here")
    args = ap.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    path = args.file or args.data_dir / f"sim-{args.events}.jsonl"
    if not path.exists():
        args.data_dir.mkdir(parents=True, exist_ok=True)
        print(f"simulating {args.events:,} events into {path} ...", file=sys.stderr, flush=True)
        simulate(path, args.events)
    as_of = last_day(path)
    py = [sys.executable, "-m", "bando.cli"]
    commands = {
        "score": [*py, "score", "--events", str(path), "--as-of", as_of, "--window", "month"],
        "day": [*py, "replay", "--events", str(path), "--window", "month", "--every", "day",
                "--format", "csv"],
        "day2": [*py, "replay", "--events", str(path), "--window", "month", "--every", "day",
                 "--format", "csv", "--jobs", "2"],
        "change": [*py, "replay", "--events", str(path), "--window", "month", "--unit",
                   args.unit, "--format", "csv"],
    }
    rows: dict[str, Any] = {"file": str(path), "bytes": path.stat().st_size, "as_of": as_of}
    n = None
    if "decode" not in skip:
        c0, w0 = time.process_time(), time.perf_counter()
        n = decode_only(path)
        rows["decode"] = {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0,
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                          / 1024}
    for stage, cmd in commands.items():
        if stage not in skip:
            print(f"{stage}: {' '.join(cmd[3:])}", file=sys.stderr, flush=True)
            rows[stage] = run(cmd)
    if n is None:
        with open(path, "rb") as fh:
            n = sum(1 for line in fh if line.strip())
    rows["events"] = n
    print(f"\n{path}: {n:,} events, {rows['bytes'] / 1e9:.1f} GB")
    print(f"  {'stage':7} {'wall s':>8} {'CPU s':>8} {'events/s CPU':>13} {'/ decode':>9} "
          f"{'peak RSS MB':>12} {'tree MB':>8}")
    decode_rate = n / rows["decode"]["cpu_s"] if "decode" in rows else None
    for stage in STAGES:
        if stage in rows:
            r = rows[stage]
            r["events_per_s"] = n / r["cpu_s"]
            if decode_rate:
                r["ratio_to_decode"] = r["events_per_s"] / decode_rate
            ratio = f"{r['ratio_to_decode']:.2f}" if "ratio_to_decode" in r else "-"
            print(f"  {stage:7} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} {r['events_per_s']:>13,.0f}"
                  f" {ratio:>9} {r['peak_rss_mb']:>12,.0f} {r.get('peak_tree_mb', 0):>8,.0f}")
    emit([rows], args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
