"""The unit catalog: which units exist, their names and peer groups (SPEC section 2)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scoring.exceptions import CatalogError

DEFAULT_CATALOG = Path(__file__).parent / "catalogs" / "hcmc-2024.json"


@dataclass(frozen=True, slots=True)
class Unit:
    unit_id: str
    name: str
    peer_group: str


class Catalog:
    """Units in catalog order (outputs list units in this order)."""

    def __init__(self, units: list[Unit]):
        self.units = tuple(units)
        self.by_id = {u.unit_id: u for u in self.units}
        if len(self.by_id) != len(self.units):
            raise CatalogError("a unit_id appears twice in the catalog")
        groups: dict[str, list[str]] = {}
        for u in self.units:
            groups.setdefault(u.peer_group, []).append(u.unit_id)
        self.peer_groups = {g: tuple(ids) for g, ids in groups.items()}

    def __contains__(self, unit_id: object) -> bool:
        return unit_id in self.by_id

    def __len__(self) -> int:
        return len(self.units)

    @classmethod
    def from_list(cls, data: object) -> Catalog:
        if not isinstance(data, list):
            raise CatalogError("a catalog is a JSON list of {unit_id, name, peer_group}")
        units = []
        for i, item in enumerate(data):
            if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) and item.get(k) for k in ("unit_id", "peer_group")
            ):
                raise CatalogError(f"catalog entry {i} lacks a string unit_id / peer_group")
            units.append(Unit(item["unit_id"], str(item.get("name", item["unit_id"])),
                              item["peer_group"]))
        return cls(units)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """A catalog file, or the built-in HCMC 2024 catalog when ``path`` is empty."""
    p = Path(path) if path else DEFAULT_CATALOG
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read catalog {p}: {exc}") from exc
    return Catalog.from_list(data)
