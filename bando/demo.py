"""``bando demo``: the whole system on one machine, from nothing, with one command.

Starts a real Kafka broker (KRaft, jars from Maven Central) and redis-server on free loopback
ports, then the scorer worker, the board writer, the wall display, the notifier and the
simulator as child processes, and shows live score updates in the terminal. Ctrl-C stops
everything, children first, then Redis and the broker.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

from bando.settings import Settings

log = logging.getLogger(__name__)
COMMITMENTS = Path(__file__).resolve().parents[1] / "examples" / "commitments.json"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=".bando-data/demo", help="broker data, logs")
    parser.add_argument("--rate", type=float, default=300.0, help="events per wall second")
    parser.add_argument("--speed", type=float, default=300.0,
                        help="simulated seconds per wall second")
    parser.add_argument("--display-port", type=int, default=8080)
    parser.add_argument("--metrics-port", type=int, default=9464,
                        help="the worker's /metrics on 127.0.0.1 (0: off)")
    parser.add_argument("--no-display", action="store_true")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop by itself after this many seconds (0: run until Ctrl-C)")
    parser.add_argument("--fresh", action="store_true", help="wipe the data dir first")


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    for f in fields(settings):
        env["BANDO_" + f.name.upper()] = str(getattr(settings, f.name))
    return env


def run(args: argparse.Namespace) -> int:
    import shutil

    from bando.infra import KafkaBroker, RedisServer, ensure_project_topics
    from bando.infra.ports import pdeathsig_prefix

    data = Path(args.data_dir).resolve()
    if args.fresh and data.exists():
        shutil.rmtree(data)
    (data / "logs").mkdir(parents=True, exist_ok=True)
    broker = KafkaBroker(data_dir=data / "kafka", partitions=4)
    redis = RedisServer(data_dir=data / "redis")
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = {"now": False}

    def on_signal(signum: int, _frame: object) -> None:
        stopping["now"] = True

    # SIGHUP too: closing the terminal must stop the services, not orphan them on their ports
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        print("starting Kafka (first run downloads it with Maven) and Redis ...", flush=True)
        broker.start()
        if stopping["now"]:  # a Ctrl-C during the broker's start: stop before starting more
            return 0
        redis.start()
        settings = Settings.from_env(
            kafka_bootstrap=broker.bootstrap, redis_url=redis.url, partitions=4,
            display_port=args.display_port, metrics_port=args.metrics_port,
        )
        ensure_project_topics(settings.kafka_bootstrap, settings)
        env = _env(settings)
        commands = [
            ("worker", ["worker", "--log-level", "warning"]),
            ("notify", ["notify"]),
            ("signals", ["signals"]),
            # the simulator starts a working morning a week ago, fast-forwards at --speed,
            # then follows wall time (it never sends an event from the future)
            ("simulate", ["simulate", "live", "--rate", str(args.rate), "--speed",
                          str(args.speed)]),
        ]
        if not args.no_display:
            display = ["display", "--port", str(args.display_port)]
            if COMMITMENTS.is_file():
                display += ["--commitments", str(COMMITMENTS)]
            commands[1:1] = [("board", ["board"]), ("display", display)]
        for i, (name, argv) in enumerate(commands):
            child_env = dict(env)
            # each long-running service gets its own /metrics port (worker first)
            child_env["BANDO_METRICS_PORT"] = str(args.metrics_port + i if args.metrics_port else 0)
            out = open(data / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - child's stdout
            # killed with the demo even if it dies without its cleanup (SIGKILL)
            proc = subprocess.Popen([*pdeathsig_prefix(), sys.executable, "-m", "bando.cli",
                                     *argv], env=child_env,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            children.append((name, proc))
        print(f"Kafka {broker.bootstrap}  Redis {redis.url}  logs {data / 'logs'}")
        if not args.no_display:
            print(f"wall display: http://127.0.0.1:{args.display_port}/  "
                  f"(?group=district&window=month&lang=vi&rotate=20)")
        if args.metrics_port:
            ports = ", ".join(f"{name} {args.metrics_port + i}"
                              for i, (name, _) in enumerate(commands) if name != "simulate")
            print(f"metrics on http://127.0.0.1:PORT/metrics: {ports}")
        print("live score updates (Ctrl-C stops everything):", flush=True)
        watch = subprocess.Popen([*pdeathsig_prefix(), sys.executable, "-m", "bando.cli",
                                  "watch"], env=env,
                                 start_new_session=True)
        children.append(("watch", watch))
        deadline = time.monotonic() + args.duration if args.duration else None
        reported: set[str] = set()
        while not stopping["now"]:
            if deadline and time.monotonic() > deadline:
                break
            for name, proc in children:
                if proc.poll() is not None and name not in reported:
                    reported.add(name)
                    print(f"{name} exited with {proc.returncode}; see {data / 'logs'}",
                          file=sys.stderr)
                    if name in ("worker", "watch"):  # without these there is no demo
                        stopping["now"] = True
            time.sleep(0.5)
    finally:
        print("\nstopping ...", flush=True)
        for _, proc in reversed(children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in children:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        redis.stop()
        broker.stop()
        print("stopped.")
    return 0
