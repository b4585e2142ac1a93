"""The points layer (SPEC section 3): exact arithmetic, half-away-from-zero rounding, bands, and
``bando rate`` reproducing points from published numerators and denominators."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bando.cli import main
from scoring.model import BAND_ORDER, load_model, model_from_dict
from scoring.points import indicator_points, rate, round_half_away

VN766 = load_model("vn766@1")
MAX = {ind.id: ind.points for ind in VN766.indicators}

# the vn766 indicators that are worth their full max at ratio 1/1, grouped to reach sums
ALL_IDS = [ind.id for ind in VN766.indicators]
PETITION_IDS = ("petitions_on_time", "petition_satisfaction")  # empty rule "full"


def full(*ids: str) -> dict[str, tuple[int, int]]:
    return {i: (1, 1) for i in ids}


# ---------------------------------------------------------------- rounding


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        (Fraction(79995, 1000), 2, 80.0),
        (Fraction(-79995, 1000), 2, -80.0),
        (Fraction(2675, 1000), 2, 2.68),  # float round(2.675, 2) gives 2.67
        (Fraction(12345, 1000), 2, 12.35),
        (Fraction(1, 200), 2, 0.01),
        (Fraction(-1, 200), 2, -0.01),
        (Fraction(1, 201), 2, 0.0),
        (Fraction(15, 100000), 4, 0.0002),  # float round(0.00015, 4) gives 0.0001
        (Fraction(14999, 100000000), 4, 0.0001),
        (Fraction(1, 3), 4, 0.3333),
        (Fraction(2, 3), 4, 0.6667),
        (Fraction(5, 2), 0, 3.0),
        (Fraction(-5, 2), 0, -3.0),
        (Fraction(100), 2, 100.0),
        (Fraction(0), 2, 0.0),
    ],
)
def test_round_half_away(value: Fraction, digits: int, expected: float) -> None:
    assert round_half_away(value, digits) == expected


@settings(max_examples=300, deadline=None)
@given(st.integers(-10**12, 10**12), st.integers(0, 8), st.integers(0, 6))
def test_round_half_away_matches_decimal_half_up(n: int, scale: int, digits: int) -> None:
    """Decimal's ROUND_HALF_UP is half away from zero; exact for decimal fractions."""
    value = Fraction(n, 10**scale)
    expected = Decimal(n).scaleb(-scale).quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP)
    assert round_half_away(value, digits) == float(expected)


@settings(max_examples=150, deadline=None)
@given(st.fractions(min_value=-1000, max_value=1000, max_denominator=10**6), st.integers(0, 5))
def test_round_half_away_is_nearest(value: Fraction, digits: int) -> None:
    r = Fraction(round_half_away(value, digits)).limit_denominator(10**digits)
    step = Fraction(1, 10**digits)
    assert abs(r - value) <= step / 2
    assert r * 10**digits == int(r * 10**digits)
    if abs(r - value) == step / 2:  # an exact tie goes away from zero
        assert abs(r) > abs(value)


# ---------------------------------------------------------------- indicator points


@pytest.mark.parametrize(
    ("max_points", "target", "num", "den", "expected"),
    [
        (20, Fraction(1), 37, 40, Fraction(37, 2)),
        (2, Fraction(8, 10), 6, 10, Fraction(3, 2)),
        (6, Fraction(1, 2), 6, 10, Fraction(6)),  # 0.6 / 0.5 > 1: capped at max
        (6, Fraction(1, 2), 5, 10, Fraction(6)),  # exactly on target
        (6, Fraction(1, 2), 2, 10, Fraction(12, 5)),
        (4, Fraction(8, 10), 2, 5, Fraction(2)),
        (6, Fraction(9, 10), 9, 10, Fraction(6)),
        (6, Fraction(9, 10), 8, 10, Fraction(16, 3)),
        (6, Fraction(1), 0, 7, Fraction(0)),
    ],
)
def test_indicator_points(max_points: int, target: Fraction, num: int, den: int,
                          expected: Fraction) -> None:
    assert indicator_points(max_points, target, num, den) == expected


