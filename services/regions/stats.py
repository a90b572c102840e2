"""Fair comparisons of hospitals: Wilson intervals and Spiegelhalter funnel limits.

Pure functions of counts, no database. Rates here are per case (fractions); the league
table scales them to the indicator's unit.

- **Interval of one hospital's rate**: the Wilson score interval for a proportion; for
  a ratio (events per 100/1000 discharges, Poisson counts) its Poisson analogue, the
  score interval ``(x + z²/2 ± z·√(x + z²/4)) / n`` — the λ solving
  ``(x − nλ)² / (nλ) = z²``. Neither collapses to zero width at 0 or n events, which is
  what makes a small hospital's 0/3 readable.
- **Funnel limits** (Spiegelhalter 2005, "Funnel plots for comparing institutional
  performance", Statist. Med. 24:1185, appendix A.1.1): around a target ``p0``, for a
  volume ``n`` and a tail probability ``p``, ``r`` is the smallest count with
  ``P(R ≤ r) ≥ p`` under Binomial(n, p0) (Poisson(n·p0) for ratios), and the limit is
  ``(r − α) / n`` with ``α = (P(R ≤ r) − p) / (P(R ≤ r) − P(R ≤ r − 1))``: the
  interpolation that makes the discrete limits a smooth funnel. 95 % limits use
  p = 0.025 and 0.975, 99.8 % limits 0.001 and 0.999. Exact rather than the normal
  approximation because members are small: at n = 3 and p0 = 0.9 the normal lower
  95 % limit is 0.56 and would name a hospital with 1/3 an outlier; the exact one is
  0.30 and does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Kind = Literal["proportion", "ratio"]
#: Where a hospital lies on the funnel: inside both limits, or beyond the 95 % (warning)
#: or the 99.8 % (alarm) limit, above or below the target.
Position = Literal["inside", "above_95", "above_998", "below_95", "below_998"]

Z95 = NormalDist().inv_cdf(0.975)
#: Tail probabilities of the two funnels (two-sided 95 % and 99.8 %).
P95 = (0.025, 0.975)
P998 = (0.001, 0.999)
#: Terms of a distribution farther than this many standard deviations from its mean are
#: below 1e-300 and left out of the sums.
_SPAN_SD = 40.0


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of the proportion x/n."""
    if n <= 0 or not 0 <= x <= n:
        raise ValueError(f"need 0 ≤ x ≤ n and n > 0, got x={x}, n={n}")
    z2 = z * z
    center = (x + z2 / 2) / (n + z2)
    half = z / (n + z2) * math.sqrt(x * (n - x) / n + z2 / 4)
    # At 0 and n the ends are exactly 0 and 1; rounding would leave 1e-18.
    return (0.0 if x == 0 else center - half), (1.0 if x == n else center + half)


