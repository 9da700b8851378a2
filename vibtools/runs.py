"""Training runs from the outside: train one model or a stacked sweep, resume, cache, and load stored runs.

Read top to bottom: :func:`train_sweep` checks every input before any work (:func:`preflight`), serves finished
runs from the cache (:mod:`vibtools.cache`), resumes or starts the rest as one :class:`~vibtools.state.TrainState`,
and runs the loop of :mod:`vibtools.loop`, saving after every epoch and before the final evaluation.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .cache import RunCache, cache_folder, check_writable, checkpoint_bytes
from .checkpoint import CheckpointError, check_run_payload, load_checkpoint, save_checkpoint, save_json
from .config import TrainConfig, sweep_shared_fields
from .data import MNISTTensors, load_mnist
from .device import configure_fast_math, pick_device
from .loop import final_evaluation, last_rows, maybe_compile, objective, record_epoch, run_epoch
from .model import VIB, head_dim, parameter_shapes
from .state import DeviceMismatch, TrainState

EVAL_CHUNK = 2000  # examples per evaluation batch (evaluate_stack's default)


@dataclass
class RunResult:
    """A trained run: raw and EMA-averaged models, per-epoch history and final evaluations."""

    config: TrainConfig
    model: VIB
    ema_model: VIB
    history: dict[str, list]
    final: dict[str, dict[str, float]] = field(default_factory=dict)
    from_cache: bool = False
    path: Path | None = None
    device: str = ""  # where it was trained, e.g. "cpu (x86_64, 2 threads)" or "cuda (NVIDIA H100 80GB HBM3)"
    timing: dict[str, float] = field(default_factory=dict)  # final_eval_seconds (per-epoch times are in history)

    @property
    def seconds(self) -> dict[str, float]:
        """Where the run's time went: training, per-epoch evaluation, final evaluation (seconds, summed)."""
        h = self.history
        return {"training": float(sum(h.get("seconds", []))), "epoch_eval": float(sum(h.get("eval_seconds", []))),
                "final_eval": float(self.timing.get("final_eval_seconds", 0.0))}

    def save_history(self, path: str | Path) -> None:
        """Write config, history and final metrics as JSON (atomically)."""
        save_json(path, {"config": self.config.as_dict(), "history": self.history, "final": self.final})


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C or SIGTERM; the finished epochs are saved and rerunning resumes."""


# ----------------------------------------------------------------------------- checks before any work
def check_sweep(configs: Sequence[TrainConfig]) -> None:
    """Raise ValueError unless the configs can share one stacked pass (they differ only in beta and seed)."""
    if not isinstance(configs, (list, tuple)) or not configs:
        raise ValueError("train_sweep needs a non-empty list of TrainConfig")
    for c in configs:
        if not isinstance(c, TrainConfig):
            raise ValueError(f"train_sweep takes TrainConfig objects, got {type(c).__name__}")
    first = configs[0]
    for c in configs[1:]:
        for name in sweep_shared_fields():
            if getattr(c, name) != getattr(first, name):
                raise ValueError(f"models in one sweep must share {name}: {getattr(first, name)!r} vs "
                                 f"{getattr(c, name)!r}; split them into separate sweeps")


def memory_needed(configs: Sequence[TrainConfig]) -> int:
    """About how many bytes training and evaluating these models needs on the device, beside the data."""
    c, m = configs[0], len(configs)
    n_params = sum(math.prod(s) for s in parameter_shapes(c.k, c.covariance, c.hidden).values())
    weights = 6 * 4 * n_params * m  # weights, gradients, two Adam moments, EMA shadow, EMA model
    width = 2 * c.hidden + head_dim(c.k, c.covariance)
    draws = (c.n_eval_samples + 1) * m * max(EVAL_CHUNK, c.batch_size)
    latent = 3 * draws * c.k * 4  # noise, codes and their temporaries
    if c.covariance == "full":
        latent += 3 * m * EVAL_CHUNK * c.k * c.k * 4  # a Cholesky factor per example
    activations = 4 * m * EVAL_CHUNK * width * 4
    return weights + latent + activations



def available_memory(device: torch.device) -> int | None:
    """Free memory on the device in bytes (CPU: MemAvailable), or None when it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        free = None
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        free = int(line.split()[1]) * 1024
        except OSError:
            try:
                free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                pass
        limit = _cgroup_room()
        return limit if free is None else free if limit is None else min(free, limit)
    return None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup (v2) memory limit, or None without a limit."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - used, 0)