def test_vn766_model_matches_spec_table() -> None:
    expected = {
        "announced_on_time": ("transparency", 6, "1", "zero"),
        "publicized_on_time": ("transparency", 4, "1", "zero"),
        "content_complete": ("transparency", 2, "1", "zero"),
        "dossier_synced": ("transparency", 6, "1", "zero"),
        "on_time": ("progress", 20, "1", "zero"),
        "online_submission": ("online_services", 6, "0.5", "zero"),
        "online_uptake": ("online_services", 4, "1", "zero"),
        "full_online": ("online_services", 2, "0.8", "zero"),
        "paid_online": ("online_payment", 6, "1", "zero"),
        "online_payment_procedures": ("online_payment", 4, "0.8", "zero"),
        "e_result": ("digitization", 6, "1", "zero"),
        "digitized": ("digitization", 4, "1", "zero"),
        "data_reused": ("digitization", 2, "0.8", "zero"),
        "pds_linked": ("digitization", 4, "1", "zero"),
        "population_db": ("digitization", 6, "1", "zero"),
        "petitions_on_time": ("satisfaction", 6, "1", "full"),
        "petition_satisfaction": ("satisfaction", 6, "1", "full"),
        "dossier_satisfaction": ("satisfaction", 6, "0.9", "zero"),
    }
    got = {i.id: (i.group, i.points, i.target, i.empty) for i in VN766.indicators}
    assert got == {k: (g, p, Fraction(t), e) for k, (g, p, t, e) in expected.items()}
    assert VN766.ref == "vn766@1"
    assert VN766.groups == ("transparency", "progress", "online_services", "online_payment",
                            "digitization", "satisfaction")
    group_max: dict[str, int] = {}
    for i in VN766.indicators:
        group_max[i.group] = group_max.get(i.group, 0) + int(i.points)
    assert group_max == {"transparency": 18, "progress": 20, "online_services": 12,
                         "online_payment": 10, "digitization": 22, "satisfaction": 18}


# ---------------------------------------------------------------- totals and bands


def test_total_rounds_exact_half_away_from_zero() -> None:
    # 12 (two empty petition indicators, rule full) + 19.995 (on_time 3999/4000 of 20)
    # + 48 (18 transparency + 12 online services + 10 payment + 6 e_result + 2 data_reused)
    counts = full("announced_on_time", "publicized_on_time", "content_complete",
                  "dossier_synced", "online_submission", "online_uptake", "full_online",
                  "paid_online", "online_payment_procedures", "e_result", "data_reused")
    counts["on_time"] = (3999, 4000)
    r = rate(VN766, counts)
    assert r.exact_total == Fraction(79995, 1000)
    assert r.total == 80.0  # a float sum would give 79.99499999... -> 79.99
    assert r.band == "good"  # judged on the rounded total
    # one more late dossier in 4000 -> 79.99 exactly -> fair
    counts["on_time"] = (3998, 4000)
    r = rate(VN766, counts)
    assert r.exact_total == Fraction(7999, 100)
    assert r.total == 79.99
    assert r.band == "fair"


@pytest.mark.parametrize(
    ("on_time", "exact", "total", "band"),
    [
        ((9997495, 10**7), Fraction(8999499, 100000), 89.99, "good"),  # 89.99499
        ((9997500, 10**7), Fraction(89995, 1000), 90.0, "excellent"),  # 89.995
        ((9997505, 10**7), Fraction(8999501, 100000), 90.0, "excellent"),  # 89.99501
    ],
)
def test_total_around_a_band_boundary(on_time: tuple[int, int], exact: Fraction, total: float,
                                      band: str) -> None:
    # 18 transparency + 12 online services + 10 payment + 18 digitization without
    # "digitized" + 12 (empty petition indicators, rule full) = 70, plus 20 x on_time ratio
    given = [i for i in ALL_IDS
             if i not in PETITION_IDS + ("on_time", "digitized", "dossier_satisfaction")]
    counts = full(*given)
    counts["on_time"] = on_time
    r = rate(VN766, counts)
    assert r.exact_total == exact
    assert r.total == total
    assert r.band == band


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (100.0, "excellent"), (90.0, "excellent"), (89.99, "good"), (80.0, "good"),
        (79.99, "fair"), (70.0, "fair"), (69.99, "average"), (50.0, "average"),
        (49.99, "weak"), (0.0, "weak"), (None, None),
    ],
)
def test_band_boundaries(total: float | None, band: str | None) -> None:
    assert VN766.band(total) == band


