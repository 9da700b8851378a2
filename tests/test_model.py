"""The model and what it is made of: the posterior, the prior and their KL in bits against Monte Carlo, the class
loss and the two bounds in bits, the EMA's zero-debias, model and stack shapes (model.py, bounds.py, ema.py). All
but one run without data (that one trains briefly on a small MNIST subset)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY, fit
from torch.distributions import Independent, MultivariateNormal

import vibtools
import vibtools as vt
from vibtools import EMA, VIB, VIBStack, posterior, prior
from vibtools.model import head_dim

LN2 = math.log(2.0)


def rho_for(sigma: torch.Tensor) -> torch.Tensor:
    """The raw encoder output rho with softplus(rho - 5) = sigma."""
    return 5.0 + torch.log(torch.expm1(sigma))


# ---------------------------------------------------------------- the posterior, the prior, the KL against Monte Carlo


def mc_kl_bits(q, p, n: int, seed: int) -> tuple[float, float]:
    """Monte-Carlo estimate of the batch-mean KL(q || p) in bits and its standard error."""
    torch.manual_seed(seed)
    z = q.sample((n,))  # (n, B, K)
    ratio = (q.log_prob(z) - p.log_prob(z)).mean(-1) / LN2  # batch mean, per sample
    return ratio.mean().item(), ratio.std().item() / math.sqrt(n)


def test_kl_diag_matches_closed_form_and_monte_carlo():
    gen = torch.Generator().manual_seed(1)
    k, b = 3, 4
    mu = torch.randn(b, k, generator=gen, dtype=torch.float64)
    sigma = 0.3 + 1.2 * torch.rand(b, k, generator=gen, dtype=torch.float64)
    q = posterior(torch.cat([mu, rho_for(sigma)], -1), k, "diag")
    p = prior(k, "diag")
    assert isinstance(q, Independent) and q.batch_shape == (b,) and q.event_shape == (k,)
    torch.testing.assert_close(q.stddev, sigma)

    bits = vibtools.info_loss_bits(q, p)
    assert bits.shape == ()
    # 0.5 * sum(sigma^2 + mu^2 - 1 - ln sigma^2) nats per example, averaged over the batch, / ln 2
    by_hand = (0.5 * (sigma**2 + mu**2 - 1 - torch.log(sigma**2)).sum(-1)).mean() / LN2
    assert bits.item() == pytest.approx(by_hand.item(), rel=1e-6)
    est, se = mc_kl_bits(q, p, 200_000, seed=0)
    assert abs(bits.item() - est) < 5 * se + 1e-3, (bits.item(), est, se)


def test_kl_full_covariance_matches_closed_form_and_monte_carlo():
    gen = torch.Generator().manual_seed(2)
    k, b = 3, 4
    mu = torch.randn(b, k, generator=gen, dtype=torch.float64)
    off = 0.5 * torch.randn(b, k * (k + 1) // 2, generator=gen, dtype=torch.float64)
    # put rho = 5 + softplus^-1(sigma) on the diagonal entries of the row-major lower triangle
    rows, cols = torch.tril_indices(k, k)
    sigma = 0.4 + torch.rand(b, k, generator=gen, dtype=torch.float64)
    tri = off.clone()
    tri[:, rows == cols] = rho_for(sigma)
    q = posterior(torch.cat([mu, tri], -1), k, "full")
    p = prior(k, "full")
    assert isinstance(q, MultivariateNormal) and q.batch_shape == (b,) and q.event_shape == (k,)
    torch.testing.assert_close(q.scale_tril.diagonal(dim1=-2, dim2=-1), sigma)
    assert torch.count_nonzero(q.scale_tril.triu(1)) == 0
    assert torch.count_nonzero(q.scale_tril.tril(-1)) == b * k * (k - 1) // 2  # a real (non-diagonal) covariance

    bits = vibtools.info_loss_bits(q, p)
    cov = q.covariance_matrix
    nats = 0.5 * (cov.diagonal(dim1=-2, dim2=-1).sum(-1) + (mu**2).sum(-1) - k - torch.logdet(cov))
    assert bits.item() == pytest.approx((nats.mean() / LN2).item(), rel=1e-6)
    est, se = mc_kl_bits(q, p, 200_000, seed=0)
    assert abs(bits.item() - est) < 5 * se + 1e-3, (bits.item(), est, se)


def test_reparameterize_full_covariance_has_the_posterior_covariance():
    head = torch.tensor([[0.5, -1.0, 5.3, 0.8, 4.6]], dtype=torch.float64)  # K=2: mean, then 3 Cholesky entries
    q = posterior(head, 2, "full")
    eps = torch.randn(400_000, 1, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z = vibtools.reparameterize(q, eps)[:, 0]
    torch.testing.assert_close(z.mean(0), q.loc[0], atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), q.covariance_matrix[0], atol=0.01, rtol=0.01)


def test_info_loss_keeps_leading_dims_and_averages_the_batch():
    mu = torch.arange(12.0).reshape(2, 3, 2) / 10  # (M=2, B=3, K=2), sigma = 1
    q = posterior(torch.cat([mu, rho_for(torch.ones_like(mu))], -1), 2, "diag")
    bits = vibtools.info_loss_bits(q, prior(2))
    assert bits.shape == (2,)
    torch.testing.assert_close(bits, (0.5 * (mu**2).sum(-1)).mean(-1) / LN2)


def test_prior_first_built_in_inference_mode_still_trains(small):
    k = 7  # a K no other test asks the prior for, so the cache is cold
    with torch.inference_mode():
        for covariance in ("diag", "full"):
            vt.prior(k, covariance)
            vt.prior(k, covariance, torch.device("cpu"))  # the form the training step asks for
    r = fit(TINY.with_(k=k, epochs=1), small, cache=False)
    assert len(r.history["epoch"]) == 1


# ---------------------------------------------------------------- bits and the two bounds


def test_uniform_logits_cost_log2_10_bits_and_bound_zero():
    logits = torch.zeros(5, 7, 10)  # (S, B, 10): S leading samples are kept
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 9])
    bits = vibtools.class_loss_bits(logits, labels)
    assert bits.shape == (5,)
    torch.testing.assert_close(bits, torch.full((5,), math.log2(10)))
    torch.testing.assert_close(vibtools.izy_lower_bound(bits), torch.zeros(5), atol=1e-6, rtol=0)


def test_class_loss_on_hand_computed_probabilities():
    logits = torch.log(torch.tensor([[1.0, 3.0], [1.0, 3.0]]))  # q(y) = (1/4, 3/4)
    assert vibtools.class_loss_bits(logits, torch.tensor([0, 0])).item() == pytest.approx(2.0, abs=1e-6)
    assert vibtools.class_loss_bits(logits, torch.tensor([1, 1])).item() == pytest.approx(math.log2(4 / 3), abs=1e-6)
    mean = vibtools.class_loss_bits(logits, torch.tensor([0, 1])).item()
    assert mean == pytest.approx((2.0 + math.log2(4 / 3)) / 2, abs=1e-6)
    # a confident correct classifier: ~0 bits of class loss, I(Z;Y) bound ~ log2(10)
    sure = torch.full((3, 10), -30.0)
    sure[torch.arange(3), torch.tensor([4, 7, 1])] = 30.0
    bits = vibtools.class_loss_bits(sure, torch.tensor([4, 7, 1]))
    assert bits.item() == pytest.approx(0.0, abs=1e-6)
    assert vibtools.izy_lower_bound(bits).item() == pytest.approx(math.log2(10), abs=1e-6)
    assert vibtools.izy_lower_bound(1.0, n_classes=4) == pytest.approx(1.0)


def test_known_kl_in_nats_is_divided_by_ln2():
    # q = N(1, 1) against N(0, 1) in K = 1: KL = 1/2 nat; N(0, 2^2): 0.5 * (4 - 1 - ln 4) nats
    sigma = torch.tensor([1.0, 2.0], dtype=torch.float64)
    head = torch.stack([torch.tensor([1.0, 0.0], dtype=torch.float64), rho_for(sigma)], -1)
    q = posterior(head, 1, "diag")
    kl = torch.distributions.kl_divergence(q, prior(1))
    torch.testing.assert_close(kl, torch.tensor([0.5, 0.5 * (3 - math.log(4))], dtype=torch.float64))
    bits = vibtools.info_loss_bits(q, prior(1))
    assert bits.item() == pytest.approx((0.5 + 0.5 * (3 - math.log(4))) / 2 / math.log(2), rel=1e-9)
    # per-model betas broadcast over stacked losses (the trainer's call)
    obj = vibtools.vib_objective(torch.tensor([2.0, 3.0]), torch.tensor([10.0, 20.0]), torch.tensor([1e-2, 0.5]))
    torch.testing.assert_close(obj, torch.tensor([2.1, 13.0]))


# ---------------------------------------------------------------- EMA zero-debias


def closed_form(ws: list[torch.Tensor], d: float) -> torch.Tensor:
    t = len(ws)
    return sum((1 - d) * d ** (t - k) * w for k, w in enumerate(ws, start=1)) / (1 - d**t)


def test_ema_zero_debias_matches_closed_form():
    d = 0.9
    weights = [torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) * (1 + 0.3 * t) + t for t in range(8)]
    w = torch.zeros(3, dtype=torch.float64)
    bias = torch.zeros(2, 2, dtype=torch.float64)
    ema = EMA([w, bias], decay=d)
    torch.testing.assert_close(ema.averaged()[0], w)  # no update yet: the current weights
    seen = []
    for t, target in enumerate(weights, start=1):
        w.copy_(target)
        bias.fill_(float(t))
        ema.update()
        seen.append(target.clone())
        avg_w, avg_b = ema.averaged()
        torch.testing.assert_close(avg_w, closed_form(seen, d), rtol=1e-12, atol=1e-12)
        expected_b = closed_form([torch.full((2, 2), float(s), dtype=torch.float64) for s in range(1, t + 1)], d)
        torch.testing.assert_close(avg_b, expected_b, rtol=1e-12, atol=1e-12)
    assert ema.steps == len(weights)
    # the first debiased average is the first weights exactly (not (1 - d) times them)
    one = EMA([torch.tensor([3.0])], decay=0.999)
    one.update()
    assert one.averaged()[0].item() == pytest.approx(3.0, rel=1e-6)


# ---------------------------------------------------------------- shapes, deterministic variant, stack


@pytest.mark.parametrize("k", [2, 256])
def test_shapes_diag(k):
    torch.manual_seed(0)
    model = VIB(k, "diag", hidden=16)
    x = torch.rand(5, 784)
    q = model.encode(x)
    assert q.batch_shape == (5,) and q.event_shape == (k,)
    assert model.encode_head(x).shape == (5, head_dim(k, "diag")) == (5, 2 * k)
    logits = model(x, n_samples=3)
    assert logits.shape == (3, 5, 10)
    assert not torch.equal(logits[0], logits[1])  # the samples of z differ
    assert model(x).shape == (1, 5, 10)
    assert vibtools.info_loss_bits(q, prior(k)).shape == ()


def test_shapes_full_covariance_k2():
    torch.manual_seed(0)
    model = VIB(2, "full", hidden=16)
    assert model.enc3_weight.shape == (1, 16, 2 + 3)
    x = torch.rand(6, 784)
    q = model.encode(x)
    assert isinstance(q, MultivariateNormal)
    assert q.batch_shape == (6,) and q.event_shape == (2,)
    assert q.covariance_matrix.shape == (6, 2, 2)
    assert model(x, n_samples=4).shape == (4, 6, 10)
    assert vibtools.info_loss_bits(q, prior(2, "full")).shape == ()


def test_deterministic_variant():
    torch.manual_seed(0)
    model = VIB(8, "none", hidden=16)
    assert model.deterministic and model.enc3_weight.shape == (1, 16, 8)
    x = torch.rand(4, 784)
    logits = model(x, n_samples=3)
    assert logits.shape == (3, 4, 10)
    torch.testing.assert_close(logits[0], logits[2])
    torch.testing.assert_close(logits[0], model.decode(model.encode_head(x)))
    with pytest.raises(ValueError):
        model.encode(x)  # no distribution for z = mu
    with pytest.raises(ValueError, match="unknown covariance"):
        VIB(8, "spherical", hidden=16)


@pytest.mark.parametrize("covariance", ["diag", "full", "none"])
def test_stack_round_trip(covariance):
    models = [VIB(2, covariance, hidden=16, seed=seed) for seed in range(3)]
    stack = VIBStack.of(models)
    assert stack.m == 3 and stack.enc1_weight.shape == (3, 784, 16)
    assert not torch.equal(stack.enc1_weight[0], stack.enc1_weight[1])
    for i, m in enumerate(models):
        back = stack.model(i)
        assert isinstance(back, VIB) and back.m == 1
        for (n1, p1), (n2, p2) in zip(m.named_parameters(), back.named_parameters()):
            assert n1 == n2 and torch.equal(p1, p2), n1
    # a stack built from seeds equals the stack of models built from the same seeds
    direct = VIBStack(2, covariance, hidden=16, seeds=[0, 1, 2])
    for (n1, p1), (n2, p2) in zip(stack.named_parameters(), direct.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    x = torch.rand(5, 784)
    head = stack.stacked_head(x)
    assert head.shape == (3, 5, head_dim(2, covariance))
    for i, m in enumerate(models):
        torch.testing.assert_close(head[i], m.encode_head(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        VIBStack.of([])
    with pytest.raises(ValueError, match="share"):
        VIBStack.of([VIB(2, covariance, hidden=16), VIB(3, covariance, hidden=16)])


def test_init_is_seeded_and_leaves_the_global_generator_alone():
    before = torch.random.get_rng_state()
    a, b = VIB(4, hidden=16, seed=7), VIB(4, hidden=16, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert not torch.equal(a.enc1_weight, VIB(4, hidden=16, seed=8).enc1_weight)
    # Glorot-uniform weights: |w| <= sqrt(6 / (fan_in + fan_out)); zero biases
    assert a.enc1_weight.abs().max().item() <= math.sqrt(6 / (784 + 16))
    assert a.enc1_weight.abs().max().item() > 0.9 * math.sqrt(6 / (784 + 16))
    assert torch.count_nonzero(a.enc1_bias).item() == 0


def test_stack_loss_terms_match_single_models():
    models = [VIB(4, "diag", hidden=16, seed=seed) for seed in range(2)]
    stack = VIBStack.of(models)
    x, y = torch.rand(7, 784), torch.randint(0, 10, (7,))
    eps = torch.randn(2, 7, 4, generator=torch.Generator().manual_seed(0))
    class_bits, info_bits, wrong, _ = stack.loss_terms(x, y, eps)
    assert class_bits.shape == info_bits.shape == wrong.shape == (2,)
    for i, m in enumerate(models):
        q = m.encode(x)
        logits = m.decode(vibtools.reparameterize(q, eps[i]))
        torch.testing.assert_close(class_bits[i], vibtools.class_loss_bits(logits, y), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(info_bits[i], vibtools.info_loss_bits(q, prior(4)), rtol=1e-5, atol=1e-5)
        assert wrong[i].item() == (logits.argmax(-1) != y).sum().item()


def test_decode_takes_a_single_code():
    model = VIB(k=2, covariance="full", hidden=16)
    z = torch.tensor([0.5, -1.0])
    assert model.decode(z).shape == (10,)
    assert torch.allclose(model.decode(z), model.decode(z[None])[0])
