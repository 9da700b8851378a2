"""vibtools.attacks: budgets, monotone losses, EOT gradients and a linear model's closed-form worst case."""

import pytest
import torch
import torch.nn.functional as F

from vibtools import VIB
from vibtools import attacks as A
from vibtools.model import reparameterize


class Linear(torch.nn.Module):
    """A linear classifier with the attacks' call signature (deterministic: every draw is the same)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x, n_samples=1, generator=None):
        return (x @ self.w + self.b).expand(n_samples, -1, -1)


def _batch(n=16, d=784, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g), torch.randint(0, 10, (n,), generator=g)


def _vib(covariance="diag"):
    return VIB(k=4, covariance=covariance, hidden=32, seed=0).eval()


def _attacks(eps):
    return {
        "fgsm": lambda m, x, y, g: A.fgsm(m, x, y, eps, generator=g),
        "pgd-linf": lambda m, x, y, g: A.pgd(m, x, y, eps, norm="linf", steps=5, generator=g),
        "pgd-l2": lambda m, x, y, g: A.pgd(m, x, y, eps, norm="l2", steps=5, generator=g),
        "pgd-linf-eot": lambda m, x, y, g: A.pgd(m, x, y, eps, norm="linf", steps=5, draws=4, generator=g),
    }


@pytest.mark.parametrize("name", list(_attacks(0.0)))
def test_eps_zero_returns_the_input(name):
    x, y = _batch()
    out = _attacks(0.0)[name](_vib(), x, y, torch.Generator().manual_seed(1))
    assert torch.equal(out, x)
    assert torch.equal(A.random_noise(x, 0.0), x)


@pytest.mark.parametrize("eps", [0.05, 0.3])
@pytest.mark.parametrize("name", list(_attacks(0.0)))
def test_perturbations_stay_in_the_ball_and_in_the_box(name, eps):
    x, y = _batch()
    x[:, :100] = 0.0  # pixels at the box's edges, as in MNIST
    x[:, 100:200] = 1.0
    for model in (_vib(), _vib("none")):
        out = _attacks(eps)[name](model, x, y, torch.Generator().manual_seed(2))
        assert out.min() >= 0 and out.max() <= 1
        if name.endswith("l2"):
            assert ((out - x).norm(dim=1) <= eps * (1 + 1e-5)).all()
        else:
            assert ((out - x).abs().max() <= eps + 1e-6).all()
        assert not torch.equal(out, x)


def test_cw_and_random_noise_stay_in_the_box():
    x, y = _batch(8)
    model = _vib("none")
    out = A.cw_l2(model, x, y, steps=10, search_steps=2)
    assert out.min() >= 0 and out.max() <= 1
    for norm, eps in (("linf", 0.2), ("l2", 2.0)):
        noisy = A.random_noise(x, eps, norm, torch.Generator().manual_seed(0))
        assert noisy.min() >= 0 and noisy.max() <= 1
        size = (noisy - x).abs().amax(1) if norm == "linf" else (noisy - x).norm(dim=1)
        assert (size <= eps * (1 + 1e-5)).all()


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_never_lowers_the_loss_it_maximizes(norm, targeted):
    x, y = _batch(32)
    model = _vib("none")
    eps = 0.1 if norm == "linf" else 1.0
    clean = A.attack_loss(model, x, y, targeted=targeted)
    for start in (False, True):
        adv = A.pgd(model, x, y, eps, norm=norm, steps=10, random_start=start, targeted=targeted,
                    generator=torch.Generator().manual_seed(0))
        after = A.attack_loss(model, adv, y, targeted=targeted)
        assert (after >= clean - 1e-6).all()
        assert (after > clean + 1e-4).float().mean() > 0.9  # and it does raise it


def test_eot_gradient_is_the_average_over_the_same_draws():
    x, y = _batch(6)
    model = _vib()
    draws = 8
    grad, loss = A.input_gradient(model, x, y, draws=draws, generator=torch.Generator().manual_seed(3))
    eps = torch.randn(draws, 1, len(x), model.k, generator=torch.Generator().manual_seed(3))
    total = torch.zeros_like(x)
    losses = []
    for d in range(draws):
        xg = x.clone().requires_grad_(True)
        z = reparameterize(model.encode(xg), eps[d, 0])
        ce = F.cross_entropy(model.decode(z), y, reduction="none")
        total += torch.autograd.grad(ce.sum(), xg)[0]
        losses.append(ce.detach())
    torch.testing.assert_close(grad, total / draws, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss, torch.stack(losses).mean(0), rtol=1e-5, atol=1e-7)
    one, _ = A.input_gradient(model, x, y, draws=1, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(one, grad)  # one draw is not the average


def _linear_problem():
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(20, 2, generator=g), torch.zeros(2)
    x = 0.2 + 0.6 * torch.rand(10, 20, generator=g)  # inside the box, so small steps are not clipped
    x[:, :3] = 0.0  # and some pixels at its edge, where the worst case is clipped
    return Linear(w, b), x, torch.zeros(10, dtype=torch.long), w[:, 1] - w[:, 0]


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "pgd-random-start"])
def test_linf_attacks_find_the_closed_form_worst_case_of_a_linear_model(attack):
    model, x, y, v = _linear_problem()
    eps = 0.1
    worst = (x + eps * v.sign()).clamp(0, 1)  # maximizes the logit gap v.x, hence the cross-entropy of class 0
    if attack == "fgsm":
        adv = A.fgsm(model, x, y, eps)
    else:
        adv = A.pgd(model, x, y, eps, steps=20, random_start=attack.endswith("start"),
                    generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(adv, worst)


def test_l2_pgd_finds_the_closed_form_worst_case_of_a_linear_model():
    model, x, y, v = _linear_problem()
    x[:, :3] = 0.5
    eps = 0.2
    adv = A.pgd(model, x, y, eps, norm="l2", steps=20, random_start=False)
    torch.testing.assert_close(adv, x + eps * v / v.norm(), rtol=0, atol=1e-5)


def test_cw_finds_close_to_the_smallest_l2_perturbation_of_a_linear_model():
    model, x, y, v = _linear_problem()
    x[:, :3] = 0.5
    gap = x @ v  # class 1 minus class 0 logit; negative where class 0 wins
    keep = gap < 0
    x, y, gap = x[keep], y[keep], gap[keep]
    assert len(x) >= 3
    smallest = -gap / v.norm()  # distance to the decision boundary
    adv = A.cw_l2(model, x, y, steps=200, lr=0.01, search_steps=6, c=1.0)
    dist = (adv - x).norm(dim=1)
    assert ((adv @ v) > 0).all()  # every image is misclassified
    assert (dist >= smallest - 1e-4).all()
    assert (dist <= 1.25 * smallest + 1e-3).all()


def test_targeted_fgsm_moves_towards_the_target():
    model, x, y, v = _linear_problem()
    target = torch.ones_like(y)
    adv = A.fgsm(model, x, target, 0.1, targeted=True)
    assert ((adv @ v) > (x @ v)).all()


def test_predict_averages_the_softmax_and_accuracy_counts():
    x, y = _batch(20)
    model = _vib("none")
    labels = A.predict(model, x)
    torch.testing.assert_close(labels, model(x)[0].argmax(-1))
    assert A.accuracy(model, x, labels) == 1.0
    assert A.predict(_vib(), x[:0]).shape == (0,)


@pytest.mark.parametrize("call, match", [
    (lambda m, x, y: A.fgsm(m, x, y, -0.1), "eps must be"),
    (lambda m, x, y: A.fgsm(m, x * 2, y, 0.1), r"\[0, 1\]"),
    (lambda m, x, y: A.pgd(m, x, y, 0.1, norm="l1"), "norm must be"),
    (lambda m, x, y: A.pgd(m, x, y, 0.1, steps=0), "steps must be"),
    (lambda m, x, y: A.fgsm(m, x, y[:3], 0.1), "one label per image"),
    (lambda m, x, y: A.pgd(m, x, y, 0.1, draws=0), "draws must be"),
])
def test_bad_arguments_raise_one_clear_error(call, match):
    x, y = _batch(4)
    with pytest.raises(ValueError, match=match):
        call(_vib(), x, y)


def test_robust_accuracy_at_eps_zero_is_the_clean_accuracy_and_falls_with_eps():
    model, x, y, v = _linear_problem()
    clean = A.accuracy(model, x, y, seed=1)
    accs = A.robust_accuracy(model, x, y, [0.0, 0.05, 0.5], attack="pgd", steps=10)
    assert accs[0] == clean
    assert accs[0] >= accs[1] >= accs[2]
    assert accs[2] == 0.0  # a large L-inf ball holds the closed-form worst case, which flips every image
    with pytest.raises(ValueError, match="attack must be"):
        A.robust_accuracy(model, x, y, [0.1], attack="bim")


def test_cw_summary_counts_only_changed_images():
    model, x, y, v = _linear_problem()
    x[:, :3] = 0.5
    out = A.cw_summary(model, x, y, steps=100, search_steps=3)
    correct = (x @ v) < 0
    assert out["success"] == 1.0 and correct.any()
    assert out["median_l2"] > 0
    none = A.cw_summary(model, x, y, steps=1, search_steps=1)
    assert none["success"] <= out["success"]


def test_predictive_objective_is_the_loss_of_the_averaged_softmax():
    x, y = _batch(8)
    det, vib = _vib("none"), _vib()
    torch.testing.assert_close(A.attack_loss(det, x, y, 4, objective="predictive"), A.attack_loss(det, x, y, 4))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    logits = vib(x, 6, g())
    by_hand = -torch.log(logits.softmax(-1).mean(0).gather(1, y[:, None])[:, 0])
    torch.testing.assert_close(A.attack_loss(vib, x, y, 6, g(), objective="predictive"), by_hand)
    # Jensen: the loss of the average is at most the average loss
    assert (A.attack_loss(vib, x, y, 6, g(), objective="predictive") <= A.attack_loss(vib, x, y, 6, g()) + 1e-6).all()
    with pytest.raises(ValueError, match="objective must be"):
        A.pgd(vib, x, y, 0.1, objective="dlr")


def test_margin_objective_is_the_best_other_log_probability_minus_the_true_one():
    x, y = _batch(8)
    det, vib = _vib("none"), _vib()
    logits = det(x)[0]
    other = logits.scatter(1, y[:, None], -float("inf")).amax(1)
    torch.testing.assert_close(A.attack_loss(det, x, y, objective="margin"), other - logits.gather(1, y[:, None])[:, 0])
    t = (y + 1) % 10  # targeted: climb the target's lead over the best other class
    other_t = logits.scatter(1, t[:, None], -float("inf")).amax(1)
    torch.testing.assert_close(A.attack_loss(det, x, t, targeted=True, objective="margin"),
                               logits.gather(1, t[:, None])[:, 0] - other_t)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    logp = vib(x, 6, g()).softmax(-1).mean(0).log()
    other_p = logp.scatter(1, y[:, None], -float("inf")).amax(1)
    torch.testing.assert_close(A.attack_loss(vib, x, y, 6, g(), objective="margin"),
                               other_p - logp.gather(1, y[:, None])[:, 0])
    with pytest.raises(ValueError, match="'ce' or 'predictive'"):
        A.cw_l2(vib, x, y, objective="margin")


def test_restarts_take_the_worst_case_under_one_fixed_judge():
    x, y = _batch(64)
    model = _vib()
    one = A.robust_accuracy(model, x, y, [0.05, 0.2], steps=3, draws=2, restarts=1)
    three = A.robust_accuracy(model, x, y, [0.05, 0.2], steps=3, draws=2, restarts=3)
    assert all(b <= a for a, b in zip(one, three))  # restart 0 is the same attack, judged by the same draws
    assert A.robust_accuracy(model, x, y, [0.0], restarts=3) == [A.accuracy(model, x, y, seed=1)]


class NoisyLinear(torch.nn.Module):
    """The linear classifier with Gaussian noise of sd ``scale`` on each draw's logits: single draws often err
    near the clean image, the average over many draws does not."""

    def __init__(self, linear: Linear, scale: float):
        super().__init__()
        self.linear, self.scale = linear, scale

    def forward(self, x, n_samples=1, generator=None):
        clean = self.linear(x, n_samples)
        return clean + self.scale * torch.randn(clean.shape, generator=generator, device=x.device)


def test_cw_success_judged_on_its_own_draws_is_an_artefact_of_the_noise():
    linear, x, y, v = _linear_problem()
    x[:, :3] = 0.5
    keep = (x @ v) < 0  # class 0 wins without noise
    x, y = x[keep], y[keep]
    boundary = -(x @ v) / v.norm()  # the smallest L2 perturbation that flips the noiseless classifier
    model = NoisyLinear(linear, 4.0)
    gen = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    lucky = A.cw_l2(model, x, y, steps=50, search_steps=2, generator=gen(0))
    assert (lucky - x).norm(dim=1).median() < 0.1 * boundary.median()  # "fooled" next to the clean image ...
    # ... yet the averaged prediction rarely changed
    assert (A.predict(model, lucky, 2000, gen(1)) == y).float().mean() >= 0.75
    judged = A.cw_l2(model, x, y, steps=50, search_steps=2, generator=gen(0), judge_samples=200, kappa=0.2,
                     judge_generator=gen(2))
    changed = (judged != x).any(1)
    assert changed.any()
    assert (A.predict(model, judged[changed], 2000, gen(1)) != y[changed]).all()
    assert ((judged - x).norm(dim=1)[changed] >= 0.9 * boundary[changed]).all()


def test_cw_summary_median_counts_the_images_it_failed_on():
    model, x, y, v = _linear_problem()
    x[:, :3] = 0.5
    out = A.cw_summary(model, x, y, steps=100, search_steps=3)
    assert out["median_l2"] == pytest.approx(out["median_l2_fooled"])  # every image fooled: no bias
    weak = A.cw_summary(model, x, y, steps=1, search_steps=1)
    finite = [d for d in weak["distances"] if d != float("inf")]
    assert len(weak["distances"]) == int(((x @ v) < 0).sum())
    assert weak["success"] == pytest.approx(len(finite) / len(weak["distances"]))
    assert weak["median_l2"] >= weak["median_l2_fooled"] or not finite


def test_image_classifier_returns_the_log_of_the_averaged_softmax():
    x, _ = _batch(5)
    vib = _vib()
    torch.manual_seed(0)
    out = A.ImageClassifier(vib, 7)(x.view(5, 1, 28, 28))
    torch.manual_seed(0)
    torch.testing.assert_close(out, vib(x, 7).softmax(-1).mean(0).log())
    torch.testing.assert_close(out.exp().sum(1), torch.ones(5))


def test_torchattacks_apgd_runs_on_the_wrapped_model():
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y, v = _linear_problem()
    wrapped = A.ImageClassifier(model, 1)
    adv = torchattacks.APGD(wrapped, norm="Linf", eps=0.5, steps=10, loss="ce")(x.view(-1, 1, 4, 5), y)
    adv = adv.view(len(x), -1)
    assert (adv - x).abs().max() <= 0.5 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert A.accuracy(model, adv, y) == 0.0  # the closed-form worst case flips every image at this radius


def test_l2_steps_have_full_length_however_small_the_gradient():
    g = torch.tensor([[3e-30, -4e-30, 0.0], [0.0, 0.0, 0.0], [1e-20, 0.0, 0.0], [3.0, 4.0, 0.0]])
    unit = A._unit(g)
    torch.testing.assert_close(unit.norm(dim=1), torch.tensor([1.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(unit[0], torch.tensor([0.6, -0.8, 0.0]))


class _NearlySaturated(torch.nn.Module):
    """A linear classifier whose cross-entropy gradient is tiny (1e-15 to 1e-40) but not zero on most images."""

    deterministic = True

    def __init__(self):
        super().__init__()
        w = torch.randn(784, 10, generator=torch.Generator().manual_seed(1))
        self.w = torch.nn.Parameter(w / w.norm(dim=0) * 20)

    def forward(self, x, n_samples=1, generator=None):
        z = x - 0.5
        return (z @ self.w + 60 * F.one_hot((z @ self.w).argmax(-1), 10))[None].expand(n_samples, -1, -1)


def test_l2_pgd_on_the_cross_entropy_climbs_a_tiny_gradient():
    model = _NearlySaturated().requires_grad_(False)
    x = torch.rand(30, 784, generator=torch.Generator().manual_seed(2))
    y = model(x)[0].argmax(-1)
    grad, _ = A.input_gradient(model, x, y)
    norms = grad.norm(dim=1)
    assert (norms < 1e-12).float().mean() > 0.5  # what a floor of 1e-12 on the norm turned into no step at all
    adv = A.pgd(model, x, y, 8.0, norm="l2", steps=20, random_start=False)
    assert (model(adv)[0].argmax(-1) == y).float().mean() < 0.2