FIFTY_LOST = ("on_time", "population_db", "pds_linked", "digitized", "online_uptake",
              "online_payment_procedures", "publicized_on_time", "content_complete",
              "data_reused")


@pytest.mark.parametrize(
    ("failed", "partial", "points_sum", "band"),
    [
        (("paid_online", "publicized_on_time"), {}, 90, "excellent"),
        (("on_time",), {}, 80, "good"),
        (("on_time", "publicized_on_time", "population_db"), {}, 70, "fair"),
        # 20 + 6 + 4 + 4 + 4 + 4 + 4 + 2 + 2 = 50 points lost
        ((*FIFTY_LOST,), {}, 50, "average"),
        # 30 lost, and one point of on_time
        ((*FIFTY_LOST[1:],), {"on_time": (19, 20)}, 69, "average"),
        # 50 lost, and one point of full_online (2 x 0.4/0.8)
        ((*FIFTY_LOST,), {"full_online": (2, 5)}, 49, "weak"),
    ],
)
def test_band_boundaries_through_rate(failed: tuple[str, ...],
                                      partial: dict[str, tuple[int, int]], points_sum: int,
                                      band: str) -> None:
    """Totals exactly on (or one point under) a boundary; every indicator applicable, so the
    total is 100 minus the points of the failed (0/1) indicators, minus the partial losses."""
    counts = {i: (0, 1) if i in failed else (1, 1) for i in ALL_IDS}
    counts.update(partial)
    r = rate(VN766, counts)
    assert r.exact_total == points_sum
    assert r.total == float(points_sum)
    assert r.band == band


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_bands_monotonic_in_total(a: int, b: int) -> None:
    lo, hi = sorted((a / 100, b / 100))
    assert BAND_ORDER.index(VN766.band(lo)) <= BAND_ORDER.index(VN766.band(hi))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=18, max_size=18))
def test_rate_bounds_and_sums(pairs: list[tuple[int, int]]) -> None:
    counts = {ind: (min(n, d), d) for ind, (n, d) in zip(ALL_IDS, pairs, strict=True)}
    r = rate(VN766, counts)
    exact_sum = Fraction(0)
    for ind in VN766.indicators:
        out = r.indicators[ind.id]
        num, den = counts[ind.id]
        assert out["num"] == num and out["den"] == den
        assert out["applicable"] is (den > 0)
        assert out["max"] == ind.points
        assert 0 <= out["points"] <= ind.points
        if den == 0:
            assert out["points"] == (ind.points if ind.empty == "full" else 0)
            exact = Fraction(ind.points if ind.empty == "full" else 0)
        else:
            exact = Fraction(ind.points) * min(1, Fraction(num, den) / ind.target)
        exact_sum += exact
    assert r.exact_total == exact_sum  # vn766 sums to 100 points
    assert 0 <= r.total <= 100
    assert r.band == VN766.band(r.total)
    for group in VN766.groups:
        in_group = [i for i in VN766.indicators if i.group == group]
        assert r.groups[group]["max"] == sum(i.points for i in in_group)
        assert abs(r.groups[group]["points"]
                   - sum(r.indicators[i.id]["points"] for i in in_group)) < 1e-3


def test_not_scored_gives_breakdown_without_total() -> None:
    r = rate(VN766, {}, scored=False)
    assert r.total is None and r.band is None and r.exact_total is None
    assert r.indicators["petitions_on_time"]["points"] == 6
    assert r.indicators["on_time"] == {"num": 0, "den": 0, "points": 0, "max": 20,
                                       "applicable": False}