def poisson_score(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The score interval of a Poisson rate: x events in n units of exposure."""
    if n <= 0 or x < 0:
        raise ValueError(f"need x ≥ 0 and n > 0, got x={x}, n={n}")
    z2 = z * z
    half = z * math.sqrt(x + z2 / 4)
    return (0.0 if x == 0 else (x + z2 / 2 - half) / n), (x + z2 / 2 + half) / n


def interval(kind: Kind, x: int, n: int, z: float = Z95) -> tuple[float, float]:
    return wilson(x, n, z) if kind == "proportion" else poisson_score(x, n, z)


@dataclass(frozen=True, slots=True)
class _Cdf:
    """P(R ≤ r) of a discrete distribution, tabulated where it has mass."""

    start: int  # P(R < start) is below 1e-300
    values: list[float]  # values[i] = P(R ≤ start + i)

    def __call__(self, r: int) -> float:
        if r < self.start:
            return 0.0
        i = r - self.start
        return self.values[i] if i < len(self.values) else 1.0

    def quantile(self, p: float) -> int:
        """The smallest r with P(R ≤ r) ≥ p."""
        lo, hi = 0, len(self.values) - 1
        if self.values[hi] < p:  # rounding in the far tail: the last tabulated count
            return self.start + hi
        while lo < hi:
            mid = (lo + hi) // 2
            if self.values[mid] >= p:
                hi = mid
            else:
                lo = mid + 1
        return self.start + lo


def _tabulate(start: int, log_first: float, ratios: list[float]) -> _Cdf:
    """Cumulate a pmf given its log at ``start`` and the successive log ratios."""
    log_pmf = log_first
    total = math.exp(log_pmf)  # 0.0 where it underflows: mass below 1e-300
    values = [total]
    for step in ratios:
        log_pmf += step
        total += math.exp(log_pmf)
        values.append(min(total, 1.0))
    return _Cdf(start, values)


def binomial_cdf(n: int, p: float) -> _Cdf:
    if not 0.0 < p < 1.0:
        raise ValueError("p must lie strictly between 0 and 1")
    sd = math.sqrt(n * p * (1 - p))
    lo = max(0, math.floor(n * p - _SPAN_SD * sd - 10))
    hi = min(n, math.ceil(n * p + _SPAN_SD * sd + 10))
    log_first = (
        math.lgamma(n + 1)
        - math.lgamma(lo + 1)
        - math.lgamma(n - lo + 1)
        + lo * math.log(p)
        + (n - lo) * math.log1p(-p)
    )
    odds = math.log(p) - math.log1p(-p)
    ratios = [math.log((n - k) / (k + 1)) + odds for k in range(lo, hi)]
    return _tabulate(lo, log_first, ratios)


def poisson_cdf(mu: float) -> _Cdf:
    if mu <= 0:
        raise ValueError("mu must be more than 0")
    sd = math.sqrt(mu)
    lo = max(0, math.floor(mu - _SPAN_SD * sd - 10))
    hi = math.ceil(mu + _SPAN_SD * sd + 10)
    log_first = -mu + lo * math.log(mu) - math.lgamma(lo + 1)
    log_mu = math.log(mu)
    ratios = [log_mu - math.log(k + 1) for k in range(lo, hi)]
    return _tabulate(lo, log_first, ratios)


def _interpolated(cdf: _Cdf, p: float, n: int) -> float:
    r = cdf.quantile(p)
    at, below = cdf(r), cdf(r - 1)
    alpha = (at - p) / (at - below) if at > below else 0.0
    return (r - alpha) / n


def funnel_limit(kind: Kind, n: int, p0: float, p: float) -> float:
    """Spiegelhalter's interpolated limit for volume ``n`` around ``p0`` (a per-case
    rate) at tail probability ``p``, before clipping: a lower limit may be negative
    (no count is low enough to signal), a proportion's upper limit reaches 1."""
    if n <= 0:
        raise ValueError("n must be more than 0")
    if kind == "proportion":
        if p0 <= 0.0:
            return 0.0
        if p0 >= 1.0:
            return 1.0
        return _interpolated(binomial_cdf(n, p0), p, n)
    if p0 <= 0.0:
        return 0.0
    return _interpolated(poisson_cdf(n * p0), p, n)


@dataclass(frozen=True, slots=True)
class Funnel:
    """The four control limits at one volume (per-case rates, clipped to [0, 1] for a
    proportion and to ≥ 0 for a ratio)."""

    lower_998: float
    lower_95: float
    upper_95: float
    upper_998: float

    def position(self, rate: float) -> Position:
        if rate > self.upper_998:
            return "above_998"
        if rate > self.upper_95:
            return "above_95"
        if rate < self.lower_998:
            return "below_998"
        if rate < self.lower_95:
            return "below_95"
        return "inside"


def funnel(kind: Kind, n: int, p0: float) -> Funnel:
    cap = 1.0 if kind == "proportion" else math.inf
    lo998, lo95, hi95, hi998 = (
        min(cap, max(0.0, funnel_limit(kind, n, p0, p))) for p in (P998[0], *P95, P998[1])
    )
    return Funnel(lo998, lo95, hi95, hi998)
