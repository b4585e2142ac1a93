"""Totals and bands of a timeline, fast: the same numbers as ``scoring.points.rate`` without
building its exact breakdown at every instant (``audit.replay`` asks tens of thousands)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction

from scoring.incremental import COUNT_IDS, WindowSums
from scoring.model import Model
from scoring.points import indicator_points, round_half_away


class Totals:
    """Rounded total and band from counts, exactly as ``scoring.points.rate`` makes them.

    ``rate`` builds the whole breakdown in exact fractions (about 1 ms); a timeline needs only
    the total, at tens of thousands of instants. The sum is done in floats (error ~1e-13) and
    rounded half away from zero like ``round_half_away``; only when the scaled total lies
    within 1e-6 of a rounding boundary (x.xx5) is it recomputed exactly with the core's own
    ``indicator_points`` and ``round_half_away``. Bands come from ``Model.band``. Tests check
    the result equals ``rate`` (explanations and verification call ``rate`` itself).
    """

    EPS = 1e-6

    def __init__(self, model: Model):
        self.model = model
        self.scale = 10**model.total_digits
        self.terms = [(i.id, float(i.points), float(i.target), i.empty, i)
                      for i in model.indicators]
        self.weights = [(mx, target, empty) for _, mx, target, empty, _ in self.terms]
        # ``of_sums``: the terms by their place in ``WindowSums.pairs`` (None: the model's
        # order is that one); an indicator that is not one of those counts (0, 0), which adds
        # the same at every T (``base``)
        placed = [(COUNT_IDS.index(t[0]), w) for t, w in zip(self.terms, self.weights,
                                                              strict=True) if t[0] in COUNT_IDS]
        places = [k for k, _ in placed]
        self.places = None if places == list(range(len(COUNT_IDS))) else places
        self.placed_weights = [w for _, w in placed]
        unplaced = [w for t, w in zip(self.terms, self.weights, strict=True)
                    if t[0] not in COUNT_IDS]
        self.base = self._sum([(0, 0)] * len(unplaced), unplaced)
        self._bands: dict[float, str | None] = {}
        self.exact_calls = 0

    @staticmethod
    def _sum(pairs: Iterable[tuple[int, int]], weights: Iterable[tuple[float, float, str]],
             s: float = 0.0, smax: float = 0.0) -> tuple[float, float]:
        """Points and maximum in floats, each indicator's ratio capped at its target."""
        for (num, den), (mx, target, empty) in zip(pairs, weights, strict=True):
            if den > 0:
                r = num / den / target
                s += mx * r if r < 1.0 else mx
                smax += mx
            elif empty == "full":
                s += mx
                smax += mx
            elif empty == "zero":
                smax += mx
        return s, smax

    def of(self, counts: Mapping[str, tuple[int, int]], scored: bool
           ) -> tuple[float | None, str | None]:
        if not scored:
            return None, None
        pairs = [counts.get(iid, (0, 0)) for iid, *_ in self.terms]
        return self._rated(*self._sum(pairs, self.weights), lambda: counts)

    def of_sums(self, sums: WindowSums) -> tuple[float | None, str | None]:
        """``of(sums.counts(...).values, items > 0)`` without building the counts."""
        if not sums.items():
            return None, None
        pairs = sums.pairs()
        placed = pairs if self.places is None else [pairs[k] for k in self.places]
        return self._rated(*self._sum(placed, self.placed_weights, *self.base),
                           lambda: dict(zip(COUNT_IDS, pairs, strict=True)))

    def _rated(self, s: float, smax: float,
               counts: Callable[[], Mapping[str, tuple[int, int]]]
               ) -> tuple[float | None, str | None]:
        if smax == 0.0:
            return None, None
        scaled = 100.0 * s / smax * self.scale
        whole = math.floor(scaled)
        if abs(scaled - whole - 0.5) < self.EPS:
            total = self._exact(counts())
        else:
            whole += scaled - whole >= 0.5
            total = whole / self.scale
        band = self._bands.get(total)
        if band is None:
            band = self._bands[total] = self.model.band(total)
        return total, band

    def _exact(self, counts: Mapping[str, tuple[int, int]]) -> float:
        self.exact_calls += 1
        sum_points = sum_max = Fraction(0)
        for iid, _, _, empty, ind in self.terms:
            num, den = counts.get(iid, (0, 0))
            if den > 0:
                sum_points += indicator_points(ind.points, ind.target, num, den)
            elif empty == "full":
                sum_points += Fraction(ind.points)
            elif empty == "exclude":
                continue
            sum_max += Fraction(ind.points)
        return round_half_away(100 * sum_points / sum_max, self.model.total_digits)
