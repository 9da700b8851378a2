"""Exponential moving average of the weights with zero-debias (the training chapter explains why it helps)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


class EMA:
    """Zero-debiased EMA of a list of tensors: s_t = d s_{t-1} + (1-d) w_t, s_0 = 0, average = s_t / (1 - d^t).

    This is the zero-debias of TensorFlow's ``ExponentialMovingAverage(zero_debias=True)``,
    which the reference notebook uses.
    (TensorFlow itself debiases only averages of plain tensors and starts a variable's average at the
    variable's initial value; the two differ by a weight d^t on the initial weights, 0.25% after the
    reference's 6000 steps.) ``torch.optim.swa_utils.AveragedModel`` copies the first weights instead of
    debiasing and updates parameter by parameter, so we keep one foreach lerp over all tensors.

    Args:
        params: the tensors to average (updated in place by the optimizer).
        decay: d, 0.999 in the reference.
    """

    def __init__(self, params: Iterable[torch.Tensor], decay: float = 0.999):
        self.params = [p for p in params]
        self.decay = float(decay)
        self.shadow = [torch.zeros_like(p, memory_format=torch.preserve_format).detach() for p in self.params]
        self.steps = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (one fused kernel per dtype/device)."""
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - self.decay)
        self.steps += 1

    @torch.no_grad()
    def averaged(self) -> list[torch.Tensor]:
        """The debiased averages s_t / (1 - d^t) (the current weights before any update)."""
        if self.steps == 0:
            return [p.detach().clone() for p in self.params]
        scale = 1.0 / (1.0 - self.decay**self.steps)
        return torch._foreach_mul(self.shadow, scale)
