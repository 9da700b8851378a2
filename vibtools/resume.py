"""Runs to and from the store: a training state as run payloads and back (resuming), finished runs as results.

:func:`payloads` turns a :class:`vibtools.training.TrainState` into one plain-data payload per model (the
format of :mod:`vibtools.store`), with what resuming needs while the run is unfinished; :func:`restore` loads
such payloads into a fresh state, so that training continues bit for bit. A finished run loads as a
:class:`RunResult` without any training state (:func:`stored_result`, :func:`load_run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import TrainConfig
from .device import pick_device
from .model import VIB
from .store import CheckpointError, check_run_payload, load_checkpoint, run_shapes, save_json


class DeviceMismatch(CheckpointError):
    """A stored training state belongs to another device type, whose random-stream states cannot continue here."""

    def __init__(self, saved_on: str, here: str):
        super().__init__(f"its training state was saved on {saved_on}, and random-stream states of that device "
                         f"cannot continue on {here}")
        self.saved_on = saved_on


def payloads(state, data_fingerprint: str, finals: Sequence[dict | None], training: bool) -> list[dict]:
    """One run payload per model of a training state (CPU tensors); ``training`` adds what resuming needs."""
    names = [n for n, _ in state.stack.named_parameters()]
    params = list(state.stack.parameters())
    averages = state.ema_averages()

    def model_i(tensors, i: int) -> dict[str, torch.Tensor]:
        """Model i's slice of stacked tensors, by parameter name, on the CPU."""
        return {n: t[i].detach().cpu().clone() for n, t in zip(names, tensors)}

    out = []
    for i, c in enumerate(state.configs):
        p = {"config": c.as_dict(), "data": data_fingerprint, "epochs_done": state.epoch,
             "device": state.trained_on, "model": model_i(params, i), "ema_model": model_i(averages, i),
             "history": state.histories[i], "final": finals[i]}
        if training:
            adam = {}
            if state.opt.state:
                for key in ("exp_avg", "exp_avg_sq"):
                    adam[key] = model_i([state.opt.state[q][key] for q in params], i)
                adam["step"] = state.opt.state[params[0]]["step"].detach().cpu().clone()
            p["training"] = {
                "device_type": state.device.type, "adam": adam, "scheduler": state.sched.state_dict(),
                "ema": {"shadow": model_i(state.ema.shadow, i), "steps": state.ema.steps, "decay": state.ema.decay},
                "rng": {"noise": state.noise[i].get_state(), "batches": state.batches.get_state(),
                        "dropout": state.dropout_gens[i].get_state()},
            }
        out.append(p)
    return out

