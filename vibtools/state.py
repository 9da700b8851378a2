"""The training state of M models trained together, and its conversion to and from stored run payloads.

What a run needs while it trains: the stacked weights, one fused Adam for all of them, the learning-rate
schedule, the weight average (EMA), one noise generator per model and one shared batch-order generator, and the
per-epoch histories. :meth:`TrainState.payloads` writes it in the format of :mod:`vibtools.checkpoint`;
:meth:`TrainState.restore` reads it back, exactly, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .checkpoint import CheckpointError
from .config import TrainConfig
from .device import describe_device
from .ema import EMA
from .model import VIBStack

DROPOUT_SALT = 7_919  # dropout masks come from generators seeded apart from the noise (seed * 1_000_003 + salt)


@dataclass(frozen=True)
class LossSettings:
    """Per-model loss settings of a stack, as (M,) tensors; a regularizer nobody uses is None (no extra work)."""

    betas: torch.Tensor
    label_smoothing: torch.Tensor | None = None
    confidence_penalty: torch.Tensor | None = None
    dropout: torch.Tensor | None = None

    @classmethod
    def of(cls, configs: Sequence[TrainConfig], device: torch.device) -> LossSettings:
        """The settings of these configs on ``device``."""
        def column(name: str) -> torch.Tensor:
            """One field of every config as an (M,) tensor."""
            return torch.tensor([float(getattr(c, name)) for c in configs], device=device)

        def used(name: str) -> torch.Tensor | None:
            """The column, or None when every model has it at 0."""
            return column(name) if any(getattr(c, name) for c in configs) else None

        return cls(column("beta"), used("label_smoothing"), used("confidence_penalty"), used("dropout"))


def make_adam(params, config: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the config's learning rate and betas; fused (one kernel for all tensors) on CPU and CUDA."""
    # fused Adam is the fastest measured on CPU and CUDA; foreach elsewhere (MPS).
    kw = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
    return torch.optim.Adam(params, lr=config.lr, betas=tuple(config.adam_betas), **kw)


