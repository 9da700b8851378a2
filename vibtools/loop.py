"""The training loop, top to bottom: objective, one step, one epoch, the per-epoch record, the final evaluation."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import torch

from .bounds import prediction_entropy_bits, smoothed_class_loss_bits, vib_objective
from .data import MNISTTensors
from .evaluation import eval_generators, evaluate_stack, evaluate_stacks, noise, to_floats
from .model import VIBStack
from .state import LossSettings, TrainState

TRAIN_EVAL_SIZE = 10_000  # training images the final evaluation measures (the first ones; as many as the test set)
FINAL_SALT = 10_000  # evaluation-noise salt of the training-set evaluation (per-epoch records use the epoch)


def objective(stack: VIBStack, settings: LossSettings, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
              keep: list[torch.Tensor] | None = None):
    """The training loss summed over the M models, and their (3, M) class bits, info bits and error counts.

    Each model's loss is the VIB objective, class loss + beta * info loss in bits, where the class loss is taken
    against label-smoothed targets for models with ``label_smoothing`` and the entropy of q(y|z) is subtracted,
    times ``confidence_penalty``, for models with a confidence penalty (the Table 1 baselines). The models
    share no weights, so the gradient of the sum gives each model the gradient of its own loss.
    """
    class_bits, info_bits, wrong, logits = stack.loss_terms(x, y, eps, keep)
    fit_bits = class_bits
    if settings.label_smoothing is not None:
        fit_bits = smoothed_class_loss_bits(logits, y, settings.label_smoothing)
    loss = vib_objective(fit_bits, info_bits, settings.betas)
    if settings.confidence_penalty is not None:
        loss = loss - settings.confidence_penalty * prediction_entropy_bits(logits)
    return loss.sum(), torch.stack([class_bits.detach(), info_bits.detach(), wrong.to(class_bits.dtype)])


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
            if not _is_compile_error(exc):
                raise  # an error of the step itself (shapes, memory) is not a compiler's: report it as it is
            warnings.warn(f"torch.compile failed ({type(exc).__name__}); using the plain step", stacklevel=2)
            state["fn"] = fn
            return fn(*args)

    return call


def _is_compile_error(exc: BaseException) -> bool:
    """True for the errors torch.compile raises when it cannot compile (Dynamo, Inductor, a missing compiler)."""
    module = type(exc).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor")) or isinstance(exc, (ImportError, OSError))


def train_step(state: TrainState, step_fn: Callable, x: torch.Tensor, y: torch.Tensor,
               eps: torch.Tensor) -> torch.Tensor:
    """One optimisation step of every model (loss, backward, Adam, EMA); returns the (3, M) batch statistics.

    Dropout masks, where a model uses dropout, are drawn here from the models' own dropout generators.
    """
    loss, stats = step_fn(state.stack, state.settings, x, y, eps, state.dropout_masks(len(x)))
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
    """Evaluate raw and EMA weights on the test set and append one history row per model.

    ``seconds`` is the epoch's training time; the row also records the evaluation's own time (``eval_seconds``).
    """
    c = state.configs[0]
    t0 = time.perf_counter()
    raw, ema = evaluate_stacks([state.stack, state.ema_stack()], data.test_x, data.test_y,
                               eval_generators(state.seeds(), state.epoch, state.device), c.n_eval_samples)
    if state.device.type == "cuda":
        torch.cuda.synchronize()
    eval_seconds = time.perf_counter() - t0
    for i, h in enumerate(state.histories):
        row = {"epoch": state.epoch, "lr": lr, "seconds": seconds, "eval_seconds": eval_seconds}
        row.update({k: float(v[i]) for k, v in epoch_metrics.items()})
        row.update({f"test_{k}": v for k, v in to_floats(raw, i).items()})
        row.update({f"ema_test_{k}": v for k, v in to_floats(ema, i).items()})
        for k, v in row.items():
            h.setdefault(k, []).append(v)


def final_evaluation(state: TrainState, data: MNISTTensors) -> list[dict]:
    """Each model's final metrics: raw and EMA weights on the test set, EMA weights on training images.

    The test-set metrics are the last epoch's record (the same weights, already evaluated): each set of weights is
    evaluated once, and the per-epoch lines and the final ones agree. The training-set metrics are measured on the
    first :data:`TRAIN_EVAL_SIZE` training images, as many as the test set holds, so that train and test numbers
    carry the same sampling noise. (On a CPU the noise draws cost more than the network: all 60 000 images took
    longer than a third of a training epoch, measured at K=256.)
    """
    c = state.configs[0]
    x, y = data.train_x[:TRAIN_EVAL_SIZE], data.train_y[:TRAIN_EVAL_SIZE]
    train = evaluate_stack(state.ema_stack(), x, y, eval_generators(state.seeds(), FINAL_SALT, state.device),
                           c.n_eval_samples)
    out: list[dict] = []
    for i, row in enumerate(last_rows(state)):
        out.append({"raw_test": {k[len("test_"):]: v for k, v in row.items() if k.startswith("test_")},
                    "ema_test": {k[len("ema_test_"):]: v for k, v in row.items() if k.startswith("ema_test_")},
                    "ema_train": to_floats(train, i)})
    return out


def last_rows(state: TrainState, epoch: int | None = None) -> list[dict]:
    """Each model's history row of one epoch (the last by default)."""
    j = -1 if epoch is None else epoch
    return [{k: v[j] for k, v in h.items()} for h in state.histories]
