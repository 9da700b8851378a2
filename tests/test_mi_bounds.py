"""Tests of vibtools.infotheory.encoder_mi_bounds: Poole et al.'s sandwich on I(Z;X) for a Gaussian encoder."""

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from vibtools.infotheory import _pairwise_log_density, encoder_mi_bounds

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def diag(mu, sd):
    return Independent(Normal(mu, sd), 1)


def test_pairwise_table_matches_log_prob_diag():
    g = gen(0)
    mu, sd = torch.randn(50, 8, generator=g, dtype=F64), 0.1 + torch.rand(50, 8, generator=g, dtype=F64)
    q = diag(mu, sd)
    z = torch.randn(30, 8, generator=g, dtype=F64)
    brute = q.log_prob(z[:, None, :])  # (30, 50) by broadcasting
    assert torch.allclose(_pairwise_log_density(z, q), brute, atol=1e-9, rtol=1e-9)


def test_pairwise_table_matches_log_prob_full():
    g = gen(1)
    mu = torch.randn(40, 2, generator=g, dtype=F64)
    a = torch.randn(40, 2, 2, generator=g, dtype=F64)
    q = MultivariateNormal(mu, covariance_matrix=a @ a.mT + 0.1 * torch.eye(2, dtype=F64))
    z = torch.randn(25, 2, generator=g, dtype=F64)
    assert torch.allclose(_pairwise_log_density(z, q), q.log_prob(z[:, None, :]), atol=1e-9)


def test_identical_posteriors_carry_nothing():
    q = diag(torch.zeros(64, 4, dtype=F64), torch.ones(64, 4, dtype=F64))
    b = encoder_mi_bounds(q, draws=2, generator=gen(2))
    assert b.lower == pytest.approx(0.0, abs=1e-12)
    assert b.upper == pytest.approx(0.0, abs=1e-12)


def test_separated_posteriors_hit_the_ceiling_and_the_upper_bound_does_not():
    n = 200
    q = diag(10.0 * torch.arange(n, dtype=F64)[:, None].expand(n, 3), torch.full((n, 3), 0.01, dtype=F64))
    b = encoder_mi_bounds(q, generator=gen(3), chunk=64)  # chunk smaller than N: the pieces must join up
    assert b.ceiling == pytest.approx(math.log2(n))
    assert b.lower == pytest.approx(math.log2(n), abs=1e-9)
    assert b.upper > 100 * b.ceiling  # the leave-one-out bound has no ceiling


@pytest.mark.parametrize("sigma", [0.3, 1.0, 3.0])
def test_gaussian_channel_is_sandwiched(sigma):
    """X ~ N(0, 1), Z = X + sigma * noise: I(Z;X) = 1/2 log2(1 + 1/sigma^2) exactly."""
    n = 4000
    x = torch.randn(n, 1, generator=gen(4), dtype=F64)
    q = diag(x, torch.full_like(x, sigma))
    b = encoder_mi_bounds(q, draws=2, generator=gen(5))
    truth = 0.5 * math.log2(1 + sigma**-2)
    assert b.lower <= truth + 0.03
    assert b.upper >= truth - 0.03
    assert b.upper - b.lower < 0.05  # far below the ceiling both bounds are tight at this N


def test_lower_never_exceeds_the_ceiling():
    g = gen(6)
    q = diag(5 * torch.randn(300, 16, generator=g, dtype=F64), 0.05 + torch.rand(300, 16, generator=g, dtype=F64))
    b = encoder_mi_bounds(q, draws=3, generator=g)
    assert b.lower <= b.ceiling + 1e-12
    assert b.lower <= b.upper


def test_float32_posteriors_with_narrow_widths_stay_exact():
    """The expansion runs in float64: narrow float32 posteriors must not lose the diagonal term to cancellation."""
    g = gen(7)
    mu = torch.randn(100, 256, generator=g)
    q32 = diag(mu, torch.full_like(mu, 1e-3))
    q64 = diag(mu.double(), torch.full((100, 256), 1e-3, dtype=F64))
    z = q64.mean + 1e-3 * torch.randn(100, 256, generator=g, dtype=F64)
    own32 = _pairwise_log_density(z, q32).diagonal()
    own64 = q64.log_prob(z)
    assert torch.allclose(own32, own64, rtol=1e-6)


def test_bad_inputs_fail_in_one_line():
    with pytest.raises(ValueError, match="at least 2 inputs"):
        encoder_mi_bounds(diag(torch.zeros(1, 2), torch.ones(1, 2)))
    with pytest.raises(ValueError, match="draws must be an integer >= 1"):
        encoder_mi_bounds(diag(torch.zeros(5, 2), torch.ones(5, 2)), draws=0)
    with pytest.raises(ValueError, match="Gaussian posterior"):
        encoder_mi_bounds(torch.distributions.Categorical(probs=torch.ones(5, 3) / 3))
