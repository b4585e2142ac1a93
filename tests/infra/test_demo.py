"""``bando demo``, the README's main job, end to end: from its own broker and Redis to score
updates in the terminal and a wall page that answers; closing its terminal (SIGHUP) stops
every process it started."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(420)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> set[int]:
    """Every live process under ``pid`` (its services run in their own sessions)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = {p for p, pp in parents.items() if pp == parent}
        todo += children - found
        found |= children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_demo_shows_scores_and_stops_everything_on_sighup(tmp_path: Path) -> None:
    display = _free_port()
    argv = [sys.executable, "-m", "bando.cli", "demo", "--data-dir", str(tmp_path / "demo"),
            "--display-port", str(display), "--metrics-port", "0", "--rate", "200"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    assert proc.stdout is not None
    lines: list[str] = []
    started: set[int] = set()
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 240
        # a score update from `bando watch`: "<as_of>  month:YYYY-MM ..."
        while not any(" month:" in line for line in lines):
            assert time.monotonic() < deadline, "no score update in time:\n" + "".join(lines)
            assert proc.poll() is None, "the demo stopped:\n" + "".join(lines)
            if selector.select(timeout=1):
                lines.append(proc.stdout.readline().decode(errors="replace"))
        with urllib.request.urlopen(f"http://127.0.0.1:{display}/", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        started = _descendants(proc.pid)
        assert len(started) >= 8, started  # broker, Redis, 6 services, watch
        proc.send_signal(signal.SIGHUP)  # the terminal closed
        assert proc.wait(90) == 0
        deadline = time.monotonic() + 20
        while (left := {p for p in started if _alive(p)}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"left running after the demo stopped: {left}"
        with socket.socket() as s:  # the wall's port is free again (as a server binds it)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", display))
            s.listen()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in started:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
