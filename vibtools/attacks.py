"""Adversarial attacks on images in [0, 1]: FGSM, PGD under L-inf and L2, and a Carlini-Wagner-style L2 attack.

Every attack takes a classifier called as ``model(x, n_samples, generator)`` that returns logits of shape
(n_samples, B, classes) (a :class:`vibtools.VIB`, or anything with that call), attacks a whole batch at once on
the batch's device, and never changes the model. For a stochastic model each attack comes in two forms, set by
``draws``: ``draws=1`` takes each gradient through one draw of z (what the paper's attacks see), ``draws > 1``
averages the loss, and so its gradient, over that many draws (expectation over transformation, EOT: Athalye et
al. 2018), so that noise in the gradient cannot pass for robustness. A model is judged by :func:`predict`, the
softmax averaged over 12 draws, as everywhere in the book.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

import torch
import torch.nn.functional as F

from .config import EVAL_CHUNK, check_int, check_number

Norm = Literal["linf", "l2"]
NORMS = ("linf", "l2")
Objective = Literal["ce", "predictive", "margin"]
OBJECTIVES = ("ce", "predictive", "margin")


class Classifier(Protocol):
    """What the attacks need: ``model(x, n_samples, generator)`` -> logits (n_samples, B, classes)."""

    def __call__(self, x: torch.Tensor, n_samples: int = 1,
                 generator: torch.Generator | None = None) -> torch.Tensor: ...


def _check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise ValueError unless x is a (B, D) float batch in [0, 1] and y holds B labels."""
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a (batch, pixels) float tensor, got shape {tuple(x.shape)} of {x.dtype}")
    if y.shape != (len(x),):
        raise ValueError(f"y must hold one label per image: expected shape ({len(x)},), got {tuple(y.shape)}")
    if len(x) and (x.min() < 0 or x.max() > 1):
        raise ValueError("x must hold pixel values in [0, 1] (vibtools' MNIST tensors do)")


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def predictive_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log of the softmax averaged over draws: (draws, B, classes) -> (B, classes), computed stably."""
    return logits.log_softmax(-1).logsumexp(0) - math.log(len(logits))


def attack_loss(model: Classifier, x: torch.Tensor, y: torch.Tensor, draws: int = 1,
                generator: torch.Generator | None = None, targeted: bool = False,
                objective: Objective = "ce") -> torch.Tensor:
    """Per-image loss an attack maximizes, over ``draws`` draws of z.

    Args:
        model: the classifier.
        x: (B, D) images in [0, 1]; y: (B,) true labels, or the targets when ``targeted``.
        draws: draws of z (1: one draw; more: EOT). A deterministic model ignores it.
        generator: source of the noise (PyTorch's global one if None).
        targeted: maximize minus the loss of the target y instead.
        objective: "ce", the cross-entropy of each draw's softmax averaged over the draws; "predictive", the
            cross-entropy of the averaged softmax, i.e. the loss of the prediction the book reports (with 12
            draws, that predictor itself under fresh noise); or "margin", the margin of that prediction, the
            best other class's log-probability minus the true class's (of the target over the best other one
            when ``targeted``): Carlini and Wagner's loss, whose gradient does not vanish on an image the
            model is sure of, where the cross-entropy's does (its softmax saturates). "ce" and "predictive" agree
            for a deterministic model.
    Returns:
        A (B,) tensor.
    """
    logits = model(x, draws, generator)
    if objective == "margin":  # already signed so that the attack climbs it, targeted or not
        return -_margin(predictive_log_probs(logits)[None], y, targeted)[0]
    if objective == "predictive":
        loss = F.nll_loss(predictive_log_probs(logits), y, reduction="none")
    else:
        ce = F.cross_entropy(logits.flatten(0, 1), y.repeat(len(logits)), reduction="none")
        loss = ce.view(len(logits), -1).mean(0)
    return -loss if targeted else loss


def input_gradient(model: Classifier, x: torch.Tensor, y: torch.Tensor, draws: int = 1,
                   generator: torch.Generator | None = None, targeted: bool = False,
                   objective: Objective = "ce"):
    """Gradient of :func:`attack_loss` with respect to the images, and the loss itself.

    Returns:
        (grad, loss): a (B, D) tensor and a (B,) tensor, both detached.
    """
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        loss = attack_loss(model, xg, y, draws, generator, targeted, objective)
        (grad,) = torch.autograd.grad(loss.sum(), xg)
    return grad, loss.detach()


@torch.no_grad()
def predict(model: Classifier, x: torch.Tensor, n_samples: int = 12, generator: torch.Generator | None = None,
            chunk: int = EVAL_CHUNK) -> torch.Tensor:
    """Labels from the softmax averaged over ``n_samples`` draws of z (the book's 12-sample prediction)."""
    check_int("n_samples", n_samples)
    out = [model(x[i:i + chunk], n_samples, generator).softmax(-1).mean(0).argmax(-1)
           for i in range(0, len(x), chunk)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


def fgsm(model: Classifier, x: torch.Tensor, y: torch.Tensor, eps: float, *, draws: int = 1,
         generator: torch.Generator | None = None, targeted: bool = False,
         objective: Objective = "ce") -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size eps along the gradient's sign.

    Args:
        model, y, draws, generator, targeted, objective: as in :func:`attack_loss`.
        x: (B, D) images in [0, 1].
        eps: the L-inf radius.
    Returns:
        The adversarial images, inside the eps ball around x and inside [0, 1].
    """
    _check_batch(x, y)
    check_number("eps", eps)
    check_int("draws", draws)
    _check_objective(objective)
    if eps == 0:
        return x.clone()
    grad, _ = input_gradient(model, x, y, draws, generator, targeted, objective)
    return (x + eps * grad.sign()).clamp(0, 1)


def _project(delta: torch.Tensor, x: torch.Tensor, eps: float, norm: Norm) -> torch.Tensor:
    """The perturbation moved into the eps ball of the norm and so that x + delta stays in [0, 1].

    Clipping to [0, 1] after the L2 projection only shrinks each coordinate towards 0, so both constraints hold.
    """
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        size = delta.norm(dim=1, keepdim=True)
        delta = delta * (eps / size.clamp_min(1e-12)).clamp(max=1.0)
    return (x + delta).clamp(0, 1) - x


def _unit(grad: torch.Tensor) -> torch.Tensor:
    """Each row scaled to L2 norm 1 (rows of zeros stay zero), however small it is.

    Each row is first divided by its largest entry, so that a gradient of size 1e-30 (a cross-entropy whose
    softmax has all but saturated) still gives a full step: dividing by its norm directly would let that norm
    underflow to 0 in float32, and a floor on the norm (``clamp_min(1e-12)``) would shrink the step to nothing.
    """
    top = grad.abs().amax(dim=1, keepdim=True)
    grad = grad / torch.where(top > 0, top, torch.ones_like(top))
    return grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)  # the norm is >= 1 on every non-zero row


def pgd(model: Classifier, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: Norm = "linf",
        steps: int = 20, step_size: float | None = None, draws: int = 1,
        generator: torch.Generator | None = None, random_start: bool = True,
        targeted: bool = False, objective: Objective = "ce") -> torch.Tensor:
    """Projected gradient ascent on :func:`attack_loss` inside an L-inf or L2 ball (Madry et al. 2018).

    Each image keeps the iterate with the highest loss seen, the clean image included, so on a deterministic
    model the returned loss is never below the clean one. Restarts are the evaluation's business: see
    :func:`robust_accuracy`, which judges each restart by the reported predictor.

    Args:
        model, y, draws, generator, targeted, objective: as in :func:`attack_loss`.
        x: (B, D) images in [0, 1].
        eps: the radius.
        norm: "linf" (steps along the gradient's sign) or "l2" (steps along the unit gradient).
        steps: gradient steps.
        step_size: length of a step; None uses 2.5 eps / steps.
        random_start: start from a uniformly drawn point of the ball (drawn from ``generator``).
    Returns:
        The adversarial images, inside the eps ball around x and inside [0, 1].
    """
    _check_batch(x, y)
    check_number("eps", eps)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    check_int("steps", steps)
    check_int("draws", draws)
    _check_objective(objective)
    if step_size is not None:
        check_number("step_size", step_size)
    if eps == 0:
        return x.clone()
    alpha = 2.5 * eps / steps if step_size is None else step_size
    with torch.no_grad():
        best, best_loss = x.clone(), attack_loss(model, x, y, draws, generator, targeted, objective)
    delta = torch.zeros_like(x)
    if random_start:
        if norm == "linf":
            delta = (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
        else:  # uniform in the ball: a random direction, radius eps * u^(1/D)
            d = _unit(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype))
            u = torch.rand(len(x), 1, generator=generator, device=x.device, dtype=x.dtype)
            delta = d * eps * u ** (1 / x.shape[1])
        delta = _project(delta, x, eps, norm)
    for step in range(steps + 1):
        grad, loss = input_gradient(model, x + delta, y, draws, generator, targeted, objective)
        better = loss > best_loss
        best = torch.where(better[:, None], x + delta, best)
        best_loss = torch.where(better, loss, best_loss)
        if step == steps:
            break
        move = grad.sign() if norm == "linf" else _unit(grad)
        delta = _project(delta + alpha * move, x, eps, norm)
    return best


def _margin(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """The logit margin per draw that the attack drives below 0: (draws, B)."""
    true = logits.gather(-1, y.expand(len(logits), -1).unsqueeze(-1)).squeeze(-1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[-1]).bool(), -math.inf).amax(-1)
    return other - true if targeted else true - other


def cw_l2(model: Classifier, x: torch.Tensor, y: torch.Tensor, *, targeted: bool = False, c: float = 1.0,
          kappa: float = 0.0, steps: int = 100, lr: float = 0.05, search_steps: int = 4, draws: int = 1,
          generator: torch.Generator | None = None, objective: Objective = "ce", judge_samples: int = 0,
          judge_generator: torch.Generator | None = None) -> torch.Tensor:
    """An L2 optimization attack in the style of Carlini & Wagner (2017), the paper's second attack.

    Minimizes ||x' - x||^2 + c max(f(x'), -kappa) over x' = (tanh(w) + 1) / 2 with Adam, where f is the margin of
    the true class over the best other one (untargeted) or of the best other class over the target
    (``targeted``); a binary search over c per image (``search_steps`` rounds, c grown tenfold until a first
    success) keeps the smallest perturbation that succeeded during the optimization.

    What counts as a success decides what the attack reports. With ``judge_samples=0`` (Carlini and Wagner's
    bookkeeping) an iterate succeeds when the margin on the attack's own draws of z is below -kappa: for a
    stochastic model one lucky draw then passes for a success. With ``judge_samples=n`` an iterate succeeds only
    when the softmax averaged over n *fresh* draws (``judge_generator``) misclassifies it with a margin of kappa
    in log-probability: the predictor that is reported, with a confidence margin.

    Args:
        model, draws, generator: as in :func:`attack_loss`.
        x: (B, D) images in [0, 1]; y: true labels, or the targets when ``targeted``.
        c: starting weight of the margin term.
        kappa: the confidence margin, in the loss and in the success test.
        steps: Adam steps per round; lr: its learning rate.
        search_steps: rounds of the binary search over c.
        objective: "ce": f is the logit margin of each draw, averaged over the draws (the paper's form);
            "predictive": f is the log-probability margin of the softmax averaged over the draws.
        judge_samples: 0 judges success on the attack's own draws; n > 0 by n fresh draws (see above).
        judge_generator: source of the judge's draws (PyTorch's global one if None).
    Returns:
        The smallest successful adversarial image found for each image, or the image itself where none was.
        Judge the result with :func:`predict` under other draws still: the search's own test is not the verdict.
    """
    _check_batch(x, y)
    for name, v in (("c", c), ("lr", lr), ("kappa", kappa)):
        check_number(name, v)
    for name, v in (("steps", steps), ("search_steps", search_steps), ("draws", draws)):
        check_int(name, v)
    check_int("judge_samples", judge_samples, low=0)
    if objective not in ("ce", "predictive"):  # the margin is this attack's loss already
        raise ValueError(f"cw_l2's objective must be 'ce' or 'predictive', got {objective!r}")
    x = x.detach()
    w0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    lo = torch.zeros(len(x), device=x.device, dtype=x.dtype)
    hi = torch.full_like(lo, math.inf)
    cs = torch.full_like(lo, c)
    best, best_l2 = x.clone(), torch.full_like(lo, math.inf)

    def succeeded(adv: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
        """Which iterates count as adversarial (see the docstring)."""
        if judge_samples == 0:
            return (gap.mean(0) <= -kappa) if kappa > 0 else (gap.mean(0) < 0)
        judged = _margin(predictive_log_probs(model(adv, judge_samples, judge_generator))[None], y, targeted)[0]
        return (judged <= -kappa) if kappa > 0 else (judged < 0)

    for _ in range(search_steps):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(steps):
            with torch.enable_grad():
                adv = (torch.tanh(w) + 1) / 2
                l2sq = (adv - x).pow(2).sum(1)
                logits = model(adv, draws, generator)
                if objective == "predictive":
                    gap = _margin(predictive_log_probs(logits)[None], y, targeted)  # (1, B)
                else:
                    gap = _margin(logits, y, targeted)  # (draws, B)
                loss = (l2sq + cs * gap.clamp_min(-kappa).mean(0)).sum()  # Carlini-Wagner's f
                opt.zero_grad(set_to_none=True)
                loss.backward()
            with torch.no_grad():
                ok = succeeded(adv.detach(), gap.detach())
                l2 = l2sq.sqrt()
                better = ok & (l2 < best_l2)
                best = torch.where(better[:, None], adv.detach(), best)
                best_l2 = torch.where(better, l2, best_l2)
                found |= ok
            opt.step()
        with torch.no_grad():
            hi = torch.where(found, torch.minimum(hi, cs), hi)
            lo = torch.where(found, lo, torch.maximum(lo, cs))
            cs = torch.where(torch.isinf(hi), cs * 10, (lo + hi) / 2)
    return best


def random_noise(x: torch.Tensor, eps: float, norm: Norm = "linf",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A control: random perturbations of size eps (random signs for L-inf, a random direction for L2), clipped."""
    check_number("eps", eps)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "linf":
        step = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
        return (x + eps * step).clamp(0, 1)
    return (x + eps * _unit(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype))).clamp(0, 1)


def accuracy(model: Classifier, x: torch.Tensor, y: torch.Tensor, n_samples: int = 12, seed: int = 0) -> float:
    """Fraction of images whose 12-sample prediction (fresh noise from ``seed``) is the label y."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    return int((predict(model, x, n_samples, g) == y).sum()) / len(y)


def judge_noise(seed: int, batch_index: int, device) -> torch.Generator:
    """The evaluation noise that judges one batch of :func:`robust_accuracy`: the same draws however often the
    batch is judged (every restart, every attack), and never the draws an attacker sees."""
    return torch.Generator(device=device).manual_seed(seed + 1 + 7919 * batch_index)


def robust_accuracy(model: Classifier, x: torch.Tensor, y: torch.Tensor, eps_list, **kwargs) -> list[float]:
    """Accuracy of the 12-sample prediction on attacked copies of (x, y), one value per eps: the mean of
    :func:`robust_masks` (which takes the same arguments)."""
    return [int(m.sum()) / len(x) for m in robust_masks(model, x, y, eps_list, **kwargs)]


def robust_masks(model: Classifier, x: torch.Tensor, y: torch.Tensor, eps_list, *, attack: str = "pgd",
                 norm: Norm = "linf", draws: int = 1, steps: int = 20, seed: int = 0, n_samples: int = 12,
                 batch: int = 1000, restarts: int = 1, objective: Objective = "ce",
                 step_size: float | None = None) -> list[torch.Tensor]:
    """Which images the 12-sample prediction still classifies correctly under attack, one mask per eps.

    The prediction is judged under evaluation noise that the attacker never sees, the same draws for every
    restart and every attack (:func:`judge_noise`), so that the judged predictor is one fixed classifier and the
    masks of two attacks can be combined image by image (the worst case over attacks). An image counts as
    robust only when that predictor classifies it correctly clean and after every restart.

    Args:
        model: the classifier; x, y: images in [0, 1] and their labels.
        eps_list: the radii.
        attack: "fgsm" (L-inf only), "pgd", or "noise" (the random control of :func:`random_noise`).
        norm: "linf" or "l2" (pgd and noise).
        draws: draws of z per gradient (1 plain, more EOT).
        steps: PGD steps; step_size: their length (None: 2.5 eps / steps).
        seed: seed of the attack's noise (restart r uses seed + 100003 r); the evaluation noise is seeded apart.
        n_samples: draws averaged by the prediction that is judged.
        batch: images attacked at once.
        restarts: independent random starts of PGD (or draws of the noise control).
        objective: the loss the attack climbs (:func:`attack_loss`).
    Returns:
        One (len(x),) bool tensor per eps: True where the image is classified correctly after the attack.
    """
    if attack not in ("fgsm", "pgd", "noise"):
        raise ValueError(f"attack must be 'fgsm', 'pgd' or 'noise', got {attack!r}")
    if attack == "fgsm" and norm != "linf":
        raise ValueError("fgsm is an L-inf attack: use norm='linf'")
    check_int("restarts", restarts)
    _check_objective(objective)
    out = []
    for eps in eps_list:
        masks = []
        for b, i in enumerate(range(0, len(x), batch)):
            xb, yb = x[i:i + batch], y[i:i + batch]
            robust = predict(model, xb, n_samples, judge_noise(seed, b, x.device)) == yb
            for r in range(restarts if attack != "fgsm" else 1):
                g = torch.Generator(device=x.device).manual_seed(seed + 100003 * r + 7919 * b)
                if attack == "fgsm":
                    adv = fgsm(model, xb, yb, eps, draws=draws, generator=g, objective=objective)
                elif attack == "pgd":
                    adv = pgd(model, xb, yb, eps, norm=norm, steps=steps, draws=draws, generator=g,
                              objective=objective, step_size=step_size)
                else:
                    adv = random_noise(xb, eps, norm, generator=g)
                robust &= predict(model, adv, n_samples, judge_noise(seed, b, x.device)) == yb
            masks.append(robust)
        out.append(torch.cat(masks) if masks else torch.zeros(0, dtype=torch.bool, device=x.device))
    return out


def cw_summary(model: Classifier, x: torch.Tensor, y: torch.Tensor, *, draws: int = 1, steps: int = 40,
               search_steps: int = 3, seed: int = 0, n_samples: int = 12, batch: int = 1000,
               objective: Objective = "ce", judge_samples: int = 0, kappa: float = 0.0) -> dict:
    """Untargeted :func:`cw_l2` on (x, y), judged by the 12-sample prediction under noise the attack never saw.

    Args:
        model, x, y, draws, steps, search_steps, objective, judge_samples, kappa: as in :func:`cw_l2`.
        seed: seed of the attack's noise; its success test and the final judgement use noise seeded apart.
        n_samples: draws averaged by the prediction that judges the result.
        batch: images attacked at once.
    Returns:
        success: the fraction of correctly classified images that the returned example misclassifies (the clean
        and the attacked image are judged under the same draws of z, so an image whose prediction merely
        changes with the noise does not count);
        median_l2: the median distance over *all* correctly classified images, an image not fooled counting as
        infinitely far (so ``inf`` when fewer than half are fooled): the median over the fooled ones only would
        leave out exactly the images the attack failed on;
        median_l2_fooled: that biased median over the fooled images alone (NaN if none), for comparison;
        distances: the distance of each correctly classified image (``inf`` where not fooled).
    """
    g = torch.Generator(device=x.device).manual_seed(seed)
    gj = torch.Generator(device=x.device).manual_seed(seed + 50021)
    dist = []
    for b, i in enumerate(range(0, len(x), batch)):
        xb, yb = x[i:i + batch], y[i:i + batch]
        ok = predict(model, xb, n_samples, judge_noise(seed, b, x.device)) == yb
        adv = cw_l2(model, xb, yb, steps=steps, search_steps=search_steps, draws=draws, generator=g,
                    objective=objective, judge_samples=judge_samples, judge_generator=gj, kappa=kappa)
        found = (adv != xb).any(1)  # cw_l2 returns the image itself where it found nothing
        hit = found & (predict(model, adv, n_samples, judge_noise(seed, b, x.device)) != yb)
        d = (adv - xb).norm(dim=1).where(hit, torch.full_like(ok, math.inf, dtype=xb.dtype))
        dist.append(d[ok])
    d = torch.cat(dist).double()
    fooled = d[torch.isfinite(d)]
    return {"success": len(fooled) / max(len(d), 1),
            "median_l2": float(d.sort().values[(len(d) - 1) // 2]) if len(d) else math.nan,
            "median_l2_fooled": float(fooled.median()) if len(fooled) else math.nan,
            "distances": [round(float(v), 4) if math.isfinite(v) else math.inf for v in d.tolist()]}


class ImageClassifier(torch.nn.Module):
    """A VIB as a plain image classifier for attack libraries such as torchattacks: images (B, 1, 28, 28) or
    (B, 784) in, the log of the softmax averaged over ``n_samples`` fresh draws of z out (B, classes).

    Log-probabilities serve as logits (the softmax of log p is p), so an attack on this module attacks the
    prediction the book reports; each call draws new noise from PyTorch's global generator, as such libraries
    expect of a randomized model (their EOT averages the gradient over calls).
    """

    def __init__(self, model: Classifier, n_samples: int = 12):
        super().__init__()
        self.model, self.n_samples = model, check_int("n_samples", n_samples)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return predictive_log_probs(self.model(images.flatten(1), self.n_samples))
