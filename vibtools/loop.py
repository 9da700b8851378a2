"""The training loop, top to bottom: objective, one step, one epoch, the per-epoch record, the final evaluation."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from .bounds import vib_objective
from .data import MNISTTensors
from .evaluate import eval_generators, evaluate_stack, noise, to_floats
from .model import VIBStack
from .state import TrainState

FINAL_SALT = 10_000  # evaluation-noise salt of the final evaluation (per-epoch records use the epoch number)


def objective(stack: VIBStack, betas: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor):
    """The VIB loss summed over the M models, and their (3, M) class bits, info bits and error counts.

    The models share no weights, so the gradient of the sum gives each model the gradient of its own loss.
    """
    class_bits, info_bits, wrong = stack.loss_terms(x, y, eps)
    loss = vib_objective(class_bits, info_bits, betas).sum()
    return loss, torch.stack([class_bits.detach(), info_bits.detach(), wrong.to(class_bits.dtype)])


def maybe_compile(fn: Callable, mode: bool | str) -> Callable:
    """``torch.compile(fn)`` that falls back to the plain ``fn``, with a warning, if compiling fails."""
    if not mode:
        return fn
    compiled = torch.compile(fn, mode=None if mode is True else mode)
    state = {"fn": compiled, "tried": False}

    def call(*args):
        """Run the compiled function; on its first failure, switch to the plain one for good."""
        if state["tried"]:
            return state["fn"](*args)
        state["tried"] = True
        try:
            return compiled(*args)
        except Exception as exc:  # compile errors surface on the first call (no compiler, unsupported op)
            warnings.warn(f"torch.compile failed ({type(exc).__name__}); using the plain step", stacklevel=2)
            state["fn"] = fn
            return fn(*args)

    return call


def train_step(state: TrainState, step_fn: Callable, x: torch.Tensor, y: torch.Tensor,
               eps: torch.Tensor) -> torch.Tensor:
    """One optimisation step of every model (loss, backward, Adam, EMA); returns the (3, M) batch statistics."""
    loss, stats = step_fn(state.stack, state.betas, x, y, eps)
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    state.opt.step()
    state.ema.update()
    return stats


def run_epoch(state: TrainState, data: MNISTTensors, step_fn: Callable, bar=None) -> dict[str, torch.Tensor]:
    """One pass over the training set in the shared random batch order; returns each model's running means."""
    c = state.configs[0]
    n = len(data.train_x)
    steps = n // c.batch_size
    perm = torch.randperm(n, generator=state.batches, device=state.device)
    sums = torch.zeros(3, state.m, device=state.device)
    state.stack.train()
    for s in range(steps):
        idx = perm[s * c.batch_size:(s + 1) * c.batch_size]
        eps = noise(state.noise, (c.batch_size, c.k), state.device)
        sums += train_step(state, step_fn, data.train_x[idx], data.train_y[idx], eps)
        if bar is not None:
            bar.update(1)
    sums /= steps
    sums[2] /= c.batch_size
    return {"train_class_bits": sums[0], "train_info_bits": sums[1], "train_err": sums[2]}


def record_epoch(state: TrainState, data: MNISTTensors, epoch_metrics: dict, lr: float, seconds: float) -> None:
    """Evaluate raw and EMA weights on the test set and append one history row per model."""
    c = state.configs[0]
    raw = evaluate_stack(state.stack, data.test_x, data.test_y,
                         eval_generators(state.seeds(), state.epoch, state.device), c.n_eval_samples)
    ema = evaluate_stack(state.ema_stack(), data.test_x, data.test_y,
                         eval_generators(state.seeds(), state.epoch, state.device), c.n_eval_samples)
    for i, h in enumerate(state.histories):
        row = {"epoch": state.epoch, "lr": lr, "seconds": seconds}
        row.update({k: float(v[i]) for k, v in epoch_metrics.items()})
        row.update({f"test_{k}": v for k, v in to_floats(raw, i).items()})
        row.update({f"ema_test_{k}": v for k, v in to_floats(ema, i).items()})
        for k, v in row.items():
            h.setdefault(k, []).append(v)


def final_evaluation(state: TrainState, data: MNISTTensors) -> list[dict]:
    """Each model's final metrics: raw and EMA weights on the test set, EMA weights on the training set."""
    c, seeds, dev = state.configs[0], state.seeds(), state.device
    ema_stack = state.ema_stack()
    out: list[dict] = [{} for _ in state.configs]
    for tag, stack, split, x, y in (("raw", state.stack, "test", data.test_x, data.test_y),
                                    ("ema", ema_stack, "test", data.test_x, data.test_y),
                                    ("ema", ema_stack, "train", data.train_x, data.train_y)):
        m = evaluate_stack(stack, x, y, eval_generators(seeds, FINAL_SALT, dev), c.n_eval_samples)
        for i in range(state.m):
            out[i][f"{tag}_{split}"] = to_floats(m, i)
    return out


def last_rows(state: TrainState, epoch: int | None = None) -> list[dict]:
    """Each model's history row of one epoch (the last by default)."""
    j = -1 if epoch is None else epoch
    return [{k: v[j] for k, v in h.items()} for h in state.histories]
