"""Kafka with SASL/SCRAM and ACLs, on a real secured broker (``bando.infra.security``).

One broker for the module: client listener SASL_PLAINTEXT with SCRAM-SHA-256, controller
listener SASL/PLAIN, ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``,
one principal per service with the ACLs of ``bando_acls`` (as deploy/SCALE-OUT.md lists them).
"""

from __future__ import annotations

import asyncio
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from fault_support import (
    EXAMPLE,
    REPO,
    Service,
    TopicTail,
    example_messages,
    listening_sockets,
    produce,
    read_topic,
    scenario,
    scores_equal,
    services,
    wait_until,
    worker,
)

from audit.exceptions import AuditError
from bando import kafka_auth
from bando.infra import KafkaBroker, create_topics
from bando.infra.cli import project_topics
from bando.infra.passwords import new_password
from bando.infra.security import (
    Principals,
    ScramUser,
    admin_kwargs,
    bando_acls,
    secure_broker,
    secure_kafka_setup,
)
from bando.settings import Settings

pytestmark = pytest.mark.integration

ALERTS_DLQ, NOTIFIER_GROUP = "alerts-dlq", "bando-notifier"
SIGNALS, SIGNALS_GROUP = "signals", "bando-signals"


@dataclass
class Secured:
    broker: KafkaBroker
    settings: Settings  # no credentials: each service adds its own
    admin: ScramUser
    users: dict[str, ScramUser]  # role -> user
    controller_password: str

    def client(self, role: str) -> dict[str, Any]:
        return kafka_auth.client_kwargs(self.as_user(role))

    def as_user(self, role: str) -> Settings:
        user = self.users[role]
        return self.settings.with_(kafka_username=user.name, kafka_password=user.password)

    def secrets(self) -> list[str]:
        return [self.admin.password, self.controller_password,
                *(u.password for u in self.users.values())]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    admin = ScramUser("admin", new_password())
    controller_password = new_password()
    broker = secure_broker(admin, controller_password, tmp_path_factory.mktemp("secure-kafka"))
    broker.start()
    try:
        tag = uuid.uuid4().hex[:8]
        settings = Settings.from_env(env={}).with_(
            kafka_bootstrap=broker.bootstrap, catalog_path=str(EXAMPLE / "catalog.json"),
            events_topic=f"procedure-events-{tag}", dlq_topic=f"procedure-events-dlq-{tag}",
            scores_topic=f"unit-scores-{tag}", rank_changes_topic=f"rank-changes-{tag}",
            band_changes_topic=f"band-changes-{tag}", at_risk_topic=f"at-risk-{tag}",
            app_id=f"bando-secure-{tag}",
            coalesce_seconds=0.5, data_dir=str(tmp_path_factory.mktemp("secure-data")))
        p = Principals()
        users = {role: ScramUser(getattr(p, role), new_password())
                 for role in ("worker", "ingest", "board", "notifier", "signals")}
        # The operator creates the topics; services never need to.
        as_admin = admin_kwargs(admin)
        for name, config in project_topics(settings).items():
            create_topics(broker.bootstrap, [name], settings.partitions, 1, config,
                          security=as_admin)
        create_topics(broker.bootstrap, [settings.at_risk_topic, ALERTS_DLQ], 1,
                      security=as_admin)
        create_topics(broker.bootstrap, [SIGNALS], settings.partitions, security=as_admin)
        asyncio.run(secure_kafka_setup(broker.bootstrap, admin, users.values(),
                                       bando_acls(settings, p, None, ALERTS_DLQ,
                                                  NOTIFIER_GROUP)))
        yield Secured(broker, settings, admin, users, controller_password)
    finally:
        broker.stop()
        broker.cleanup()


# -- helpers ---------------------------------------------------------------------------------

async def _try_produce(bootstrap: str, topic: str, client: dict[str, Any]) -> str:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=8000,
                                acks="all", **client)
    try:
        await producer.start()
        await producer.send_and_wait(topic, b'{"probe": true}', key=b"probe")
        return "ok"
    except KafkaError as exc:
        return type(exc).__name__
    finally:
        await producer.stop()


