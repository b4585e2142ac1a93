"""Authentication and authorisation for Bando's Kafka and Redis: users, ACLs, secured servers.

Why here and not in deployment scripts only: the same code sets up the tests' secured broker
and Redis and an operator's real ones (``python -m bando.infra.security``), so what the tests
prove about the permissions is what gets deployed.

Kafka: clients authenticate with SASL/SCRAM-SHA-256 on the client listener; the authorizer
(``StandardAuthorizer``, KRaft) refuses everything no ACL allows. SCRAM credentials live in
the cluster metadata: the admin user is written at format time (``--add-scram``), the others
through the admin API (``AlterUserScramCredentials``, see ``bando.infra.scram``). ACLs are
created through ``CreateAcls``. Both requests are sent with aiokafka's protocol layer
(aiokafka's admin client has no method for them, and the Kafka jars we fetch have no
``kafka-acls`` tool).

The controller listener cannot use SCRAM in KRaft (credentials live in the metadata the
controllers serve), so it uses SASL/PLAIN with a static user of its own; only the nodes use it.

Principals and what they may do (``bando_acls``, as in deploy/SCALE-OUT.md):

* worker: read ``procedure-events``; write the DLQ, the three output topics and ``at-risk``
  (and create them if missing, which it tries at start); everything on its own ``<app_id>-`` topics
  (changelogs, internal re-key topic); its consumer groups ``<app_id>`` and ``<app_id>-ranker``
  (the ranker's own consumer, also used by a ``bando ranker`` process);
* ingest (the city system, the simulator): write ``procedure-events``;
* board (display): read the three output topics (no group: it assigns partitions itself);
* notifier: read ``band-changes`` and ``at-risk`` with group ``bando-notifier``, write its
  own dead letters ``alerts-dlq``;
* signals (``bando signals``): read ``procedure-events`` with group ``bando-signals`` and the
  DLQ (its verdicts), read and write ``signals`` (what it raised before), write ``alerts-dlq``.

Redis: ACL users from an ACL file (``bando.infra.redis_acl``); this module's command line
prints that file for an operator.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bando.infra.exceptions import InfraError
from bando.infra.kafka import KafkaBroker, _run_sync
from bando.infra.passwords import check_secret
from bando.infra.redis_acl import redis_acl_file
from bando.infra.scram import (
    SCRAM_IDS,
    SCRAM_ITERATIONS,
    SCRAM_MECHANISM,
    AlterUserScramCredentialsRequest,
    salted_password,
)
from bando.kafka_auth import client_kwargs
from bando.settings import Settings

log = logging.getLogger(__name__)

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

# Kafka protocol enums (org.apache.kafka.common.acl / resource)
RESOURCE = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
PATTERN = {"literal": 3, "prefixed": 4}
OPERATION = {"all": 2, "read": 3, "write": 4, "create": 5, "delete": 6, "alter": 7,
             "describe": 8, "cluster_action": 9, "describe_configs": 10, "alter_configs": 11,
             "idempotent_write": 12}
PERMISSION = {"deny": 2, "allow": 3}


@dataclass(frozen=True)
class ScramUser:
    name: str
    password: str

    def __repr__(self) -> str:  # never print a password by accident
        return f"ScramUser(name={self.name!r}, password='***')"


# -- Kafka: the secured broker ---------------------------------------------------------------

def secure_broker_config(admin: ScramUser, controller_password: str,
                         mechanism: str = SCRAM_MECHANISM) -> dict[str, Any]:
    """``extra_config`` for a node whose client listener is ``SASL_PLAINTEXT`` (SCRAM), whose
    controller listener is SASL/PLAIN, and which refuses what no ACL allows.

    The JAAS strings hold passwords: ``KafkaBroker`` writes its properties file owner-only,
    and Kafka logs these values as ``[hidden]``.
    """
    check_secret(admin.password, "admin password")
    check_secret(controller_password, "controller password")
    plain = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
             f'username="controller" password="{controller_password}" '
             f'user_controller="{controller_password}";')
    scram = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
             f'username="{admin.name}" password="{admin.password}";')
    return {
        "sasl.enabled.mechanisms": mechanism,
        "sasl.mechanism.inter.broker.protocol": mechanism,
        f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config": scram,
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": mechanism,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": plain,
        "authorizer.class.name": AUTHORIZER,
        "super.users": f"User:{admin.name};User:controller",
        "allow.everyone.if.no.acl.found": False,
    }


def admin_kwargs(admin: ScramUser, mechanism: str = SCRAM_MECHANISM) -> dict[str, Any]:
    """aiokafka connection options for the admin user."""
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
            "sasl_plain_username": admin.name, "sasl_plain_password": admin.password}


def sasl_probe(admin: ScramUser, mechanism: str = SCRAM_MECHANISM) -> Any:
    """A ``KafkaBroker`` readiness probe: the admin user can log in and sees this broker."""

    def probe(broker: KafkaBroker) -> bool:
        async def check() -> bool:
            from aiokafka.admin import AIOKafkaAdminClient

            client = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap,
                                         request_timeout_ms=3000,
                                         **admin_kwargs(admin, mechanism))
            try:
                await client.start()
                cluster = await client.describe_cluster()
                return any(b["node_id"] == broker.node_id for b in cluster["brokers"])
            finally:
                await client.close()

        try:
            return _run_sync(check())
        except Exception:  # noqa: BLE001 - not up yet, whatever the client says
            return False

    return probe


def secure_broker(
    admin: ScramUser,
    controller_password: str,
    data_dir: str | os.PathLike[str] | None = None,
    partitions: int = 4,
    mechanism: str = SCRAM_MECHANISM,
    **kwargs: Any,
) -> KafkaBroker:
    """A single ``KafkaBroker`` with SASL/SCRAM clients, ACLs enforced, ``admin`` bootstrapped.

    The admin's password is given to ``kafka-storage format`` once, at the first start (that is
    how KRaft bootstraps SCRAM), through a private argument file rather than its command line
    (``KafkaBroker._format``); every other user is added with :func:`upsert_scram_users`.
    """
    config = secure_broker_config(admin, controller_password, mechanism)
    if any(c in admin.password for c in ",[]="):  # would end or split the --add-scram value
        raise ValueError("admin password: contains a character --add-scram cannot hold")
    config.update(kwargs.pop("extra_config", None) or {})
    return KafkaBroker(
        data_dir=data_dir, partitions=partitions, extra_config=config,
        client_protocol="SASL_PLAINTEXT", controller_protocol="SASL_PLAINTEXT",
        format_args=["--add-scram", f"{mechanism}=[name={admin.name},"
                     f"password={admin.password}]"],
        probe=sasl_probe(admin, mechanism), **kwargs)


# -- Kafka: SCRAM users through the admin API -----------------------------------------------

async def upsert_scram_users(bootstrap: str, admin: ScramUser, users: Iterable[ScramUser],
                             mechanism: str = SCRAM_MECHANISM,
                             iterations: int = SCRAM_ITERATIONS,
                             client: Mapping[str, Any] | None = None) -> None:
    """Create or update SCRAM credentials (as ``kafka-configs --add-config SCRAM-...``).
    ``client``: the admin's connection options (default: SASL_PLAINTEXT with ``mechanism``)."""
    from aiokafka.admin import AIOKafkaAdminClient

    mech_id, _ = SCRAM_IDS[mechanism]
    upserts = []
    for user in users:
        check_secret(user.password, f"password of {user.name}")
        salt = secrets.token_bytes(32)
        upserts.append((user.name, mech_id, iterations, salt,
                        salted_password(user.password, salt, iterations, mechanism)))
    if not upserts:
        return
    admin_client = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                       **_connect(admin, mechanism, client))
    await admin_client.start()
    try:
        response = await admin_client._send_to_controller(
            AlterUserScramCredentialsRequest(upserts))
    finally:
        await admin_client.close()
    failed = [(r[0], r[1], r[2]) for r in response.results if r[1] != 0]
    if failed:
        raise InfraError(f"SCRAM credentials refused: {failed}")


