"""Tests of vibtools.infotheory: exact discrete information quantities, the VIB bounds, Gaussian KLs."""

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

import vibtools as vt
from vibtools.infotheory import random_stochastic_matrix

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def std_normal(k: int) -> Independent:
    return Independent(Normal(torch.zeros(k, dtype=F64), torch.ones(k, dtype=F64)), 1)


# --- discrete quantities ---------------------------------------------------------------------------------


def test_mutual_information_independent_is_zero():
    pa = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    pb = torch.tensor([0.6, 0.4], dtype=F64)
    assert float(vt.mutual_information(pa[:, None] * pb[None, :])) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n", [2, 4, 10])
def test_mutual_information_of_a_copy_is_log2_n(n):
    joint = torch.eye(n, dtype=F64) / n
    assert float(vt.mutual_information(joint)) == pytest.approx(math.log2(n), rel=1e-12)


def test_mutual_information_binary_symmetric_channel():
    eps = 0.1
    joint = 0.5 * torch.tensor([[1 - eps, eps], [eps, 1 - eps]], dtype=F64)
    h2 = -(eps * math.log2(eps) + (1 - eps) * math.log2(1 - eps))
    assert float(vt.mutual_information(joint)) == pytest.approx(1 - h2, rel=1e-12)
    assert float(vt.mutual_information(joint.T)) == pytest.approx(1 - h2, rel=1e-12)


def test_mutual_information_rejects_bad_tables():
    with pytest.raises(ValueError):
        vt.mutual_information(torch.full((2, 2), 0.3, dtype=F64))
    with pytest.raises(ValueError):
        vt.mutual_information(torch.tensor([[0.7, -0.2], [0.3, 0.2]], dtype=F64))
    with pytest.raises(ValueError):
        vt.mutual_information(torch.full((4,), 0.25, dtype=F64))


def test_entropy_and_kl_bits():
    assert float(vt.entropy_bits(torch.full((10,), 0.1, dtype=F64))) == pytest.approx(math.log2(10))
    assert float(vt.entropy_bits(torch.tensor([1.0, 0.0], dtype=F64))) == 0.0
    p = torch.tensor([0.5, 0.5], dtype=F64)
    q = torch.tensor([0.25, 0.75], dtype=F64)
    expected = 0.5 * math.log2(0.5 / 0.25) + 0.5 * math.log2(0.5 / 0.75)
    assert float(vt.kl_bits(p, q)) == pytest.approx(expected)
    assert float(vt.kl_bits(p, p)) == 0.0
    assert vt.nats_to_bits(math.log(2.0)) == pytest.approx(1.0)


def test_discrete_example_tables_are_distributions():
    ex = vt.discrete_ib_example(n_x=5, n_y=3, n_z=4, noise=0.2, generator=gen(0))
    for table in (ex.p_y_given_x, ex.p_z_given_x, ex.p_y_given_z):
        assert torch.allclose(table.sum(-1), torch.ones(table.shape[0], dtype=F64))
    for joint in (ex.joint_xy, ex.joint_xz, ex.joint_zy):
        assert float(joint.sum()) == pytest.approx(1.0)
    assert torch.allclose(ex.joint_zy.sum(1), ex.p_z)
    assert torch.allclose(ex.joint_zy.sum(0), ex.p_y)
    # Y = X mod 3 kept with probability 0.8
    assert float(ex.p_y_given_x[4, 1]) == pytest.approx(0.8)
    assert float(ex.p_y_given_x[4, 0]) == pytest.approx(0.1)


def test_discrete_example_is_reproducible_and_validated():
    a = vt.discrete_ib_example(generator=gen(3))
    b = vt.discrete_ib_example(generator=gen(3))
    c = vt.discrete_ib_example(generator=gen(4))
    assert torch.equal(a.p_z_given_x, b.p_z_given_x)
    assert not torch.equal(a.p_z_given_x, c.p_z_given_x)
    with pytest.raises(ValueError):
        vt.discrete_ib_example(noise=1.5)


@pytest.mark.parametrize("seed", range(5))
def test_variational_bounds_hold_and_gaps_are_the_kls(seed):
    g = gen(seed)
    ex = vt.discrete_ib_example(n_x=6, n_y=3, n_z=4, noise=0.15, generator=g)
    q = random_stochastic_matrix(4, 3, generator=g)
    r = random_stochastic_matrix(1, 4, generator=g)[0]
    b = vt.variational_bounds(ex, q, r)
    assert b["izx_upper"] >= b["izx"] - 1e-12
    assert b["izy_lower"] <= b["izy"] + 1e-12
    assert b["izx_upper"] - b["izx"] == pytest.approx(b["gap_izx_kl"], abs=1e-10)
    assert b["izy"] - b["izy_lower"] == pytest.approx(b["gap_izy_kl"], abs=1e-10)
    assert b["gap_izx_kl"] > 1e-4 and b["gap_izy_kl"] > 1e-4  # random q, r are not optimal
    # data processing along Y <-> X <-> Z
    assert b["izy"] <= b["izx"] + 1e-12
    assert b["izy"] <= b["ixy"] + 1e-12
    assert b["ixy"] <= b["h_y"] + 1e-12


