"""The VIB objective in bits and the two information bounds (the bound chapter, book/01_bound, derives them)."""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, kl_divergence

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
