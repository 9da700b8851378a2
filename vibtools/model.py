"""The VIB network of the reference notebook: MLP encoder to q(z|x), linear decoder (chapter 3)."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

COVARIANCES = ("diag", "full", "none")


def head_dim(k: int, covariance: str) -> int:
    """Width of the encoder's last layer: mean plus scale parameters of q(z|x)."""
    if covariance == "diag":
        return 2 * k
    if covariance == "full":
        return k + k * (k + 1) // 2
    if covariance == "none":
        return k
    raise ValueError(f"unknown covariance {covariance!r}: use one of {', '.join(COVARIANCES)}")


def posterior(head: torch.Tensor, k: int, covariance: str = "diag") -> Distribution:
    """Turn the encoder's output into q(z|x): Normal(mu, softplus(rho - 5)) as in the reference, or full covariance.

    Args:
        head: (..., head_dim(k, covariance)) encoder outputs.
        k: latent size K.
        covariance: "diag" (the reference), "full" (the paper's K=2 encoder: mean plus Cholesky factor
            with softplus(. - 5) on its diagonal).
    Returns:
        A distribution with batch shape ``head.shape[:-1]`` and event shape (K,).
    """
    mu = head[..., :k]
    # validate_args=False: the parameters are valid by construction, and validating them checks a tensor on the
    # host, which would force a GPU synchronisation at every step.
    if covariance == "diag":
        return Independent(Normal(mu, F.softplus(head[..., k:] - 5.0), validate_args=False), 1, validate_args=False)
    if covariance == "full":
        rows, cols = torch.tril_indices(k, k, device=head.device)
        tril = head.new_zeros(*head.shape[:-1], k, k)
        tril[..., rows, cols] = head[..., k:]
        diag = F.softplus(tril.diagonal(dim1=-2, dim2=-1) - 5.0)
        tril = tril.tril(-1) + torch.diag_embed(diag)
        return MultivariateNormal(mu, scale_tril=tril, validate_args=False)
    raise ValueError(f"covariance {covariance!r} has no posterior distribution")


@functools.lru_cache(maxsize=32)
def prior(k: int, covariance: str = "diag", device: torch.device | str = "cpu") -> Distribution:
    """The prior r(z) = N(0, I) in the same family as the posterior, so KL has a closed form (built once)."""
    zeros = torch.zeros(k, device=device)
    if covariance == "full":
        return MultivariateNormal(zeros, scale_tril=torch.eye(k, device=device), validate_args=False)
    return Independent(Normal(zeros, torch.ones(k, device=device), validate_args=False), 1, validate_args=False)


def reparameterize(q: Distribution, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + L eps for a given standard-normal ``eps`` of shape (S?, ..., K).

    ``Distribution.rsample`` takes no generator; drawing ``eps`` ourselves from a per-run generator is what
    lets a vectorized sweep reproduce each single run exactly.
    """
    if isinstance(q, MultivariateNormal):
        return q.loc + (q.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
    return q.mean + q.stddev * eps


def glorot_(linear: nn.Linear) -> nn.Linear:
    """TensorFlow's default layer init (Glorot-uniform weights, zero biases), as in the reference."""
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


class VIB(nn.Module):
    """Deep VIB classifier: encoder 784-1024-1024-head giving q(z|x), decoder K->10 (the reference's model).

    Args:
        k: latent size K (256 in the reference, 2 for embeddings).
        covariance: "diag" (reference), "full" (paper's K=2 encoder) or "none" (deterministic baseline, z = mu).
        hidden: width of the two hidden layers.
        n_classes: number of classes.
    """

    def __init__(self, k: int = 256, covariance: str = "diag", hidden: int = 1024, n_classes: int = 10):
        super().__init__()
        self.k, self.covariance = k, covariance
        self.enc1 = glorot_(nn.Linear(784, hidden))
        self.enc2 = glorot_(nn.Linear(hidden, hidden))
        self.enc3 = glorot_(nn.Linear(hidden, head_dim(k, covariance)))
        self.dec = glorot_(nn.Linear(k, n_classes))

    @property
    def deterministic(self) -> bool:
        return self.covariance == "none"

    def encode_head(self, x: torch.Tensor) -> torch.Tensor:
        """Raw encoder output for images x in [0, 1] of shape (B, 784); the input is rescaled to 2x - 1."""
        h = F.relu(self.enc1(2 * x - 1))
        h = F.relu(self.enc2(h))
        return self.enc3(h)

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x) for a batch of images."""
        return posterior(self.encode_head(x), self.k, self.covariance)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Class logits q(y|z) for latent codes of shape (..., K)."""
        return self.dec(z)

    def forward(self, x: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
        """Logits of shape (n_samples, B, 10) from z drawn from q(z|x) (z = mu for the deterministic variant)."""
        head = self.encode_head(x)
        if self.deterministic:
            return self.decode(head).expand(n_samples, *head.shape[:-1], -1)
        return self.decode(posterior(head, self.k, self.covariance).rsample((n_samples,)))


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def log2_classes(n_classes: int = 10) -> float:
    """H(Y) in bits for balanced classes: the ceiling of I(Z;Y)."""
    return math.log2(n_classes)
