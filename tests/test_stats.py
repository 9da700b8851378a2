"""The verdict rule: Student's t against closed forms and printed tables, intervals, and the two comparisons."""

from __future__ import annotations

import math
import statistics

import pytest

from vibtools.stats import (
    Interval,
    against,
    against_paper,
    compare,
    interval_of,
    judge,
    judge_borrowed,
    mean_interval,
    paired,
    pairwise,
    prediction_borrowed,
    prediction_interval,
    t_cdf,
    t_quantile,
)


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


# Student's (1908) sleep data, as R ships it (datasets::sleep): extra hours of sleep of ten patients under two drugs.
SLEEP_1 = (0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0)
SLEEP_2 = (1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4)


def test_paired_and_welch_intervals_match_r_on_students_sleep_data():
    # R: t.test(extra ~ group, data = sleep, paired = TRUE) -> mean difference -1.58, 95% CI -2.4598858 -0.7001142
    p = paired(dict(enumerate(SLEEP_1)), dict(enumerate(SLEEP_2)))
    assert p.diff == pytest.approx(-1.58) and p.df == 9
    assert (p.diff - p.half, p.diff + p.half) == pytest.approx((-2.4598858, -0.7001142), abs=1e-6)
    assert p.apart and p.sign() == "<"
    # R: t.test(extra ~ group, data = sleep) (Welch) -> df 17.776, 95% CI -3.3654832 0.2054832: not apart
    w = compare(mean_interval(SLEEP_1), mean_interval(SLEEP_2))
    assert w.df == pytest.approx(17.776, abs=1e-3)
    assert (w.diff - w.half, w.diff + w.half) == pytest.approx((-3.3654832, 0.2054832), abs=1e-6)
    assert not w.apart  # the same numbers: pairing removes what the patients share


def test_paired_uses_only_shared_seeds_and_refuses_none():
    p = paired({0: 1.0, 1: 2.0, 2: 4.0, 3: 9.0}, {0: 0.5, 1: 1.0, 2: 3.0})
    assert p.diff == pytest.approx((0.5 + 1.0 + 1.0) / 3) and p.df == 2
    assert math.isnan(paired({0: 1.0}, {0: 0.0}).half)
    with pytest.raises(ValueError, match="shared seeds"):
        paired({0: 1.0}, {1: 1.0})


def test_prediction_interval_is_the_mean_interval_widened_by_root_n_plus_1():
    pi, mi = prediction_interval([1.0, 2.0, 3.0]), mean_interval([1.0, 2.0, 3.0])
    assert pi.mean == 2.0 and pi.half == pytest.approx(4.302653 * math.sqrt(1 + 1 / 3), rel=1e-6)
    assert pi.half == pytest.approx(mi.half * 2.0)  # sqrt(n + 1) = 2 for three seeds
    assert math.isnan(prediction_interval([1.0]).half)


def test_a_borrowed_spread_predicts_one_run_from_one_run_with_the_lenders_degrees_of_freedom():
    # one run at 40.0; the sd 3.0 comes from three seeds elsewhere: t(0.975, 2) * 3.0 * sqrt(2)
    pi = prediction_borrowed(40.0, 3.0, 3)
    assert (pi.mean, pi.n) == (40.0, 1)
    assert pi.half == pytest.approx(4.302653 * 3.0 * math.sqrt(2), rel=1e-6)
    # from the sd of n seeds, the prediction interval from their own mean is narrower by sqrt((1 + 1/n) / 2)
    own = prediction_interval([37.0, 40.0, 43.0])
    assert own.half == pytest.approx(pi.half * math.sqrt((1 + 1 / 3) / 2))
    inside, outside = judge_borrowed(40.0, 50.0, 3.0, 3), judge_borrowed(40.0, 60.0, 3.0, 3)
    assert inside.one_run is True and inside.verdict is True and inside.average is None
    assert outside.one_run is False and outside.side == "below"
    assert judge_borrowed(40.0, 20.0, 3.0, 3).side == "above"  # symmetric: only the distance counts
    for bad in [(40.0, 3.0, 1), (40.0, math.nan, 3), (40.0, -1.0, 3)]:
        with pytest.raises(ValueError, match="borrowed spread"):
            prediction_borrowed(*bad)


def test_judge_asks_a_single_run_and_a_mean_different_questions_symmetrically():
    ours = [1.32, 1.33, 1.23]  # three seeds; mean 1.293, t-half 0.137, prediction half 0.274
    one = judge(ours, 1.13)
    assert one.one_run is True and one.average is False and one.verdict is True and one.side == "above"
    assert judge(ours, 1.13, single_run=False).verdict is False
    mirrored = judge(ours, 2 * one.mean.mean - 1.13)  # the same distance above our mean
    assert (mirrored.one_run, mirrored.average, mirrored.side) == (True, False, "below")
    assert judge(ours, 1.7).one_run is False
    assert judge([1.0, 50.0, 99.0], 60.0).one_run is None  # too wide to tell anything from anything
    # the 20-epoch K=2 runs at beta=1e-3: the paper's 3.18% is inside the interval of our mean, so it is inside the
    # (wider) prediction interval too, although that one alone reaches further than half the number each side
    k2 = judge([3.24, 3.82, 3.27], 3.18)
    assert k2.average is True and k2.one_run is True and k2.prediction.half > 0.5 * 3.18


def test_pairwise_compares_every_pair_once_and_bonferroni_widens_each_interval():
    groups = {"a": {0: 1.0, 1: 1.1, 2: 1.3}, "b": {0: 2.0, 1: 2.3, 2: 2.4}, "c": {0: 1.05, 1: 1.2, 2: 1.3}}
    each = pairwise(groups)
    assert list(each) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert each[("a", "b")] == paired(groups["a"], groups["b"])
    assert each[("a", "b")].sign() == "<" and each[("a", "c")].sign() == "≈"
    together = pairwise(groups, family=True)
    for key, c in together.items():  # three pairs: each at 1 - 0.05/3, t(1 - 0.05/6, 2) = 7.65 against 4.30
        assert c.diff == each[key].diff
        assert math.isclose(c.half / each[key].half, t_quantile(1 - 0.05 / 6, 2) / t_quantile(0.975, 2))
    assert math.isclose(t_quantile(1 - 0.05 / 6, 2), 7.6489, rel_tol=1e-4)
    with pytest.raises(ValueError, match="at least two"):
        pairwise({"a": {0: 1.0}})


def test_against_compares_each_model_with_the_reference_and_bonferroni_counts_those_comparisons():
    groups = {"ref": {0: 2.0, 1: 2.3, 2: 2.4}, "a": {0: 1.0, 1: 1.1, 2: 1.3}, "c": {0: 2.05, 1: 2.2, 2: 2.5}}
    each = against(groups, "ref")
    assert list(each) == ["a", "c"] and each["a"] == paired(groups["a"], groups["ref"])
    assert each["a"].sign() == "<" and each["c"].sign() == "≈"
    together = against(groups, "ref", family=True)  # two comparisons: each at 97.5%
    assert together["a"] == paired(groups["a"], groups["ref"], 0.975)
    assert together["a"].half > each["a"].half
    with pytest.raises(ValueError, match="at least one other"):
        against({"ref": {0: 1.0}}, "ref")
    with pytest.raises(ValueError, match="'x'"):
        against(groups, "x")
