"""Secrets come from the environment or from files, are masked in settings dumps, and no
service writes one to its log (checked on real processes, at debug level)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fault_support import Service, services, wait_until

from bando import kafka_auth
from bando.infra import KafkaBroker
from bando.infra.passwords import new_password
from bando.infra.redis_acl import SecureRedisServer
from bando.infra.security import ScramUser, secure_broker
from bando.settings import Settings, mask_url
from display import store


def test_secrets_from_files_win_only_when_the_variable_is_unset(tmp_path: Path) -> None:
    kafka_file, redis_file = tmp_path / "kafka", tmp_path / "redis"
    kafka_file.write_text("k-secret-from-file\n")
    redis_file.write_text("r-secret-from-file")
    env = {"BANDO_KAFKA_USERNAME": "bando-worker",
           "BANDO_KAFKA_PASSWORD_FILE": str(kafka_file),
           "BANDO_REDIS_PASSWORD_FILE": str(redis_file)}
    s = Settings.from_env(env=env)
    assert (s.kafka_password, s.redis_password) == ("k-secret-from-file", "r-secret-from-file")
    assert Settings.from_env(env={**env, "BANDO_KAFKA_PASSWORD": "direct"}).kafka_password == (
        "direct")
    # Only secrets read *_FILE: a file can never smuggle in, say, the bootstrap address.
    other = tmp_path / "bootstrap"
    other.write_text("10.0.0.1:9092")
    assert Settings.from_env(env={"BANDO_KAFKA_BOOTSTRAP_FILE": str(other)}).kafka_bootstrap == (
        Settings().kafka_bootstrap)
    with pytest.raises(OSError):
        Settings.from_env(env={"BANDO_REDIS_PASSWORD_FILE": str(tmp_path / "missing")})


def test_settings_dumps_mask_every_secret() -> None:
    s = Settings.from_env(env={}).with_(
        kafka_username="bando-worker", kafka_password="k-secret", redis_password="r-secret",
        redis_url="redis://bando-board:url-secret@10.0.0.5:6379/0")
    for dump in (repr(s), str(s), str(s.redacted())):
        for secret in ("k-secret", "r-secret", "url-secret"):
            assert secret not in dump
    assert s.redacted()["redis_url"] == "redis://bando-board:***@10.0.0.5:6379/0"
    assert s.redacted()["kafka_username"] == "bando-worker"  # names are not secrets
    assert "k-secret" not in kafka_auth.describe(s)
    assert mask_url("redis://:p@h:1/0") == "redis://:***@h:1/0"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    # an unencoded "@" in the password: clients split at the last one
    assert mask_url("redis://u:s3cr@tPass@h:1/0") == "redis://u:***@h:1/0"
    assert store.redact("redis://u:s3cr@tPass@h:1/0") == "redis://***@h:1/0"
    assert store.redact("redis://h:1/0?x=a@b") == "redis://h:1/0?x=a@b"
    empty = Settings.from_env(env={}).redacted()
    assert empty["kafka_password"] == "" and empty["redis_password"] == ""
    # an "@" in the user name: clients take the password after its first ":"
    assert mask_url("redis://user@corp:pw-secret@h:1/0") == "redis://user@corp:***@h:1/0"
    masked = Settings.from_env(env={}).with_(redis_url="redis://a@b:pw-secret@h:1/0")
    assert "pw-secret" not in str(masked.redacted()) + repr(masked)


def test_an_empty_secret_gives_way_to_its_file(tmp_path: Path) -> None:
    # compose writes ``BANDO_KAFKA_PASSWORD: ${BANDO_KAFKA_PASSWORD:-}``: empty, not absent
    secret = tmp_path / "pw"
    secret.write_text("from-the-file\n")
    env = {"BANDO_KAFKA_PASSWORD": "", "BANDO_KAFKA_PASSWORD_FILE": str(secret),
           "BANDO_REDIS_PASSWORD": "", "BANDO_REDIS_PASSWORD_FILE": str(secret)}
    settings = Settings.from_env(env=env)
    assert settings.kafka_password == settings.redis_password == "from-the-file"
    assert Settings.from_env(env={"BANDO_KAFKA_PASSWORD": "given"}).kafka_password == "given"


@pytest.mark.parametrize("bad", [",", "]", "[", "="])
def test_an_admin_password_that_breaks_add_scram_is_refused(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--add-scram"):
        secure_broker(ScramUser("admin", f"pass{bad}word"), new_password(), tmp_path)


def test_the_admin_password_is_never_on_a_command_line(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """KRaft bootstraps SCRAM at format time (``--add-scram``): the tool's arguments reach the
    JVM through a private argument file, deleted after, never through argv (ps, /proc). The
    secured broker tests run the real format this way."""
    import os
    import subprocess

    import bando.infra.kafka as kafka_module

    password = "pass#word-" + new_password()
    broker = secure_broker(ScramUser("admin", password), new_password(), tmp_path)
    seen: list[tuple[list[str], str, int]] = []

    def run(argv, **kw):  # type: ignore[no-untyped-def]
        argfile = argv[-1][1:]
        seen.append((argv, Path(argfile).read_text("utf-8"), os.stat(argfile).st_mode & 0o777))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(kafka_module.subprocess, "run", run)
    broker._format(["java", "-cp", "x"], tmp_path / "server.properties")  # noqa: SLF001
    [(argv, text, mode)] = seen
    assert not any(password in a for a in argv) and argv[-1].startswith("@")
    assert mode == 0o600
    assert '"kafka.tools.StorageTool"' in text and "--add-scram" in text
    assert f"password={password}]" in text
    assert not Path(argv[-1][1:]).exists()


@pytest.mark.integration
def test_services_never_log_a_secret(kafka: KafkaBroker, live_settings: Settings,
                                     tmp_path: Path) -> None:
    """``bando board``, ``bando display`` (Redis ACL users, passwords from files, debug logs)
    and ``bando worker`` (a Kafka password from a file, info logs): no secret in any log."""
    pw = {name: new_password() for name in ("admin", "bando-board", "bando-gateway")}
    redis = SecureRedisServer({"admin": ("admin", pw["admin"]),
                               "bando-board": ("board", pw["bando-board"]),
                               "bando-gateway": ("gateway", pw["bando-gateway"])},
                              data_dir=tmp_path / "redis")
    redis.start()
    files = {}
    for name in ("bando-board", "bando-gateway"):
        files[name] = tmp_path / f"{name}.pw"
        files[name].write_text(pw[name])
    kafka_secret = new_password()
    files["kafka"] = tmp_path / "kafka.pw"
    files["kafka"].write_text(kafka_secret)
    s = live_settings.with_(redis_password="", kafka_password="")

    def secret_env(name: str) -> dict[str, str | None]:
        return {"BANDO_REDIS_PASSWORD": None, "BANDO_REDIS_PASSWORD_FILE": str(files[name]),
                "BANDO_KAFKA_PASSWORD": None, "BANDO_KAFKA_PASSWORD_FILE": str(files["kafka"])}

    board = Service(s.with_(redis_url=redis.url_for("bando-board")),
                    ["-v", "board"], tmp_path / "board.log", secret_env("bando-board"))
    display = Service(s.with_(redis_url=redis.url_for("bando-gateway")),
                      ["-v", "display", "--port", "0"], tmp_path / "display.log",
                      secret_env("bando-gateway"))
    # No Kafka username: PLAINTEXT to the session broker, but the password is still loaded
    # (and must still be masked in the settings the worker logs).
    worker = Service(s, ["worker", "--log-level", "info"], tmp_path / "worker.log",
                     secret_env("bando-board"))
    try:
        with services(board, display, worker):
            for svc in (board, display, worker):
                svc.start()
            wait_until(lambda: [] if "positioned" in board.log_tail(10**8) else ["board"], 60,
                       "board writer connected", board.log_tail)
            wait_until(lambda: [] if "wall display at" in display.log_tail(10**8) else ["display"],
                       60, "gateway serving", display.log_tail)
            wait_until(lambda: [] if "'kafka_password': '***'" in worker.log_tail(20000)
                       else ["worker"], 60, "worker logged its settings", worker.log_tail)
            time.sleep(2.0)
            assert board.running and display.running and worker.running
    finally:
        redis.stop()
        redis.cleanup()
    secrets = [*pw.values(), kafka_secret]
    for svc in (board, display, worker):
        text = svc.log_path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"a secret is in {svc.log_path.name}"
    assert "ERROR" not in board.log_path.read_text() + display.log_path.read_text()


def test_service_configs_keep_secrets_out_of_their_repr() -> None:
    """A config printed by a log line or a failing test shows no password."""
    from alerts.notifier import NotifierConfig
    from display.board_writer import WriterConfig
    from display.gateway import GatewayConfig
    from leaders.signals_service import ServiceConfig

    kafka = {"bootstrap_servers": "h:9092", "sasl_plain_password": "k-secret"}
    configs = [
        WriterConfig(bootstrap="h:9092", redis_url="redis://u:url-secret@h/0", topics={},
                     redis_password="r-secret", kafka_security=kafka),
        GatewayConfig(redis_url="redis://u:url-secret@h/0", redis_password="r-secret"),
        NotifierConfig(kafka=kafka),
        ServiceConfig(kafka=kafka),
    ]
    for config in configs:
        for secret in ("k-secret", "r-secret", "url-secret"):
            assert secret not in repr(config), type(config).__name__
