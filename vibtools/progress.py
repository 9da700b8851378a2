"""The progress bars of a stacked training pass (tqdm): epochs, with an ETA and the first model's test error, and
the steps of the current epoch."""

from __future__ import annotations

from tqdm.auto import tqdm

from .baselines import model_name


class PassBars:
    """The pass's progress bars (tqdm): epochs, with an ETA and the first model's test error, and steps."""

    def __init__(self, state, steps: int, progress: bool):  # state: a vibtools.training.TrainState
        c, m = state.configs[0], state.m
        kind = c.bottleneck.upper() if c.covariance != "none" else model_name(c)  # deterministic, dropout, ...
        label = f"{m} models" if m > 1 else f"beta={c.beta:g}" if kind in ("VIB", "CEB") else ""
        self.epochs = tqdm(total=c.epochs, initial=state.epoch, desc=f"{kind} K={c.k} {label}".strip(),
                           disable=not progress, unit="epoch")
        self.steps = tqdm(total=steps, desc="steps", leave=False, disable=not progress, unit="step")

    def epoch_done(self, row: dict) -> None:
        self.epochs.update(1)
        self.epochs.set_postfix(err=f"{row['test_err']:.4f}", izx=f"{row['test_izx']:.1f}")
        self.steps.reset()

    def close(self) -> None:
        self.steps.close()
        self.epochs.close()
