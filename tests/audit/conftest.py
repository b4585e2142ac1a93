"""Fixtures of the audit tests: the worked example of SPEC section 6, as catalog and lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.catalog import Catalog, load_catalog
from scoring.model import Model, load_model

EXAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "examples" / "vn766"


@pytest.fixture(scope="session")
def example_dir() -> Path:
    if not EXAMPLE.is_dir():
        pytest.fail(f"the worked example is missing: {EXAMPLE}")
    return EXAMPLE


@pytest.fixture(scope="session")
def example_catalog(example_dir: Path) -> Catalog:
    return load_catalog(example_dir / "catalog.json")


@pytest.fixture(scope="session")
def model() -> Model:
    return load_model()


@pytest.fixture(scope="session")
def example_lines(example_dir: Path) -> list[bytes]:
    raw = (example_dir / "events.jsonl").read_bytes().splitlines()
    return [line.strip() for line in raw if line.strip()]
