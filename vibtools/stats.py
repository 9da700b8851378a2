"""The one rule by which the book compares numbers: 95% t-intervals over training seeds, asked two questions.

With three seeds, "within 2 sd" is no confidence statement: the mean of n runs has the 95% interval
mean ± t(0.975, n-1) · sd / sqrt(n), with t(0.975, 2) = 4.30 for three seeds. Every chapter calls these functions
instead of writing its own check:

- :func:`mean_interval`: the 95% interval of a mean over seeds;
- :func:`prediction_interval`: the 95% interval in which one more run of ours would fall,
  mean ± t(0.975, n-1) · sd · sqrt(1 + 1/n);
- :func:`judge`: a published number against our runs, by the two questions a published number can be asked.
  A published *single run* (the paper's Table 1 reports one run and no spread) is "consistent with one run of
  ours" when it lies inside our prediction interval; a published *mean* "matches our average" when it lies inside
  the t-interval of our mean. Both are symmetric (a number above ours is judged as one below), and both are
  undecided when the interval is too wide to tell anything from anything (:data:`WIDE`);
- :func:`against_paper`: the second question alone, on an interval;
- :func:`judge_borrowed`: a published single run against a *single* run of ours, with the seed spread borrowed
  from the runs of a neighbouring config (an assumption the reader must be told);
- :func:`compare`: whether two of our own means differ, by Welch's interval of their difference (unequal
  variances, Welch-Satterthwaite degrees of freedom), and which is lower;
- :func:`paired`: the same for two models whose runs are paired by seed (under the paper's protocol a seed fixes
  the batch order, ``data_seed = seed``): the t-interval of the mean of the per-seed differences. Where runs are
  so paired this is the design's test; the chapters print Welch's beside it;
- :func:`pairwise`: every pair of several models at once, paired by seed, per pair at 95% or with all pairs held
  at 95% together (Bonferroni), for ranking more than two models; :func:`against`: each model against one
  reference, likewise.

Each run's number is first averaged over its draws of the evaluation noise, so the spread over seeds holds both the
training and what is left of the evaluation noise. scipy is not a dependency; Student's t is computed here from
the regularized incomplete beta function and tested against its closed forms for 1 and 2 degrees of freedom.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
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


def prediction_interval(values: Iterable[float], level: float = LEVEL) -> Interval:
    """Where one more run of ours would fall, with probability ``level``: mean ± t(1-α/2, n-1) · sd · sqrt(1 + 1/n).

    Wider than the interval of the mean by sqrt(n + 1): it holds one run's own spread, not only the uncertainty
    of the mean. Returns an :class:`Interval` (``half`` is its half-width; NaN for fewer than two values).
    """
    return prediction_of(mean_interval(values, level), level)


def prediction_of(mean: Interval, level: float = LEVEL) -> Interval:
    """The prediction interval for one more run from the summary of n runs (:func:`prediction_interval`)."""
    if mean.n < 2 or mean.sd != mean.sd:
        return Interval(mean.mean, math.nan, mean.n, math.nan)
    return Interval(mean.mean, mean.sd, mean.n,
                    t_quantile(0.5 + level / 2, mean.n - 1) * mean.sd * math.sqrt(1 + 1 / mean.n))


def against_paper(ours: Interval, paper: float, rounding: float = 0.0) -> bool | None:
    """True when the paper's number lies inside our interval, False when outside, None when undecidable.

    Undecidable: fewer than two seeds, or an interval wider than :data:`WIDE` times the paper's number on each side,
    inside which almost any value would lie. ``rounding``: half the last digit the paper printed (0.0005 for
    "94.7%"), so that any value the printed number may stand for counts. Symmetric: only the distance counts.
    """
    if ours.half != ours.half:
        return None
    inside = abs(ours.mean - paper) <= ours.half + rounding
    return None if inside and ours.half > WIDE * paper else inside


@dataclass(frozen=True)
class Judgement:
    """A published number against our runs: both intervals and both answers (True, False, or None: undecided).

    ``one_run``: is it inside the prediction interval for one run of ours ("consistent with one run of ours")?
    The question for a published single run. ``average``: is it inside the t-interval of our mean ("matches our
    average")? The question for a published mean. ``single_run`` says which of the two the published number is.
    """

    published: float
    single_run: bool
    mean: Interval
    prediction: Interval
    one_run: bool | None
    average: bool | None

    @property
    def verdict(self) -> bool | None:
        """The answer to the question that fits what was published."""
        return self.one_run if self.single_run else self.average

    @property
    def side(self) -> str:
        """"above" or "below": where our mean lies relative to the published number."""
        return "above" if self.mean.mean > self.published else "below"


def judge(values: Iterable[float], published: float, *, single_run: bool = True, rounding: float = 0.0,
          level: float = LEVEL) -> Judgement:
    """Judge a published number against our per-seed values by the book's rule (both questions).

    Args:
        values: one number per training seed (each already averaged over its evaluation-noise draws).
        published: the published number, in the same units.
        single_run: True when it is one run (the paper's Table 1), False when it is a mean over runs.
        rounding: half the last printed digit of the published number (see :func:`against_paper`).
    Returns:
        The :class:`Judgement`.
    """
    return judge_summary(mean_interval(values, level), published, single_run=single_run, rounding=rounding,
                         level=level)


def judge_summary(mean: Interval, published: float, *, single_run: bool = True, rounding: float = 0.0,
                  level: float = LEVEL) -> Judgement:
    """:func:`judge` from the t-interval of our mean (its mean, sd and n), where the per-seed values are not kept."""
    pred = prediction_of(mean, level)
    average = against_paper(mean, published, rounding)
    # inside the interval of the mean is inside the wider prediction interval too, even where that one is too
    # wide to decide anything by itself
    one_run = True if average else against_paper(pred, published, rounding)
    return Judgement(published, single_run, mean, pred, one_run, average)


def prediction_borrowed(value: float, sd: float, n: int, level: float = LEVEL) -> Interval:
    """Where one more run would fall, from a single run and a seed spread borrowed from n runs of another config.

    value ± t(1-α/2, n-1) · sd · sqrt(2): the difference of two single runs has sd · sqrt(2), and the borrowed sd
    brings its n - 1 degrees of freedom. Valid only as far as the two configs share their seed spread.

    Args:
        value: our one run's number (already averaged over its evaluation-noise draws).
        sd: the sample sd over the seeds of the config it is borrowed from.
        n: how many seeds that sd was computed from (at least 2).
    Returns:
        An :class:`Interval` of n = 1 around ``value`` (``half`` is the prediction half-width).
    """
    if n < 2 or not math.isfinite(sd) or sd < 0:
        raise ValueError(f"a borrowed spread needs a finite sd >= 0 from at least 2 seeds, got sd={sd}, n={n}")
    return Interval(float(value), sd, 1, t_quantile(0.5 + level / 2, n - 1) * sd * math.sqrt(2))


def judge_borrowed(value: float, published: float, sd: float, n: int, *, rounding: float = 0.0,
                   level: float = LEVEL) -> Judgement:
    """A published single run against one run of ours, by :func:`prediction_borrowed` (the spread borrowed).

    Args:
        value: our one run's number.
        published: the published single run, in the same units.
        sd, n: the borrowed seed sd and the number of seeds it came from.
        rounding: half the last printed digit of the published number (see :func:`against_paper`).
    Returns:
        A :class:`Judgement` whose ``average`` is None (one run has no interval of its mean) and whose
        ``one_run`` answers "is the published run consistent with one run of ours?".
    """
    pred = prediction_borrowed(value, sd, n, level)
    return Judgement(published, True, Interval(float(value), math.nan, 1, math.nan), pred,
                     against_paper(pred, published, rounding), None)


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


def paired(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL) -> Comparison:
    """The t-interval of the mean per-seed difference a - b, over the seeds both have (df = pairs - 1).

    For two models whose runs are paired by seed: what a seed shares between them (its batch order, under the
    paper's protocol) cancels in each difference. NaN half-width with fewer than two pairs.

    Args:
        a, b: seed -> that seed's number, for each model.
    Raises:
        ValueError: the two share no seed.
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f"paired needs runs with shared seeds, got seeds {sorted(a)} and {sorted(b)}")
    d = mean_interval([float(a[s]) - float(b[s]) for s in seeds], level)
    return Comparison(d.mean, d.half, float(d.n - 1) if d.n > 1 else math.nan)


def pairwise(groups: Mapping[str, Mapping[int, float]], level: float = LEVEL,
             family: bool = False) -> dict[tuple[str, str], Comparison]:
    """Every pair of several models compared by :func:`paired`: a - b for each a listed before b.

    Ranking m models asks m(m-1)/2 questions at once, and at 95% each, one in twenty is "apart" by chance where
    no model differs. With ``family=True`` each interval is taken at level 1 - (1 - level)/pairs (Bonferroni), so
    that all of them hold together with probability at least ``level``.

    Args:
        groups: model -> (seed -> that seed's number), in the order of the comparison's rows.
        level: the confidence level, per pair or (``family``) of all pairs together.
        family: widen each interval so that the level holds for the family of all pairs.
    Returns:
        (a, b) -> the comparison of a - b, over the seeds both have.
    Raises:
        ValueError: fewer than two models, or two that share no seed.
    """
    names = list(groups)
    if len(names) < 2:
        raise ValueError(f"pairwise needs at least two models, got {names}")
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    each = 1.0 - (1.0 - level) / len(pairs) if family else level
    return {(a, b): paired(groups[a], groups[b], each) for a, b in pairs}


def against(groups: Mapping[str, Mapping[int, float]], reference: str, level: float = LEVEL,
            family: bool = False) -> dict[str, Comparison]:
    """Every other model minus one reference model, paired by seed (:func:`paired`).

    With ``family=True`` each interval is taken at level 1 - (1 - level)/m for the m comparisons (Bonferroni), so
    that all of them hold together with probability at least ``level``.

    Args:
        groups: model -> (seed -> that seed's number); must hold ``reference``.
        reference: the model every other one is compared with.
        level: the confidence level, per comparison or (``family``) of all of them together.
        family: widen each interval so that the level holds for the family of all comparisons.
    Returns:
        model -> the comparison of model - reference, in the order of ``groups``.
    Raises:
        ValueError: the reference is missing or is the only model, or a model shares no seed with it.
    """
    others = [name for name in groups if name != reference]
    if reference not in groups or not others:
        raise ValueError(f"against needs {reference!r} and at least one other model, got {list(groups)}")
    each = 1.0 - (1.0 - level) / len(others) if family else level
    return {name: paired(groups[name], groups[reference], each) for name in others}
