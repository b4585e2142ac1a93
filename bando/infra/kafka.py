"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) as a child JVM.

Why a real broker and not a fake: the scorer's guarantees (exactly-once transactions,
consumer-group rebalances, offsets used by audits) are Kafka's, so tests must run against
Kafka itself. The jars come from Maven Central (``bando.infra.kafka_jars``).

The JVM is kept small (512 MB heap, serial GC, few threads) because machines have 2 cores
and the broker shares them with the scorer and the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bando.infra.exceptions import InfraError
from bando.infra.kafka_jars import DEFAULT_KAFKA_VERSION, DEPLOY_DIR, ensure_kafka_jars, find_java
from bando.infra.kafka_metadata import metadata_broker_count
from bando.infra.ports import LOOPBACK, ServerProcess, free_port, port_is_free

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Error codes of the Kafka protocol that create_topics() expects.
_TOPIC_ALREADY_EXISTS = 36
_TOPIC_AUTHORIZATION_FAILED = 29


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # would read as an option on a command line
            return cid


class KafkaBroker(ServerProcess):
    """One Kafka broker+controller on loopback, with its data in ``data_dir``.

    ``start()`` blocks until the broker serves metadata. ``kill()`` then ``start()``
    restarts it on the same ports with the same data, as a crashed broker would come back.

    Hooks for clusters and secured brokers (``bando.infra.cluster``, ``bando.infra.security``);
    the defaults give the single PLAINTEXT node above:

    * ``node_id``, ``controller_port``, ``quorum_voters`` and ``cluster_id``: one node of a
      multi-node KRaft quorum (every node formatted with the same cluster id, the voters
      naming every node's controller port, fixed before the first start);
    * ``client_protocol`` and ``controller_protocol``: the security protocols of the client
      (and inter-broker) listener and of the controller listener, e.g. ``SASL_PLAINTEXT``,
      whose SASL settings come in ``extra_config``;
    * ``format_args``: extra ``kafka-storage format`` arguments (``--add-scram`` bootstraps
      SCRAM users before the first start);
    * ``probe``: the readiness check, for listeners that do not answer an unauthenticated
      Metadata request.
    """

    name = "kafka"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        partitions: int = 4,
        host: str = LOOPBACK,
        kafka_version: str = DEFAULT_KAFKA_VERSION,
        extra_config: Mapping[str, Any] | None = None,
        port: int | None = None,
        heap: str | None = None,
        *,
        node_id: int = 1,
        controller_port: int | None = None,
        quorum_voters: str | None = None,
        cluster_id: str | None = None,
        client_protocol: str = "PLAINTEXT",
        controller_protocol: str = "PLAINTEXT",
        format_args: Sequence[str] = (),
        probe: Callable[[KafkaBroker], bool] | None = None,
    ) -> None:
        super().__init__(data_dir, host)
        self.partitions = partitions
        self.kafka_version = kafka_version
        self.extra_config = dict(extra_config or {})
        self.port: int | None = port or None
        self.controller_port: int | None = controller_port or None
        self.heap = heap or os.environ.get("BANDO_KAFKA_HEAP", "512m")
        self.node_id = node_id
        self.quorum_voters = quorum_voters
        self.cluster_id = cluster_id
        self.client_protocol = client_protocol
        self.controller_protocol = controller_protocol
        self.format_args = list(format_args)
        self.probe = probe
        self._ports_file = self.data_dir / "ports.json"
        self._fixed_port = bool(port)

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients; known once the broker has been started."""
        if self.port is None:
            raise InfraError("KafkaBroker.bootstrap is unknown before start()")
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        if self.running:
            return
        lib = ensure_kafka_jars(self.kafka_version)
        java = find_java()
        # Ports picked by us can be taken by another process before the JVM binds them;
        # a fresh pair is tried then, but never once clients know the address.
        first_start = self.controller_port is None
        for attempt in range(3):
            self._choose_ports()
            try:
                self._start_once(java, lib, timeout)
                return
            except InfraError as exc:
                retry = (first_start and not self._fixed_port and attempt < 2
                         and "Address already in use" in exc.log_tail)
                if not retry:
                    raise
                log.warning("kafka ports taken meanwhile; picking new ones")
                self.port = self.controller_port = None
                self._ports_file.unlink(missing_ok=True)

    def _start_once(self, java: str, lib: Path, timeout: float) -> None:
        props = self.data_dir / "server.properties"
        # Owner-only: a secured broker's file holds its own SASL credentials.
        props.touch(mode=0o600)
        props.chmod(0o600)
        props.write_text(self._render_config())
        # C1-only JIT: measured to halve the CPU a start costs (2.4 s instead of 4.3 s of
        # CPU) on our 2 cores, and a local broker is I/O-bound. BANDO_KAFKA_JVM_OPTS comes
        # last, so "-XX:TieredStopAtLevel=4" there brings C2 back.
        jvm = [java, f"-Xmx{self.heap}", "-Xms64m", "-XX:+UseSerialGC",
               "-XX:TieredStopAtLevel=1", "-XX:+ExitOnOutOfMemoryError",
               "-Djava.awt.headless=true",
               *self._log4j_options(),
               *shlex.split(os.environ.get("BANDO_KAFKA_JVM_OPTS", "")),
               "-cp", str(lib / "*")]
        if not (self.data_dir / "logs" / "meta.properties").exists():
            self._format(jvm, props)
        self._spawn([*jvm, "kafka.Kafka", str(props)])
        assert self.port is not None
        port, probe = self.port, self.probe

        def ready() -> bool:
            if probe is not None:
                return probe(self)
            return metadata_broker_count(self.host, port) > 0

        self._wait_ready(ready, timeout, f"Kafka broker {self.bootstrap}")

    def _choose_ports(self) -> None:
        if self.port is not None and self.controller_port is not None:
            return
        saved: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads(self._ports_file.read_text())
        if self.port is None:
            remembered = saved.get("broker")
            self.port = (remembered if remembered and port_is_free(remembered, self.host)
                         else free_port(self.host))
        if self.controller_port is None:
            remembered = saved.get("controller")
            self.controller_port = (
                remembered if remembered and remembered != self.port
                and port_is_free(remembered, self.host) else free_port(self.host))
            while self.controller_port == self.port:
                self.controller_port = free_port(self.host)
        self._ports_file.write_text(
            json.dumps({"broker": self.port, "controller": self.controller_port}) + "\n")

    def _render_config(self) -> str:
        h, bport, cport = self.host, self.port, self.controller_port
        client = self.client_protocol
        config: dict[str, Any] = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": self.quorum_voters or f"{self.node_id}@{h}:{cport}",
            "listeners": f"{client}://{h}:{bport},CONTROLLER://{h}:{cport}",
            "advertised.listeners": f"{client}://{h}:{bport}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map":
                f"CONTROLLER:{self.controller_protocol},{client}:{client}",
            "inter.broker.listener.name": client,
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": self.partitions,
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            # The project creates its topics explicitly; auto-creation stays on for tools.
            "auto.create.topics.enable": True,
            "offsets.topic.replication.factor": 1,
            # 50 partitions (the default) make the first consumer group slow to start.
            "offsets.topic.num.partitions": 8,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 8,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            # After a kill the controller refuses the restarted broker until the old
            # registration's session expires (default 9 s): shorter, for fast fault tests.
            "broker.session.timeout.ms": 4000,
            "broker.heartbeat.interval.ms": 1000,
            # Sized for 2 cores: the defaults (3 network, 8 I/O, 10 background threads,
            # a 128 MB cleaner buffer) are for dedicated servers.
            "num.network.threads": 2,
            "num.io.threads": 4,
            "background.threads": 4,
            "num.recovery.threads.per.data.dir": 2,
            "log.cleaner.threads": 1,
            "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
        }
        config.update(self.extra_config)
        lines = ["# written by bando.infra.kafka on each start; edit extra_config instead"]
        for key, value in config.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            lines.append(f"{key}={text}")
        return "\n".join(lines) + "\n"

    def _log4j_options(self) -> list[str]:
        config = Path(os.environ.get("BANDO_KAFKA_LOG4J", DEPLOY_DIR / "log4j2.yaml"))
        if not config.exists():
            return []
        level = os.environ.get("BANDO_KAFKA_LOG_LEVEL", "INFO")
        return [f"-Dlog4j2.configurationFile={config}", f"-Dbando.kafka.loglevel={level}"]

    def _format(self, jvm: list[str], props: Path) -> None:
        cid = self.cluster_id or new_cluster_id()
        args = ["kafka.tools.StorageTool", "format", "-t", cid, "-c", str(props),
                *self.format_args]
        log.debug("formatting Kafka storage in %s (cluster %s)", self.data_dir, cid)
        # The tool's arguments go through a private argument file (``java @file``), not the
        # command line: ``--add-scram`` carries the admin's password, and a command line is
        # readable by every local user (ps, /proc) while the JVM starts and formats.
        fd, argfile = tempfile.mkstemp(prefix="bando-format-", suffix=".args")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write("\n".join(_argfile_quote(a) for a in args) + "\n")
            done = subprocess.run([*jvm, f"@{argfile}"], capture_output=True, text=True,
                                  check=False, timeout=120)
        finally:
            os.unlink(argfile)
        with open(self.log_path, "a", encoding="utf-8") as out:
            out.write(done.stdout + done.stderr)
        if done.returncode != 0:
            raise InfraError(f"formatting Kafka storage in {self.data_dir} failed",
                             (done.stdout + done.stderr)[-4000:])


def _argfile_quote(arg: str) -> str:
    """One argument of a ``java @file``: quoted, with the escapes the launcher reads there."""
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"),
                         ("\t", "\\t"), ("\f", "\\f")):
        arg = arg.replace(raw, escaped)
    return f'"{arg}"'


# -- topics ------------------------------------------------------------------------------

async def create_topics_async(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create topics that do not exist yet; return the names actually created.

    Waits until every partition of every named topic has a leader, so a producer can use
    them at once. ``security``: aiokafka connection options for a secured broker
    (``bando.kafka_auth.client_kwargs``).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                request_timeout_ms=int(timeout * 1000), **dict(security or {}))
    await admin.start()
    try:
        new = [NewTopic(name, partitions, replication, topic_configs=dict(config or {}))
               for name in wanted]
        response = await admin.create_topics(new, timeout_ms=int(timeout * 1000))
        created: list[str] = []
        refused: list[str] = []
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            if code == 0:
                created.append(name)
            elif code == _TOPIC_AUTHORIZATION_FAILED:
                refused.append(name)  # fine on a secured cluster if the operator made it
            elif code != _TOPIC_ALREADY_EXISTS:
                detail = entry[2] if len(entry) > 2 else ""
                raise InfraError(f"creating topic {name!r} failed: error {code} {detail}")
        if refused:
            existing = {t["topic"] for t in await admin.describe_topics(refused)
                        if t["error_code"] == 0}
            missing = sorted(set(refused) - existing)
            if missing:
                raise InfraError(f"not allowed to create topics {missing} and they do not "
                                 "exist: ask the cluster's operator to create them")
        await _wait_for_leaders(admin, wanted, timeout)
        return created
    finally:
        await admin.close()


async def _wait_for_leaders(admin: Any, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        topics = await admin.describe_topics(names)
        ready = {t["topic"] for t in topics
                 if t["error_code"] == 0 and t["partitions"]
                 and all(p["leader"] >= 0 for p in t["partitions"])}
        if ready >= set(names):
            return
        if time.monotonic() > deadline:
            raise InfraError(f"topics without leaders after {timeout:.0f}s: "
                             f"{sorted(set(names) - ready)}")
        await asyncio.sleep(0.1)


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Synchronous :func:`create_topics_async`; also callable from inside an event loop."""
    return _run_sync(create_topics_async(bootstrap, list(names), partitions, replication,
                                         config, timeout, security))


def _run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # A loop is running in this thread (an async test): run ours in a helper thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def main(argv: list[str] | None = None) -> int:
    """``python -m bando.infra.kafka --fetch``: download the broker's jars (setup scripts)."""
    parser = argparse.ArgumentParser(prog="python -m bando.infra.kafka")
    parser.add_argument("--fetch", action="store_true", help="download the jars if missing")
    parser.add_argument("--version", default=DEFAULT_KAFKA_VERSION)
    args = parser.parse_args(argv)
    if not args.fetch:
        parser.print_help()
        return 2
    try:
        print(ensure_kafka_jars(args.version))
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
