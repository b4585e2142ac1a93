"""docker-compose.yml against the project's real entry points, ports and files.

No Docker engine here, so the file is checked statically: every Bando service runs a real
``bando`` subcommand whose arguments parse, ports agree with ``Settings`` defaults and with
Prometheus' scrape targets, mounted files exist, and no secret is written in the file.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bando.cli import COMMANDS, build_parser
from bando.settings import Settings

REPO = Path(__file__).resolve().parents[2]
BANDO_IMAGE = "bando:local"
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def bando_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image") == BANDO_IMAGE}


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: str(v) for k, v in raw.items()}


def test_the_whole_system_is_there(compose):
    services = compose["services"]
    assert {"kafka", "redis", "board", "display", "notifier", "prometheus", "grafana"} <= set(
        services
    )
    workers = [n for n, s in bando_services(compose).items() if s["command"][1:2] == ["worker"]]
    assert len(workers) == 2
    for name, service in services.items():
        if "demo" in service.get("profiles", []):
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_kafka_is_the_official_image_in_kraft_mode(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    e = env(kafka)
    assert "controller" in e["KAFKA_PROCESS_ROLES"] and "broker" in e["KAFKA_PROCESS_ROLES"]
    assert "zookeeper" not in str(compose).lower()
    version = kafka["image"].split(":", 1)[1]
    pom = (REPO / "deploy" / "kafka" / "pom.xml").read_text()
    assert f"<kafka.version>{version}</kafka.version>" in pom, "compose and tests run one Kafka"


def test_every_bando_service_runs_a_real_subcommand(compose):
    services = bando_services(compose)
    assert services
    for name, service in services.items():
        command = service["command"]
        assert command[0] == "bando", f"{name}: {command}"
        assert command[1] in COMMANDS, f"{name}: 'bando {command[1]}' is not a bando command"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (REPO / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def test_a_made_up_subcommand_would_be_caught(compose):
    """The check above is not vacuous: a service naming a command that does not exist fails."""
    broken = {
        "services": {
            "x": {
                "image": BANDO_IMAGE,
                "command": ["bando", "scorer"],
                "build": {"context": ".", "dockerfile": "deploy/Dockerfile"},
            }
        }
    }
    with pytest.raises(AssertionError, match="not a bando command"):
        test_every_bando_service_runs_a_real_subcommand(broken)


@pytest.mark.parametrize("service_name", ["worker-1", "board", "display", "notifier", "simulator"])
def test_each_command_line_parses_with_the_real_parser(compose, service_name):
    command = compose["services"][service_name]["command"]
    module_name = COMMANDS[command[1]][0]
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # a subcommand whose module has not landed yet
        if exc.name and module_name.startswith(exc.name):
            pytest.skip(f"{module_name} is not in the tree yet")
        raise
    args = build_parser(only=command[1]).parse_args(command[1:])
    assert getattr(args, "_run", None) is not None


def test_ports_match_settings_and_prometheus(compose, yaml):
    defaults = Settings()
    services = compose["services"]
    # the display listens on Settings' default port, published on loopback only
    display = services["display"]
    assert int(env(display).get("BANDO_DISPLAY_PORT", defaults.display_port)) == 8080
    assert display["ports"] == [f"127.0.0.1:{defaults.display_port}:{defaults.display_port}"]
    assert f":{defaults.display_port}/healthz" in " ".join(display["healthcheck"]["test"])
    # Kafka and Redis addresses agree with the brokers' own listeners and Settings' ports
    kafka_env = env(services["kafka"])
    for name, service in bando_services(compose).items():
        e = env(service)
        assert (
            f"PLAINTEXT://{e['BANDO_KAFKA_BOOTSTRAP']}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
        ), name
        redis = urlsplit(e["BANDO_REDIS_URL"])
        assert redis.hostname in services and redis.port == urlsplit(defaults.redis_url).port
    # every long-running Bando service serves /metrics where Prometheus scrapes it
    prom = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t
        for job in prom["scrape_configs"]
        if job["job_name"].startswith("bando-")
        for sc in job["static_configs"]
        for t in sc["targets"]
    }
    expected = set()
    for name, service in bando_services(compose).items():
        if "demo" in service.get("profiles", []):
            continue
        e = env(service)
        assert e["BANDO_METRICS_HOST"] == "0.0.0.0"  # inside the container network only
        expected.add(f"{name}:{e['BANDO_METRICS_PORT']}")
    assert targets == expected


def test_published_ports_are_loopback_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the network"


def test_mounted_files_exist_and_grafana_is_provisioned(compose, yaml):
    mounts = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
                mounts[target] = REPO / source
    prom = compose["services"]["prometheus"]
    config = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file"))
    assert (mounts["/etc/prometheus"] / Path(config).name).is_file()
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "bando.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    assert (mounts[path] / "bando.json").is_file()
    home = env(compose["services"]["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/bando.json"


def test_no_secret_is_written_in_the_file_and_every_variable_is_documented(compose):
    text = (REPO / "docker-compose.yml").read_text()
    for name, service in compose["services"].items():
        for key, value in env(service).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key):
                assert INTERPOLATION.fullmatch(value), f"{name}: {key} has a literal value"
    example = (REPO / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z0-9_]+)=", example, flags=re.M))
    used = set(INTERPOLATION.findall(text))
    assert used <= documented, f"not in .env.example: {used - documented}"
    assert not re.search(r"^[A-Z0-9_]*(PASSWORD|TOKEN|SECRET)=\S", example, flags=re.M)


def test_dockerfile_builds_the_package_on_python_311_slim():
    text = (REPO / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, flags=re.M)
    assert re.search(r"pip install /tmp/bando-src", text)
    assert re.search(r"^USER bando\s*$", text, flags=re.M)
    ignore = (REPO / "deploy" / "Dockerfile.dockerignore").read_text().split()
    assert ".git" in ignore and ".env" in ignore
