"""A local multi-node Kafka cluster (KRaft, every node broker+controller) for fault tests.

Why: a city deployment runs three brokers with replication factor 3, and what must be proved
is that losing one of them loses no event and stalls the pipeline only briefly. A single
broker cannot show that (killing it *is* an outage), so tests and ``bench/soak.py`` build a
real three-node quorum from the same ``KafkaBroker`` processes as everything else, on
loopback ports fixed before the first start (each node's ``controller.quorum.voters`` names
every controller, and all are formatted with one cluster id).

Replication is set for the cluster size: topics default to ``replication`` copies with
``min.insync.replicas`` = ``min_insync`` (2 of 3: one node may be down and ``acks=all``
producers still write), and so do the consumer-offsets and transaction-state topics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bando.infra.exceptions import InfraError
from bando.infra.kafka import KafkaBroker, new_cluster_id
from bando.infra.kafka_metadata import metadata_broker_ids
from bando.infra.ports import LOOPBACK, free_port

log = logging.getLogger(__name__)


def _port_open(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1.0):
        return True


class KafkaCluster:
    """``nodes`` Kafka processes forming one KRaft cluster on loopback.

    ``start()`` blocks until every node serves metadata listing all nodes. ``node(i)`` is
    the ``KafkaBroker`` of node id ``i`` (1-based): ``kill()`` it, then ``start_node(i)``
    brings it back with its data on the same ports. ``bootstrap`` names every node, so a
    client survives the loss of any one.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        nodes: int = 3,
        partitions: int = 4,
        replication: int | None = None,
        min_insync: int | None = None,
        host: str = LOOPBACK,
        heap: str | None = None,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.host = host
        self.replication = replication or min(nodes, 3)
        self.min_insync = min_insync or max(1, self.replication - 1)
        self.cluster_id = new_cluster_id()
        self._tmp = None
        if data_dir is None:
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="bando-cluster-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports = self._ports(nodes)
        voters = ",".join(f"{i}@{host}:{ports[i][1]}" for i in sorted(ports))
        config: dict[str, Any] = {
            "default.replication.factor": self.replication,
            "min.insync.replicas": self.min_insync,
            "offsets.topic.replication.factor": self.replication,
            "transaction.state.log.replication.factor": self.replication,
            "transaction.state.log.min.isr": self.min_insync,
            "share.coordinator.state.topic.replication.factor": self.replication,
            "share.coordinator.state.topic.min.isr": self.min_insync,
            # A follower that stops fetching leaves the ISR after this long (default 30 s);
            # a killed node is fenced sooner (broker.session.timeout.ms, 4 s) anyway.
            "replica.lag.time.max.ms": 10000,
            # Leaders move back to the preferred node once it returns: a fair spread again.
            "leader.imbalance.check.interval.seconds": 15,
        }
        config.update(extra_config or {})
        self.brokers: dict[int, KafkaBroker] = {}
        for node_id, (bport, cport) in ports.items():
            self.brokers[node_id] = KafkaBroker(
                data_dir=self.data_dir / f"node-{node_id}", partitions=partitions, host=host,
                extra_config=config, port=bport, heap=heap or os.environ.get(
                    "BANDO_KAFKA_CLUSTER_HEAP", "384m"),
                node_id=node_id, controller_port=cport, quorum_voters=voters,
                cluster_id=self.cluster_id, probe=self._node_ready)
        self._forming = False

    def _ports(self, nodes: int) -> dict[int, tuple[int, int]]:
        """(broker, controller) port per node: remembered in the data dir, else fresh ones."""
        saved = self.data_dir / "ports.txt"
        if saved.exists():
            out = {}
            for line in saved.read_text().split():
                node, bport, cport = (int(x) for x in line.split(":"))
                out[node] = (bport, cport)
            if len(out) == nodes:
                return out
        taken: set[int] = set()
        out = {}
        for node_id in range(1, nodes + 1):
            pair: list[int] = []
            while len(pair) < 2:
                port = free_port(self.host)
                if port not in taken:
                    taken.add(port)
                    pair.append(port)
            out[node_id] = (pair[0], pair[1])
        saved.write_text(" ".join(f"{n}:{b}:{c}" for n, (b, c) in out.items()) + "\n")
        return out

    # -- readiness ------------------------------------------------------------------------
    def _node_ready(self, broker: KafkaBroker) -> bool:
        # While the quorum forms, a node cannot serve metadata until a majority of
        # controllers runs, so starting them one by one waits only for the controller port.
        if self._forming:
            assert broker.controller_port is not None
            return _port_open(self.host, broker.controller_port)
        assert broker.port is not None
        return broker.node_id in metadata_broker_ids(self.host, broker.port)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{b.port}" for b in self.brokers.values())

    def node(self, node_id: int) -> KafkaBroker:
        return self.brokers[node_id]

    def alive(self) -> list[int]:
        return [i for i, b in self.brokers.items() if b.running]

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> None:
        """Start every node, then wait until each one lists all of them."""
        started = time.monotonic()
        self._forming = True
        try:
            for b in self.brokers.values():
                b.start(timeout=timeout)
        finally:
            self._forming = False
        self.wait_members(set(self.brokers), timeout - (time.monotonic() - started))
        log.info("Kafka cluster of %d nodes ready in %.1fs: %s", len(self.brokers),
                 time.monotonic() - started, self.bootstrap)

    def start_node(self, node_id: int, timeout: float = 90.0) -> float:
        """Restart one node (with its data); returns the seconds it took to be ready."""
        t0 = time.monotonic()
        self.brokers[node_id].start(timeout=timeout)
        return time.monotonic() - t0

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node, as a crashed machine."""
        self.brokers[node_id].kill()

    def wait_members(self, expected: set[int], timeout: float = 60.0) -> None:
        """Wait until every running node's metadata lists exactly ``expected`` brokers."""
        deadline = time.monotonic() + max(timeout, 1.0)
        seen: dict[int, set[int]] = {}
        while True:
            seen = {}
            for i, b in self.brokers.items():
                if not b.running:
                    continue
                assert b.port is not None
                try:
                    seen[i] = metadata_broker_ids(self.host, b.port)
                except OSError:
                    seen[i] = set()
            if seen and all(ids == expected for ids in seen.values()):
                return
            if time.monotonic() > deadline:
                raise InfraError(f"cluster members not {sorted(expected)} after "
                                 f"{timeout:.0f}s: {seen}")
            time.sleep(0.3)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop every node at once: one by one, the last would wait for a lost quorum."""
        threads = [threading.Thread(target=b.stop, args=(timeout,), daemon=True)
                   for b in self.brokers.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def kill(self) -> None:
        for b in self.brokers.values():
            b.kill()

    def cleanup(self) -> None:
        self.kill()
        for b in self.brokers.values():
            b.cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()

    # -- inspection -----------------------------------------------------------------------
    def partition_state(self, topics: Iterable[str]) -> dict[tuple[str, int], dict[str, Any]]:
        """(topic, partition) -> {"leader", "replicas", "isr"} from a live node."""
        return asyncio.run(self._partition_state(list(topics)))

    async def _partition_state(self, topics: list[str]) -> dict[tuple[str, int], dict[str, Any]]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
        await admin.start()
        try:
            out: dict[tuple[str, int], dict[str, Any]] = {}
            for t in await admin.describe_topics(topics):
                for p in t.get("partitions", []):
                    out[(t["topic"], p["partition"])] = {
                        "leader": p["leader"], "replicas": list(p["replicas"]),
                        "isr": list(p["isr"])}
            return out
        finally:
            await admin.close()

    def wait_in_sync(self, topics: Iterable[str], timeout: float = 90.0) -> None:
        """Wait until every partition of ``topics`` has all its replicas in sync again."""
        names = list(topics)
        deadline = time.monotonic() + timeout
        state: dict[tuple[str, int], dict[str, Any]] = {}
        while True:
            try:
                state = self.partition_state(names)
            except Exception as exc:  # noqa: BLE001 - a node may still be coming back
                log.debug("describe failed: %r", exc)
            else:
                if state and all(set(s["isr"]) == set(s["replicas"]) and s["leader"] >= 0
                                 for s in state.values()):
                    return
            if time.monotonic() > deadline:
                lagging = {k: v for k, v in state.items() if set(v["isr"]) != set(v["replicas"])}
                raise InfraError(f"replicas not in sync after {timeout:.0f}s: {lagging}")
            time.sleep(0.5)
