"""Fault test 6: a bounded soak with faults on a schedule (``bench/soak.py``, short version).

Two minutes at 100 messages/s with a fault every 25 s (worker SIGKILL, Redis SIGKILL, broker
SIGKILL; none in the last 25 s, so each has time to show its recovery): memory stays flat,
every fault is recovered from, the lag returns to zero and the final scores and board equal
``bando score``. The long run is the same script::

    python bench/soak.py                    # 10 minutes, a fault every 40 s
    python bench/soak.py --duration 3600    # an hour
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fault_support import REPO

pytestmark = pytest.mark.integration

DURATION = 120


@pytest.mark.timeout(DURATION + 240)
def test_soak_with_scheduled_faults(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    argv = [sys.executable, str(REPO / "bench" / "soak.py"), "--duration", str(DURATION),
            "--fault-every", "25", "--rate", "100", "--json", str(report_path),
            "--data-dir", str(tmp_path / "soak")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=DURATION + 200)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the script stops its servers on SIGTERM
        out, _ = proc.communicate(timeout=60)
        raise AssertionError(f"soak did not finish:\n{out.decode()[-4000:]}") from None
    text = out.decode(errors="replace")
    assert report_path.exists(), text[-4000:]
    report = json.loads(report_path.read_text())
    summary = {k: v for k, v in report.items() if k != "samples"}
    assert proc.returncode == 0 and report["ok"], json.dumps(summary, indent=1)
    assert report["scores_equal"] and report["board_equal"]
    kinds = [f["kind"] for f in report["faults"]]
    assert set(kinds) == {"worker", "redis", "broker"}, kinds
    assert all(f["recovered_s"] is not None for f in report["faults"])
    assert report["lag_zero_after_s"] is not None
    assert report["worker_starts"] == 1 + kinds.count("worker")
    print(f"\n[soak] {report['messages']} messages in {DURATION} s; recoveries "
          f"{[(f['kind'], f['recovered_s']) for f in report['faults']]}; lag zero "
          f"{report['lag_zero_after_s']} s after the input stopped; worker max RSS "
          f"{report['worker_max_rss_mb']} MB; board writer grew "
          f"{report['board_rss_growth_mb']} MB")
