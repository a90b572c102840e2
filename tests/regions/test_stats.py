"""services/regions/stats.py against reference computations: Wilson against the formula
written out and scipy's ``binomtest(...).proportion_ci(method="wilson")``; the funnel
limits against Spiegelhalter's interpolation computed with ``scipy.stats`` quantiles."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom, binomtest, norm, poisson

from services.regions import stats

PROBS = (0.001, 0.025, 0.975, 0.999)


def reference_limit(dist, n: int, p: float) -> float:
    """Spiegelhalter 2005, appendix A.1.1, with scipy's quantile and cdf."""
    r = dist.ppf(p)
    at, below = dist.cdf(r), dist.cdf(r - 1)
    alpha = (at - p) / (at - below)
    return float((r - alpha) / n)


def wilson_by_hand(x: int, n: int, z: float) -> tuple[float, float]:
    p = x / n
    denominator = 1 + z**2 / n
    centre = p + z**2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return (centre - spread) / denominator, (centre + spread) / denominator


counts = st.integers(min_value=1, max_value=20_000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
)


@given(counts)
@settings(max_examples=300, deadline=None)
def test_wilson_equals_the_formula_and_scipy(xn):
    x, n = xn
    low, high = stats.wilson(x, n)
    by_hand = wilson_by_hand(x, n, norm.ppf(0.975))
    ci = binomtest(x, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert low == pytest.approx(max(0.0, by_hand[0]), abs=1e-12)
    assert high == pytest.approx(min(1.0, by_hand[1]), abs=1e-12)
    assert low == pytest.approx(ci.low, abs=1e-9)
    assert high == pytest.approx(ci.high, abs=1e-9)
    assert low <= x / n <= high


@given(
    st.integers(min_value=1, max_value=50_000),
    st.floats(min_value=0.0005, max_value=0.9995),
)
@settings(max_examples=300, deadline=None)
def test_binomial_funnel_limits_equal_the_scipy_reference(n, p0):
    dist = binom(n, p0)
    for p in PROBS:
        ours = stats.funnel_limit("proportion", n, p0, p)
        assert ours == pytest.approx(reference_limit(dist, n, p), rel=1e-7, abs=1e-9), p


@given(
    st.integers(min_value=1, max_value=50_000),
    st.floats(min_value=0.0001, max_value=3.0),
)
@settings(max_examples=300, deadline=None)
def test_poisson_funnel_limits_equal_the_scipy_reference(n, p0):
    """Ratios (events per 100/1000 discharges): Poisson(n·p0) counts."""
    dist = poisson(n * p0)
    for p in PROBS:
        ours = stats.funnel_limit("ratio", n, p0, p)
        assert ours == pytest.approx(reference_limit(dist, n, p), rel=1e-7, abs=1e-9), p


@given(st.integers(min_value=1, max_value=5000), st.floats(min_value=0.001, max_value=0.999))
@settings(max_examples=200, deadline=None)
def test_the_funnel_is_ordered_and_clipped(n, p0):
    """Ordered and within [0, 1]. (A limit may lie on the far side of p0 at a tiny
    volume: at n = 1 and p0 = 0.01 no single case is above the 95 % limit of 0.)"""
    f = stats.funnel("proportion", n, p0)
    assert 0.0 <= f.lower_998 <= f.lower_95 <= f.upper_95 <= f.upper_998 <= 1.0


@given(st.integers(min_value=0, max_value=5000), st.integers(min_value=1, max_value=5000))
@settings(max_examples=200, deadline=None)
def test_poisson_score_interval_solves_the_score_equation(x, n):
    """Each end λ solves (x − nλ)² / (nλ) = z², i.e. it is the score interval."""
    z = norm.ppf(0.975)
    low, high = stats.poisson_score(x, n)
    for lam in (low, high):
        if lam > 0:
            assert (x - n * lam) ** 2 / (n * lam) == pytest.approx(z**2, rel=1e-6)
    assert low <= x / n <= high


@pytest.mark.parametrize(
    ("x", "n", "p0"),
    [(1, 3, 0.9), (1, 2, 0.9), (1, 2, 0.95), (4, 5, 0.95), (0, 1, 0.5), (1, 3, 0.1)],
)
def test_a_small_hospital_is_not_flagged_by_chance(x, n, p0):
    assert stats.funnel("proportion", n, p0).position(x / n) == "inside"


def test_the_normal_approximation_would_have_flagged_it():
    """Why exact limits: at n = 3 and p0 = 0.9 the normal lower 95 % limit is above 1/3."""
    normal_lower = 0.9 - norm.ppf(0.975) * math.sqrt(0.9 * 0.1 / 3)
    assert normal_lower > 1 / 3
    assert stats.funnel("proportion", 3, 0.9).lower_95 < 1 / 3


@pytest.mark.parametrize(
    ("x", "n", "p0", "expected"),
    [
        (700, 1000, 0.9, "below_998"),  # 70 % of a thousand against 90 %: an alarm
        (870, 1000, 0.9, "below_95"),  # just below: a warning, not an alarm
        (920, 1000, 0.9, "above_95"),
        (950, 1000, 0.9, "above_998"),
        (900, 1000, 0.9, "inside"),
    ],
)
def test_large_hospitals_are_placed(x, n, p0, expected):
    assert stats.funnel("proportion", n, p0).position(x / n) == expected


def test_degenerate_targets():
    assert stats.funnel("proportion", 10, 0.0) == stats.Funnel(0.0, 0.0, 0.0, 0.0)
    assert stats.funnel("proportion", 10, 1.0) == stats.Funnel(1.0, 1.0, 1.0, 1.0)
    assert stats.funnel("ratio", 10, 0.0).upper_998 == 0.0
    with pytest.raises(ValueError, match="n > 0"):
        stats.wilson(0, 0)
