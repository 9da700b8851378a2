"""Small information-theory tools for checking the VIB bounds exactly and by Monte Carlo (book/01_bound)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from .bounds import LN2
from .config import check_int, check_number
from .model import reparameterize


def _check_distribution(p: torch.Tensor, dim: int | tuple[int, ...], what: str) -> None:
    """Raise ValueError unless ``p`` is non-negative and sums to 1 over ``dim``."""
    if (p < 0).any():
        raise ValueError(f"{what} has negative entries")
    total = p.sum(dim)
    if not torch.allclose(total, torch.ones_like(total), atol=1e-6):
        raise ValueError(f"{what} does not sum to 1 (sums: {total.flatten()[:5].tolist()})")


def _xlog2y(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x * log2(y) with the convention 0 * log 0 = 0 (torch.special.xlogy handles the zeros)."""
    return torch.special.xlogy(x, y) / LN2


def nats_to_bits(x: torch.Tensor | float) -> torch.Tensor | float:
    """Convert an information quantity from nats (natural log) to bits: divide by ln 2.

    Args:
        x: a value in nats.
    Returns:
        The same value in bits.
    """
    return x / LN2


def entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy H = -sum p log2 p of discrete distributions along the last dimension, in bits.

    Args:
        p: (..., n) probabilities summing to 1 over the last dimension.
    Returns:
        (...) entropies in bits.
    """
    _check_distribution(p, -1, "p")
    return -_xlog2y(p, p).sum(-1)


def kl_bits(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum p log2(p / q) of discrete distributions along the last dimension, in bits.

    Args:
        p: (..., n) probabilities.
        q: (..., n) probabilities, positive wherever p is.
    Returns:
        (...) divergences in bits (inf where q = 0 < p).
    """
    _check_distribution(p, -1, "p")
    _check_distribution(q, -1, "q")
    return (_xlog2y(p, p) - _xlog2y(p, q)).sum(-1)


def mutual_information(joint: torch.Tensor) -> torch.Tensor:
    """Exact mutual information I(A;B) in bits of a discrete joint table p(a, b).

    Args:
        joint: (n_a, n_b) non-negative table summing to 1.
    Returns:
        Scalar I(A;B) = sum p(a,b) log2 p(a,b) / (p(a) p(b)), in bits.
    """
    if joint.dim() != 2:
        raise ValueError(f"joint must be a 2-D table, got shape {tuple(joint.shape)}")
    _check_distribution(joint, (0, 1), "joint")
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    return (_xlog2y(joint, joint) - _xlog2y(joint, outer)).sum()


class DiscreteIB(NamedTuple):
    """A discrete Markov chain Y <-> X <-> Z: p(x), p(y|x) and an encoder p(z|x), with its derived tables.

    Args:
        p_x: (n_x,) marginal of X.
        p_y_given_x: (n_x, n_y) rows p(y|x).
        p_z_given_x: (n_x, n_z) rows p(z|x), the stochastic encoder.
    """

    p_x: torch.Tensor
    p_y_given_x: torch.Tensor
    p_z_given_x: torch.Tensor

    @property
    def joint_xy(self) -> torch.Tensor:
        """(n_x, n_y) table p(x, y) = p(x) p(y|x)."""
        return self.p_x[:, None] * self.p_y_given_x

    @property
    def joint_xz(self) -> torch.Tensor:
        """(n_x, n_z) table p(x, z) = p(x) p(z|x)."""
        return self.p_x[:, None] * self.p_z_given_x

    @property
    def joint_zy(self) -> torch.Tensor:
        """(n_z, n_y) table p(z, y) = sum_x p(x) p(z|x) p(y|x): Z sees Y only through X (the Markov chain)."""
        return torch.einsum("x,xz,xy->zy", self.p_x, self.p_z_given_x, self.p_y_given_x)

    @property
    def p_y(self) -> torch.Tensor:
        """(n_y,) marginal of Y."""
        return self.joint_xy.sum(0)

    @property
    def p_z(self) -> torch.Tensor:
        """(n_z,) the encoder's true marginal p(z) = sum_x p(x) p(z|x)."""
        return self.joint_xz.sum(0)

    @property
    def p_y_given_z(self) -> torch.Tensor:
        """(n_z, n_y) the optimal decoder p(y|z) = p(z, y) / p(z)."""
        return self.joint_zy / self.p_z[:, None]