def restore(state, payloads: Sequence[dict], training: bool) -> None:
    """Load stored payloads into a fresh training state of their configs (all at the same epoch).

    Args:
        payloads: one verified payload per model, in order.
        training: restore the optimizer, schedule, EMA shadow and random streams too (to continue
            training); without it only the weights, the stored averages and the histories are loaded.
    Raises:
        CheckpointError: the training state was saved on another device type, whose random-stream
            states cannot continue here.
    """
    dev = state.device
    names = [n for n, _ in state.stack.named_parameters()]
    state.stack.load_model_states([p["model"] for p in payloads])
    state.histories = [{k: list(v) for k, v in p["history"].items()} for p in payloads]
    state.epoch = int(payloads[0]["epochs_done"])
    state.trained_on = str(payloads[0].get("device", ""))

    def stacked(parts: Sequence[dict]) -> list[torch.Tensor]:
        """Per-model tensor dicts stacked in parameter order, on the device."""
        return [torch.stack([d[n] for d in parts]).to(dev) for n in names]

    if not training:
        state._fixed_ema = stacked([p["ema_model"] for p in payloads])
        return
    tr = [p["training"] for p in payloads]
    saved_on = {t["device_type"] for t in tr}
    if saved_on != {dev.type}:
        raise DeviceMismatch("/".join(sorted(saved_on)), dev.type)
    try:
        _restore_training(state, tr, stacked)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a state that passed the checksum but not torch
        raise CheckpointError(f"its training state cannot be restored ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None

def _restore_training(state, tr: Sequence[dict], stacked) -> None:
    """Restore the optimizer, schedule, EMA shadow and random streams from stored training states."""
    dev = state.device
    state._fixed_ema = None
    with torch.no_grad():
        torch._foreach_copy_(state.ema.shadow, stacked([t["ema"]["shadow"] for t in tr]))
    state.ema.steps = int(tr[0]["ema"]["steps"])
    if tr[0]["adam"]:
        moments = {key: stacked([t["adam"][key] for t in tr]) for key in ("exp_avg", "exp_avg_sq")}
        for j, q in enumerate(state.stack.parameters()):
            state.opt.state[q] = {"step": tr[0]["adam"]["step"].to(dev).clone(),  # one counter per tensor
                                 "exp_avg": moments["exp_avg"][j], "exp_avg_sq": moments["exp_avg_sq"][j]}
    state.sched.load_state_dict(tr[0]["scheduler"])
    for pg, lr in zip(state.opt.param_groups, state.sched.get_last_lr()):
        pg["lr"] = lr  # the scheduler's state holds the decayed lr, the fresh optimizer still has the initial one
    for g, d, t in zip(state.noise, state.dropout_gens, tr):
        g.set_state(t["rng"]["noise"])
        if "dropout" in t["rng"]:  # absent from runs saved before dropout existed (which use none)
            d.set_state(t["rng"]["dropout"])
    state.batches.set_state(tr[0]["rng"]["batches"])


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
    timing: dict = field(default_factory=dict)  # final_eval_seconds; pass: {id, models} of the stacked pass

    @property
    def seconds(self) -> dict[str, float]:
        """Where the run's time went: training, per-epoch evaluation, final evaluation (seconds, summed)."""
        h = self.history
        return {"training": float(sum(h.get("seconds", []))), "epoch_eval": float(sum(h.get("eval_seconds", []))),
                "final_eval": float(self.timing.get("final_eval_seconds", 0.0))}

    def save_history(self, path: str | Path) -> None:
        """Write config, history and final metrics as JSON (atomically)."""
        save_json(path, {"config": self.config.as_dict(), "history": self.history, "final": self.final})


def results_of(state, finals: list[dict], paths: list[Path | None], timing: dict) -> list[RunResult]:
    """Every model of a training state as a RunResult (copies of its raw and EMA weights; averages built once)."""
    ema = state.ema_stack()
    return [RunResult(c, state.stack.model(i), ema.model(i), state.histories[i], finals[i], False, paths[i],
                      state.trained_on, dict(timing)) for i, c in enumerate(state.configs)]


def _model(c: TrainConfig, tensors: dict, device: torch.device) -> VIB:
    """A VIB of config ``c`` holding stored per-model tensors, on ``device``, in eval mode."""
    model = VIB(c.k, c.covariance, c.hidden, init=False, mixture=c.mixture, encoder=c.encoder,
                bottleneck=c.bottleneck)
    model.load_model_states([tensors])
    return model.to(device).eval()


def stored_result(payload: dict, c: TrainConfig, device: torch.device, path: Path | None) -> RunResult:
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
    check_run_payload(payload, run_shapes(config), path)
    return stored_result(payload, config, pick_device(device), Path(path))


def finished_run(stored: dict | None, c: TrainConfig) -> bool:
    """True for a stored run that is finished: all its epochs and its final evaluation."""
    return stored is not None and stored["epochs_done"] >= c.epochs and stored.get("final") is not None


def interrupted_message(saved: int, epochs: int, stored: bool) -> str:
    """The one line of an interrupted run: how many epochs are kept, and what to do."""
    if not stored:
        return f"interrupted after epoch {saved} of {epochs}; no run cache was used, so nothing was saved"
    kept = "epoch 1 is saved" if saved == 1 else f"epochs 1-{saved} are saved"
    return f"interrupted after epoch {saved} of {epochs}; " + (
        f"{kept}; rerun the same command to resume" if saved else "nothing was saved")
