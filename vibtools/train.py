"""The training loop: one or many VIB models, the reference recipe, resumable and cached (chapters 3 and 4)."""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, default_cache_dir, load_checkpoint, run_key, save_checkpoint, save_json
from .data import MNISTTensors, load_mnist
from .device import configure_fast_math, describe_device, pick_device
from .ema import EMA
from .evaluate import _noise, eval_generators, evaluate_stack, to_floats
from .model import VIB
from .stack import VIBStack


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run's result; the defaults are the reference notebook's recipe."""

    beta: float = 1e-3
    k: int = 256
    epochs: int = 10
    seed: int = 0
    data_seed: int | None = None  # batch order; None uses ``seed``. A sweep shares one batch order.
    batch_size: int = 100
    lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.5, 0.999)
    decay_rate: float = 0.97
    decay_epochs: int = 2
    ema_decay: float = 0.999
    covariance: str = "diag"  # "diag" (reference), "full" (paper's K=2 encoder), "none" (deterministic)
    hidden: int = 1024
    n_eval_samples: int = 12

    def __post_init__(self):
        check_config(self)

    def with_(self, **changes) -> TrainConfig:
        """A copy with some fields changed."""
        return TrainConfig(**{**asdict(self), **changes})

    def as_dict(self) -> dict:
        """The config as JSON-friendly plain types."""
        d = asdict(self)
        d["adam_betas"] = list(d["adam_betas"])
        return d

    @property
    def batch_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed


def check_config(c: TrainConfig) -> None:
    """Raise ValueError with a one-line message when a config value is out of range."""
    if not (isinstance(c.beta, (int, float)) and math.isfinite(c.beta) and c.beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {c.beta!r}")
    for name in ("k", "epochs", "batch_size", "decay_epochs", "hidden", "n_eval_samples"):
        v = getattr(c, name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if c.covariance not in ("diag", "full", "none"):
        raise ValueError(f"covariance must be diag, full or none, got {c.covariance!r}")
    if not 0 <= c.ema_decay < 1:
        raise ValueError(f"ema_decay must be in [0, 1), got {c.ema_decay!r}")


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

    def save_history(self, path: str | Path) -> None:
        """Write config, history and final metrics as JSON (atomically)."""
        save_json(path, {"config": self.config.as_dict(), "history": self.history, "final": self.final})


_SHARED = ("k", "epochs", "batch_size", "lr", "adam_betas", "decay_rate", "decay_epochs", "ema_decay",
           "covariance", "hidden", "n_eval_samples", "batch_seed")


def _init_model(c: TrainConfig) -> VIB:
    torch.manual_seed(c.seed)
    return VIB(c.k, c.covariance, c.hidden)


def _make_adam(params, c: TrainConfig, device: torch.device) -> torch.optim.Adam:
    # fused Adam (one kernel for all tensors) is the fastest measured on CPU and CUDA; foreach elsewhere (MPS).
    kw = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
    return torch.optim.Adam(params, lr=c.lr, betas=tuple(c.adam_betas), **kw)


class _Group:
    """The mutable training state of M models trained together: stack, Adam, schedule, EMA, generators."""

    def __init__(self, configs: list[TrainConfig], device: torch.device):
        self.configs, self.device = configs, device
        c = configs[0]
        self.stack = VIBStack([_init_model(ci) for ci in configs]).to(device)
        self.ema_stack = copy.deepcopy(self.stack)  # holds the debiased averages when evaluated (sync_ema)
        self.opt = _make_adam(self.stack.parameters(), c, device)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=c.decay_epochs, gamma=c.decay_rate)
        self.ema = EMA(self.stack.parameters(), c.ema_decay)
        self.noise = [torch.Generator(device=device).manual_seed(ci.seed) for ci in configs]
        self.batches = torch.Generator(device=device).manual_seed(c.batch_seed)
        self.betas = torch.tensor([ci.beta for ci in configs], device=device)
        self.histories: list[dict[str, list]] = [{} for _ in configs]
        self.objective: Callable = _objective
        self.epoch = 0
        self.trained_on = describe_device(device)

    # ----- one model's state as a checkpoint (nn.Linear layout, on the CPU), and back -----
    def model_state(self, i: int, data_fp: str, final: dict | None) -> dict:
        named = dict(self.stack.named_parameters())
        cpu = lambda d: {k: v.cpu() for k, v in VIBStack.model_tensors(d, i).items()}  # noqa: E731
        adam = {}
        if self.opt.state:
            for key in ("exp_avg", "exp_avg_sq"):
                adam[key] = cpu({n: self.opt.state[p][key] for n, p in named.items()})
            adam["step"] = self.opt.state[next(iter(named.values()))]["step"].detach().cpu().clone()
        return {
            "config": self.configs[i].as_dict(), "data": data_fp, "epochs_done": self.epoch,
            "device_type": self.device.type, "device": describe_device(self.device), "model": cpu(named),
            "ema": {"shadow": cpu(dict(zip(named, self.ema.shadow))), "steps": self.ema.steps,
                    "decay": self.ema.decay},
            "adam": adam, "scheduler": self.sched.state_dict(),
            "rng": {"noise": self.noise[i].get_state(), "batches": self.batches.get_state()},
            "history": self.histories[i], "final": final,
        }

    def load_states(self, states: list[dict]) -> None:
        named = dict(self.stack.named_parameters())
        names = list(named)
        to_dev = lambda d: {k: v.to(self.device) for k, v in d.items()}  # noqa: E731
        params = to_dev(VIBStack.stack_tensors([st["model"] for st in states], names))
        shadow = to_dev(VIBStack.stack_tensors([st["ema"]["shadow"] for st in states], names))
        with torch.no_grad():
            for n, p in named.items():
                p.copy_(params[n])
            torch._foreach_copy_(self.ema.shadow, [shadow[n] for n in names])
        if states[0]["adam"]:
            moments = {key: to_dev(VIBStack.stack_tensors([st["adam"][key] for st in states], names))
                       for key in ("exp_avg", "exp_avg_sq")}
            for n, p in named.items():
                self.opt.state[p] = {"step": states[0]["adam"]["step"].to(self.device).clone(),  # one per tensor
                                     "exp_avg": moments["exp_avg"][n], "exp_avg_sq": moments["exp_avg_sq"][n]}
        self.ema.steps = int(states[0]["ema"]["steps"])
        self.sched.load_state_dict(states[0]["scheduler"])
        for pg, lr in zip(self.opt.param_groups, self.sched.get_last_lr()):
            pg["lr"] = lr  # the scheduler's state holds the decayed lr, the fresh optimizer still has the initial one
        for g, st in zip(self.noise, states):
            g.set_state(st["rng"]["noise"])
        self.batches.set_state(states[0]["rng"]["batches"])
        self.histories = [dict(st["history"]) for st in states]
        self.epoch = int(states[0]["epochs_done"])
        self.trained_on = str(states[0].get("device", states[0]["device_type"]))

    def sync_ema(self) -> None:
        with torch.no_grad():
            torch._foreach_copy_(list(self.ema_stack.parameters()), self.ema.averaged())

    def seeds(self) -> list[int]:
        return [c.seed for c in self.configs]


def _objective(stack: VIBStack, betas: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor):
    """Summed VIB loss of all models (they share no weights, so each gets its own gradient) and (3, M) stats."""
    class_bits, info_bits, wrong = stack.loss_terms(x, y, eps)
    loss = (class_bits + betas * info_bits).sum()
    return loss, torch.stack([class_bits.detach(), info_bits.detach(), wrong.to(class_bits.dtype)])


def _compiled(fn: Callable, mode: bool | str) -> Callable:
    """``torch.compile(fn)`` that falls back to the plain ``fn``, with a warning, if compiling fails."""
    if not mode:
        return fn
    compiled = torch.compile(fn, mode=None if mode is True else mode)
    state = {"fn": compiled, "tried": False}

    def call(*args):
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


def _train_step(group: _Group, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """One optimisation step of every model; returns the (3, M) class bits, info bits and error counts."""
    loss, stats = group.objective(group.stack, group.betas, x, y, eps)
    group.opt.zero_grad(set_to_none=True)
    loss.backward()
    group.opt.step()
    group.ema.update()
    return stats


def _run_epoch(group: _Group, data: MNISTTensors, bar) -> dict[str, torch.Tensor]:
    c = group.configs[0]
    n = len(data.train_x)
    steps = n // c.batch_size
    perm = torch.randperm(n, generator=group.batches, device=group.device)
    sums = torch.zeros(3, len(group.configs), device=group.device)
    group.stack.train()
    for s in range(steps):
        idx = perm[s * c.batch_size:(s + 1) * c.batch_size]
        eps = _noise(group.noise, (c.batch_size, c.k), group.device)
        sums += _train_step(group, data.train_x[idx], data.train_y[idx], eps)
        if bar is not None:
            bar.update(1)
    sums /= steps
    sums[2] /= c.batch_size
    return {"train_class_bits": sums[0], "train_info_bits": sums[1], "train_err": sums[2]}


def _record(group: _Group, data: MNISTTensors, epoch_metrics: dict, lr: float, seconds: float) -> None:
    c = group.configs[0]
    raw = evaluate_stack(group.stack, data.test_x, data.test_y, eval_generators(group.seeds(), group.epoch,
                                                                                group.device), c.n_eval_samples)
    group.sync_ema()
    ema = evaluate_stack(group.ema_stack, data.test_x, data.test_y,
                         eval_generators(group.seeds(), group.epoch, group.device), c.n_eval_samples)
    for i, h in enumerate(group.histories):
        row = {"epoch": group.epoch, "lr": lr, "seconds": seconds}
        row.update({k: float(v[i]) for k, v in epoch_metrics.items()})
        row.update({f"test_{k}": v for k, v in to_floats(raw, i).items()})
        row.update({f"ema_test_{k}": v for k, v in to_floats(ema, i).items()})
        for k, v in row.items():
            h.setdefault(k, []).append(v)


def _final(group: _Group, data: MNISTTensors) -> list[dict]:
    c, seeds, dev = group.configs[0], group.seeds(), group.device
    group.sync_ema()
    out = [dict() for _ in group.configs]
    salt = 10_000
    for tag, stack in (("raw", group.stack), ("ema", group.ema_stack)):
        for split, x, y in (("test", data.test_x, data.test_y), ("train", data.train_x, data.train_y)):
            m = evaluate_stack(stack, x, y, eval_generators(seeds, salt, dev), c.n_eval_samples)
            for i in range(len(out)):
                out[i][f"{tag}_{split}"] = to_floats(m, i)
    return out


def _result(group: _Group, i: int, final: dict, from_cache: bool, path: Path | None) -> RunResult:
    models = group.stack.unstack()
    group.sync_ema()
    ema_models = group.ema_stack.unstack()
    return RunResult(group.configs[i], models[i].eval(), ema_models[i].eval(), group.histories[i], final,
                     from_cache, path, group.trained_on)


def _check_sweep(configs: list[TrainConfig]) -> None:
    if not configs:
        raise ValueError("train_sweep needs at least one config")
    first = configs[0]
    for c in configs[1:]:
        for name in _SHARED:
            if getattr(c, name) != getattr(first, name):
                raise ValueError(f"models in one sweep must share {name}: {getattr(first, name)!r} vs "
                                 f"{getattr(c, name)!r}; split them into separate sweeps")


def _cache_path(cache, key: str) -> Path | None:
    if cache is False or cache is None:
        return None
    folder = default_cache_dir() if cache is True else Path(cache)
    return folder / f"{key}.pt"


def _read_cached(path: Path | None, config: TrainConfig, fp: str) -> dict | None:
    """The stored state for a config, or None; unreadable or mismatched files are reported and ignored."""
    if path is None or not path.exists():
        return None
    try:
        st = load_checkpoint(path)
        if st.get("config") != config.as_dict() or st.get("data") != fp:
            raise CheckpointError(f"{path} holds a different configuration or data set")
        return st
    except CheckpointError as exc:
        warnings.warn(f"ignoring stored run: {exc}; it will be retrained and overwritten", stacklevel=3)
        return None


def train_sweep(configs: list[TrainConfig], data: MNISTTensors | None = None, *, device: str | None = None,
                cache: bool | str | Path = True, progress: bool = True,
                on_epoch: Callable[[int, list[dict]], None] | None = None,
                checkpoint_every: int = 1, stop_after: int | None = None,
                compile: bool | str = False) -> list[RunResult]:
    """Train M models that differ in beta and/or seed in one pass, with stacked weights (chapter 4).

    Every model sees the same batch order (``batch_seed`` of the first config) and draws its own noise from
    its own seed, so model i equals ``train(configs[i])`` with the same batch order, up to float rounding.
    Runs already in the cache are loaded, unfinished ones resumed, the rest trained.

    Args:
        configs: one TrainConfig per model; all fields but beta and seed must agree.
        data: MNIST tensors (moved to the device); None loads the default data folder.
        device: "cpu", "cuda", "mps" or None for the best available.
        cache: True for the default run cache, a folder, or False to train without storing.
        progress: show tqdm bars (widgets in notebooks, text in terminals).
        on_epoch: called after each epoch with (epoch, [history row of each model]).
        checkpoint_every: store the state every this many epochs (and always at the end).
        stop_after: stop after this many epochs in total (to simulate an interruption).
        compile: compile the forward and backward with ``torch.compile`` (True, or a mode such as
            "reduce-overhead", which captures CUDA graphs on a GPU); falls back to the plain step on failure.
    Returns:
        One RunResult per config, in order.
    """
    _check_sweep(configs)
    dev = pick_device(device)
    configure_fast_math(dev)
    data = load_mnist(device=dev) if data is None else data
    fp = data.fingerprint()
    paths = [_cache_path(cache, run_key(c.as_dict(), fp)) for c in configs]
    stored = [_read_cached(p, c, fp) for p, c in zip(paths, configs)]

    results: list[RunResult | None] = [None] * len(configs)
    for i, st in enumerate(stored):  # finished runs come straight from the cache
        if st is not None and st["epochs_done"] >= configs[i].epochs and st.get("final"):
            g = _Group([configs[i]], dev)
            g.load_states([st])
            results[i] = _result(g, 0, st["final"], True, paths[i])
    todo = [i for i in range(len(configs)) if results[i] is None]
    if not todo:
        return results  # type: ignore[return-value]

    data = data.to(dev)
    group = _Group([configs[i] for i in todo], dev)
    partial = [stored[i] for i in todo]
    if all(st is not None for st in partial) and len({st["epochs_done"] for st in partial}) == 1:
        if any(st["device_type"] != dev.type for st in partial):
            warnings.warn("stored partial runs were made on another device type; training from scratch",
                          stacklevel=2)
        else:
            group.load_states(partial)
    group.objective = _compiled(_objective, compile)
    c = configs[0]
    end = c.epochs if stop_after is None else min(c.epochs, stop_after)
    steps = len(data.train_x) // c.batch_size
    label = f"beta={c.beta:g}" if len(todo) == 1 else f"{len(todo)} models"
    ebar = tqdm(total=c.epochs, initial=group.epoch, desc=f"VIB K={c.k} {label}", disable=not progress,
                unit="epoch")
    sbar = tqdm(total=steps, desc="steps", leave=False, disable=not progress, unit="step")
    try:
        while group.epoch < end:
            sbar.reset()
            t0 = time.perf_counter()
            lr = group.sched.get_last_lr()[0]
            metrics = _run_epoch(group, data, sbar)
            group.sched.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            _record(group, data, metrics, lr, seconds)
            group.epoch += 1
            ebar.update(1)
            last = [{k: v[-1] for k, v in h.items()} for h in group.histories]
            ebar.set_postfix(err=f"{last[0]['test_err']:.4f}", izx=f"{last[0]['test_izx']:.1f}")
            if on_epoch is not None:
                on_epoch(group.epoch - 1, last)
            done = group.epoch == c.epochs
            if done or group.epoch % checkpoint_every == 0 or group.epoch == end:
                finals = _final(group, data) if done else [None] * len(todo)
                for j, i in enumerate(todo):
                    if paths[i] is not None:
                        save_checkpoint(paths[i], group.model_state(j, fp, finals[j]))
    finally:
        sbar.close()
        ebar.close()
    finals = _final(group, data) if group.epoch == c.epochs else [{} for _ in todo]
    for j, i in enumerate(todo):
        results[i] = _result(group, j, finals[j], False, paths[i])
    return results  # type: ignore[return-value]


def train(config: TrainConfig | None = None, data: MNISTTensors | None = None, **kwargs) -> RunResult:
    """Train one VIB model with the reference recipe (or load it from the run cache); see :func:`train_sweep`.

    Args:
        config: the run's settings; None uses the reference defaults (K=256, beta=1e-3, 10 epochs).
        data: MNIST tensors; None loads the default data folder.
        **kwargs: device, cache, progress, on_epoch, checkpoint_every, stop_after as in :func:`train_sweep`.
    Returns:
        The RunResult with raw and EMA models, history and final evaluations.
    """
    return train_sweep([config or TrainConfig()], data, **kwargs)[0]


def load_run(path: str | Path, device: str | None = None) -> RunResult:
    """Load a finished run from its checkpoint file (safe: ``weights_only=True``)."""
    st = load_checkpoint(path)
    cfg = dict(st["config"])
    cfg["adam_betas"] = tuple(cfg["adam_betas"])
    config = TrainConfig(**{f.name: cfg[f.name] for f in fields(TrainConfig) if f.name in cfg})
    g = _Group([config], pick_device(device))
    g.load_states([st])
    return _result(g, 0, st.get("final") or {}, True, Path(path))