def check_memory(configs: Sequence[TrainConfig], device: torch.device) -> None:
    """Raise ValueError (one line) when training these models would need more memory than the device has free."""
    c = configs[0]
    need = memory_needed(configs)
    free = available_memory(device)
    if free is not None and need > free:
        raise ValueError(f"{len(configs)} model(s) with K={c.k}, hidden={c.hidden} need about {need / 2**30:.1f} GiB "
                         f"on {device.type}, more than the {free / 2**30:.1f} GiB free: use a smaller K or hidden "
                         f"width, or fewer models per sweep")


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_options(configs: Sequence[TrainConfig], device: torch.device, folder: Path | None, checkpoint_every: int,
                  stop_after: int | None, compile: bool | str) -> ValueError | None:
    """Raise ValueError (one line) on a bad option, before the data is read; creates nothing.

    Returns:
        None when the cache folder can be written, else the error to raise unless every run is already stored
        there (a read-only folder of finished runs can still serve them).
    """
    for name, v in (("checkpoint_every", checkpoint_every), ("stop_after", stop_after)):
        if v is None and name == "stop_after":
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not (isinstance(compile, bool) or compile in COMPILE_MODES):
        raise ValueError(f"compile must be True, False or a torch.compile mode ({', '.join(COMPILE_MODES)}), "
                         f"got {compile!r}")
    check_memory(configs, device)
    if folder is None:
        return None
    try:
        check_writable(folder, checkpoint_bytes(configs[0]) * len(configs))
    except ValueError as exc:
        if not folder.is_dir():
            raise  # nothing can be stored in a folder that does not exist
        return exc
    return None


def check_data(configs: Sequence[TrainConfig], data: MNISTTensors) -> None:
    """Raise ValueError (one line) when the data cannot serve these configs (shapes, counts, batch size)."""
    c = configs[0]
    if not isinstance(data, MNISTTensors):
        raise ValueError(f"data must be MNISTTensors (from vibtools.load_mnist), got {type(data).__name__}")
    n_train, n_test = len(data.train_x), len(data.test_x)
    if data.train_x.shape[1:] != (784,) or data.test_x.shape[1:] != (784,):
        raise ValueError(f"images must have shape (N, 784), got {tuple(data.train_x.shape)} and "
                         f"{tuple(data.test_x.shape)}")
    if len(data.train_y) != n_train or len(data.test_y) != n_test:
        raise ValueError(f"data holds {len(data.train_y)} labels for {n_train} training images and "
                         f"{len(data.test_y)} for {n_test} test images: pass matching images and labels")
    if n_test < 1:
        raise ValueError("the test set is empty: the run evaluates on it after every epoch")
    if c.batch_size > n_train:
        raise ValueError(f"batch_size {c.batch_size} is larger than the {n_train} training images: "
                         f"use batch_size <= {n_train}")


# ----------------------------------------------------------------------------- building results
def _results(state: TrainState, finals: list[dict], paths: list[Path | None]) -> list[RunResult]:
    """Every model of a training state as a RunResult (copies of its raw and EMA weights; averages built once)."""
    ema = state.ema_stack()
    return [RunResult(c, state.stack.model(i), ema.model(i), state.histories[i], finals[i], False, paths[i],
                      state.trained_on) for i, c in enumerate(state.configs)]


def _model(c: TrainConfig, tensors: dict, device: torch.device) -> VIB:
    """A VIB of config ``c`` holding stored per-model tensors, on ``device``, in eval mode."""
    model = VIB(c.k, c.covariance, c.hidden, init=False)
    model.load_model_states([tensors])
    return model.to(device).eval()