# -- Kafka: ACLs ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Acl:
    """One ALLOW (or DENY) rule: ``principal`` may ``operation`` on a resource."""

    principal: str  # "User:name"
    resource: str  # topic | group | cluster | transactional_id
    name: str
    operation: str
    pattern: str = "literal"
    permission: str = "allow"
    host: str = "*"

    def wire(self) -> tuple[int, str, int, str, str, int, int]:
        return (RESOURCE[self.resource], self.name, PATTERN[self.pattern], self.principal,
                self.host, OPERATION[self.operation], PERMISSION[self.permission])


@dataclass(frozen=True)
class Principals:
    """The Kafka user names of Bando's services (one principal per service)."""

    worker: str = "bando-worker"
    ingest: str = "bando-ingest"
    board: str = "bando-board"
    notifier: str = "bando-notifier"
    signals: str = "bando-signals"


def bando_acls(
    settings: Settings,
    principals: Principals = Principals(),
    at_risk_topic: str | None = None,
    alerts_dlq_topic: str = "alerts-dlq",
    notifier_group: str = "bando-notifier",
    signals_topic: str = "signals",
    signals_group: str = "bando-signals",
) -> list[Acl]:
    """Least privilege for every service (see the module docstring)."""
    at_risk_topic = at_risk_topic or settings.at_risk_topic
    acls: list[Acl] = []

    def allow(user: str, resource: str, name: str, ops: Sequence[str],
              pattern: str = "literal") -> None:
        acls.extend(Acl(f"User:{user}", resource, name, op, pattern) for op in ops)

    outputs = [settings.scores_topic, settings.rank_changes_topic, settings.band_changes_topic]
    w = principals.worker
    allow(w, "topic", settings.events_topic, ["read", "describe", "create"])
    for topic in [settings.dlq_topic, *outputs, at_risk_topic]:
        allow(w, "topic", topic, ["write", "describe", "create"])
    allow(w, "topic", f"{settings.app_id}-", ["all"], pattern="prefixed")
    allow(w, "group", settings.app_id, ["read", "describe"])
    allow(w, "group", f"{settings.app_id}-ranker", ["read", "describe"])  # streams.rank_service
    allow(principals.ingest, "topic", settings.events_topic, ["write", "describe"])
    for topic in outputs:
        allow(principals.board, "topic", topic, ["read", "describe"])
    n = principals.notifier
    for topic in (settings.band_changes_topic, at_risk_topic):
        allow(n, "topic", topic, ["read", "describe"])
    allow(n, "topic", alerts_dlq_topic, ["write", "describe"])
    allow(n, "group", notifier_group, ["read", "describe"])
    g = principals.signals
    for topic in (settings.events_topic, settings.dlq_topic):
        allow(g, "topic", topic, ["read", "describe"])
    allow(g, "topic", signals_topic, ["read", "write", "describe"])  # reads back what it raised
    allow(g, "topic", alerts_dlq_topic, ["write", "describe"])
    allow(g, "group", signals_group, ["read", "describe"])
    return acls


