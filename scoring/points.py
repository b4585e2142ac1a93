"""The points layer: model rules applied to numerators and denominators (SPEC section 3).

Arithmetic is exact (fractions), and rounding is half away from zero, so a total that sits on a
boundary such as 79.995 rounds the same way on every machine and in every replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from scoring.model import Indicator, Model


def round_half_away(value: Fraction, digits: int) -> float:
    scale = 10**digits
    scaled = abs(value) * scale
    whole = scaled.numerator // scaled.denominator
    if scaled - whole >= Fraction(1, 2):
        whole += 1
    return (whole if value >= 0 else -whole) / scale


def _round_ratio(a: int, b: int, digits: int) -> float:
    """``round_half_away(Fraction(a, b), digits)`` for a >= 0, b > 0, without the Fraction."""
    scale = 10**digits
    whole, rem = divmod(a * scale, b)
    if 2 * rem >= b:
        whole += 1
    return whole / scale


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
    # points lost (max - points) per indicator that counts: an applicable one, or an empty one
    # under the "zero" rule (its whole max); "full" and "exclude" lose nothing
    lost: dict[str, Fraction]


def _num(value: Fraction | int) -> float | int:
    if isinstance(value, int):
        return value
    return int(value) if value.denominator == 1 else float(value)


Plan = tuple[tuple[tuple[Indicator, int, int, int, int, float | int], ...],
             tuple[tuple[str, int, int], ...]]
_PLANS: dict[int, tuple[Model, Plan]] = {}


def _plan(model: Model) -> Plan:
    """Per indicator (indicator, points as pn/pd, target as tn/td, max as output), and the
    bands as (band, minimum as n/d). Cached by identity: hashing a model costs more than
    rating with it."""
    cached = _PLANS.get(id(model))
    if cached is not None and cached[0] is model:
        return cached[1]
    indicators = []
    for ind in model.indicators:
        pts = Fraction(ind.points)
        indicators.append((ind, pts.numerator, pts.denominator, ind.target.numerator,
                           ind.target.denominator, _num(ind.points)))
    bands = tuple((band, low.numerator, low.denominator) for band, low in model.bands)
    plan = (tuple(indicators), bands)
    if len(_PLANS) > 16:
        _PLANS.clear()
    _PLANS[id(model)] = (model, plan)
    return plan


def _band(bands: tuple[tuple[str, int, int], ...], whole: int, scale: int) -> str:
    """``Model.band`` of the rounded total whole/scale (that float's decimal is exactly
    whole/scale), in integers."""
    for band, n, d in bands:
        if whole * d >= n * scale:
            return band
    return bands[-1][0]


def rate(model: Model, counts: dict[str, tuple[int, int]], scored: bool = True) -> Rated:
    """Points per indicator and group, total and band. Indicators missing from ``counts`` are
    taken as 0/0 (not applicable). ``scored=False`` gives the breakdown with no total (a unit
    with nothing in the window).

    Exact rational arithmetic on integer pairs (the same values as with ``Fraction``, which
    cost ten times as much): points = max x min(1, (num/den) / target)."""
    pd_digits = model.points_digits
    # per group: points p/q and max m/n, unreduced (one gcd at the end is cheaper than many)
    groups: dict[str, list[int]] = {g: [0, 1, 0, 1] for g in model.groups}
    indicators: dict[str, dict[str, object]] = {}
    lost: dict[str, Fraction] = {}
    plan, bands = _plan(model)
    for ind, pn, pd, tn, td, max_out in plan:
        num, den = counts.get(ind.id, (0, 0))
        applicable = den > 0
        if applicable:
            if num * td >= den * tn:  # ratio at or above target: full points
                a, b = pn, pd
            else:
                a, b = pn * num * td, pd * den * tn
            lost[ind.id] = Fraction(pn * b - a * pd, pd * b)
        elif ind.empty == "full":
            a, b = pn, pd
        elif ind.empty == "zero":
            a, b = 0, 1
            lost[ind.id] = Fraction(pn, pd)  # nothing to count yet costs the whole max
        else:  # exclude: neither points nor max count anywhere
            indicators[ind.id] = {
                "num": num, "den": den, "points": None, "max": max_out, "applicable": False,
            }
            continue
        indicators[ind.id] = {
            "num": num,
            "den": den,
            "points": _round_ratio(a, b, pd_digits),
            "max": max_out,
            "applicable": applicable,
        }
        g = groups[ind.group]
        g[0], g[1] = g[0] * b + a * g[1], g[1] * b
        g[2], g[3] = g[2] * pd + pn * g[3], g[3] * pd
    group_out: dict[str, dict[str, float | int]] = {}
    sp, sq, sm, sn = 0, 1, 0, 1  # sums over groups: points sp/sq, max sm/sn
    for gid, (p, q, m, n) in groups.items():
        group_out[gid] = {"points": _round_ratio(p, q, pd_digits),
                          "max": m // n if m % n == 0 else m / n}
        sp, sq = sp * q + p * sq, sq * q
        sm, sn = sm * n + m * sn, sn * n
    if not scored or sm == 0:
        return Rated(None, None, None, group_out, indicators, lost)
    # total = 100 x sum_points / sum_max
    a, b = 100 * sp * sn, sq * sm
    scale = 10**model.total_digits
    whole, rem = divmod(a * scale, b)
    if 2 * rem >= b:
        whole += 1
    total = whole / scale  # = _round_ratio(a, b, total_digits)
    return Rated(total, Fraction(a, b), _band(bands, whole, scale), group_out, indicators, lost)


def largest_losses(lost: dict[str, Fraction]) -> list[tuple[str, Fraction]]:
    """The positive losses, largest first, ties by indicator id: exactly
    ``sorted(..., key=lambda kv: (-kv[1], kv[0]))``, at a fraction of the cost (Fraction
    comparisons were a sixth of a live flush). Sorting by the float is exact except where two
    values share a float, and ``float`` never inverts an order, so only those runs are
    re-sorted exactly."""
    items = sorted(((-float(v), i, v) for i, v in lost.items() if v.numerator > 0),
                   key=lambda x: (x[0], x[1]))
    out: list[tuple[str, Fraction]] = []
    start = 0
    while start < len(items):
        end = start + 1
        while end < len(items) and items[end][0] == items[start][0]:
            end += 1
        run = items[start:end]
        if len(run) > 1:
            run.sort(key=lambda x: (-x[2], x[1]))
        out.extend((i, v) for _, i, v in run)
        start = end
    return out
