"""Training, top to bottom: the state of M models trained together, one step, one epoch, the loop, and the API.

Read in order:

1. :class:`TrainState`: the stacked weights of M models, one fused Adam, the learning-rate schedule, the weight
   average (EMA), one noise generator per model and a shared batch-order generator, and the histories (it turns
   into stored payloads and back, exactly, in :mod:`vibtools.resume`).
2. :func:`vibtools.bounds.stack_loss` and :func:`train_step`: the VIB loss of every model, backward, Adam, EMA.
3. :func:`train_sweep`: check everything, serve finished runs from the store, then per pass the loop:
   build the state or resume it; for each epoch, for each batch, step; evaluate, then save; the final evaluation.
4. :func:`train`: one model (a stored run: :func:`vibtools.resume.load_run`).

Files, keys and locks live in :mod:`vibtools.store`, the checks made before any work in :mod:`vibtools.preflight`,
the loss of a stacked pass in :mod:`vibtools.bounds`.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .bounds import LossSettings, stack_loss
from .config import TrainConfig, salted_seed
from .data import MNISTTensors, load_mnist
from .device import configure_fast_math, describe_device, maybe_compile, pick_device
from .ema import EMA
from .evaluation import draw_noise, eval_generators, evaluate_stack, evaluate_stacks, to_floats
from .interrupts import held as _interrupts_held
from .model import VIBStack
from .preflight import check_data, check_options, check_sweep, folder_error
from .progress import PassBars
from .resume import (  # noqa: F401  (RunResult and load_run are re-exported: the face names them here)
    DeviceMismatch,
    RunResult,
    finished_run,
    interrupted_message,
    load_run,
    payloads,
    restore,
    results_of,
    stored_result,
)
from .store import (
    CheckpointError,
    RunCache,
    cache_folder,
    save_checkpoints,
)

TRAIN_EVAL_SIZE = 10_000  # training images the final evaluation measures (the first ones; as many as the test set)
FINAL_SALT = 10_000  # evaluation-noise salt of the training-set evaluation (per-epoch records use the epoch)
DROPOUT_SALT = 7_919  # dropout masks come from generators seeded apart from the noise


# ----------------------------------------------------------------------------- the training state
def make_adam(params, config: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the config's learning rate and betas; fused (one kernel for all tensors) on CPU and CUDA."""
    # fused Adam is the fastest measured on CPU and CUDA; foreach elsewhere (MPS).
    kw = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
    return torch.optim.Adam(params, lr=config.lr, betas=tuple(config.adam_betas), **kw)


class TrainState:
    """The mutable training state of M models of one shape that share a batch order.

    Args:
        configs: one config per model; they differ only in beta and seed (see :func:`vibtools.config.PER_MODEL`).
        device: where the state lives.
    """

    def __init__(self, configs: Sequence[TrainConfig], device: torch.device):
        c = configs[0]
        self.configs, self.device = list(configs), device
        # initial weights come from per-model CPU generators, so PyTorch's global random state is never touched
        self.stack = VIBStack(c.k, c.covariance, c.hidden, seeds=[ci.seed for ci in configs],
                              mixture=c.mixture, encoder=c.encoder, bottleneck=c.bottleneck).to(device)
        self.opt = make_adam(self.stack.parameters(), c, device)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=c.decay_epochs, gamma=c.decay_rate)
        self.ema = EMA(self.stack.parameters(), c.ema_decay)
        self.noise = [torch.Generator(device=device).manual_seed(ci.seed) for ci in configs]
        self.batches = torch.Generator(device=device).manual_seed(c.batch_seed)
        self.settings = LossSettings.of(configs, device)
        self.dropout_gens = [torch.Generator(device=device).manual_seed(salted_seed(ci.seed, DROPOUT_SALT))
                             for ci in configs]
        self.histories: list[dict[str, list]] = [{} for _ in configs]
        self.epoch = 0
        self.trained_on = describe_device(device)
        self._fixed_ema: list[torch.Tensor] | None = None  # stored averages of a run restored without its shadow
        self._ema_stack: VIBStack | None = None

    @property
    def m(self) -> int:
        """Number of models."""
        return len(self.configs)

    def dropout_masks(self, batch: int) -> list[torch.Tensor] | None:
        """Two (M, B, hidden) keep-masks for the hidden layers, scaled by 1 / (1 - rate); None without dropout."""
        rates = self.settings.dropout
        if rates is None:
            return None
        hidden = self.configs[0].hidden
        u = torch.stack([torch.rand((2, batch, hidden), generator=g, device=self.device) for g in self.dropout_gens], 1)
        r = rates.view(1, -1, 1, 1)
        keep = (u >= r).to(u.dtype) / (1 - r)
        return [keep[0], keep[1]]

    def seeds(self) -> list[int]:
        """Each model's seed (its evaluation noise derives from it)."""
        return [c.seed for c in self.configs]

    def ema_averages(self) -> list[torch.Tensor]:
        """The debiased weight averages, one stacked tensor per parameter."""
        return self._fixed_ema if self._fixed_ema is not None else self.ema.averaged()

    def ema_stack(self) -> VIBStack:
        """A stack holding the current debiased averages (built once, refreshed on every call)."""
        if self._ema_stack is None:
            self._ema_stack = VIBStack(**self.stack.shape, seeds=[None] * self.m, init=False).to(self.device)
        with torch.no_grad():
            torch._foreach_copy_(list(self._ema_stack.parameters()), self.ema_averages())
        return self._ema_stack



