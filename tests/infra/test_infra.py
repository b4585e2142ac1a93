"""The local infrastructure really works: a real broker round-trips messages (also in
transactions), survives kill -9 with its data, and Redis comes back after a kill; the CLI
starts and stops both cleanly; failures to start are loud and carry the server's log."""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bando.infra import InfraError, KafkaBroker, RedisServer, create_topics
from bando.infra.kafka import new_cluster_id
from bando.infra.kafka_metadata import metadata_broker_count
from bando.settings import Settings


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _produce(bootstrap: str, topic: str, value: bytes, **kwargs: object) -> tuple[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True, **kwargs)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value, key=b"unit-1")
    finally:
        await producer.stop()
    return meta.partition, meta.offset


async def _consume_all(bootstrap: str, topic: str, expect: int, **kwargs: object) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                **kwargs)
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while len(values) < expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            values += [m.value for batch in batches.values() for m in batch]
    finally:
        await consumer.stop()
    return values


# -- pure helpers ------------------------------------------------------------------------

def test_cluster_id_is_a_kafka_uuid() -> None:
    cid = new_cluster_id()
    assert len(cid) == 22 and not cid.startswith("-")


def test_every_listener_binds_to_loopback(tmp_path: Path) -> None:
    broker = KafkaBroker(data_dir=tmp_path, port=19092)
    broker.controller_port = 19093
    config = dict(line.split("=", 1) for line in broker._render_config().splitlines()
                  if "=" in line and not line.startswith("#"))
    assert config["listeners"] == ("PLAINTEXT://127.0.0.1:19092,"
                                   "CONTROLLER://127.0.0.1:19093")
    assert config["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert config["num.partitions"] == "4"


def test_bootstrap_before_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InfraError):
        _ = KafkaBroker(data_dir=tmp_path).bootstrap
    with pytest.raises(InfraError):
        _ = RedisServer(data_dir=tmp_path).url


# -- the real broker ---------------------------------------------------------------------

@pytest.mark.integration
async def test_produce_consume_round_trip(kafka: KafkaBroker, unique: str) -> None:
    topic = f"roundtrip-{unique}"
    assert create_topics(kafka.bootstrap, [topic], partitions=2) == [topic]
    assert create_topics(kafka.bootstrap, [topic], partitions=2) == []  # idempotent
    partition, offset = await _produce(kafka.bootstrap, topic, b"hello")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap,
                                group_id=f"g-{unique}", auto_offset_reset="earliest")
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert (message.key, message.value) == (b"unit-1", b"hello")
    assert (message.partition, message.offset) == (partition, offset)