def test_variational_bounds_are_tight_at_the_optimum():
    ex = vt.discrete_ib_example(generator=gen(1))
    b = vt.variational_bounds(ex)
    assert b["izx_upper"] == pytest.approx(b["izx"], abs=1e-12)
    assert b["izy_lower"] == pytest.approx(b["izy"], abs=1e-12)
    assert b["h_y"] == pytest.approx(1.0)  # balanced parity labels
    h2 = -(0.1 * math.log2(0.1) + 0.9 * math.log2(0.9))
    assert b["ixy"] == pytest.approx(1.0 - h2)


def test_uniform_decoder_gives_zero_lower_bound():
    ex = vt.discrete_ib_example(n_y=2, generator=gen(2))
    b = vt.variational_bounds(ex, torch.full((3, 2), 0.5, dtype=F64), None)
    assert b["class_loss"] == pytest.approx(1.0)
    assert b["izy_lower"] == pytest.approx(0.0, abs=1e-12)


# --- Gaussian KL --------------------------------------------------------------------------------------------


def test_gaussian_kl_closed_form_matches_torch():
    g = gen(0)
    mu = torch.randn(5, 7, generator=g, dtype=F64)
    sigma = torch.exp(0.7 * torch.randn(5, 7, generator=g, dtype=F64))
    ours = vt.gaussian_kl_closed_form(mu, sigma)
    ref = kl_divergence(Independent(Normal(mu, sigma), 1), std_normal(7))
    assert ours.shape == (5,)
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)
    assert float(vt.gaussian_kl_closed_form(torch.zeros(3), torch.ones(3))) == 0.0
    # one dimension by hand: mu = 1, sigma = 2 -> (1 + 4 - 1 - ln 4) / 2
    one = vt.gaussian_kl_closed_form(torch.tensor([1.0], dtype=F64), torch.tensor([2.0], dtype=F64))
    assert float(one) == pytest.approx((4 - math.log(4)) / 2)


def test_gaussian_kl_full_closed_form_matches_torch():
    g = gen(1)
    k = 4
    mu = torch.randn(3, k, generator=g, dtype=F64)
    a = torch.randn(3, k, k, generator=g, dtype=F64)
    tril = a.tril(-1) + torch.diag_embed(torch.exp(0.3 * a.diagonal(dim1=-2, dim2=-1)))
    ours = vt.gaussian_kl_full_closed_form(mu, tril)
    prior = MultivariateNormal(torch.zeros(k, dtype=F64), scale_tril=torch.eye(k, dtype=F64))
    ref = kl_divergence(MultivariateNormal(mu, scale_tril=tril), prior)
    assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_info_loss_bits_is_closed_form_over_ln2():
    g = gen(2)
    head = torch.randn(6, 8, generator=g)
    q = vt.posterior(head, 4, "diag")
    expected = vt.gaussian_kl_closed_form(q.mean, q.stddev).mean() / math.log(2)
    assert float(vt.info_loss_bits(q, vt.prior(4))) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("family", ["diag", "full"])
def test_mc_kl_agrees_within_standard_errors(family):
    g = gen(5)
    k = 3
    mu = torch.randn(k, generator=g, dtype=F64)
    if family == "diag":
        p = Independent(Normal(mu, torch.exp(0.5 * torch.randn(k, generator=g, dtype=F64))), 1)
        r = std_normal(k)
    else:
        a = torch.randn(k, k, generator=g, dtype=F64)
        p = MultivariateNormal(mu, scale_tril=a.tril(-1) + torch.diag_embed(a.diagonal().abs() + 0.5))
        r = MultivariateNormal(torch.zeros(k, dtype=F64), scale_tril=torch.eye(k, dtype=F64))
    est, se = vt.mc_kl(p, r, 20_000, generator=g)
    exact = kl_divergence(p, r)
    assert 0 < float(se) < 0.05
    assert abs(float(est - exact)) < 5 * float(se)


def test_mc_kl_is_reproducible_and_error_shrinks():
    p = Independent(Normal(torch.tensor([1.0, -0.5], dtype=F64), torch.tensor([0.5, 2.0], dtype=F64)), 1)
    r = std_normal(2)
    a = vt.mc_kl(p, r, 1000, generator=gen(7))
    b = vt.mc_kl(p, r, 1000, generator=gen(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    _, se_big = vt.mc_kl(p, r, 16_000, generator=gen(8))
    assert float(se_big) == pytest.approx(float(a[1]) / 4, rel=0.2)  # 1/sqrt(n)
    with pytest.raises(ValueError):
        vt.mc_kl(p, r, 1)


def test_mc_kl_other_families_use_the_generator():
    from torch.distributions import Gamma

    p, q = Gamma(torch.tensor(2.0, dtype=F64), torch.tensor(1.0, dtype=F64)), Gamma(
        torch.tensor(3.0, dtype=F64), torch.tensor(2.0, dtype=F64))
    state = torch.get_rng_state()
    a = vt.mc_kl(p, q, 5000, generator=gen(9))
    b = vt.mc_kl(p, q, 5000, generator=gen(9))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left untouched
    assert torch.equal(a[0], b[0])
    assert abs(float(a[0] - kl_divergence(p, q))) < 5 * float(a[1])
