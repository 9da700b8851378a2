"""The one rule by which the book compares numbers: 95% t-intervals over training seeds.

With three seeds, "within 2 sd" is no confidence statement: the mean of n runs has the 95% interval
mean ± t(0.975, n-1) · sd / sqrt(n), with t(0.975, 2) = 4.30 for three seeds. Every chapter calls these functions
instead of writing its own check:

- :func:`mean_interval`: the 95% interval of a mean over seeds;
- :func:`against_paper`: whether a published number (the paper reports no spread) lies inside that interval,
  and which side it lies on otherwise; undecided when the interval is too wide to tell anything from anything;
- :func:`compare`: whether two of our own means differ, by Welch's interval of their difference (unequal
  variances, Welch-Satterthwaite degrees of freedom), and which is lower.

Each run's number is first averaged over its draws of the evaluation noise, so the spread over seeds holds both the
training and what is left of the evaluation noise. scipy is not a dependency; Student's t is computed here from
the regularized incomplete beta function and tested against its closed forms for 1 and 2 degrees of freedom.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

LEVEL = 0.95  # the book's one confidence level
WIDE = 0.5  # an interval reaching further than this fraction of the paper's number on each side cannot decide


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz's method)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for 0 <= x <= 1."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`)."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p!r}, df={df!r}")
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > p:
        lo *= 2.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, abs(mid)):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Interval:
    """A mean over n seeds with its sample sd and the half-width of its 95% t-interval (NaN for n < 2)."""

    mean: float
    sd: float
    n: int
    half: float

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half


def mean_and_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of some numbers (sd NaN for fewer than two; both NaN if one is NaN)."""
    values = [float(v) for v in values]
    if any(v != v for v in values):
        return math.nan, math.nan
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def interval_of(mean: float, sd: float, n: int, level: float = LEVEL) -> Interval:
    """The t-interval of a mean from its summary: mean, sample sd and number of seeds."""
    if n < 2 or sd != sd:
        return Interval(mean, math.nan, n, math.nan)
    return Interval(mean, sd, n, t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n))


def mean_interval(values: Iterable[float], level: float = LEVEL) -> Interval:
    """The mean of some per-seed numbers and its t-interval."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_interval needs at least one value")
    return interval_of(*mean_and_sd(values), len(values), level)


def against_paper(ours: Interval, paper: float, rounding: float = 0.0) -> bool | None:
    """True when the paper's number lies inside our interval, False when outside, None when undecidable.

    Undecidable: fewer than two seeds, or an interval wider than :data:`WIDE` times the paper's number on each side,
    inside which almost any value would lie. ``rounding``: half the last digit the paper printed (0.0005 for
    "94.7%"), so that any value the printed number may stand for counts.
    """
    if ours.half != ours.half:
        return None
    inside = abs(ours.mean - paper) <= ours.half + rounding
    return None if inside and ours.half > WIDE * paper else inside


@dataclass(frozen=True)
class Comparison:
    """Two of our means compared: their difference (a - b), its Welch interval, and whether it excludes 0."""

    diff: float
    half: float
    df: float

    @property
    def apart(self) -> bool:
        """True when the interval of the difference excludes 0 (False when undefined)."""
        return self.half == self.half and abs(self.diff) > self.half

    def sign(self) -> str:
        """"<" or ">" when a is below or above b outside the noise, "≈" otherwise."""
        return ("<" if self.diff < 0 else ">") if self.apart else "≈"


def compare(a: Interval, b: Interval, level: float = LEVEL) -> Comparison:
    """Welch's interval of the difference of two means over independent seeds."""
    if a.n < 2 or b.n < 2 or a.sd != a.sd or b.sd != b.sd:
        return Comparison(a.mean - b.mean, math.nan, math.nan)
    va, vb = a.sd**2 / a.n, b.sd**2 / b.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Comparison(a.mean - b.mean, 0.0, math.inf)
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    return Comparison(a.mean - b.mean, t_quantile(0.5 + level / 2, df) * se, df)
