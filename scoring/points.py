"""The points layer: model rules applied to numerators and denominators (SPEC section 3).

Arithmetic is exact (fractions), and rounding is half away from zero, so a total that sits on a
boundary such as 79.995 rounds the same way on every machine and in every replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from scoring.model import Model


def round_half_away(value: Fraction, digits: int) -> float:
    scale = 10**digits
    scaled = abs(value) * scale
    whole = scaled.numerator // scaled.denominator
    if scaled - whole >= Fraction(1, 2):
        whole += 1
    return (whole if value >= 0 else -whole) / scale


def indicator_points(max_points: Fraction | int, target: Fraction, num: int, den: int) -> Fraction:
    ratio = Fraction(num, den)
    return Fraction(max_points) * min(Fraction(1), ratio / target)


@dataclass(slots=True)
class Rated:
    total: float | None  # rounded; None when excluded everything
    exact_total: Fraction | None
    band: str | None
    groups: dict[str, dict[str, float | int]]
    indicators: dict[str, dict[str, object]]
    lost: dict[str, Fraction]  # points lost per applicable indicator (max - points)


def _num(value: Fraction | int) -> float | int:
    if isinstance(value, int):
        return value
    return int(value) if value.denominator == 1 else float(value)


def rate(model: Model, counts: dict[str, tuple[int, int]], scored: bool = True) -> Rated:
    """Points per indicator and group, total and band. Indicators missing from ``counts`` are
    taken as 0/0 (not applicable). ``scored=False`` gives the breakdown with no total (a unit
    with nothing in the window)."""
    pd = model.points_digits
    groups: dict[str, list[Fraction]] = {g: [Fraction(0), Fraction(0)] for g in model.groups}
    indicators: dict[str, dict[str, object]] = {}
    lost: dict[str, Fraction] = {}
    sum_points = Fraction(0)
    sum_max = Fraction(0)
    for ind in model.indicators:
        num, den = counts.get(ind.id, (0, 0))
        applicable = den > 0
        if applicable:
            pts = indicator_points(ind.points, ind.target, num, den)
            lost[ind.id] = Fraction(ind.points) - pts
        elif ind.empty == "full":
            pts = Fraction(ind.points)
        elif ind.empty == "zero":
            pts = Fraction(0)
        else:  # exclude: neither points nor max count anywhere
            indicators[ind.id] = {
                "num": num, "den": den, "points": None, "max": _num(ind.points),
                "applicable": False,
            }
            continue
        indicators[ind.id] = {
            "num": num,
            "den": den,
            "points": round_half_away(pts, pd),
            "max": _num(ind.points),
            "applicable": applicable,
        }
        g = groups[ind.group]
        g[0] += pts
        g[1] += Fraction(ind.points)
        sum_points += pts
        sum_max += Fraction(ind.points)
    group_out = {
        gid: {"points": round_half_away(p, pd), "max": _num(m)} for gid, (p, m) in groups.items()
    }
    if not scored or sum_max == 0:
        return Rated(None, None, None, group_out, indicators, lost)
    exact = 100 * sum_points / sum_max
    total = round_half_away(exact, model.total_digits)
    return Rated(total, exact, model.band(total), group_out, indicators, lost)