def random_stochastic_matrix(n_rows: int, n_cols: int, sharpness: float = 2.0,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """Rows softmax(sharpness * N(0, 1) logits): a random conditional distribution table in float64.

    Args:
        n_rows: number of conditioning values (rows).
        n_cols: number of outcomes (columns).
        sharpness: scale of the logits; larger gives more nearly deterministic rows.
        generator: torch random generator for reproducibility.
    Returns:
        (n_rows, n_cols) table whose rows sum to 1.
    """
    logits = torch.randn(n_rows, n_cols, generator=generator, dtype=torch.float64)
    return (sharpness * logits).softmax(-1)


def discrete_ib_example(n_x: int = 6, n_y: int = 2, n_z: int = 3, noise: float = 0.1, sharpness: float = 2.0,
                        generator: torch.Generator | None = None) -> DiscreteIB:
    """A small exact IB problem: X uniform, Y = X mod n_y flipped with probability ``noise``, a random encoder.

    Args:
        n_x: number of values of X (uniform).
        n_y: number of classes of Y.
        n_z: number of values of the code Z.
        noise: probability that Y differs from X mod n_y (spread uniformly over the other classes).
        sharpness: logit scale of the random encoder p(z|x) (see :func:`random_stochastic_matrix`).
        generator: torch random generator for the encoder.
    Returns:
        The :class:`DiscreteIB` tables, in float64.
    """
    check_number("noise", noise, 0, 1, high_open=False)
    check_int("n_y", n_y, 2)
    p_x = torch.full((n_x,), 1.0 / n_x, dtype=torch.float64)
    clean = torch.nn.functional.one_hot(torch.arange(n_x) % n_y, n_y).to(torch.float64)
    p_y_given_x = (1.0 - noise) * clean + noise * (1.0 - clean) / (n_y - 1)
    p_z_given_x = random_stochastic_matrix(n_x, n_z, sharpness, generator)
    return DiscreteIB(p_x, p_y_given_x, p_z_given_x)


def variational_bounds(ex: DiscreteIB, q_y_given_z: torch.Tensor | None = None,
                       r_z: torch.Tensor | None = None) -> dict[str, float]:
    """Exact I(Z;X), I(Z;Y), their variational bounds for a decoder q(y|z) and marginal r(z), and the gaps' KLs.

    Args:
        ex: the discrete problem.
        q_y_given_z: (n_z, n_y) variational decoder; None uses the optimal p(y|z) (tight bound).
        r_z: (n_z,) variational marginal; None uses the true p(z) (tight bound).
    Returns:
        Dict of floats in bits: ``izx`` (exact), ``izx_upper`` = E_x KL(p(z|x) || r(z)), ``gap_izx_kl`` =
        KL(p(z) || r(z)); ``izy`` (exact), ``h_y``, ``class_loss`` = E[-log2 q(y|z)], ``izy_lower`` = H(Y) -
        class_loss, ``gap_izy_kl`` = E_z KL(p(y|z) || q(y|z)); ``ixy`` (exact, the ceiling of I(Z;Y)).
    """
    q = ex.p_y_given_z if q_y_given_z is None else q_y_given_z
    r = ex.p_z if r_z is None else r_z
    _check_distribution(q, -1, "q(y|z)")
    _check_distribution(r, -1, "r(z)")
    izx_upper = (ex.p_x * kl_bits(ex.p_z_given_x, r.expand_as(ex.p_z_given_x))).sum()
    h_y = entropy_bits(ex.p_y)
    class_loss = -_xlog2y(ex.joint_zy, q).sum()
    gap_izy = (ex.p_z * kl_bits(ex.p_y_given_z, q)).sum()
    out = {
        "izx": mutual_information(ex.joint_xz), "izx_upper": izx_upper, "gap_izx_kl": kl_bits(ex.p_z, r),
        "izy": mutual_information(ex.joint_zy), "h_y": h_y, "class_loss": class_loss,
        "izy_lower": h_y - class_loss, "gap_izy_kl": gap_izy, "ixy": mutual_information(ex.joint_xy),
    }
    return {k: float(v) for k, v in out.items()}


def _sample(p: Distribution, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n samples of p drawn from ``generator``.

    ``Distribution.sample`` takes no generator, so for the Gaussian families we draw eps ourselves and
    reparameterise (z = mu + L eps, as the model does); other families sample under a forked, seeded RNG.
    """
    if generator is None:
        return p.sample((n,))
    gaussian = isinstance(p, (Normal, MultivariateNormal)) or (
        isinstance(p, Independent) and isinstance(p.base_dist, Normal))
    if gaussian:
        eps = torch.randn((n, *p.batch_shape, *p.event_shape), generator=generator, dtype=p.mean.dtype,
                          device=generator.device)
        return reparameterize(p, eps.to(p.mean.device)).detach()
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    devices = [p.mean.device] if p.mean.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return p.sample((n,))


def mc_kl(p: Distribution, q: Distribution, n: int = 200_000,
          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte-Carlo estimate of KL(p || q) = E_p[log p(z) - log q(z)] in nats, with its standard error.

    Args:
        p: the distribution the expectation is taken under (samples are drawn from it).
        q: the second distribution, with the same event shape.
        n: number of samples.
        generator: torch random generator for reproducibility (None: the global RNG).
    Returns:
        (estimate, standard error), each of p's batch shape, in nats; the error is std(log ratio) / sqrt(n).
    """
    if n < 2:
        raise ValueError("n must be at least 2 to estimate a standard error")
    z = _sample(p, n, generator)
    log_ratio = p.log_prob(z) - q.log_prob(z)
    return log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n)


def gaussian_kl_closed_form(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum_k (mu_k^2 + sigma_k^2 - 1 - ln sigma_k^2), in nats.

    Args:
        mu: (..., K) means.
        sigma: (..., K) positive standard deviations.
    Returns:
        (...) the divergences in nats (the formula the bound chapter derives; equals ``kl_divergence`` of the two).
    """
    return 0.5 * (mu.square() + sigma.square() - 1.0 - 2.0 * sigma.log()).sum(-1)


def gaussian_kl_full_closed_form(mu: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, L L^T) || N(0, I)) = 1/2 (tr(L L^T) + mu^T mu - K - ln det(L L^T)), in nats.

    Args:
        mu: (..., K) means.
        scale_tril: (..., K, K) lower-triangular Cholesky factors L with positive diagonal.
    Returns:
        (...) the divergences in nats.
    """
    k = mu.shape[-1]
    trace = scale_tril.square().sum((-2, -1))  # tr(L L^T) is the squared Frobenius norm of L
    logdet = 2.0 * scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + mu.square().sum(-1) - k - logdet)


class MIBounds(NamedTuple):
    """Sandwich bounds on I(Z;X) for a known encoder over N inputs, in bits (Poole et al. 2019)."""

    lower: float  # minibatch (InfoNCE-form) lower bound; never above log2 N
    upper: float  # leave-one-out upper bound; unbounded
    ceiling: float  # log2 N: what no encoder of N equally likely inputs can exceed
    n: int  # inputs
    draws: int  # codes z drawn per input


def _pairwise_log_density(z: torch.Tensor, q: Distribution) -> torch.Tensor:
    """(n_z, N) table log q(z_i | x_j) in float64 for diagonal or full Gaussian posteriors with batch shape (N,).

    For the diagonal family the quadratic form is expanded into two matrix products, in float64 so that narrow
    posteriors lose nothing to cancellation: ``benchmarks/mi_table.py`` measured it 412x faster than
    broadcasting ``log_prob`` over (chunk, N, K) blocks at N=2000, K=256 on a 2-thread CPU, equal to 3e-13.
    """
    if isinstance(q, MultivariateNormal):
        # The same expansion with full precision matrices P_j: z^T P_j z is a product of the flattened outer
        # products z z^T with the flattened P_j. (A batched triangular solve per (i, j) pair is far slower.)
        loc, tril = q.loc.double(), q.scale_tril.double()
        prec = torch.cholesky_inverse(tril)  # (N, K, K)
        zz = z.double()
        outer = (zz[:, :, None] * zz[:, None, :]).flatten(1)  # (n_z, K*K)
        p_mu = (prec @ loc.unsqueeze(-1)).squeeze(-1)  # (N, K)
        quad = outer @ prec.flatten(1).T - 2.0 * zz @ p_mu.T + (loc * p_mu).sum(-1)
        half_logdet = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return -0.5 * quad - half_logdet - 0.5 * loc.shape[-1] * math.log(2 * math.pi)
    if not (isinstance(q, Independent) and isinstance(q.base_dist, Normal)):
        raise ValueError(f"MI bounds need a diagonal or full Gaussian posterior, got {type(q).__name__}")
    mu, sd = q.mean.double(), q.stddev.double()
    w = sd.pow(-2)  # (N, K) precisions
    zz = z.double()
    quad = zz.square() @ w.T - 2.0 * zz @ (mu * w).T + (mu.square() * w).sum(-1)
    return -0.5 * quad - sd.log().sum(-1) - 0.5 * mu.shape[-1] * math.log(2 * math.pi)


@torch.no_grad()
def encoder_mi_bounds(q: Distribution, draws: int = 1, generator: torch.Generator | None = None,
                      chunk: int = 1000) -> MIBounds:
    """Lower and upper bounds on I(Z;X) of a Gaussian encoder whose posteriors q(z|x_j) over N inputs are given.

    With z_i drawn from q(z|x_i) and L_ij = log q(z_i|x_j), Poole et al. (2019) bound the mutual information
    between Z and X (X drawn from the data distribution) by
    ``lower = mean_i [L_ii - log(1/N sum_j exp L_ij)]`` and ``upper = mean_i [L_ii - log(1/(N-1) sum_{j!=i}
    exp L_ij)]``, in expectation over the sample. ``lower`` is also, up to Monte-Carlo noise, the exact I(Z;X)
    when X is uniform over these N inputs, and it can never exceed log2 N.

    Args:
        q: posteriors with batch shape (N,): ``Independent(Normal)`` or ``MultivariateNormal``.
        draws: codes drawn per input (each adds N rows to the table).
        generator: random generator for the codes.
        chunk: rows of the (N, N) table computed at once (memory: chunk * N * 8 bytes).
    Returns:
        :class:`MIBounds` in bits.
    """
    if len(q.batch_shape) != 1 or q.batch_shape[0] < 2:
        raise ValueError(f"need posteriors of at least 2 inputs with batch shape (N,), got {tuple(q.batch_shape)}")
    check_int("draws", draws)
    check_int("chunk", chunk)
    n = q.batch_shape[0]
    lower, upper = [], []
    for _ in range(draws):
        z = _sample(q, 1, generator)[0]  # (N, K): one code per input
        for start in range(0, n, chunk):
            rows = torch.arange(start, min(start + chunk, n), device=z.device)
            table = _pairwise_log_density(z[rows], q)  # (rows, N)
            own = table[torch.arange(len(rows)), rows]
            lower.append(own - (torch.logsumexp(table, 1) - math.log(n)))
            table[torch.arange(len(rows)), rows] = -math.inf  # leave x_i out of its own marginal
            upper.append(own - (torch.logsumexp(table, 1) - math.log(n - 1)))
    return MIBounds(lower=float(torch.cat(lower).mean()) / LN2, upper=float(torch.cat(upper).mean()) / LN2,
                    ceiling=math.log2(n), n=n, draws=draws)