# ----------------------------------------------------------------------------- one step, one epoch
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
        eps = draw_noise(state.noise, (c.batch_size, c.k), state.device)
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
    _synchronize(state.device)
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


# ----------------------------------------------------------------------------- runs
class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C or SIGTERM; the finished epochs are saved and rerunning resumes."""


class TrainingDiverged(ValueError):
    """A model's loss or weights became NaN or infinite: training stopped, and the diverged epoch is not stored."""


def _diverged(state: TrainState, metrics: dict[str, torch.Tensor]) -> str | None:
    """Which model of the pass diverged in the epoch just run (non-finite loss or weights), in words, or None."""
    finite = torch.isfinite(metrics["train_class_bits"]) & torch.isfinite(metrics["train_info_bits"])
    for p in state.stack.parameters():  # each stacked parameter is (M, ...)
        finite &= torch.isfinite(p.detach()).flatten(1).all(1)
    bad = [i for i, ok in enumerate(finite.tolist()) if not ok]
    if not bad:
        return None
    c, loss = state.configs[bad[0]], float(metrics["train_class_bits"][bad[0]] + metrics["train_info_bits"][bad[0]])
    what = "loss is NaN" if loss != loss else "loss is infinite" if math.isinf(loss) else "weights are not finite"
    others = (f"; the {state.m - 1} other models of its stacked pass stop with it (train them without it)"
              if state.m > 1 else "")
    return (f"diverged at epoch {state.epoch + 1} ({what}; beta={c.beta:g}, lr={c.lr:g}, seed {c.seed}): try a "
            f"smaller beta or learning rate; nothing of this epoch was stored, and the run is not finished{others}")


# ----------------------------------------------------------------------------- training
def train_sweep(configs: list[TrainConfig], data: MNISTTensors | None = None, *, device: str | None = None,
                cache: bool | str | Path = True, progress: bool = True,
                on_epoch: Callable[[int, list[dict]], None] | None = None,
                checkpoint_every: int = 1, stop_after: int | None = None,
                compile: bool | str = False) -> list[RunResult]:
    """Train M models that differ in beta and/or seed in one pass, with stacked weights.

    Every model sees the same batch order (``batch_seed`` of the first config) and draws its own noise from
    its own seed, so model i equals ``train(configs[i])`` with the same batch order, up to float rounding.
    Runs already in the cache are loaded, unfinished ones resumed, the rest trained. Every input is checked
    before any work; a bad one raises ValueError (or DataNotFoundError for the data) and writes nothing.

    Args:
        configs: one TrainConfig per model; all fields but beta and seed must agree.
        data: MNIST tensors (moved to the device); None loads the default data folder.
        device: "cpu", "cuda", "cuda:N", "mps" or None for the best available.
        cache: True for the default run cache, a folder, or False to train without storing.
        progress: show tqdm bars (widgets in notebooks, text in terminals).
        on_epoch: called after each epoch with (epoch, [history row of each model]); a resumed run first
            replays its stored epochs, so the calls equal those of an uninterrupted run.
        checkpoint_every: store the state every this many epochs (and always before the final evaluation).
        stop_after: stop after this many epochs in total (to simulate an interruption).
        compile: compile the forward and backward with ``torch.compile`` (True, or a mode such as
            "reduce-overhead", which captures CUDA graphs on a GPU); falls back to the plain step on failure.
    Returns:
        One RunResult per config, in order.
    Raises:
        TrainingInterrupted: on Ctrl-C; its message says how many epochs are saved (rerun to resume).
    """
    check_sweep(configs)  # every input is checked before any work (vibtools.preflight)
    dev = pick_device(device)
    folder = cache_folder(cache)
    check_options(configs, dev, checkpoint_every, stop_after, compile)
    unwritable = folder_error(configs, folder)
    data = load_mnist(device=dev) if data is None else data
    check_data(configs, data)
    configure_fast_math(dev)
    fp = data.fingerprint()
    store = RunCache(folder) if folder is not None else None
    paths = [store.path(c, fp) if store else None for c in configs]
    with store.locked(paths) if store and unwritable is None else contextlib.nullcontext():
        stored = [store.read(p, c, fp) if store else None for p, c in zip(paths, configs)]
        results = [stored_result(st, c, dev, p) if finished_run(st, c) else None
                   for st, c, p in zip(stored, configs, paths)]
        if unwritable is not None and None in results:
            raise unwritable  # a read-only store can serve finished runs, not train new ones
        passes: dict[int, list[int]] = {}  # runs saved at the same epoch resume together
        for i in (i for i, r in enumerate(results) if r is None):
            passes.setdefault(stored[i]["epochs_done"] if stored[i] else 0, []).append(i)
        for todo in passes.values():
            trained = _train_pass([configs[i] for i in todo], [stored[i] for i in todo], [paths[i] for i in todo],
                                  data.to(dev), fp, progress, on_epoch, checkpoint_every, stop_after, compile)
            for i, r in zip(todo, trained):
                results[i] = r
    return results  # type: ignore[return-value]