def _finished(payload: dict, c: TrainConfig, device: torch.device, path: Path | None) -> RunResult:
    """A stored finished run: only its raw and EMA models and its record (no optimizer, no random streams)."""
    return RunResult(c, _model(c, payload["model"], device), _model(c, payload["ema_model"], device),
                     {k: list(v) for k, v in payload["history"].items()}, payload.get("final") or {}, True, path,
                     str(payload.get("device", "")), dict(payload.get("timing") or {}))


def load_run(path: str | Path, device: str | None = None) -> RunResult:
    """Load a stored run from its file, on any device (safe: ``weights_only=True``, checksum verified).

    Args:
        path: a run file written by :func:`train_sweep` (``<cache>/<key>.pt``).
        device: where to put the models (None: the best available).
    Returns:
        The RunResult with the raw and EMA models, history and final metrics (empty if unfinished).
    Raises:
        CheckpointError: the file is unreadable, damaged, or lacks what the loader needs.
    """
    payload = load_checkpoint(path)
    try:
        config = TrainConfig.from_dict(payload.get("config") or {})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} holds an unusable config ({exc})") from None
    check_run_payload(payload, parameter_shapes(config.k, config.covariance, config.hidden), path)
    return _finished(payload, config, pick_device(device), Path(path))


# ----------------------------------------------------------------------------- training
@contextlib.contextmanager
def _interrupts_held():
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver the first one (main thread only).

    A save and the count of saved epochs then always agree: an interrupt never discards a finished epoch
    half-written, nor lands between the file's rename and the bookkeeping of what is saved. (Swapping the Python
    handlers, not pthread_sigmask: the kernel may deliver a blocked-here signal to a torch or tqdm thread.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if pending:
            signal.raise_signal(pending[0])  # the restored handler raises KeyboardInterrupt (or the CLI's SIGTERM)


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
    check_sweep(configs)
    dev = pick_device(device)
    folder = cache_folder(cache)
    unwritable = check_options(configs, dev, folder, checkpoint_every, stop_after, compile)
    data = load_mnist(device=dev) if data is None else data
    check_data(configs, data)
    configure_fast_math(dev)
    fp = data.fingerprint()
    store = RunCache(folder) if folder is not None else None
    paths = [store.path(c, fp) if store else None for c in configs]
    results: list[RunResult | None] = [None] * len(configs)
    if unwritable is not None:  # a read-only cache: serve it if every run is stored and finished, else refuse
        stored = [store.read(p, c, fp) for p, c in zip(paths, configs)]  # type: ignore[union-attr]
        if all(st is not None and st["epochs_done"] >= c.epochs and st.get("final") is not None
               for st, c in zip(stored, configs)):
            return [_finished(st, c, dev, p) for st, c, p in zip(stored, configs, paths)]  # type: ignore[arg-type]
        raise unwritable
    with store.locked(paths) if store else contextlib.nullcontext():
        stored = [store.read(p, c, fp) if store else None for p, c in zip(paths, configs)]
        for i, st in enumerate(stored):  # finished runs come straight from the cache
            if st is not None and st["epochs_done"] >= configs[i].epochs and st.get("final") is not None:
                results[i] = _finished(st, configs[i], dev, paths[i])
        todo = [i for i in range(len(configs)) if results[i] is None]
        by_epoch: dict[int, list[int]] = {}  # partial runs resume in passes of runs saved at the same epoch
        for i in todo:
            by_epoch.setdefault(stored[i]["epochs_done"] if stored[i] is not None else 0, []).append(i)
        for group in by_epoch.values():
            trained = _train_group([configs[i] for i in group], [stored[i] for i in group],
                                   [paths[i] for i in group], data.to(dev), dev, fp, progress, on_epoch,
                                   checkpoint_every, stop_after, compile)
            for i, r in zip(group, trained):
                results[i] = r
    return results  # type: ignore[return-value]