@pytest.mark.integration
async def test_transactions_hide_aborted_writes(kafka: KafkaBroker, unique: str) -> None:
    topic = f"tx-{unique}"
    create_topics(kafka.bootstrap, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap,
                                transactional_id=f"tx-{unique}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"after")
    finally:
        await producer.stop()
    values = await _consume_all(kafka.bootstrap, topic, expect=2,
                                isolation_level="read_committed")
    assert values == [b"committed", b"after"]


@pytest.mark.integration
async def test_project_topics_have_configured_partitions(kafka: KafkaBroker,
                                                         live_settings: Settings) -> None:
    from bando.infra import ensure_project_topics

    created = ensure_project_topics(kafka.bootstrap, live_settings)
    from bando.infra import project_topics

    assert live_settings.events_topic in created
    assert sorted(created) == sorted(project_topics(live_settings))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        topics = await admin.describe_topics([live_settings.events_topic])
    finally:
        await admin.close()
    assert len(topics[0]["partitions"]) == live_settings.partitions


@pytest.mark.integration
async def test_kill_and_restart_keeps_data(tmp_path: Path, unique: str) -> None:
    # A broker of its own: killing the session's broker would disturb other tests.
    broker = KafkaBroker(data_dir=tmp_path / "kafka", partitions=1)
    broker.start()
    try:
        bootstrap, topic = broker.bootstrap, f"durable-{unique}"
        create_topics(bootstrap, [topic], partitions=1)
        await _produce(bootstrap, topic, b"survivor")
        pid = broker.pid
        assert pid is not None
        broker.kill()
        assert not broker.running and _gone(pid)
        with pytest.raises(OSError):
            metadata_broker_count("127.0.0.1", int(bootstrap.rsplit(":", 1)[1]), timeout=1)
        broker.start()
        assert broker.bootstrap == bootstrap
        assert await _consume_all(bootstrap, topic, expect=1) == [b"survivor"]
        await _produce(bootstrap, topic, b"after-restart")
    finally:
        broker.stop()
    assert not broker.running


@pytest.mark.integration
def test_broker_start_failure_is_loud(tmp_path: Path) -> None:
    broker = KafkaBroker(data_dir=tmp_path, extra_config={"num.partitions": "many"})
    with pytest.raises(InfraError) as caught:
        broker.start(timeout=60)
    assert "num.partitions" in str(caught.value)
    assert not broker.running


# -- Redis -------------------------------------------------------------------------------

@pytest.mark.integration
def test_redis_fixture_set_get(redis_server: RedisServer, unique: str) -> None:
    client = redis_lib.Redis.from_url(redis_server.url)
    try:
        client.set(f"k-{unique}", "v")
        assert client.get(f"k-{unique}") == b"v"
    finally:
        client.close()


@pytest.mark.integration
def test_redis_kill_and_restart(tmp_path: Path, unique: str) -> None:
    with RedisServer(data_dir=tmp_path, appendonly=True) as server:
        assert isinstance(server, RedisServer)
        url, pid = server.url, server.pid
        assert pid is not None
        client = redis_lib.Redis.from_url(url)
        client.set(f"k-{unique}", "kept")
        client.close()
        server.kill()
        assert not server.running and _gone(pid)
        server.start()
        assert server.url == url
        client = redis_lib.Redis.from_url(url)
        try:
            assert client.get(f"k-{unique}") == b"kept"
        finally:
            client.close()
    assert not server.running


@pytest.mark.integration
def test_redis_start_failure_is_loud(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path, save="not a save rule")
    with pytest.raises(InfraError) as caught:
        server.start()
    assert "save" in str(caught.value).lower()


# -- bando infra up ----------------------------------------------------------------------

@pytest.mark.integration
def test_infra_up_prints_addresses_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bando.cli", "infra", "up", "--data-dir", str(tmp_path),
            "--kafka-port", "0", "--redis-port", "0", "--partitions", "2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDO_")}
    err_path = tmp_path / "up.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env)
    try:
        exports = _read_exports(proc, want=2, timeout=90, err_path=err_path)
        assert set(exports) == {"BANDO_KAFKA_BOOTSTRAP", "BANDO_REDIS_URL"}
        bootstrap = exports["BANDO_KAFKA_BOOTSTRAP"]
        assert bootstrap.startswith("127.0.0.1:")
        assert exports["BANDO_REDIS_URL"].startswith("redis://127.0.0.1:")
        # The project topics exist: creating them again creates nothing.
        assert create_topics(bootstrap, [Settings().events_topic], partitions=2) == []
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    kafka_host, kafka_port = bootstrap.rsplit(":", 1)
    with pytest.raises(OSError):
        metadata_broker_count(kafka_host, int(kafka_port), timeout=1)


def _read_exports(
    proc: subprocess.Popen[bytes], want: int, timeout: float, err_path: Path
) -> dict[str, str]:
    assert proc.stdout is not None
    exports: dict[str, str] = {}
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while len(exports) < want:
            if proc.poll() is not None or time.monotonic() > deadline:
                rc = proc.poll()
                proc.kill()
                proc.wait()
                pytest.fail(f"bando infra up gave {exports} (rc {rc}):\n"
                            f"{err_path.read_text(errors='replace')[-4000:]}")
            if not sel.select(timeout=0.5):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                key, _, value = line.decode().partition("=")
                exports[key] = value
    return exports