@torch.enable_grad()  # training works inside a caller's torch.no_grad() (a page that otherwise only evaluates)
def _train_pass(configs, stored, paths, data, fp, progress, on_epoch, checkpoint_every, stop_after,
                compile) -> list[RunResult]:
    """The training loop of one stacked pass (see :func:`train_sweep`), top to bottom."""
    c = configs[0]
    state = _start(configs, stored, paths, data.device)  # 1. build the state, or resume it from the store
    for e in range(state.epoch if on_epoch else 0):
        on_epoch(e, last_rows(state, e))  # a resumed run replays its stored epochs first
    step_fn = maybe_compile(stack_loss, compile)
    end = c.epochs if stop_after is None else min(c.epochs, stop_after)

    def save(finals: list[dict] | None, training: bool, timing: dict | None = None) -> None:
        """Store every model's state, all or none of them (nothing without a store)."""
        save_checkpoints([(p, {**payload, "timing": timing or {}})
                          for p, payload in zip(paths, payloads(state, fp, finals or [None] * state.m, training))
                          if p is not None])

    bars, saved = PassBars(state, len(data.train_x) // c.batch_size, progress), state.epoch
    try:
        while state.epoch < end:  # 2. for each epoch, for each batch, step
            t0, lr = time.perf_counter(), state.sched.get_last_lr()[0]
            metrics = run_epoch(state, data, step_fn, bars.steps)
            diverged = _diverged(state, metrics)
            if diverged:
                raise TrainingDiverged(diverged)
            state.sched.step()
            _synchronize(state.device)
            record_epoch(state, data, metrics, lr, time.perf_counter() - t0)  # 3. evaluate, then save
            state.epoch += 1
            if state.epoch in (c.epochs, end) or state.epoch % checkpoint_every == 0:
                with _interrupts_held():  # an interrupt during the save is delivered once it is done
                    save(None, training=True)  # the last epoch is safe before the final evaluation
                    saved = state.epoch
            bars.epoch_done(last_rows(state)[0])
            if on_epoch is not None:  # after the save: an epoch reported is an epoch kept
                on_epoch(state.epoch - 1, last_rows(state))
        finals, timing = [{} for _ in configs], {}
        if state.epoch == c.epochs:  # 4. the final evaluation
            t0 = time.perf_counter()
            finals = final_evaluation(state, data)
            # the pass's identity: its models share their epoch times, and each is charged its share of them
            timing = {"final_eval_seconds": time.perf_counter() - t0,
                      "pass": {"id": uuid.uuid4().hex[:16], "models": state.m}}
            with _interrupts_held():  # the pass ends as one group: every model finished, or none
                save(finals, training=False, timing=timing)  # a finished run keeps only what loading it needs
    except KeyboardInterrupt:
        raise TrainingInterrupted(interrupted_message(saved, c.epochs, paths[0] is not None)) from None
    finally:
        bars.close()
    return results_of(state, finals, paths, timing)


def _start(configs: list[TrainConfig], stored: list[dict | None], paths: list[Path | None],
           dev: torch.device) -> TrainState:
    """A fresh training state, or the stored partial runs restored when they can continue here."""
    state = TrainState(configs, dev)
    if any(st is None for st in stored):  # train_sweep groups runs by saved epoch: a fresh pass has none stored
        return state
    done = stored[0]["epochs_done"]
    try:
        restore(state, stored, training=done < configs[0].epochs)  # type: ignore[arg-type]
    except DeviceMismatch as exc:  # random-stream states are device-specific
        warnings.warn(f"ignoring stored partial run {paths[0]} (epoch {done} of {configs[0].epochs}): it was saved "
                      f"on {exc.saved_on} and cannot resume on {dev.type}; training from scratch", stacklevel=3)
        return TrainState(configs, dev)
    except CheckpointError as exc:
        warnings.warn(f"ignoring stored run: {paths[0]} cannot resume ({exc}); training from scratch",
                      stacklevel=3)
        return TrainState(configs, dev)
    return state


def _synchronize(device: torch.device) -> None:
    """Wait for the device, so that an epoch's time is its own (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def train(config: TrainConfig | None = None, data: MNISTTensors | None = None, **kwargs) -> RunResult:
    """Train one VIB model with the reference recipe (or load it from the run cache); see :func:`train_sweep`.

    Args:
        config: the run's settings; None uses the reference defaults (K=256, beta=1e-3, 10 epochs).
        data: MNIST tensors; None loads the default data folder.
        **kwargs: device, cache, progress, on_epoch, checkpoint_every, stop_after, compile as in
            :func:`train_sweep`.
    Returns:
        The RunResult with raw and EMA models, history and final evaluations.
    """
    return train_sweep([config or TrainConfig()], data, **kwargs)[0]
