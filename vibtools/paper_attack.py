"""The paper's own attack, as its section 4.2 ran it: the Carlini-Wagner L2 attack, untargeted and targeted.

Alemi et al. attacked the first 1 000 test images with the L2 optimization attack of Carlini & Wagner (2017),
untargeted and targeted (a random target label different from the source), using 12 samples of z both for the
attack's gradients and for judging success; their figure 3 shows the first ten zeros perturbed into ones, and
their figure 4 the size of a successful perturbation relative to the deterministic model's, and the accuracy on
the perturbed images, against β.

``python -m vibtools attack-study --paper [--epochs 10|200]`` runs :func:`paper_cw` on the models of
:func:`vibtools.robustness.study_configs` and writes ``results/adversarial-paper/<run>.json`` per model. The
attack is :func:`vibtools.attacks.cw_l2` with the margin averaged over 12 draws per gradient (the paper's form)
and success judged by the 12-sample prediction under fresh draws; every result is judged at the end by the same
fixed draws of the evaluation noise as the rest of the study (:func:`vibtools.attacks.judge_noise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads with the attack, not with the readers of its records
    import torch

FORMAT = "vibtools-paper-cw"
FOLDER = "adversarial-paper"
TARGET_SEED = 20170424  # the targets are the same for every model: one draw, fixed
L0_THRESHOLD = 1 / 255  # a pixel counts as changed when it moved by at least one grey level of the 8-bit image


@dataclass(frozen=True)
class PaperCW:
    """The attack's settings (the paper names none beyond the images and the 12 samples)."""

    n_images: int = 1000  # the first test images, as in the paper
    samples: int = 12  # draws of z per gradient and for the success test
    steps: int = 100  # Adam steps per round
    rounds: int = 4  # rounds of the search over c (c x 10 until a first success, then bisection)
    c: float = 1.0  # the first c
    lr: float = 0.05  # Adam's learning rate, in tanh space


def random_targets(y: torch.Tensor, seed: int = TARGET_SEED) -> torch.Tensor:
    """One target label per image, drawn uniformly among the nine labels other than its own (the same for every
    model, since it depends on y and the seed only)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, 10, (len(y),), generator=g).to(y.device)
    return (y + shift) % 10


def perturbation_sizes(delta: torch.Tensor) -> dict[str, list[float]]:
    """Per image of a (B, D) perturbation: L0 (pixels moved by at least :data:`L0_THRESHOLD`), L2 and L-inf."""
    return {"l0": (delta.abs() >= L0_THRESHOLD).sum(1).tolist(),
            "l2": [round(v, 4) for v in delta.norm(dim=1).tolist()],
            "linf": [round(v, 4) for v in delta.abs().amax(1).tolist()]}


def paper_cw(model, x: torch.Tensor, y: torch.Tensor, settings: PaperCW = PaperCW(), seed: int = 0,
             log=None) -> dict:
    """The paper's attack on one model: untargeted and targeted Carlini-Wagner L2 (see the module's docstring).

    Args:
        model: a trained VIB or deterministic net (its EMA weights), in eval mode.
        x, y: test images and labels (the first ``settings.n_images`` are attacked).
        settings: the attack's settings.
        seed: seed of the attack's noise (the judge's draws are seeded apart, as in the rest of the study).
        log: called with one line per finished form (None: silent).
    Returns:
        {"clean": accuracy, "untargeted": {...}, "targeted": {...}, "seconds"}. Each form holds ``accuracy`` (the
        fraction of all attacked images still classified correctly), ``success`` (the fraction of the correctly
        classified images the attack turned: misclassified, or classified as the target), ``succeeded`` (a hex
        mask over all images, :func:`vibtools.robustness.pack_mask`) and the sizes of every successful
        perturbation (``l0``, ``l2``, ``linf``, in image order); the targeted form also its ``targets``.
    """
    import time

    import torch

    from . import attacks as A
    from .robustness import pack_mask

    x, y = x[:settings.n_images], y[:settings.n_images]
    model.requires_grad_(False)
    t0 = time.perf_counter()
    draws = 1 if getattr(model, "deterministic", False) else settings.samples
    clean = A.predict(model, x, settings.samples, A.judge_noise(seed, 0, x.device)) == y
    out: dict = {"clean": int(clean.sum()) / len(x)}
    targets = random_targets(y)
    for form, aim in (("untargeted", y), ("targeted", targets)):
        g = torch.Generator(device=x.device).manual_seed(seed)
        gj = torch.Generator(device=x.device).manual_seed(seed + 50021)
        adv = A.cw_l2(model, x, aim, targeted=form == "targeted", c=settings.c, steps=settings.steps,
                      lr=settings.lr, search_steps=settings.rounds, draws=draws, generator=g, objective="ce",
                      judge_samples=settings.samples, judge_generator=gj)
        pred = A.predict(model, adv, settings.samples, A.judge_noise(seed, 0, x.device))
        moved = (adv != x).any(1)  # cw_l2 returns the image itself where it found nothing
        hit = clean & moved & ((pred == targets) if form == "targeted" else (pred != y))
        sizes = perturbation_sizes((adv - x)[hit])
        out[form] = {"accuracy": int((pred == y).sum()) / len(x),
                     "success": int(hit.sum()) / max(int(clean.sum()), 1),
                     "succeeded": pack_mask(hit), **sizes}
        if form == "targeted":
            out[form]["targets"] = targets.tolist()
        if log:
            log(f"{form} done at {time.perf_counter() - t0:.0f} s (success {out[form]['success']:.3f})")
    out["seconds"] = time.perf_counter() - t0
    return out


def relative_sizes(records: list[dict], baseline: list[dict], form: str, norm: str) -> list[float]:
    """Per seed: the mean size (``norm``: "l0", "l2" or "linf") of a successful perturbation of a model, divided by
    that of the deterministic model of the same seed (the paper's figure 4(a)); NaN where either has none."""
    import math

    def mean_size(rec):
        v = rec[form][norm]
        return sum(v) / len(v) if v else math.nan

    by_seed = {r["config"]["seed"]: mean_size(r) for r in baseline}

    def ratio(r):
        base = by_seed.get(r["config"]["seed"], math.nan)
        return mean_size(r) / base if base == base and base > 0 else math.nan

    return [ratio(r) for r in records]