def _start(configs: list[TrainConfig], stored: list[dict | None], paths: list[Path | None],
           dev: torch.device) -> TrainState:
    """A fresh training state, or the stored partial runs restored when they can continue here."""
    state = TrainState(configs, dev)
    if all(st is None for st in stored):
        return state
    epochs = {st["epochs_done"] if st is not None else 0 for st in stored}
    if any(st is None for st in stored) or len(epochs) != 1:
        warnings.warn("stored partial runs of this sweep stopped at different epochs; training the sweep from "
                      "scratch (train them separately to keep their progress)", stacklevel=3)
        return state
    done = epochs.pop()
    try:
        state.restore(stored, training=done < configs[0].epochs)  # type: ignore[arg-type]
    except DeviceMismatch as exc:
        raise ValueError(f"stored partial run {paths[0]} (epoch {done} of {configs[0].epochs}) was saved on "
                         f"{exc.saved_on} and can only resume there: rerun with device={exc.saved_on!r}, or delete "
                         f"it to train from scratch on {dev.type}") from None
    except CheckpointError as exc:
        warnings.warn(f"ignoring stored run: {paths[0]} cannot resume ({exc}); training from scratch",
                      stacklevel=3)
        return TrainState(configs, dev)
    return state


def _train_group(configs, stored, paths, data, dev, fp, progress, on_epoch, checkpoint_every, stop_after,
                 compile) -> list[RunResult]:
    """Train (or finish) models that share one stacked pass, saving every epoch; see :func:`train_sweep`."""
    state = _start(configs, stored, paths, dev)
    if on_epoch is not None:
        for e in range(state.epoch):  # a resumed run replays its stored epochs first
            on_epoch(e, last_rows(state, e))

    timing: dict[str, float] = {}

    def save(finals: list[dict | None], training: bool) -> None:
        """Store every model's state (nothing without a cache)."""
        if all(p is None for p in paths):
            return
        for p, payload in zip(paths, state.payloads(fp, finals, training)):
            if p is not None:
                save_checkpoint(p, {**payload, "timing": timing})

    c = configs[0]
    step_fn = maybe_compile(objective, compile)
    end = c.epochs if stop_after is None else min(c.epochs, stop_after)
    steps = len(data.train_x) // c.batch_size
    label = f"beta={c.beta:g}" if len(configs) == 1 else f"{len(configs)} models"
    ebar = tqdm(total=c.epochs, initial=state.epoch, desc=f"VIB K={c.k} {label}", disable=not progress, unit="epoch")
    sbar = tqdm(total=steps, desc="steps", leave=False, disable=not progress, unit="step")
    saved = state.epoch
    try:
        while state.epoch < end:
            sbar.reset()
            t0 = time.perf_counter()
            lr = state.sched.get_last_lr()[0]
            metrics = run_epoch(state, data, step_fn, sbar)
            state.sched.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            record_epoch(state, data, metrics, lr, time.perf_counter() - t0)
            state.epoch += 1
            ebar.update(1)
            rows = last_rows(state)
            ebar.set_postfix(err=f"{rows[0]['test_err']:.4f}", izx=f"{rows[0]['test_izx']:.1f}")
            if state.epoch == c.epochs or state.epoch % checkpoint_every == 0 or state.epoch == end:
                with _interrupts_held():  # an interrupt during the save is delivered once it is done
                    save([None] * len(configs), training=True)  # the last epoch is safe before the final evaluation
                    saved = state.epoch
            if on_epoch is not None:  # after the save: an epoch reported is an epoch kept
                on_epoch(state.epoch - 1, rows)
        finals: list[dict] = [{} for _ in configs]
        if state.epoch == c.epochs:
            t0 = time.perf_counter()
            finals = final_evaluation(state, data)
            timing["final_eval_seconds"] = time.perf_counter() - t0
            save(finals, training=False)  # a finished run keeps only what loading it needs
    except KeyboardInterrupt:
        if paths[0] is None:
            where = "no run cache was used, so nothing was saved"
        else:
            kept = "epoch 1 is saved" if saved == 1 else f"epochs 1-{saved} are saved"
            where = f"{kept}; rerun the same command to resume" if saved else "nothing was saved"
        raise TrainingInterrupted(f"interrupted after epoch {saved} of {c.epochs}; {where}") from None
    finally:
        sbar.close()
        ebar.close()
    results = _results(state, finals, paths)
    for r in results:
        r.timing = dict(timing)
    return results


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