class DeviceMismatch(CheckpointError):
    """A stored training state belongs to another device type, whose random-stream states cannot continue here."""

    def __init__(self, saved_on: str, here: str):
        super().__init__(f"its training state was saved on {saved_on}, and random-stream states of that device "
                         f"cannot continue on {here}")
        self.saved_on = saved_on


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
        self.stack = VIBStack(c.k, c.covariance, c.hidden, seeds=[ci.seed for ci in configs]).to(device)
        self.opt = make_adam(self.stack.parameters(), c, device)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=c.decay_epochs, gamma=c.decay_rate)
        self.ema = EMA(self.stack.parameters(), c.ema_decay)
        self.noise = [torch.Generator(device=device).manual_seed(ci.seed) for ci in configs]
        self.batches = torch.Generator(device=device).manual_seed(c.batch_seed)
        self.settings = LossSettings.of(configs, device)
        self.dropout_gens = [torch.Generator(device=device).manual_seed(ci.seed * 1_000_003 + DROPOUT_SALT)
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
            self._ema_stack = VIBStack(*self.stack.shape_args, seeds=[None] * self.m, init=False).to(self.device)
        with torch.no_grad():
            torch._foreach_copy_(list(self._ema_stack.parameters()), self.ema_averages())
        return self._ema_stack

    # ----- to and from stored payloads -----
    def payloads(self, data_fingerprint: str, finals: Sequence[dict | None], training: bool) -> list[dict]:
        """One run payload per model (CPU tensors); ``training`` adds what resuming needs."""
        names = [n for n, _ in self.stack.named_parameters()]
        params = list(self.stack.parameters())
        averages = self.ema_averages()

        def model_i(tensors, i: int) -> dict[str, torch.Tensor]:
            """Model i's slice of stacked tensors, by parameter name, on the CPU."""
            return {n: t[i].detach().cpu().clone() for n, t in zip(names, tensors)}

        out = []
        for i, c in enumerate(self.configs):
            p = {"config": c.as_dict(), "data": data_fingerprint, "epochs_done": self.epoch,
                 "device": self.trained_on, "model": model_i(params, i), "ema_model": model_i(averages, i),
                 "history": self.histories[i], "final": finals[i]}
            if training:
                adam = {}
                if self.opt.state:
                    for key in ("exp_avg", "exp_avg_sq"):
                        adam[key] = model_i([self.opt.state[q][key] for q in params], i)
                    adam["step"] = self.opt.state[params[0]]["step"].detach().cpu().clone()
                p["training"] = {
                    "device_type": self.device.type, "adam": adam, "scheduler": self.sched.state_dict(),
                    "ema": {"shadow": model_i(self.ema.shadow, i), "steps": self.ema.steps, "decay": self.ema.decay},
                    "rng": {"noise": self.noise[i].get_state(), "batches": self.batches.get_state(),
                            "dropout": self.dropout_gens[i].get_state()},
                }
            out.append(p)
        return out

    def restore(self, payloads: Sequence[dict], training: bool) -> None:
        """Load stored payloads of these configs (all at the same epoch).

        Args:
            payloads: one verified payload per model, in order.
            training: restore the optimizer, schedule, EMA shadow and random streams too (to continue
                training); without it only the weights, the stored averages and the histories are loaded.
        Raises:
            CheckpointError: the training state was saved on another device type, whose random-stream
                states cannot continue here.
        """
        dev = self.device
        names = [n for n, _ in self.stack.named_parameters()]
        self.stack.load_model_states([p["model"] for p in payloads])
        self.histories = [{k: list(v) for k, v in p["history"].items()} for p in payloads]
        self.epoch = int(payloads[0]["epochs_done"])
        self.trained_on = str(payloads[0].get("device", ""))

        def stacked(parts: Sequence[dict]) -> list[torch.Tensor]:
            """Per-model tensor dicts stacked in parameter order, on the device."""
            return [torch.stack([d[n] for d in parts]).to(dev) for n in names]

        if not training:
            self._fixed_ema = stacked([p["ema_model"] for p in payloads])
            return
        tr = [p["training"] for p in payloads]
        saved_on = {t["device_type"] for t in tr}
        if saved_on != {dev.type}:
            raise DeviceMismatch("/".join(sorted(saved_on)), dev.type)
        try:
            self._restore_training(tr, stacked)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a state that passed the checksum but not torch
            raise CheckpointError(f"its training state cannot be restored ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''})") from None

    def _restore_training(self, tr: Sequence[dict], stacked) -> None:
        """Restore the optimizer, schedule, EMA shadow and random streams from stored training states."""
        dev = self.device
        self._fixed_ema = None
        with torch.no_grad():
            torch._foreach_copy_(self.ema.shadow, stacked([t["ema"]["shadow"] for t in tr]))
        self.ema.steps = int(tr[0]["ema"]["steps"])
        if tr[0]["adam"]:
            moments = {key: stacked([t["adam"][key] for t in tr]) for key in ("exp_avg", "exp_avg_sq")}
            for j, q in enumerate(self.stack.parameters()):
                self.opt.state[q] = {"step": tr[0]["adam"]["step"].to(dev).clone(),  # one counter per tensor
                                     "exp_avg": moments["exp_avg"][j], "exp_avg_sq": moments["exp_avg_sq"][j]}
        self.sched.load_state_dict(tr[0]["scheduler"])
        for pg, lr in zip(self.opt.param_groups, self.sched.get_last_lr()):
            pg["lr"] = lr  # the scheduler's state holds the decayed lr, the fresh optimizer still has the initial one
        for g, d, t in zip(self.noise, self.dropout_gens, tr):
            g.set_state(t["rng"]["noise"])
            if "dropout" in t["rng"]:  # absent from runs saved before dropout existed (which use none)
                d.set_state(t["rng"]["dropout"])
        self.batches.set_state(tr[0]["rng"]["batches"])