async def _try_read(bootstrap: str, topic: str, client: dict[str, Any],
                    group: str | None, partitions: int = 4) -> str:
    """"ok" if a record was read; else the error, or "nothing read" (a broker that refuses
    a topic's metadata leaves a group-less consumer with nothing to fetch: refused too, as
    long as an authorised client does read records there)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                request_timeout_ms=8000, **client)
    try:
        await consumer.start()
        if group is None:  # as the board writer reads: every partition, no group
            consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            await consumer.seek_to_beginning()
        else:
            consumer.subscribe([topic])
        deadline = asyncio.get_running_loop().time() + 6
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            if any(batch.values()):
                return "ok"
        return "nothing read"
    except KafkaError as exc:
        return type(exc).__name__
    finally:
        await consumer.stop()


# -- tests -----------------------------------------------------------------------------------

def test_unauthenticated_and_wrong_password_clients_are_refused(secured: Secured) -> None:
    s = secured.settings
    assert secured.broker.pid is not None
    assert {ip for ip, _ in listening_sockets(secured.broker.pid)} == {"127.0.0.1"}
    plain = asyncio.run(_try_produce(s.kafka_bootstrap, s.events_topic, {}))
    assert plain != "ok", "a PLAINTEXT client must not reach a SASL listener"
    wrong = secured.client("ingest") | {"sasl_plain_password": new_password()}
    assert asyncio.run(_try_produce(s.kafka_bootstrap, s.events_topic, wrong)) != "ok"
    unknown = secured.client("ingest") | {"sasl_plain_username": "mallory"}
    assert asyncio.run(_try_produce(s.kafka_bootstrap, s.events_topic, unknown)) != "ok"
    plain_read = asyncio.run(_try_read(s.kafka_bootstrap, s.scores_topic, {}, None))
    assert plain_read != "ok"


CASES = [
    # role, action, topic attribute (or a literal name), group, allowed
    ("ingest", "write", "events_topic", None, True),
    ("ingest", "write", "scores_topic", None, False),
    ("ingest", "read", "events_topic", None, False),
    ("worker", "write", "events_topic", None, False),
    ("worker", "write", "dlq_topic", None, True),
    ("worker", "write", "scores_topic", None, True),
    ("worker", "write", "at_risk_topic", None, True),
    ("board", "read", "scores_topic", None, True),
    ("board", "read", "rank_changes_topic", None, True),
    ("board", "read", "events_topic", None, False),
    ("board", "write", "scores_topic", None, False),
    ("notifier", "read", "band_changes_topic", NOTIFIER_GROUP, True),
    ("notifier", "read", "band_changes_topic", "someone-elses-group", False),
    ("notifier", "read", "scores_topic", NOTIFIER_GROUP, False),
    ("notifier", "read", "at_risk_topic", NOTIFIER_GROUP, True),
    ("notifier", "write", "band_changes_topic", None, False),
    ("notifier", "write", ALERTS_DLQ, None, True),
    ("signals", "read", "events_topic", SIGNALS_GROUP, True),
    ("signals", "read", "dlq_topic", None, True),
    ("signals", "write", SIGNALS, None, True),
    ("signals", "read", SIGNALS, None, True),
    ("signals", "write", ALERTS_DLQ, None, True),
    ("signals", "read", "events_topic", "someone-elses-group", False),
    ("signals", "write", "events_topic", None, False),
    ("signals", "read", "scores_topic", None, False),
]


def test_each_service_may_do_only_what_its_acls_allow(secured: Secured) -> None:
    """The scorer reads events and writes outputs; display and notifier only read outputs."""
    s = secured.settings
    as_admin = admin_kwargs(secured.admin)
    for name in (s.events_topic, s.scores_topic, s.rank_changes_topic, s.band_changes_topic,
                 s.at_risk_topic, s.dlq_topic):
        asyncio.run(_try_produce(s.kafka_bootstrap, name, as_admin))  # something to read
        assert asyncio.run(_try_read(s.kafka_bootstrap, name, as_admin, None)) == "ok"
    worker_read = asyncio.run(_try_read(s.kafka_bootstrap, s.events_topic,
                                        secured.client("worker"), s.app_id))
    assert worker_read == "ok", worker_read
    outcomes = []
    for role, action, topic_attr, group, allowed in CASES:
        topic = getattr(s, topic_attr, topic_attr)
        client = secured.client(role)
        if action == "write":
            got = asyncio.run(_try_produce(s.kafka_bootstrap, topic, client))
        else:
            got = asyncio.run(_try_read(s.kafka_bootstrap, topic, client, group))
        outcomes.append((role, action, topic_attr, group, allowed, got))
    wrong = [o for o in outcomes if (o[-1] == "ok") != o[-2]]
    assert not wrong, "\n".join(map(str, wrong))
    refusals = {o[-1] for o in outcomes if not o[-2]}
    assert refusals <= {"TopicAuthorizationFailedError", "GroupAuthorizationFailedError",
                        "nothing read"}, outcomes


def test_the_scorer_scores_with_least_privilege_and_logs_no_secret(
    secured: Secured, tmp_path: Path
) -> None:
    """The faust worker as ``bando-worker`` (ACLs above, SCRAM), events from ``bando-ingest``,
    scores read as ``bando-board``: live equals ``bando score``; no password in any log."""
    s = secured.settings
    msgs = example_messages()
    as_of, final, _, expected = scenario(msgs, s.partitions, tmp_path, s.catalog_path)
    worker_settings = secured.as_user("worker")
    password_file = tmp_path / "kafka-password"
    password_file.write_text(worker_settings.kafka_password + "\n")
    password_file.chmod(0o600)
    # The password reaches the worker only through a file, as in a deployment.
    # `bando worker` itself: the project's topics exist (made by the operator), so its own
    # attempt to create them is refused by the ACLs and it goes on.
    w = Service(worker_settings.with_(kafka_password=""), ["worker", "--log-level", "info"],
                tmp_path / "worker.log",
                extra_env={"BANDO_KAFKA_PASSWORD": None,
                           "BANDO_KAFKA_PASSWORD_FILE": str(password_file)})
    tail = TopicTail(s.kafka_bootstrap, s.scores_topic, secured.client("board"))
    tail.start()
    try:
        with services(w):
            w.start()
            produce(s.kafka_bootstrap, s.events_topic, msgs + final,
                    client=secured.client("ingest"))
            wait_until(scores_equal(tail, expected), 120, "live != bando score (secured)",
                       w.log_tail)
            assert w.running
    finally:
        tail.stop()
    dlq = read_topic(s.kafka_bootstrap, s.dlq_topic, admin_kwargs(secured.admin))
    assert len(dlq) >= len(expected[0]["rejected"])
    logs = {"worker": w.log_path.read_text(errors="replace"),
            "broker": secured.broker.log_path.read_text(errors="replace")}
    assert "SASL_PLAINTEXT/SCRAM-SHA-256 as bando-worker" in logs["worker"]
    for name, text in logs.items():
        for secret in secured.secrets():
            assert secret not in text, f"a password is in the {name} log"
    props = secured.broker.data_dir / "server.properties"
    assert stat.S_IMODE(props.stat().st_mode) == 0o600


def test_bando_worker_itself_starts_against_a_secured_broker(
    secured: Secured, tmp_path: Path
) -> None:
    s = secured.as_user("worker").with_(app_id=f"{secured.settings.app_id}-cli")
    w = worker(s, tmp_path / "worker.log")
    with services(w):
        w.start()
        wait_until(lambda: [] if not w.running or "rebalance" in w.log_tail().lower()
                   or "partitions" in w.log_tail().lower() else ["starting"], 40,
                   "worker outcome", w.log_tail)
        assert w.running, w.log_tail()


def test_kafka_auth_builds_client_options_from_settings() -> None:
    base = Settings.from_env(env={})
    assert kafka_auth.client_kwargs(base) == {}
    assert kafka_auth.faust_credentials(base) is None
    s = base.with_(kafka_username="bando-worker", kafka_password="s3cret-pw")
    kw = kafka_auth.client_kwargs(s)
    assert kw == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
                  "sasl_plain_username": "bando-worker", "sasl_plain_password": "s3cret-pw"}
    creds = kafka_auth.faust_credentials(s)
    assert creds is not None and "s3cret-pw" not in repr(creds)
    assert "s3cret-pw" not in kafka_auth.describe(s)
    tls = kafka_auth.client_kwargs(s.with_(kafka_security_protocol="SASL_SSL"))
    assert tls["security_protocol"] == "SASL_SSL" and tls["ssl_context"] is not None
    with pytest.raises(ValueError):
        kafka_auth.client_kwargs(s.with_(kafka_security_protocol="SASL_PLAIN"))
    with pytest.raises(ValueError):
        kafka_auth.client_kwargs(base.with_(kafka_security_protocol="SASL_PLAINTEXT"))
    env_settings = Settings.from_env(env={"BANDO_KAFKA_USERNAME": "u",
                                          "BANDO_KAFKA_PASSWORD": "p",
                                          "BANDO_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"})
    assert kafka_auth.client_kwargs(env_settings)["sasl_mechanism"] == "SCRAM-SHA-512"
    assert orjson.dumps(REPO.name)  # the repository is where the tests expect it


def test_topic_creation_refused_by_acls_is_fine_only_if_the_topic_exists(
    secured: Secured,
) -> None:
    """A service without CREATE rights (the board) asking for topics: the existing ones are
    accepted as they are, a missing one is a clear error naming it."""
    from bando.infra import InfraError

    s = secured.settings
    board = secured.client("board")
    assert create_topics(s.kafka_bootstrap, [s.scores_topic], s.partitions,
                         security=board) == []
    missing = f"nobody-made-this-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InfraError, match=missing):
        create_topics(s.kafka_bootstrap, [missing], 1, security=board)


def test_audit_tools_read_history_from_the_secured_broker(secured: Secured) -> None:
    """``bando replay``/``explain``/``archive`` against the secured cluster connect as every
    other client does (``bando.kafka_auth``: SCRAM here), and read what was produced."""
    from audit.sources import open_source

    s = secured.settings
    topic = f"audit-history-{uuid.uuid4().hex[:8]}"
    as_admin = admin_kwargs(secured.admin)
    create_topics(s.kafka_bootstrap, [topic], 2, 1, security=as_admin)
    sent = [orjson.dumps({"n": i}) for i in range(20)]

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all",
                                    **as_admin)
        await producer.start()
        try:
            for i, value in enumerate(sent):
                await producer.send_and_wait(topic, value, key=str(i % 2).encode())
        finally:
            await producer.stop()

    asyncio.run(send())
    auditor = s.with_(kafka_username=secured.admin.name, kafka_password=secured.admin.password)
    source = open_source(auditor)
    got = sorted(rec.value for batch in source.read(topic) for rec in batch)
    assert got == sorted(sent)
    with pytest.raises(AuditError, match="kafka_sasl_mechanism"):
        open_source(auditor.with_(kafka_sasl_mechanism="MD5"))


def test_the_live_simulator_produces_as_the_ingest_user(secured: Secured) -> None:
    """``bando simulate live`` against the secured cluster: SCRAM as the ingest principal,
    which may write the events topic (and nothing else)."""
    from bando.simulator import read_catalog
    from bando.simulator.live import LiveStats, produce

    s = secured.settings
    before = len(read_topic(s.kafka_bootstrap, s.events_topic, admin_kwargs(secured.admin)))
    stats = LiveStats()
    start = int(time.time()) - 20 * 86400
    produced = asyncio.run(produce(
        read_catalog(EXAMPLE / "catalog.json"), bootstrap=s.kafka_bootstrap,
        topic=s.events_topic, speed=86400, rate=200, start=start, duration=2.0, seed=5,
        tick_every=3600, settings=secured.as_user("ingest"), stats=stats))
    assert produced == stats.acked > 20 and stats.failed == 0
    read = read_topic(s.kafka_bootstrap, s.events_topic, admin_kwargs(secured.admin))
    assert len(read) - before == stats.acked


def test_the_setup_tool_connects_with_the_clusters_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m bando.infra.security kafka`` on SCALE-OUT's cluster (SASL_SSL, SCRAM-SHA-512):
    the admin signs in with those settings and the users are made for that mechanism."""
    import bando.infra.security as security

    seen: dict[str, Any] = {}

    async def setup(bootstrap: str, admin: Any, users: Any, acls: Any, mechanism: str,
                    client: Any = None) -> None:
        seen.update(mechanism=mechanism, client=client)

    monkeypatch.setattr(security, "secure_kafka_setup", setup)
    monkeypatch.setenv("BANDO_KAFKA_ADMIN_PASSWORD", "admin-pw")
    monkeypatch.setenv("BANDO_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BANDO_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    assert security.main(["kafka", "--bootstrap", "broker-1:9093"]) == 0
    client = seen["client"]
    assert seen["mechanism"] == "SCRAM-SHA-512"
    assert client["security_protocol"] == "SASL_SSL" and client["ssl_context"] is not None
    assert (client["sasl_mechanism"], client["sasl_plain_username"],
            client["sasl_plain_password"]) == ("SCRAM-SHA-512", "admin", "admin-pw")
    monkeypatch.setenv("BANDO_KAFKA_SASL_MECHANISM", "PLAIN")
    with pytest.raises(SystemExit, match="SCRAM"):
        security.main(["kafka", "--bootstrap", "broker-1:9093"])


def test_the_setup_tool_adds_a_user_on_the_secured_broker(
        secured: Secured, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bando.infra.security as security

    password = new_password()
    (tmp_path / "pw").write_text(password)
    monkeypatch.setenv("BANDO_KAFKA_ADMIN_PASSWORD", secured.admin.password)
    monkeypatch.setenv("BANDO_KAFKA_ADMIN_USER", secured.admin.name)
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    assert security.main(["kafka", "--bootstrap", secured.broker.bootstrap,
                          "--user", f"{name}={tmp_path / 'pw'}"]) == 0
    as_new = kafka_auth.client_kwargs(secured.settings.with_(kafka_username=name,
                                                             kafka_password=password))

    async def sign_in() -> list[str]:
        consumer = AIOKafkaConsumer(bootstrap_servers=secured.broker.bootstrap,
                                    request_timeout_ms=8000, **as_new)
        await consumer.start()
        try:
            return sorted(await consumer.topics())
        finally:
            await consumer.stop()

    asyncio.run(sign_in())  # authenticated (no ACL lets it see topics: none needed here)
