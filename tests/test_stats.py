"""The verdict rule: Student's t against closed forms and printed tables, intervals, and the two comparisons."""

from __future__ import annotations

import math
import statistics

import pytest

from vibtools.stats import Interval, against_paper, compare, interval_of, mean_interval, t_cdf, t_quantile


@pytest.mark.parametrize("t", [-30.0, -2.5, -0.3, 0.0, 0.7, 4.3, 50.0])
def test_t_cdf_matches_the_closed_forms_for_one_and_two_degrees_of_freedom(t):
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


@pytest.mark.parametrize("df,q", [(1, 12.7062047), (2, 4.3026527), (3, 3.1824463), (4, 2.7764451), (10, 2.2281389),
                                  (30, 2.0422725), (1e6, 1.9599664)])
def test_t_quantiles_match_the_printed_table(df, q):
    assert t_quantile(0.975, df) == pytest.approx(q, rel=1e-6)
    assert t_quantile(0.025, df) == pytest.approx(-q, rel=1e-6)


def test_t_quantile_rejects_impossible_arguments():
    with pytest.raises(ValueError, match="0 < p < 1"):
        t_quantile(1.0, 3)


def test_mean_interval_of_three_seeds_is_4_30_sd_over_root_3():
    values = [0.0150, 0.0162, 0.0141]
    i = mean_interval(values)
    sd = statistics.stdev(values)
    assert i.mean == pytest.approx(statistics.mean(values)) and i.sd == pytest.approx(sd) and i.n == 3
    assert i.half == pytest.approx(4.3026527 * sd / math.sqrt(3), rel=1e-6)
    assert i.low < i.mean < i.high
    one = mean_interval([0.02])
    assert one.half != one.half and against_paper(one, 0.02) is None  # one seed: no interval, no verdict


def test_against_paper_inside_outside_and_too_wide():
    ours = interval_of(0.0150, 0.0005, 3)  # half-width 1.24e-3
    assert against_paper(ours, 0.0160) is True
    assert against_paper(ours, 0.0113) is False
    assert against_paper(interval_of(0.0150, 0.0200, 3), 0.0113) is None  # an interval that holds anything


def test_a_2_sd_rule_and_the_t_rule_differ_where_it_matters():
    """Three seeds: 2.4 sd from the paper is outside the old "within 2 sd" band, yet inside the 95% t-interval of
    the mean (4.30 / sqrt(3) = 2.48 sd); 2.6 sd is outside both."""
    ours = interval_of(0.0150, 0.0004, 3)
    assert ours.half / ours.sd == pytest.approx(2.4841, abs=1e-4)
    assert abs(ours.mean - (0.0150 - 2.4 * 0.0004)) > 2 * ours.sd
    assert against_paper(ours, 0.0150 - 2.4 * 0.0004) is True
    assert against_paper(ours, 0.0150 - 2.6 * 0.0004) is False


def test_compare_uses_welch_and_says_which_is_lower():
    a, b = interval_of(0.0150, 0.0003, 3), interval_of(0.0170, 0.0003, 3)
    c = compare(a, b)
    assert c.apart and c.sign() == "<" and c.diff == pytest.approx(-0.0020)
    assert c.df == pytest.approx(4.0)  # equal variances and sizes: Welch's df is 2(n-1)
    assert c.half == pytest.approx(2.7764451 * math.sqrt(2 * 0.0003**2 / 3), rel=1e-6)
    close = compare(a, interval_of(0.0155, 0.0003, 3))
    assert not close.apart and close.sign() == "≈"
    assert not compare(a, Interval(0.02, math.nan, 1, math.nan)).apart
