"""Helpers for the deployment checks: repository paths, promtool, the YAML parser.

A missing tool skips a check on a developer's machine but FAILS it under CI (``CI=true``):
a check that silently did not run must never look like a pass.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is missing on CI (scripts/setup.sh installs it)", pytrace=False)
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
    )
    if path is None:
        _missing("promtool (Debian package prometheus)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def yaml() -> ModuleType:
    try:
        import yaml as module
    except ImportError:
        _missing("PyYAML")
        raise
    return module


@pytest.fixture(scope="session")
def compose(yaml: ModuleType) -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def bando_samples() -> set[str]:
    """Every sample name that bando.metrics can expose (counter _total, histogram _bucket...)."""
    from bando import metrics

    names: set[str] = set()
    for collector in metrics.all_metrics():
        for family in collector.describe():
            if family.type == "counter":
                names |= {family.name + "_total", family.name + "_created"}
            elif family.type == "histogram":
                names |= {family.name + s for s in ("_bucket", "_sum", "_count", "_created")}
            else:
                names.add(family.name)
    return names
