"""Where the Kafka broker's jars and the JVM that runs them come from.

Separate from ``bando.infra.kafka`` because fetching a broker is not running one: setup
scripts and CI only download the jars (``python -m bando.infra.kafka --fetch``,
``bando infra fetch``), and the Maven plumbing, locks and JDK lookup have nothing to do with
a broker's configuration or lifecycle. Our machines have no Docker and reach only package
registries, so the broker comes from Maven Central: ``deploy/kafka/pom.xml`` resolves
``kafka_2.13`` and its runtime classpath once into ``~/.cache/bando/kafka-<version>/lib``
(``BANDO_KAFKA_HOME`` overrides).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from bando.infra.exceptions import InfraError

log = logging.getLogger(__name__)

DEFAULT_KAFKA_VERSION = "4.1.1"
# The broker's Maven pom and its log4j configuration.
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"


def kafka_home(version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """Where the broker's jars are cached (``BANDO_KAFKA_HOME`` overrides)."""
    override = os.environ.get("BANDO_KAFKA_HOME")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "bando" / f"kafka-{version}"


def ensure_kafka_jars(version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """Return the directory of the broker's jars, downloading them with Maven if missing.

    The download goes to a temporary directory renamed into place at the end, under a file
    lock, so an interrupted or concurrent fetch never leaves a half-filled ``lib``.
    """
    home = kafka_home(version)
    lib = home / "lib"
    if (home / ".complete").exists():
        return lib
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / ".complete").exists():
            return lib
        pom = Path(os.environ.get("BANDO_KAFKA_POM", DEPLOY_DIR / "pom.xml"))
        mvn = shutil.which("mvn")
        if not pom.exists():
            raise InfraError(f"cannot fetch Kafka: {pom} not found (set BANDO_KAFKA_POM)")
        if mvn is None:
            raise InfraError("cannot fetch Kafka: mvn not found (run scripts/setup.sh)")
        staging = home / f"lib.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        argv = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
                f"-Dkafka.version={version}"]
        log.info("fetching Kafka %s jars with Maven into %s", version, lib)
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            output = (done.stdout + done.stderr)[-4000:]
            raise InfraError(f"Maven could not fetch Kafka {version} (status "
                             f"{done.returncode})", output)
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)
        (home / ".complete").write_text(version + "\n")
        log.info("Kafka %s jars fetched in %.1fs", version, time.monotonic() - started)
    return lib


def find_java() -> str:
    """The java executable: ``BANDO_JAVA``, then ``$JAVA_HOME/bin/java``, then PATH."""
    candidates = [os.environ.get("BANDO_JAVA", "")]
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.path.join(os.environ["JAVA_HOME"], "bin", "java"))
    candidates.append(shutil.which("java") or "")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise InfraError("java not found (install a JDK 17+ or run scripts/setup.sh)")
