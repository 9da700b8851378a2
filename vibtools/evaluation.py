"""Test-time bounds and errors: 1-sample and 12-sample prediction (the training chapter explains both)."""

from __future__ import annotations

import torch

from .bounds import class_loss_bits, izy_lower_bound
from .config import EVAL_CHUNK, check_int, salted_seed
from .model import VIB, VIBStack


def draw_noise(gens: list[torch.Generator], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Standard-normal noise of shape (M, *shape), model m's slice drawn from generator m."""
    return torch.stack([torch.randn(shape, generator=g, device=device) for g in gens])


def eval_generators(seeds: list[int], salt: int, device: torch.device) -> list[torch.Generator]:
    """Fresh generators for evaluation noise, so evaluating never moves the training random streams."""
    return [torch.Generator(device=device).manual_seed(salted_seed(s, salt)) for s in seeds]


@torch.no_grad()
def evaluate_stacks(stacks: list[VIBStack], x: torch.Tensor, y: torch.Tensor, gens: list[torch.Generator],
                    n_samples: int = 12, chunk: int = EVAL_CHUNK) -> list[dict[str, torch.Tensor]]:
    """Bounds and errors of every model of some stacks of one shape, under the same draws of the noise.

    Drawing the noise costs more than the encoder on a CPU (about 3 300 normal draws per image at K=256), so
    stacks evaluated together (the raw and the EMA weights of a run) share each draw. Each stack's numbers equal
    those of :func:`evaluate_stack` with the same generators.

    Returns:
        Per stack: izy (I(Z;Y) lower bound, bits: H(Y) - class loss, with H(Y) = log2 of the number of classes
        present in ``y``, taken as balanced), izx (I(Z;X) upper bound, bits; for CEB a Monte Carlo estimate over
        the draws, see :meth:`VIBStack.izx_bits`), err (1-sample error) and avg_err (error of the softmax averaged
        over ``n_samples`` draws of z), each an (M,) tensor on the device; for CEB also residual_bits (the bound on
        I(X;Z|Y), KL(q(z|x) || b(z|y)) at the true labels).
    """
    check_int("n_samples", n_samples)
    first, dev = stacks[0], x.device
    modes = [s.training for s in stacks]
    for s in stacks:
        s.eval()
    sums = [torch.zeros(5 if s.ceb else 4, s.m, device=dev) for s in stacks]
    for start in range(0, len(x), chunk):
        xb, yb = x[start:start + chunk], y[start:start + chunk]
        n = len(xb)
        # (S+1, M, n, K): draw 0 for the 1-sample numbers, the others for the S-sample prediction
        eps = None if first.deterministic else draw_noise(gens, (n_samples + 1, n, first.k), dev).transpose(0, 1)
        for stack, acc in zip(stacks, sums):
            z, q = stack.latent(stack.stacked_head(xb), eps, n_samples + 1)
            logits = stack.stacked_logits(z)
            one = logits[0]
            acc[0] += class_loss_bits(one, yb) * n
            if q is not None:
                acc[1] += stack.izx_bits(q, z) * n
            if stack.ceb:  # CEB's own information term, the bound on I(X;Z|Y), at the true labels
                acc[4] += stack.info_bits(q, z, yb) * n
            acc[2] += (one.argmax(-1) != yb).sum(-1)
            acc[3] += (logits[1:].softmax(-1).mean(0).argmax(-1) != yb).sum(-1)
    for s, mode in zip(stacks, modes):
        s.train(mode)
    means = [acc / len(x) for acc in sums]
    h_classes = int(torch.unique(y).numel())  # H(Y) = log2 of the classes present (5 for a held-out-digit set)
    out = [{"izy": izy_lower_bound(m[0], h_classes), "izx": m[1], "err": m[2], "avg_err": m[3]} for m in means]
    return [{**o, "residual_bits": m[4]} if len(m) == 5 else o for o, m in zip(out, means)]


def evaluate_stack(stack: VIBStack, x: torch.Tensor, y: torch.Tensor, gens: list[torch.Generator],
                   n_samples: int = 12, chunk: int = EVAL_CHUNK) -> dict[str, torch.Tensor]:
    """Bounds and errors of every model in a stack (see :func:`evaluate_stacks`), each an (M,) tensor."""
    return evaluate_stacks([stack], x, y, gens, n_samples, chunk)[0]


def to_floats(metrics: dict[str, torch.Tensor], i: int = 0) -> dict[str, float]:
    """Model i's metrics as Python floats, with accuracies added (one host transfer)."""
    out = {k: float(v.detach().cpu()[i]) for k, v in metrics.items()}
    out["acc"], out["avg_acc"] = 1 - out["err"], 1 - out["avg_err"]
    return out


def evaluate(model: VIB, x: torch.Tensor, y: torch.Tensor, n_samples: int = 12, seed: int = 0) -> dict[str, float]:
    """I(Z;Y), I(Z;X) bounds in bits and 1-sample / ``n_samples``-sample error of one model on (x, y).

    Args:
        model: a trained VIB.
        x: (N, 784) images in [0, 1] on the model's device.
        y: (N,) labels.
        n_samples: draws of z averaged for the multi-sample prediction (12 in the reference).
        seed: seed of the evaluation noise.
    Returns:
        A dict with izy, izx, err, avg_err, acc, avg_acc.
    """
    check_int("n_samples", n_samples)
    check_int("seed", seed, 0, 2**32 - 1)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"x and y must hold the same number (>= 1) of examples, got {len(x)} and {len(y)}")
    if model.m != 1:
        raise ValueError(f"evaluate takes one model; this stack holds {model.m}: use evaluate_stack")
    return to_floats(evaluate_stack(model, x, y, eval_generators([seed], 0, x.device), n_samples))


def format_line(prefix: str, m: dict[str, float]) -> str:
    """One line in the reference notebook's print format."""
    return (f"{prefix}: IZY={m['izy']:.2f}\tIZX={m['izx']:.2f}\tacc={m['acc']:.4f}\tavg_acc={m['avg_acc']:.4f}"
            f"\terr={m['err']:.4f}\tavg_err={m['avg_err']:.4f}")