# ---------------------------------------------------------------- empty rule "exclude"


def exclude_model(*ids: str) -> dict:
    data = json.loads((Path(__file__).resolve().parents[2] / "scoring" / "models"
                       / "vn766@1.json").read_text(encoding="utf-8"))
    data["version"] = 99
    for group in data["groups"]:
        for ind in group["indicators"]:
            if ind["id"] in ids:
                ind["empty"] = "exclude"
    return data


def test_exclude_drops_max_from_total() -> None:
    model = model_from_dict(exclude_model(*PETITION_IDS))
    counts = {"on_time": (1, 2)}
    r = rate(model, counts)
    # 10 points of 100 - 12 excluded = 88 -> 11.3636..%
    assert r.exact_total == Fraction(100 * 10, 88)
    assert r.total == 11.36
    assert r.groups["satisfaction"] == {"points": 0, "max": 6}
    assert r.indicators["petitions_on_time"]["applicable"] is False
    # when the denominator is not 0 the indicator counts as usual
    r = rate(model, {"on_time": (1, 2), "petitions_on_time": (1, 4)})
    # petition_satisfaction is still excluded: (10 + 6/4) of 94
    assert r.exact_total == Fraction(100) * (10 + Fraction(6, 4)) / 94
    assert r.groups["satisfaction"] == {"points": 1.5, "max": 12}


def test_everything_excluded_means_no_total() -> None:
    model = model_from_dict(exclude_model(*ALL_IDS))
    r = rate(model, {})
    assert r.total is None and r.band is None
    assert all(g["max"] == 0 for g in r.groups.values())


# ---------------------------------------------------------------- bando rate


def run_rate(tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: object,
             *extra: str) -> tuple[int, dict | None]:
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps(doc), encoding="utf-8")
    rc = main(["rate", "--counts", str(counts), *extra])
    out = capsys.readouterr().out
    return rc, (json.loads(out) if out.strip() else None)


def test_bando_rate_hand_computed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"units": {
        "u1": {"on_time": [37, 40], "full_online": [6, 10], "online_submission": [6, 10]},
        "u2": {"data_reused": [3, 5], "online_payment_procedures": [2, 5],
               "dossier_satisfaction": [8, 10], "petitions_on_time": [0, 3]},
        "u3": {},
    }}
    rc, out = run_rate(tmp_path, capsys, doc)
    assert rc == 0 and out is not None
    assert out["model"] == "vn766@1"
    assert out["rejected"] == []
    units = {u["unit_id"]: u for u in out["units"]}
    assert set(units) == {"u1", "u2", "u3"}

    u1 = units["u1"]["indicators"]
    assert u1["on_time"]["points"] == pytest.approx(18.5, abs=1e-9)  # 20 * 37/40
    assert u1["full_online"]["points"] == pytest.approx(1.5, abs=1e-9)  # 2 * 0.6/0.8
    assert u1["online_submission"]["points"] == pytest.approx(6, abs=1e-9)  # 0.6/0.5 capped
    assert u1["on_time"]["num"] == 37 and u1["on_time"]["den"] == 40
    assert u1["on_time"]["applicable"] is True and u1["on_time"]["max"] == 20
    assert u1["announced_on_time"]["applicable"] is False
    assert u1["announced_on_time"]["points"] == 0  # empty rule zero
    assert u1["petitions_on_time"]["points"] == 6  # empty rule full
    groups = units["u1"]["groups"]
    assert groups["progress"] == {"points": 18.5, "max": 20}
    assert groups["online_services"] == {"points": 7.5, "max": 12}
    assert groups["satisfaction"] == {"points": 12, "max": 18}
    # 18.5 + 1.5 + 6 + 12 (empty petitions) = 38
    assert units["u1"]["total"] == 38.0 and units["u1"]["band"] == "weak"

    u2 = units["u2"]["indicators"]
    assert u2["data_reused"]["points"] == pytest.approx(1.5)  # 2 * 0.6/0.8
    assert u2["online_payment_procedures"]["points"] == pytest.approx(2.0)  # 4 * 0.4/0.8
    assert u2["dossier_satisfaction"]["points"] == pytest.approx(5.3333)  # 6 * 0.8/0.9
    assert u2["petitions_on_time"]["points"] == 0  # applicable: 0/3
    assert u2["petitions_on_time"]["applicable"] is True
    # 1.5 + 2 + 16/3 + 0 + 6 (petition_satisfaction empty -> full) = 14.8333..
    assert units["u2"]["total"] == 14.83

    # nothing given: only the "full" empty rules score
    assert units["u3"]["total"] == 12.0