async def create_acls(bootstrap: str, admin: ScramUser, acls: Iterable[Acl],
                      mechanism: str = SCRAM_MECHANISM,
                      client: Mapping[str, Any] | None = None) -> int:
    """Create ``acls`` (existing ones are left as they are); returns how many were sent."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest

    rules = list(dict.fromkeys(acls))
    admin_client = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                       **_connect(admin, mechanism, client))
    await admin_client.start()
    try:
        for acl in rules:
            response = await admin_client._send_to_controller(CreateAclsRequest(*acl.wire()))
            for code, message in response.creation_responses:
                if code != 0:
                    raise InfraError(f"ACL refused ({code}: {message}): {acl}")
    finally:
        await admin_client.close()
    return len(rules)


async def secure_kafka_setup(bootstrap: str, admin: ScramUser, users: Iterable[ScramUser],
                             acls: Iterable[Acl], mechanism: str = SCRAM_MECHANISM,
                             client: Mapping[str, Any] | None = None) -> None:
    """Users first, then their ACLs: what an operator runs once per cluster (idempotent)."""
    await upsert_scram_users(bootstrap, admin, users, mechanism, client=client)
    await create_acls(bootstrap, admin, acls, mechanism, client=client)


def _connect(admin: ScramUser, mechanism: str, client: Mapping[str, Any] | None
             ) -> dict[str, Any]:
    return dict(client) if client is not None else admin_kwargs(admin, mechanism)


# -- command line (deployment) ----------------------------------------------------------------

def _secret(value: str | None, file: str | None, what: str) -> str:
    if file:
        return Path(file).read_text(encoding="utf-8").strip()
    if value:
        return value
    raise SystemExit(f"{what}: give it in the environment or as a file")


def main(argv: list[str] | None = None) -> int:
    """``python -m bando.infra.security kafka``: create Bando's SCRAM users and ACLs on a
    running cluster. Passwords come from files (``--user NAME=PASSWORD_FILE``), never from
    the command line; the admin's from ``BANDO_KAFKA_ADMIN_PASSWORD(_FILE)``."""
    parser = argparse.ArgumentParser(prog="python -m bando.infra.security")
    actions = parser.add_subparsers(dest="action", required=True)
    kafka = actions.add_parser("kafka", help="SCRAM users and ACLs on a running cluster")
    kafka.add_argument("--bootstrap", help="default: BANDO_KAFKA_BOOTSTRAP")
    kafka.add_argument("--admin", default=os.environ.get("BANDO_KAFKA_ADMIN_USER", "admin"))
    kafka.add_argument("--user", action="append", default=[], metavar="NAME=PASSWORD_FILE",
                       help="a SCRAM user to create or update (repeat)")
    kafka.add_argument("--acls", action="store_true", help="create Bando's ACLs as well")
    redis = actions.add_parser("redis-acl", help="print a Redis ACL file for Bando's roles")
    redis.add_argument("--prefix", default="bando:board")
    redis.add_argument("--user", action="append", default=[], metavar="NAME=ROLE=PASSWORD_FILE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = Settings.from_env()
    if args.action == "redis-acl":
        roles = {}
        for spec in args.user:
            name, role, file = spec.split("=", 2)
            roles[name] = (role, Path(file).read_text(encoding="utf-8").strip())
        sys.stdout.write(redis_acl_file(roles, args.prefix))
        return 0
    admin = ScramUser(args.admin, _secret(os.environ.get("BANDO_KAFKA_ADMIN_PASSWORD"),
                                          os.environ.get("BANDO_KAFKA_ADMIN_PASSWORD_FILE"),
                                          "admin password"))
    users = []
    for spec in args.user:
        name, file = spec.split("=", 1)
        users.append(ScramUser(name, Path(file).read_text(encoding="utf-8").strip()))
    acls = bando_acls(settings) if args.acls else []
    # the cluster's own connection settings, as every client takes them (protocol, TLS CA,
    # mechanism: SCALE-OUT's cluster is SASL_SSL with SCRAM-SHA-512), signed in as the admin;
    # the users are made for that same mechanism
    mechanism = settings.kafka_sasl_mechanism
    if mechanism not in SCRAM_IDS:
        raise SystemExit(f"BANDO_KAFKA_SASL_MECHANISM={mechanism}: Bando's users are SCRAM "
                         f"users ({', '.join(SCRAM_IDS)})")
    client = client_kwargs(settings.with_(kafka_username=admin.name,
                                          kafka_password=admin.password))
    asyncio.run(secure_kafka_setup(args.bootstrap or settings.kafka_bootstrap, admin, users,
                                   acls, mechanism, client=client))
    log.info("%d users and %d ACLs in place", len(users), len(acls))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
