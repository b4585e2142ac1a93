"""The scoring model as data: indicators, points, targets, empty rules, bands, windows.

A city changes weights by editing a JSON file, not code; every output names ``name@version``.
What an indicator *counts* is code (``scoring.indicators``); a model may drop an indicator or
change its points, target, group or empty rule, but cannot invent a new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from scoring.exceptions import ModelError

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "vn766@1"
EMPTY_RULES = ("zero", "full", "exclude")
BAND_ORDER = ("weak", "average", "fair", "good", "excellent")


@dataclass(frozen=True, slots=True)
class Indicator:
    id: str
    group: str
    points: int | Fraction
    target: Fraction
    empty: str


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    version: int
    timezone: str
    windows: tuple[str, ...]
    indicators: tuple[Indicator, ...]
    groups: tuple[str, ...]
    bands: tuple[tuple[str, Fraction], ...]  # (band, minimum total), highest first
    points_digits: int
    total_digits: int

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def band(self, total: float | None) -> str | None:
        """The band of a rounded total (bands are judged on the rounded value, SPEC 3)."""
        if total is None:
            return None
        value = Fraction(str(total))
        for band, minimum in self.bands:
            if value >= minimum:
                return band
        return self.bands[-1][0]

    def indicator(self, indicator_id: str) -> Indicator:
        for ind in self.indicators:
            if ind.id == indicator_id:
                return ind
        raise KeyError(indicator_id)


def _number(value: object, what: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ModelError(f"{what}: expected a number, got {value!r}")
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError) as exc:
        raise ModelError(f"{what}: not a number: {value!r}") from exc


def model_from_dict(data: dict) -> Model:
    from scoring.indicators import KNOWN_INDICATORS

    try:
        name, version = str(data["name"]), int(data["version"])
        groups_data = data["groups"]
        bands_data = data["bands"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model lacks name/version/groups/bands: {exc}") from exc
    indicators: list[Indicator] = []
    groups: list[str] = []
    for group in groups_data:
        gid = str(group["id"])
        groups.append(gid)
        for ind in group["indicators"]:
            iid = str(ind["id"])
            if iid not in KNOWN_INDICATORS:
                raise ModelError(f"unknown indicator {iid!r}; known: {sorted(KNOWN_INDICATORS)}")
            empty = ind.get("empty", "zero")
            if empty not in EMPTY_RULES:
                raise ModelError(f"{iid}: empty rule must be one of {EMPTY_RULES}")
            points = _number(ind["points"], f"{iid}.points")
            target = _number(ind.get("target", 1), f"{iid}.target")
            if points < 0 or target <= 0:
                raise ModelError(f"{iid}: points must be >= 0 and target > 0")
            pts: int | Fraction = int(points) if points.denominator == 1 else points
            indicators.append(Indicator(iid, gid, pts, target, empty))
    if len({i.id for i in indicators}) != len(indicators):
        raise ModelError("an indicator appears twice")
    bands = sorted(
        ((str(b["band"]), _number(b["min"], "band min")) for b in bands_data),
        key=lambda b: b[1],
        reverse=True,
    )
    rounding = data.get("rounding", {})
    return Model(
        name=name,
        version=version,
        timezone=str(data.get("timezone", "Asia/Ho_Chi_Minh")),
        windows=tuple(data.get("windows", ("month", "quarter", "year"))),
        indicators=tuple(indicators),
        groups=tuple(groups),
        bands=tuple(bands),
        points_digits=int(rounding.get("points", 4)),
        total_digits=int(rounding.get("total", 2)),
    )


def load_model(ref_or_path: str | Path = DEFAULT_MODEL) -> Model:
    """A model by reference (``vn766@1``, shipped in ``scoring/models``) or by file path."""
    path = Path(ref_or_path)
    if not path.suffix and "@" in str(ref_or_path):
        path = MODELS_DIR / f"{ref_or_path}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"no model {ref_or_path!r} (looked for {path})") from exc
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model {path}: {exc}") from exc
    model = model_from_dict(data)
    if "@" in str(ref_or_path) and not path.is_absolute() and model.ref != str(ref_or_path):
        raise ModelError(f"{path} defines {model.ref}, not {ref_or_path}")
    return model