def test_bando_rate_rejects_unknown_and_bad_counts(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"units": {"u1": {"on_time": [1, 2], "charisma": [1, 1], "e_result": [1, -1],
                            "digitized": [True, 1], "pds_linked": [1, 2, 3],
                            "population_db": "1/2"},
                     "u2": [1, 2]}}
    rc, out = run_rate(tmp_path, capsys, doc)
    assert rc == 0 and out is not None
    rejected = {(r["unit_id"], r.get("indicator"), r["error"]) for r in out["rejected"]}
    assert ("u1", "charisma", "unknown_indicator") in rejected
    for ind in ("e_result", "digitized", "pds_linked", "population_db"):
        assert ("u1", ind, "invalid_counts") in rejected, ind
    assert ("u2", None, "invalid_counts") in rejected
    assert len(rejected) == 6
    u1 = next(u for u in out["units"] if u["unit_id"] == "u1")
    assert u1["indicators"]["on_time"]["points"] == 10
    assert "charisma" not in u1["indicators"]
    # the refused entries count as 0/0
    assert u1["indicators"]["e_result"]["applicable"] is False
    assert u1["total"] == 22.0  # 10 + 12 (empty petitions)


def test_bando_rate_with_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_path = tmp_path / "model.json"
    model_path.write_text(json.dumps(exclude_model(*PETITION_IDS)), encoding="utf-8")
    rc, out = run_rate(tmp_path, capsys, {"units": {"u": {"on_time": [1, 2]}}},
                       "--model", str(model_path))
    assert rc == 0 and out is not None
    assert out["model"] == "vn766@99"
    assert out["units"][0]["total"] == 11.36


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"units": 5}'])
def test_bando_rate_unreadable_input_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           content: str) -> None:
    counts = tmp_path / "counts.json"
    counts.write_text(content, encoding="utf-8")
    assert main(["rate", "--counts", str(counts)]) != 0
    assert "bando rate" in capsys.readouterr().err


def test_bando_rate_missing_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rate", "--counts", str(tmp_path / "absent.json")]) != 0
    assert capsys.readouterr().out == ""


def test_largest_losses_is_the_exact_sort_even_where_floats_collide() -> None:
    import random
    from fractions import Fraction

    from scoring.points import largest_losses

    rnd = random.Random(5)
    big = 10**20  # values closer than a float can tell apart
    for _ in range(300):
        lost: dict[str, Fraction] = {}
        for _k in range(rnd.randrange(0, 19)):
            pick = rnd.random()
            if pick < 0.3:
                v = Fraction(rnd.randrange(0, 6), rnd.choice((1, 2, 4)))
            elif pick < 0.6:
                v = Fraction(5, 2) + Fraction(rnd.randrange(-3, 4), big)
            else:
                v = Fraction(rnd.randrange(0, 10**6), rnd.randrange(1, 10**6))
            lost[f"ind{rnd.randrange(40):02d}"] = v
        want = sorted(((i, v) for i, v in lost.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))
        assert largest_losses(lost) == want
    collide = {"a": Fraction(5, 2) + Fraction(1, big), "b": Fraction(5, 2),
               "c": Fraction(5, 2) + Fraction(2, big)}
    assert float(collide["a"]) == float(collide["c"])
    assert [i for i, _ in largest_losses(collide)] == ["c", "a", "b"]
