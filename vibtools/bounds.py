"""The VIB objective in bits and the two information bounds (the bound chapter, book/01_bound, derives them)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.distributions import Distribution, kl_divergence

if TYPE_CHECKING:
    from .config import TrainConfig
    from .model import VIBStack

LN2 = math.log(2.0)


def class_loss_bits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in bits over the batch (last non-class dimension); leading model/sample dims are kept.

    Args:
        logits: (..., B, C) unnormalised class scores.
        labels: (B,) integer classes.
    Returns:
        (...) mean of -log2 q(y|z) over the batch.
    """
    logp = logits.log_softmax(-1)
    idx = labels.expand(logits.shape[:-1]).unsqueeze(-1)
    return -logp.gather(-1, idx).squeeze(-1).mean(-1) / LN2


def smoothed_class_loss_bits(logits: torch.Tensor, labels: torch.Tensor,
                             smoothing: float | torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in bits against label-smoothed targets (1 - eps) one-hot + eps / C (Szegedy et al. 2016).

    Args:
        logits: (..., B, C) unnormalised class scores.
        labels: (B,) integer classes.
        smoothing: eps, a number or a tensor of the leading shape (...) (one per model).
    Returns:
        (...) the batch mean, in bits; equals :func:`class_loss_bits` at eps = 0.
    """
    logp = logits.log_softmax(-1)
    idx = labels.expand(logits.shape[:-1]).unsqueeze(-1)
    nll = -logp.gather(-1, idx).squeeze(-1)
    uniform = -logp.mean(-1)  # cross-entropy against the uniform distribution over the C classes
    eps = torch.as_tensor(smoothing, dtype=logp.dtype, device=logp.device)
    eps = eps.reshape(*eps.shape, 1)
    return ((1 - eps) * nll + eps * uniform).mean(-1) / LN2


def prediction_entropy_bits(logits: torch.Tensor) -> torch.Tensor:
    """Batch-mean entropy H(q(y|z)) in bits of the predicted class distribution (the confidence penalty's term).

    Args:
        logits: (..., B, C) unnormalised class scores.
    Returns:
        (...) the mean over the batch of -sum_y q(y|z) log2 q(y|z).
    """
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1).mean(-1) / LN2


def info_loss_bits(posterior: Distribution, prior: Distribution) -> torch.Tensor:
    """Batch-mean KL(q(z|x) || r(z)) in bits: the variational upper bound on I(Z;X).

    Args:
        posterior: q(z|x) with batch shape (..., B) and event shape (K,).
        prior: r(z) with event shape (K,).
    Returns:
        (...) the KL averaged over the batch, in bits.
    """
    return kl_divergence(posterior, prior).mean(-1) / LN2


def izy_lower_bound(class_bits: torch.Tensor | float, n_classes: int = 10) -> torch.Tensor | float:
    """I(Z;Y) >= H(Y) - E[-log2 q(y|z)], with H(Y) = log2(n_classes) for balanced classes."""
    return math.log2(n_classes) - class_bits


def izx_upper_bound(info_bits: torch.Tensor | float) -> torch.Tensor | float:
    """I(Z;X) <= E_x KL(p(z|x) || r(z)): the info loss in bits is itself the bound."""
    return info_bits


def vib_objective(class_bits: torch.Tensor, info_bits: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """The VIB loss in bits: class loss + beta * info loss."""
    return class_bits + beta * info_bits


# ----------------------------------------------------------------------------- the loss of a stacked pass
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


def stack_loss(stack: VIBStack, settings: LossSettings, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
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
