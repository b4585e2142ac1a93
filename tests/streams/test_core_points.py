"""``scoring.points.rate`` (integer arithmetic, for the live worker's speed) gives exactly what
the straightforward ``Fraction`` reading of SPEC section 3 gives, kept here as the reference,
for the shipped model and for random models (fractional points and targets, all empty rules)."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.model import Model, load_model
from scoring.points import Rated, indicator_points, rate, round_half_away

VN766 = load_model("vn766@1")


def _num(value: Fraction | int) -> float | int:
    if isinstance(value, int):
        return value
    return int(value) if value.denominator == 1 else float(value)


def reference_rate(model: Model, counts: dict[str, tuple[int, int]], scored: bool = True
                   ) -> Rated:
    pd = model.points_digits
    groups: dict[str, list[Fraction]] = {g: [Fraction(0), Fraction(0)] for g in model.groups}
    indicators: dict[str, dict[str, object]] = {}
    lost: dict[str, Fraction] = {}
    sum_points, sum_max = Fraction(0), Fraction(0)
    for ind in model.indicators:
        num, den = counts.get(ind.id, (0, 0))
        if den > 0:
            pts = indicator_points(ind.points, ind.target, num, den)
            lost[ind.id] = Fraction(ind.points) - pts
        elif ind.empty == "full":
            pts = Fraction(ind.points)
        elif ind.empty == "zero":
            pts = Fraction(0)
            lost[ind.id] = Fraction(ind.points)  # SPEC 4: what costs the most points
        else:
            indicators[ind.id] = {"num": num, "den": den, "points": None,
                                  "max": _num(ind.points), "applicable": False}
            continue
        indicators[ind.id] = {"num": num, "den": den, "points": round_half_away(pts, pd),
                              "max": _num(ind.points), "applicable": den > 0}
        groups[ind.group][0] += pts
        groups[ind.group][1] += Fraction(ind.points)
        sum_points += pts
        sum_max += Fraction(ind.points)
    group_out = {g: {"points": round_half_away(p, pd), "max": _num(m)}
                 for g, (p, m) in groups.items()}
    if not scored or sum_max == 0:
        return Rated(None, None, None, group_out, indicators, lost)
    exact = 100 * sum_points / sum_max
    total = round_half_away(exact, model.total_digits)
    return Rated(total, exact, model.band(total), group_out, indicators, lost)


def same(a: Rated, b: Rated) -> None:
    assert a.total == b.total and a.exact_total == b.exact_total and a.band == b.band
    assert a.groups == b.groups
    assert a.indicators == b.indicators
    assert a.lost == b.lost
    for x, y in ((a.groups, b.groups), (a.indicators, b.indicators)):  # ints stay ints
        assert [type(v) for d in x.values() for v in d.values()] == [
            type(v) for d in y.values() for v in d.values()]


pairs = st.integers(0, 60).flatmap(lambda den: st.tuples(st.integers(0, den + 2), st.just(den)))
counts = st.dictionaries(st.sampled_from([i.id for i in VN766.indicators]), pairs)
fractions = st.fractions(min_value=Fraction(1, 7), max_value=12, max_denominator=9)


@st.composite
def models(draw: st.DrawFn) -> Model:
    if draw(st.booleans()):
        return VN766
    indicators = []
    for ind in VN766.indicators:
        points = draw(st.one_of(st.integers(0, 12), fractions))
        if isinstance(points, Fraction) and points.denominator == 1:
            points = int(points)
        indicators.append(replace(ind, points=points, target=draw(fractions),
                                  empty=draw(st.sampled_from(["zero", "full", "exclude"]))))
    return replace(VN766, indicators=tuple(indicators),
                   points_digits=draw(st.integers(0, 4)), total_digits=draw(st.integers(0, 3)))


@settings(max_examples=400, deadline=None)
@given(models(), counts, st.booleans())
def test_rate_equals_the_fraction_reading(model: Model, c: dict, scored: bool) -> None:
    same(rate(model, c, scored), reference_rate(model, c, scored))


def test_boundaries_round_half_away() -> None:
    # 79.995 and friends: totals that sit exactly on a rounding boundary
    for num in range(0, 41):
        c = {i.id: (num, 40) for i in VN766.indicators}
        same(rate(VN766, c), reference_rate(VN766, c))


def test_an_empty_indicator_under_the_zero_rule_costs_its_whole_max() -> None:
    """SPEC 4: band-changes name "the indicators that cost the most points". A unit with no
    publications loses all of announced_on_time's 6 points (rule "zero"): more than an on-time
    rate of 9/10 costs it."""
    from scoring.points import largest_losses

    empty = {i.id for i in VN766.indicators if i.empty == "zero"}
    assert "announced_on_time" in empty
    rated = rate(VN766, {"on_time": (9, 10), "dossier_synced": (10, 10)}, True)
    top = [i for i, _ in largest_losses(rated.lost)[:3]]
    assert rated.lost["announced_on_time"] == Fraction(6)
    assert top[0] in {i.id for i in VN766.indicators if i.empty == "zero" and i.points == 6}
    assert "dossier_synced" not in rated.lost or rated.lost["dossier_synced"] == 0
